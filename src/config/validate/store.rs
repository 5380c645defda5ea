//! `[session]`: the store and what it needs.

use url::Url;

use super::super::problem::Problem;
use super::super::{SessionConfig, StoreKind};
use super::{positive, readable, secret_file};

/// `[session]` store settings: the backend's own keys and the key file.
pub(super) fn store(s: &SessionConfig, out: &mut Vec<Problem>) {
    if let Some(path) = &s.encryption_keys_file {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                if let Err(e) = crate::seal::parse_keys(&text) {
                    out.push(
                        Problem::new(
                            "session.encryption_keys_file",
                            format!("{}: {e}", path.display()),
                        )
                        .about_file(),
                    );
                }
            }
            Err(e) => out.push(
                Problem::new(
                    "session.encryption_keys_file",
                    format!(
                        "cannot read {}: {e}; create it with `ado-auth-proxy keygen > {}` (mode 0600)",
                        path.display(),
                        path.display()
                    ),
                )
                .about_file(),
            ),
        }
    }
    match s.store {
        StoreKind::Embedded => embedded(s, out),
        StoreKind::Redis => redis(s, out),
        StoreKind::Memory => {}
    }
}

/// `session.path` names a file.
fn embedded(s: &SessionConfig, out: &mut Vec<Problem>) {
    if s.path.as_os_str().is_empty() {
        out.push(Problem::new(
            "session.path",
            "must name the database file, e.g. \"./data/sessions.db\"",
        ));
    } else if s.path.is_dir() {
        out.push(Problem::new(
            "session.path",
            format!(
                "{} is a directory; name the database file inside it, e.g. \"{}\"",
                s.path.display(),
                s.path.join("sessions.db").display()
            ),
        ));
    }
}

/// The server, its credentials and TLS, the shared key file, timeouts.
fn redis(s: &SessionConfig, out: &mut Vec<Problem>) {
    redis_server(s, out);
    if s.encryption_keys_file.is_none() {
        out.push(Problem::new(
            "session.encryption_keys_file",
            "missing: store \"redis\" needs a key file shared by every replica; create \
             one with `ado-auth-proxy keygen > keys` and mount it on all of them",
        ));
    }
    if let Some(path) = &s.redis_password_file {
        secret_file(
            "session.redis_password_file",
            path,
            "the Redis password",
            out,
        );
    }
    if let Some(path) = &s.redis_ca_file {
        readable("session.redis_ca_file", path, out);
        let tls = s
            .redis_url
            .as_ref()
            .is_some_and(|u| u.expose().trim_start().starts_with("rediss://"));
        if !tls && s.redis_url.is_some() {
            out.push(Problem::new(
                "session.redis_ca_file",
                "only used with TLS: write session.redis_url as rediss://...",
            ));
        }
    }
    client_certificate(s, out);
    positive(
        "session.redis_connect_timeout",
        s.redis_connect_timeout,
        out,
    );
    positive(
        "session.redis_command_timeout",
        s.redis_command_timeout,
        out,
    );
    positive("session.revalidate_interval", s.revalidate_interval, out);
    if s.key_prefix.len() > 128 {
        out.push(Problem::new(
            "session.key_prefix",
            "longer than 128 characters; use a short name such as \"ado-auth-proxy:\"",
        ));
    }
}

/// Which server: `redis_url`, or the sentinels, not both, and the keys
/// of the one not chosen unset.
fn redis_server(s: &SessionConfig, out: &mut Vec<Problem>) {
    match (&s.redis_url, s.redis_sentinels.is_empty()) {
        (None, true) => out.push(Problem::new(
            "session.redis_url",
            "missing: store \"redis\" needs the server, e.g. \"redis://redis:6379/0\" \
             (or ADO_AUTH_PROXY_SESSION__REDIS_URL, to keep a password out of the file), or \
             session.redis_sentinels with session.redis_sentinel_master",
        )),
        (Some(_), false) => out.push(Problem::new(
            "session.redis_sentinels",
            "both session.redis_url and session.redis_sentinels are set; keep one (the \
             sentinels name the master)",
        )),
        (Some(url), true) => {
            if let Err(why) = redis_url(url.expose()) {
                out.push(Problem::new("session.redis_url", why));
            }
            for (key, set) in [
                (
                    "session.redis_sentinel_master",
                    s.redis_sentinel_master.is_some(),
                ),
                (
                    "session.redis_sentinel_password_file",
                    s.redis_sentinel_password_file.is_some(),
                ),
            ] {
                if set {
                    out.push(Problem::new(
                        key,
                        "only used with session.redis_sentinels; remove it, or name the \
                         sentinels instead of session.redis_url",
                    ));
                }
            }
        }
        (None, false) => sentinels(s, out),
    }
}

/// `session.redis_client_certificate_file` and `redis_client_key_file`:
/// both or neither, readable, over TLS.
fn client_certificate(s: &SessionConfig, out: &mut Vec<Problem>) {
    let (cert, key) = (&s.redis_client_certificate_file, &s.redis_client_key_file);
    match (cert, key) {
        (None, None) => return,
        (Some(_), None) => out.push(Problem::new(
            "session.redis_client_key_file",
            "missing: session.redis_client_certificate_file is set, so its private key file is \
             needed too",
        )),
        (None, Some(_)) => out.push(Problem::new(
            "session.redis_client_certificate_file",
            "missing: session.redis_client_key_file is set, so the certificate file is needed too",
        )),
        (Some(c), Some(k)) => {
            readable("session.redis_client_certificate_file", c, out);
            readable("session.redis_client_key_file", k, out);
        }
    }
    let tls = s
        .redis_url
        .as_ref()
        .is_some_and(|u| u.expose().trim_start().starts_with("rediss://"));
    if !tls {
        out.push(Problem::new(
            "session.redis_client_certificate_file",
            "only used with TLS: write session.redis_url as rediss://... (TLS with \
             session.redis_sentinels is not supported yet)",
        ));
    }
}

/// `session.redis_sentinels`: addresses, the master's name, their
/// password file.
fn sentinels(s: &SessionConfig, out: &mut Vec<Problem>) {
    for a in &s.redis_sentinels {
        let ok = a.trim().rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty()
                && !host.contains(['/', '@', ' '])
                && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            out.push(Problem::new(
                "session.redis_sentinels",
                format!("{a:?} is not host:port; write e.g. \"sentinel-0.redis:26379\""),
            ));
        }
    }
    if s.redis_sentinel_master
        .as_deref()
        .is_none_or(|m| m.trim().is_empty())
    {
        out.push(Problem::new(
            "session.redis_sentinel_master",
            "missing: the name the sentinels monitor the master by (`sentinel monitor <name> ...`)",
        ));
    }
    if let Some(path) = &s.redis_sentinel_password_file {
        secret_file(
            "session.redis_sentinel_password_file",
            path,
            "the sentinels' password",
            out,
        );
    }
    if s.redis_ca_file.is_some() {
        out.push(Problem::new(
            "session.redis_ca_file",
            "TLS to sentinels and their master is not supported yet; use plain connections \
             inside the cluster, or session.redis_url with rediss://",
        ));
    }
}

/// Why a Redis URL is unusable (never echoing its password).
fn redis_url(raw: &str) -> Result<(), String> {
    let url = Url::parse(raw.trim()).map_err(|e| {
        format!("not a URL ({e}); write e.g. \"redis://redis:6379/0\" or \"rediss://...\" for TLS")
    })?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "scheme \"{}\" is not supported; use redis:// or rediss:// (TLS)",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("names no host; write e.g. \"redis://redis:6379/0\"".into());
    }
    let db = url.path().trim_start_matches('/');
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Err(format!(
            "the path must be a database number such as /0, not /{db}"
        ));
    }
    Ok(())
}
