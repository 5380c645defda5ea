//! What a valid configuration asks for, as types: the keys a mode needs
//! are no longer `Option`s here, so the constructors that take a plan do
//! not check them again. [`plan`] builds one only after [`validate`] found
//! no problem; `app::start` and `ado-auth-proxy login` go through it.

use std::path::PathBuf;

use super::validate::validate;
use super::{
    AuthConfig, AuthMode, Config, Problems, Secret, ServiceSource, SessionConfig, StoreKind,
};

/// The session store.
#[derive(Debug, Clone)]
pub enum StorePlan {
    /// Process memory.
    Memory,
    /// The redb file at `session.path`.
    Embedded,
    /// A Redis server.
    Redis(RedisTarget),
}

/// Which Redis server: at an address, or the master sentinels name.
#[derive(Debug, Clone)]
pub enum RedisTarget {
    /// `session.redis_url`.
    Url(Secret),
    /// `session.redis_sentinels` and `redis_sentinel_master`.
    Sentinel {
        /// `host:port` of each sentinel.
        sentinels: Vec<String>,
        /// The monitored master's name.
        master: String,
    },
}

/// How requests are authenticated upstream.
#[derive(Debug, Clone)]
pub enum AuthPlan {
    /// Mode `none`: the client's own `Authorization` passes.
    PassThrough,
    /// Mode `pat`.
    Pat,
    /// Mode `user`, each component's plan.
    User {
        /// The sign-in, its provider and its features.
        plan: Box<super::UserPlan>,
        /// Where sessions are kept.
        store: StorePlan,
    },
    /// Mode `service`.
    Service(SourcePlan),
}

/// Where mode `service` gets its token.
#[derive(Debug, Clone)]
pub enum SourcePlan {
    /// A PAT.
    Pat,
    /// Entra client credentials with the app's credential.
    ClientCredentials(AppCredential),
    /// Azure Workload Identity: the projected token is the assertion.
    WorkloadIdentity {
        /// `auth.federated_token_file`.
        token_file: PathBuf,
    },
    /// Any OpenID Connect token file as the assertion.
    Federated {
        /// `auth.federated_token_file`.
        token_file: PathBuf,
    },
    /// IMDS or App Service.
    ManagedIdentity,
    /// A managed identity's token (for `auth.federated_audience`) as the
    /// assertion of the app `auth.client_id` in `auth.tenant`.
    ManagedIdentityFederation,
    /// The refresh token `ado-auth-proxy login` stored.
    DeviceCode {
        /// Where it is stored.
        store: StorePlan,
    },
}

/// The app's credential at a token endpoint.
#[derive(Debug, Clone)]
pub enum AppCredential {
    /// `auth.client_secret`.
    Secret(Secret),
    /// `auth.client_secret_file`, and `auth.client_secret_next_file`.
    SecretFile(PathBuf, Option<PathBuf>),
    /// `auth.client_certificate_file` and `auth.client_key_file`.
    Certificate {
        /// The certificate (PEM).
        cert: PathBuf,
        /// Its private key (PEM).
        key: PathBuf,
    },
    /// `auth.federated_token_file`: a workload identity's or any OIDC
    /// token, re-read per call, as the client assertion.
    Federated(PathBuf),
    /// `client_credential = "managed-identity-federation"`: a managed
    /// identity's token for `audience`, fetched per call, as the client
    /// assertion.
    ManagedIdentity {
        /// Where the identity's token comes from.
        managed: super::ManagedPlan,
        /// `auth.federated_audience`, trimmed.
        audience: String,
    },
}

/// The plan of a valid `config`, or every problem it has.
pub fn plan(config: &Config) -> Result<AuthPlan, Problems> {
    let problems = validate(config);
    if !problems.is_empty() {
        return Err(Problems(problems));
    }
    Ok(auth_plan(config))
}

/// The session store of a valid config whose mode keeps sessions
/// (validation checks `[session]` only then).
fn store_plan(s: &SessionConfig) -> StorePlan {
    match s.store {
        StoreKind::Memory => StorePlan::Memory,
        StoreKind::Embedded => StorePlan::Embedded,
        StoreKind::Redis => StorePlan::Redis(match &s.redis_url {
            Some(url) => RedisTarget::Url(url.clone()),
            None => RedisTarget::Sentinel {
                sentinels: s
                    .redis_sentinels
                    .iter()
                    .map(|a| a.trim().to_string())
                    .collect(),
                master: s
                    .redis_sentinel_master
                    .as_deref()
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            },
        }),
    }
}

/// `[auth]` of a valid config.
fn auth_plan(config: &Config) -> AuthPlan {
    let a = &config.auth;
    match a.mode {
        AuthMode::None => AuthPlan::PassThrough,
        AuthMode::Pat => AuthPlan::Pat,
        AuthMode::User => AuthPlan::User {
            plan: Box::new(super::user_plan(
                config,
                a.provider
                    .expect("validate requires auth.provider in mode user"),
            )),
            store: store_plan(&config.session),
        },
        AuthMode::Service => AuthPlan::Service(
            match a
                .source
                .expect("validate requires auth.source in mode service")
            {
                ServiceSource::Pat => SourcePlan::Pat,
                ServiceSource::ClientCredentials => SourcePlan::ClientCredentials(
                    credential(a).expect("validate requires a secret or a certificate"),
                ),
                ServiceSource::WorkloadIdentity => SourcePlan::WorkloadIdentity {
                    token_file: a
                        .federated_token_file
                        .clone()
                        .expect("validate requires auth.federated_token_file"),
                },
                ServiceSource::Federated => SourcePlan::Federated {
                    token_file: a
                        .federated_token_file
                        .clone()
                        .expect("validate requires auth.federated_token_file"),
                },
                ServiceSource::ManagedIdentity => SourcePlan::ManagedIdentity,
                ServiceSource::ManagedIdentityFederation => SourcePlan::ManagedIdentityFederation,
                ServiceSource::DeviceCode => SourcePlan::DeviceCode {
                    store: store_plan(&config.session),
                },
            },
        ),
    }
}

/// The configured credential, a certificate first; `None` for a public
/// client.
pub fn credential(a: &AuthConfig) -> Option<AppCredential> {
    use super::ClientCredential as C;
    let nothing_else = a.client_secret_file.is_none()
        && a.client_secret.is_none()
        && a.client_certificate_file.is_none();
    let federated = match a.client_credential {
        Some(C::Federated | C::WorkloadIdentity) => true,
        Some(_) => false,
        None => a.mode == AuthMode::User && nothing_else,
    };
    if federated && let Some(file) = &a.federated_token_file {
        return Some(AppCredential::Federated(file.clone()));
    }
    if a.client_credential == Some(C::ManagedIdentityFederation) {
        return Some(AppCredential::ManagedIdentity {
            managed: super::service_plan::managed_plan(a),
            audience: a.federated_audience.trim().to_string(),
        });
    }
    match (
        &a.client_certificate_file,
        &a.client_key_file,
        &a.client_secret_file,
        &a.client_secret,
    ) {
        (Some(cert), Some(key), _, _) => Some(AppCredential::Certificate {
            cert: cert.clone(),
            key: key.clone(),
        }),
        (_, _, Some(f), _) => Some(match super::secret_slots::secret_slots(f) {
            // A directory: its files are the two slots.
            Ok(Some(slots)) => {
                let mut slots = slots.into_iter();
                let first = slots.next().unwrap_or_else(|| f.clone());
                AppCredential::SecretFile(first, slots.next())
            }
            _ => AppCredential::SecretFile(f.clone(), a.client_secret_next_file.clone()),
        }),
        (_, _, None, Some(s)) => Some(AppCredential::Secret(s.clone())),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_has_what_its_mode_needs_or_every_problem() {
        let mut c = Config::default();
        assert!(matches!(plan(&c).unwrap(), AuthPlan::PassThrough));

        c.auth.mode = AuthMode::Service;
        let problems = plan(&c).expect_err("no source").0;
        assert!(
            problems.iter().any(|p| p.key == "auth.source"),
            "{problems:?}"
        );

        c.auth.source = Some(ServiceSource::WorkloadIdentity);
        c.auth.client_id = Some("app".into());
        c.auth.tenant = Some("contoso.onmicrosoft.com".into());
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "eyJ.federated").unwrap();
        c.auth.federated_token_file = Some(token.clone());
        match plan(&c).unwrap() {
            AuthPlan::Service(SourcePlan::WorkloadIdentity { token_file }) => {
                assert_eq!(token_file, token)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_redis_store_plan_carries_its_url() {
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, crate::seal::generate_key().unwrap()).unwrap();
        let mut c = Config::default();
        c.auth.mode = AuthMode::Service;
        c.auth.source = Some(ServiceSource::DeviceCode);
        c.auth.client_id = Some("app".into());
        c.auth.tenant = Some("contoso.onmicrosoft.com".into());
        c.session.store = StoreKind::Redis;
        c.session.encryption_keys_file = Some(keys);
        let problems = plan(&c).expect_err("no URL").0;
        assert!(
            problems.iter().any(|p| p.key == "session.redis_url"),
            "{problems:?}"
        );
        c.session.redis_url = Some(Secret::new("redis://127.0.0.1:6379/0"));
        match plan(&c).unwrap() {
            AuthPlan::Service(SourcePlan::DeviceCode {
                store: StorePlan::Redis(RedisTarget::Url(url)),
            }) => assert_eq!(url.expose(), "redis://127.0.0.1:6379/0"),
            other => panic!("{other:?}"),
        }
        // A mode that keeps no sessions ignores [session].
        c.auth.mode = AuthMode::None;
        c.session.redis_url = None;
        assert!(matches!(plan(&c).unwrap(), AuthPlan::PassThrough));
    }
}
