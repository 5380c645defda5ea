//! What a valid config still gets wrong for most deployments: said by
//! `check-config` (as `warning:` lines) and logged by `run` at start, from
//! one list so the two never disagree.

use std::path::Path;

use super::problem::Problem;
use super::{AuthMode, Config, Provider, StoreKind};

/// The warnings of a valid `config`; with `files`, also those about the
/// files it names (a key file every user can read).
pub fn warnings(config: &Config, files: bool) -> Vec<Problem> {
    let mut out = Vec::new();
    let a = &config.auth;
    if a.mode == AuthMode::None {
        out.push(Problem::new(
            "auth.mode",
            "\"none\": the proxy attaches no credential; requests reach Azure DevOps with \
             whatever the client sends",
        ));
    }
    let sessions = a.mode == AuthMode::User;
    if sessions && config.session.store == StoreKind::Memory {
        out.push(Problem::new(
            "session.store",
            "\"memory\": a restart signs everyone out and replicas do not share sessions; use \
             \"embedded\" or \"redis\" outside tests",
        ));
    }
    if sessions && a.provider == Some(Provider::AzureDevops) {
        out.push(Problem::new(
            "auth.provider",
            "\"azure-devops\": Microsoft retires the legacy Azure DevOps OAuth in 2026 (no new \
             app registrations since 2025-04; no end date published): sign-ins and refreshes stop \
             working the day it ends. Register an Entra app and set provider = \"entra\" (see \
             docs/providers.md, Retirement)",
        ));
    }
    if sessions && a.provider == Some(Provider::AzureDevops) && !public_https(config) {
        out.push(Problem::new(
            "listen.public_url",
            "legacy Azure DevOps OAuth only accepts https callback URLs; put a TLS listener or \
             an ingress in front and set listen.public_url",
        ));
    }
    if files
        && sessions
        && let Some(path) = &config.session.encryption_keys_file
        && let Some(why) = world_readable(path)
    {
        out.push(Problem::new("session.encryption_keys_file", why).about_file());
    }
    out
}

/// Whether the callback URL the proxy sends is https.
fn public_https(config: &Config) -> bool {
    match &config.listen.public_url {
        Some(url) => url.scheme() == "https",
        None => config.listen.tls(),
    }
}

/// The warning for a key file every user of the machine can read. Group
/// access is how Kubernetes mounts a Secret for a non-root container
/// (`defaultMode: 0440` with `fsGroup`), on a read-only mount that cannot
/// be chmod-ed: that is no reason to warn.
pub fn world_readable(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        shared_warning(mode)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

fn shared_warning(mode: u32) -> Option<String> {
    let mode = mode & 0o777;
    (mode & 0o007 != 0).then(|| {
        format!(
            "the session key file is readable by every user (mode {mode:o}): chmod 600 it, or \
             mount its Kubernetes Secret with defaultMode: 0400 (or 0440 with the pod's fsGroup)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_key_file_every_user_can_read_is_warned_about() {
        for quiet in [0o600, 0o400, 0o440, 0o640, 0o100600] {
            assert_eq!(shared_warning(quiet), None, "{quiet:o}");
        }
        for loud in [0o644, 0o604, 0o666, 0o601] {
            let w = shared_warning(loud).expect("warned");
            assert!(w.contains("defaultMode") && w.contains("chmod 600"), "{w}");
        }
    }

    #[test]
    fn each_warning_names_its_key() {
        let mut c = Config::default();
        c.auth.mode = AuthMode::None;
        let keys: Vec<String> = warnings(&c, true).into_iter().map(|p| p.key).collect();
        assert_eq!(keys, ["auth.mode"]);
        c.auth.mode = AuthMode::User;
        c.auth.provider = Some(Provider::AzureDevops);
        c.session.store = StoreKind::Memory;
        let keys: Vec<String> = warnings(&c, true).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["session.store", "auth.provider", "listen.public_url"]
        );
        c.listen.public_url = Some(url::Url::parse("https://proxy.example.com").unwrap());
        c.session.store = StoreKind::Embedded;
        let keys: Vec<String> = warnings(&c, true).into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            ["auth.provider"],
            "the retirement is said until the switch"
        );
        c.auth.provider = Some(Provider::Entra);
        assert!(warnings(&c, true).is_empty());
    }
}
