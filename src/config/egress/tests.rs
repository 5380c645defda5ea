use proptest::prelude::*;

use super::*;

fn env(vars: &[(&str, &str)]) -> ProxyEnvironment {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ProxyEnvironment::capture(&vars)
}

fn upstream(vars: &[(&str, &str)]) -> UpstreamConfig {
    UpstreamConfig {
        proxy_environment: env(vars),
        ..UpstreamConfig::default()
    }
}

fn plan(u: &UpstreamConfig) -> EgressPlan {
    egress_plan(u, true).unwrap_or_else(|p| panic!("{p:?}"))
}

fn problems(u: &UpstreamConfig) -> Vec<String> {
    match egress_plan(u, true) {
        Ok(_) => Vec::new(),
        Err(p) => p
            .iter()
            .map(|p| format!("{}: {}", p.key, p.message))
            .collect(),
    }
}

#[test]
fn nothing_set_means_direct_connections() {
    let p = plan(&upstream(&[("PATH", "/bin"), ("HOME", "/root")]));
    assert!(p.http.is_none() && p.https.is_none());
    assert_eq!(p.to_string(), "none (direct connections)");
}

#[test]
fn the_environment_is_read_as_curl_reads_it() {
    // Lower case first; ALL_PROXY fills the roles left open.
    let p = plan(&upstream(&[
        ("HTTPS_PROXY", "http://upper:1"),
        ("https_proxy", "lower:3128"),
        ("ALL_PROXY", "http://all:8080"),
        ("NO_PROXY", "corp.example,10.0.0.0/8"),
    ]));
    let https = p.https.unwrap();
    assert_eq!((https.host.as_str(), https.port), ("lower", 3128));
    assert_eq!(https.from, "https_proxy");
    let http = p.http.unwrap();
    assert_eq!(
        (http.host.as_str(), http.port, http.from.as_str()),
        ("all", 8080, "ALL_PROXY")
    );
    assert_eq!(p.no_proxy, "corp.example,10.0.0.0/8");
    // Upper-case HTTP_PROXY is what a CGI server sets from a request's
    // Proxy header: curl ignores it, and so does the proxy.
    let p = plan(&upstream(&[("HTTP_PROXY", "http://evil:1")]));
    assert!(p.http.is_none() && p.https.is_none());
    // Upper-case HTTP_PROXY is what a CGI server sets from a request's
    // Proxy header: curl ignores it, and so does the proxy.
    let p = plan(&upstream(&[("HTTP_PROXY", "http://evil:1")]));
    assert!(p.http.is_none() && p.https.is_none());
    // An empty variable is unset.
    let p = plan(&upstream(&[
        ("https_proxy", " "),
        ("HTTPS_PROXY", "http://upper:1"),
    ]));
    assert_eq!(p.https.unwrap().from, "HTTPS_PROXY");
}

#[test]
fn the_captured_environment_never_shows_a_value() {
    let mut u = upstream(&[]);
    u.proxy_environment = env(&[("HTTPS_PROXY", "http://svc:Top-Secret-77@10.0.0.5:3128")]);
    let shown = format!("{u:?}");
    assert!(!shown.contains("Top-Secret-77"), "{shown}");
    assert!(shown.contains("HTTPS_PROXY"), "{shown}");
}

#[test]
fn credentials_in_a_variable_are_decoded_and_never_shown() {
    let p = plan(&upstream(&[(
        "HTTPS_PROXY",
        "http://al%40ice:p%3Ass@proxy.corp:3128",
    )]));
    let t = p.https.clone().unwrap();
    let c = t.credentials.unwrap();
    assert_eq!(c.user, "al@ice");
    assert_eq!(c.password.expose(), "p:ss");
    let shown = format!("{p} {p:?}");
    assert!(
        !shown.contains("p:ss") && !shown.contains("p%3Ass"),
        "{shown}"
    );
    assert!(shown.contains("http://proxy.corp:3128 (from HTTPS_PROXY) with Basic credentials"));
}

#[test]
fn the_key_overrides_the_environment() {
    let mut u = upstream(&[("HTTPS_PROXY", "http://env:1"), ("NO_PROXY", "env.example")]);
    u.egress_proxy = Some("http://[::1]:3128".into());
    u.no_proxy = vec!["corp.example".into(), ".internal".into()];
    let p = plan(&u);
    assert_eq!(p.https, p.http);
    let t = p.https.unwrap();
    assert_eq!(
        (t.authority().as_str(), t.from.as_str()),
        ("[::1]:3128", "upstream.egress_proxy")
    );
    assert_eq!(p.no_proxy, "corp.example,.internal");

    u.egress_proxy = Some("none".into());
    let p = plan(&u);
    assert!(p.https.is_none() && p.http.is_none());
}

#[test]
fn unusable_values_name_the_key_or_variable_and_the_fix() {
    // (environment, upstream.egress_proxy, the key named, a word of the fix)
    type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>, &'a str, &'a str);
    let cases: &[Case] = &[
        (
            &[("HTTPS_PROXY", "socks5://p:1080")],
            None,
            "HTTPS_PROXY",
            "socks5://",
        ),
        (
            &[("https_proxy", "https://p:443")],
            None,
            "https_proxy",
            "TLS",
        ),
        (
            &[("HTTPS_PROXY", "http://p:1/path")],
            None,
            "HTTPS_PROXY",
            "path",
        ),
        (
            &[("HTTPS_PROXY", "http://:1")],
            None,
            "HTTPS_PROXY",
            "proxy URL",
        ),
        (
            &[("HTTPS_PROXY", "http://p:99999")],
            None,
            "HTTPS_PROXY",
            "proxy URL",
        ),
        (
            &[],
            Some("http://u:secret@p:1"),
            "upstream.egress_proxy",
            "credentials_file",
        ),
        (&[], Some("ftp://p"), "upstream.egress_proxy", "ftp://"),
    ];
    for (vars, key_value, key, word) in cases {
        let mut u = upstream(vars);
        u.egress_proxy = key_value.map(str::to_string);
        let found = problems(&u);
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(&format!("{key}: ")) && p.contains(word)),
            "{vars:?} {key_value:?}: {found:?}"
        );
        assert!(found.iter().all(|p| !p.contains("secret")), "{found:?}");
    }
    // Variables name the override.
    let found = problems(&upstream(&[("HTTPS_PROXY", "socks5://p:1080")]));
    assert!(found[0].contains("upstream.egress_proxy"), "{found:?}");
}

#[test]
fn no_proxy_entries_are_one_name_each() {
    let mut u = upstream(&[]);
    u.egress_proxy = Some("http://p:1".into());
    u.no_proxy = vec![
        "a.example, b.example".into(),
        "".into(),
        "10.0.0.0/8".into(),
        "corp.example:443".into(),
        "[::1]".into(),
        "::1".into(),
        "fd00::/8".into(),
    ];
    let found = problems(&u);
    assert_eq!(found.len(), 4, "{found:?}");
    for (p, i) in found.iter().zip([0, 1, 3, 4]) {
        assert!(p.starts_with(&format!("upstream.no_proxy[{i}]: ")), "{p}");
    }
}

#[test]
fn the_credentials_file_is_read_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy-credentials");
    std::fs::write(&file, "svc-ado:pa:ss word\n").unwrap();
    let mut u = upstream(&[("HTTPS_PROXY", "http://proxy:3128")]);
    u.egress_proxy_credentials_file = Some(file.clone());
    let c = plan(&u).https.unwrap().credentials.unwrap();
    assert_eq!(
        (c.user.as_str(), c.password.expose()),
        ("svc-ado", "pa:ss word")
    );

    std::fs::write(&file, "no colon\n").unwrap();
    let found = problems(&u);
    assert!(found[0].contains("user:password"), "{found:?}");
    assert!(!found[0].contains("no colon"), "{found:?}");
    // Not looked at with --no-files.
    assert!(egress_plan(&u, false).is_ok());

    let mut direct = upstream(&[]);
    direct.egress_proxy_credentials_file = Some(file);
    assert!(problems(&direct)[0].contains("no egress proxy is in use"));
}

proptest! {
    /// Whatever a variable holds: no panic, and a password never shows.
    #[test]
    fn any_value_is_parsed_or_refused_without_showing_a_password(
        value in "[ -~]{0,40}",
        password in "[a-zA-Z0-9]{12,20}",
    ) {
        let u = upstream(&[("HTTPS_PROXY", &value)]);
        let _ = egress_plan(&u, true);
        let with_password = format!("http://user:{password}@{value}");
        let u = upstream(&[("HTTPS_PROXY", &with_password)]);
        let shown = match egress_plan(&u, true) {
            Ok(p) => format!("{p} {p:?}"),
            Err(p) => format!("{p:?}"),
        };
        prop_assert!(!shown.contains(&password), "{}", shown);
    }
}
