//! Organizations of other directories (mode `user`, Entra, `tenant =
//! "organizations"` or `"common"`). An Azure DevOps organization belongs
//! to one Entra directory and accepts only tokens that directory issued,
//! so a guest or consultant signed in to their home directory is refused
//! by an organization of another. The proxy finds each organization's
//! directory as Git Credential Manager does (an unauthenticated `HEAD` on
//! the organization: the Bearer challenge's `authorization_uri`, else
//! `X-VSS-ResourceTenant`; a single empty GUID is a Microsoft-account
//! organization, served by the home token), believes it for
//! `auth.organization_tenant_ttl`, and redeems the user's refresh token at
//! that directory's authority when it is in `auth.allowed_tenants`,
//! keeping one access token per session and directory. A refusal naming
//! another directory than the cached one corrects the cache.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use http::{HeaderMap, HeaderValue};
use url::Url;

use super::provider::ProviderClient;
use crate::challenge::Directory;
use crate::clock::Clock;
use crate::config::{CallsPlan, DirectoriesPlan};
use crate::gate::{Gate, Held, Refusal};
use crate::metrics::{DirectoryOutcome, Metrics, TenantTokenOutcome};
use crate::session::{Session, TenantToken, Tokens};

/// How long a failed look is remembered, so traffic cannot turn an
/// outage into a stream of looks.
const FAILED_LOOK_TTL: Duration = Duration::from_secs(60);
/// How long a directory that refused to issue a user's token is not
/// asked again for that session.
const REFUSED_TTL: Duration = Duration::from_secs(60);
/// At most this many organizations are remembered.
const MAX_ORGANIZATIONS: usize = 10_000;

/// The directory of each organization, looked up once per TTL.
pub struct OrgDirectories {
    http: reqwest::Client,
    upstream: Url,
    ttl: Duration,
    /// `auth.allowed_tenants`, lowercase; `any` for `["*"]`.
    allowed: Vec<String>,
    any: bool,
    cache: DashMap<String, (Option<Directory>, Instant)>,
    /// Redeems the user's refresh token at another directory.
    provider: Arc<ProviderClient>,
    /// When a held directory token is renewed.
    gate: Gate,
    clock: Clock,
    metrics: Arc<Metrics>,
}

// === impl OrgDirectories ===

impl OrgDirectories {
    /// For a multi-tenant Entra sign-in (a single-tenant proxy signs
    /// everyone in to the organization's directory already).
    pub(super) fn new(
        plan: &DirectoriesPlan,
        calls: &CallsPlan,
        (provider, gate): (Arc<ProviderClient>, Gate),
        clock: &Clock,
        metrics: Arc<Metrics>,
    ) -> Result<Self, String> {
        Ok(Self {
            http: super::upstream_client(calls)?,
            upstream: plan.upstream.clone(),
            ttl: plan.ttl,
            any: plan.allowed.iter().any(|t| t == "*"),
            allowed: plan.allowed.clone(),
            cache: DashMap::new(),
            provider,
            gate,
            clock: clock.clone(),
            metrics,
        })
    }

    /// Whether users' tokens may be asked of `tenant`.
    pub fn allows(&self, tenant: &str) -> bool {
        self.any || self.allowed.iter().any(|t| t == tenant)
    }

    /// `org`'s directory: cached, or looked up now.
    pub async fn of(&self, org: &str) -> Option<Directory> {
        if let Some(hit) = self.cache.get(org)
            && hit.1 > self.clock.now()
        {
            return hit.0.clone();
        }
        let found = self.look(org).await;
        let ttl = match &found {
            Ok(_) => self.ttl,
            Err(()) => FAILED_LOOK_TTL.min(self.ttl),
        };
        let found = found.unwrap_or(None);
        self.remember(org, found.clone(), ttl);
        found
    }

    /// What Azure DevOps' refusal of a request to `org` names as its
    /// directory; the cache learns it when it differs.
    pub fn learn(&self, org: &str, headers: &HeaderMap) -> Option<Directory> {
        let found = crate::challenge::directory(headers)?;
        let known = self.cache.get(org).and_then(|e| e.0.clone());
        if known.as_ref() != Some(&found) {
            self.metrics.login.directory(DirectoryOutcome::Learned);
            self.remember(org, Some(found.clone()), self.ttl);
        }
        Some(found)
    }

    fn remember(&self, org: &str, found: Option<Directory>, ttl: Duration) {
        if self.cache.len() >= MAX_ORGANIZATIONS {
            let now = self.clock.now();
            self.cache.retain(|_, (_, until)| *until > now);
            if self.cache.len() >= MAX_ORGANIZATIONS {
                self.cache.clear();
            }
        }
        self.cache
            .insert(org.to_string(), (found, self.clock.now() + ttl));
    }

    /// One unauthenticated `HEAD` on the organization; `Err` when Azure
    /// DevOps could not be asked.
    async fn look(&self, org: &str) -> Result<Option<Directory>, ()> {
        let mut url = self.upstream.clone();
        match url.path_segments_mut() {
            Ok(mut p) => {
                p.pop_if_empty().push(org);
            }
            Err(()) => return Err(()),
        }
        let resp = match self.http.head(url).send().await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(
                    organization = org,
                    error = %crate::oauth::idp::describe(&e),
                    "could not look up the organization's directory; using the home token"
                );
                self.metrics.login.directory(DirectoryOutcome::Failed);
                return Err(());
            }
        };
        let found = crate::challenge::directory(resp.headers());
        self.metrics.login.directory(match &found {
            Some(Directory::Tenant(_)) => DirectoryOutcome::Tenant,
            Some(Directory::MicrosoftAccount) => DirectoryOutcome::MicrosoftAccount,
            None => DirectoryOutcome::Undetermined,
        });
        tracing::debug!(organization = org, directory = ?found, "organization's directory");
        Ok(found)
    }

    /// The token of `org`'s directory for `session`, when that directory
    /// is not the one the user signed in to and may be asked: `(tenant,
    /// header, generation)`. `None` means the home token is the one to
    /// send (same directory, a Microsoft-account organization, unknown,
    /// not allowed, or refused: Azure DevOps' answer then explains).
    pub(super) async fn other_directory(
        &self,
        session: &Session,
        org: Option<&str>,
        tokens: &Tokens,
    ) -> Option<(String, HeaderValue, u64)> {
        let Directory::Tenant(tenant) = self.of(org?).await? else {
            return None;
        };
        self.tenant_token(session, &tenant, tokens, None, None)
            .await
    }

    /// A token of `tenant` for `session`: the one held, unless it is near
    /// expiry or Azure DevOps refused generation `refused`, else redeemed
    /// now (with the `claims` of a claims challenge).
    pub(super) async fn tenant_token(
        &self,
        session: &Session,
        tenant: &str,
        tokens: &Tokens,
        refused: Option<u64>,
        claims: Option<&str>,
    ) -> Option<(String, HeaderValue, u64)> {
        let home = session.user.tenant.as_deref().map(str::to_ascii_lowercase);
        if home.as_deref() == Some(tenant) {
            return None;
        }
        if !self.allows(tenant) {
            self.metrics
                .login
                .tenant_token(TenantTokenOutcome::NotAllowed);
            return None;
        }
        let mut held = session.other_tenants.lock().await;
        let generation = match self.held(held.get(tenant), self.clock.now(), refused, claims) {
            Ok(token) => return token.map(|(header, g)| (tenant.to_string(), header, g)),
            Err(next) => next,
        };
        let refresh_token = tokens.refresh_token.as_ref()?;
        let (entry, token) = self
            .redeem_at(tenant, refresh_token.expose(), claims, generation)
            .await;
        held.insert(tenant.to_string(), entry);
        token.map(|header| (tenant.to_string(), header, generation))
    }

    /// What is held for a directory: `Ok` with the token to send (or
    /// `None`: refused lately, send the home token), or `Err` with the
    /// generation a new one gets.
    fn held(
        &self,
        held: Option<&TenantToken>,
        now: Instant,
        refused: Option<u64>,
        claims: Option<&str>,
    ) -> Result<Option<(HeaderValue, u64)>, u64> {
        let refusal = refused.map(|generation| Refusal {
            generation,
            claims: claims.is_some(),
        });
        match held {
            Some(TenantToken::Issued {
                header,
                expires_at,
                lifetime,
                generation,
            }) if Gate::usable(*expires_at, now)
                && !self.gate.due(
                    &Held {
                        expires_at: *expires_at,
                        lifetime: *lifetime,
                        generation: *generation,
                    },
                    refusal,
                    now,
                ) =>
            {
                Ok(Some((header.clone(), *generation)))
            }
            Some(TenantToken::Refused { until, .. }) if *until > now && claims.is_none() => {
                Ok(None)
            }
            Some(
                TenantToken::Issued { generation, .. } | TenantToken::Refused { generation, .. },
            ) => Err(generation + 1),
            None => Err(1),
        }
    }

    /// Redeems the refresh token at `tenant`: what to hold, and the
    /// header when a token was issued.
    async fn redeem_at(
        &self,
        tenant: &str,
        refresh_token: &str,
        claims: Option<&str>,
        generation: u64,
    ) -> (TenantToken, Option<HeaderValue>) {
        let now = self.clock.now();
        let result = self
            .provider
            .refresh_at(tenant, refresh_token, claims)
            .await;
        let issued = result.as_ref().ok().and_then(|set| {
            let mut header =
                HeaderValue::from_str(&format!("Bearer {}", set.access_token.expose())).ok()?;
            header.set_sensitive(true);
            Some((header, set.expires_in))
        });
        if let Some((header, lifetime)) = issued {
            self.metrics.login.tenant_token(TenantTokenOutcome::Issued);
            // The refresh token that came back is not kept: the session's
            // own stays valid for every directory, and replicas agree on it.
            let entry = TenantToken::Issued {
                header: header.clone(),
                expires_at: now + lifetime,
                lifetime,
                generation,
            };
            return (entry, Some(header));
        }
        self.metrics.login.tenant_token(TenantTokenOutcome::Refused);
        tracing::info!(
            tenant,
            error = %result.err().map_or_else(|| "an unusable access token".into(), |e| e.to_string()),
            "the organization's directory issued no token for this user; sending the home \
             token (Azure DevOps' refusal will explain)"
        );
        let entry = TenantToken::Refused {
            until: now + REFUSED_TTL,
            generation,
        };
        (entry, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::login::tests::login_with;

    #[test]
    fn a_directory_token_is_used_until_due_refused_or_challenged() {
        let (login, clock) = login_with(|c| {
            c.auth.tenant = Some("organizations".into());
            c.auth.allowed_tenants = vec!["*".into()];
        });
        let d = login.directories.as_ref().expect("multi-tenant Entra");
        let (now, hour) = (clock.now(), Duration::from_secs(3600));
        let issued = TenantToken::Issued {
            header: HeaderValue::from_static("Bearer t"),
            expires_at: now + hour,
            lifetime: hour,
            generation: 3,
        };
        assert!(matches!(
            d.held(Some(&issued), now, None, None),
            Ok(Some((_, 3)))
        ));
        // An older generation's refusal changes nothing; this one's does.
        assert!(matches!(
            d.held(Some(&issued), now, Some(2), None),
            Ok(Some(_))
        ));
        assert_eq!(d.held(Some(&issued), now, Some(3), None).err(), Some(4));
        // Near expiry: renewed.
        let late = now + hour - Duration::from_secs(10);
        assert_eq!(d.held(Some(&issued), late, None, None).err(), Some(4));

        let refused = TenantToken::Refused {
            until: now + REFUSED_TTL,
            generation: 5,
        };
        assert!(matches!(d.held(Some(&refused), now, None, None), Ok(None)));
        // A claims challenge asks again at once; so does the end of the pause.
        assert_eq!(d.held(Some(&refused), now, None, Some("{}")).err(), Some(6));
        let after = now + REFUSED_TTL + Duration::from_secs(1);
        assert_eq!(d.held(Some(&refused), after, None, None).err(), Some(6));
        assert_eq!(d.held(None, now, None, None).err(), Some(1));
        assert!(d.allows("any-tenant"));
    }
}
