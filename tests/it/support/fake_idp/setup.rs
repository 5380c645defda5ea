//! Proxies configured against the fake, a signed-in browser, and a fake
//! Azure DevOps that checks the fake's tokens.

use super::*;

/// A proxy config in mode `user` signing in through this fake Entra,
/// forwarding to `upstream`.
pub fn entra_config(upstream: &str, idp: &FakeIdp) -> ado_auth_proxy::config::Config {
    use ado_auth_proxy::config::{AuthMode, Provider, Secret};
    let mut c = crate::support::config(upstream);
    c.auth.mode = AuthMode::User;
    c.auth.provider = Some(Provider::Entra);
    c.auth.tenant = Some(TENANT.into());
    c.auth.client_id = Some(CLIENT_ID.into());
    c.auth.client_secret = Some(Secret::new(CLIENT_SECRET));
    c.auth.authority_host = Some(url::Url::parse(&idp.url()).unwrap());
    c
}

/// A proxy config in mode `service` (client credentials sending
/// `secret`) getting its tokens from this fake, forwarding to `upstream`.
pub fn service_config(
    upstream: &str,
    idp: &FakeIdp,
    secret: &str,
) -> ado_auth_proxy::config::Config {
    use ado_auth_proxy::config::{AuthMode, Secret, ServiceSource};
    let mut c = entra_config(upstream, idp);
    c.auth.mode = AuthMode::Service;
    c.auth.source = Some(ServiceSource::ClientCredentials);
    c.auth.provider = None;
    c.auth.client_secret = Some(Secret::new(secret));
    c
}

/// A proxy in mode `user` signing in through this fake, in front of a
/// fake Azure DevOps that accepts the fake's live access tokens.
pub struct Setup {
    pub idp: FakeIdp,
    pub ado: FakeUpstream,
    pub proxy: ado_auth_proxy::app::Running,
    /// The proxy's base URL.
    pub url: String,
}

impl Setup {
    /// Starts all three; `tweak` edits the proxy's config (it gets the
    /// fake's URL too).
    pub async fn start(
        access_ttl: Duration,
        tweak: impl FnOnce(&mut ado_auth_proxy::config::Config, &str),
    ) -> Self {
        let idp = FakeIdp::start(access_ttl).await;
        let ado = fake_ado(&idp).await;
        let mut c = entra_config(&ado.url(), &idp);
        tweak(&mut c, &idp.url());
        let proxy = crate::support::start_with(c, idp.clock()).await;
        let url = format!("http://{}", proxy.proxy_addr);
        Self {
            idp,
            ado,
            proxy,
            url,
        }
    }

    /// Moves time forward for the proxy and both fakes: tokens age,
    /// backoffs run out, sessions idle.
    pub fn advance(&self, by: Duration) {
        self.idp.clock().advance(by);
    }

    /// Signs a new browser in (returning to [`crate::support::PROJECTS`]): the
    /// browser and the callback's answer.
    pub async fn sign_in(&self) -> (Browser, reqwest::Response) {
        let b = Browser::new();
        let resp = sign_in(&b, &self.url, Some(crate::support::PROJECTS)).await;
        (b, resp)
    }

    /// A browser holding a session.
    pub async fn signed_in(&self) -> Browser {
        let (b, resp) = self.sign_in().await;
        assert_eq!(resp.status(), 302, "signed in: {:?}", resp.text().await);
        b
    }
}

/// Signs `b` in at the proxy `base` through the fake (which approves at
/// once), optionally asking to return to `rd`; the callback's answer.
pub async fn sign_in(b: &Browser, base: &str, rd: Option<&str>) -> reqwest::Response {
    sign_in_via(b, base, rd, |callback| callback.to_string()).await
}

/// [`sign_in`], with the provider's redirect delivered where `deliver`
/// says (another replica).
pub async fn sign_in_via(
    b: &Browser,
    base: &str,
    rd: Option<&str>,
    deliver: impl Fn(&str) -> String,
) -> reqwest::Response {
    let mut login = url::Url::parse(&format!("{base}/.auth/login")).unwrap();
    if let Some(rd) = rd {
        login.query_pairs_mut().append_pair("rd", rd);
    }
    let resp = b.navigate(login.as_str()).await;
    assert_eq!(resp.status(), 302, "login: {:?}", resp.text().await);
    let authorize = resp.headers()["location"].to_str().unwrap().to_string();
    let resp = b.navigate(&authorize).await;
    assert_eq!(resp.status(), 302, "the fake's authorize redirects");
    let callback = deliver(resp.headers()["location"].to_str().unwrap());
    b.navigate(&callback).await
}

/// The value `resp` sets for cookie `name`, if it sets one (not a
/// deletion).
pub fn set_cookie(resp: &reqwest::Response, name: &str) -> Option<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next()?.strip_prefix(&format!("{name}=")))
        .find(|v| !v.is_empty())
        .map(str::to_string)
}

/// A fake Azure DevOps accepting the fake IdP's live access tokens.
pub async fn fake_ado(idp: &FakeIdp) -> FakeUpstream {
    fake_ado_over(idp, None).await
}

/// [`fake_ado`], over TLS when `tls` is set.
pub async fn fake_ado_over(idp: &FakeIdp, tls: Option<rustls::ServerConfig>) -> FakeUpstream {
    let check = idp.checker();
    FakeUpstream::recording_tls(move |r: &Recorded| {
        let auth = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match check(auth) {
            Ok(who) => respond(
                200,
                &[("content-type", "application/json")],
                format!(r#"{{"user":"{who}"}}"#),
            ),
            // Continuous Access Evaluation, as Microsoft documents it.
            Err(Some(claims)) => respond(
                401,
                &[(
                    "www-authenticate",
                    &format!(
                        "Bearer realm=\"\", authorization_uri=\"https://login.microsoftonline.com/common/oauth2/authorize\", error=\"insufficient_claims\", claims=\"{claims}\""
                    ),
                )],
                "",
            ),
            Err(None) => respond(
                401,
                &[(
                    "www-authenticate",
                    "Bearer authorization_uri=https://login.microsoftonline.com/common",
                )],
                "",
            ),
        }
    }, tls)
    .await
}

/// A fake Azure DevOps whose organizations belong to directories: a
/// request to an organization of `orgs` is accepted only with a live
/// token its directory issued (any directory for a Microsoft-account
/// organization), and refused otherwise, as Azure DevOps does, with the
/// organization's tenant in `X-VSS-ResourceTenant` and the Bearer
/// challenge (what Git Credential Manager's unauthenticated look reads).
/// Other organizations accept any live token. Organizations whose name
/// starts with `quiet` name no directory to an unauthenticated `HEAD`,
/// only in refusals of a token.
pub async fn fake_ado_tenants(idp: &FakeIdp, orgs: &[(&str, &str)]) -> FakeUpstream {
    let state = idp.state.clone();
    let orgs: HashMap<String, String> = orgs
        .iter()
        .map(|(o, t)| (o.to_string(), t.to_string()))
        .collect();
    FakeUpstream::recording(move |r: &Recorded| {
        let org = r.uri.trim_start_matches('/').split(['/', '?']).next().unwrap_or("");
        let want = orgs.get(org);
        let token = r
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let s = state.lock().unwrap();
        let live = s
            .access_tokens
            .get(token)
            .filter(|(_, exp, _)| *exp > s.clock.now());
        match (live, want) {
            (Some((who, _, tid)), Some(t)) if t == tid || t == MSA_TENANT => respond(
                200,
                &[("content-type", "application/json")],
                format!(r#"{{"user":"{who}","tenant":"{tid}"}}"#),
            ),
            (Some((who, _, tid)), None) => respond(
                200,
                &[("content-type", "application/json")],
                format!(r#"{{"user":"{who}","tenant":"{tid}"}}"#),
            ),
            (None, Some(_)) if r.method == http::Method::HEAD && org.starts_with("quiet") => {
                respond(401, &[("www-authenticate", "Basic realm=\"x\"")], "")
            }
            (_, Some(t)) => {
                let authority = if t == MSA_TENANT { "common" } else { t.as_str() };
                respond(
                    401,
                    &[
                        ("x-vss-resourcetenant", t.as_str()),
                        (
                            "www-authenticate",
                            &format!("Bearer authorization_uri=https://login.microsoftonline.com/{authority}"),
                        ),
                        ("www-authenticate", "Basic realm=\"https://tfsprodweu2.app.visualstudio.com/\""),
                        ("x-tfs-serviceerror", "TF400813%3a+Resource+not+available+for+anonymous+access.+Client+authentication+required."),
                    ],
                    "",
                )
            }
            (None, None) => respond(401, &[("www-authenticate", "Bearer authorization_uri=https://login.microsoftonline.com/common")], ""),
        }
    })
    .await
}
