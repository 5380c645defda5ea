//! Clients' own Entra tokens (opt-in, `auth.accept_client_tokens`): a
//! tool that already holds an Entra access token for Azure DevOps (for
//! example from `az account get-access-token --resource
//! 499b84ac-1321-427f-aa17-267ca6975798`) may send it instead of signing
//! in. The proxy checks the signature, the audience, the expiry, the
//! issuer, the allowlists and the groups or roles required (from the
//! token's own claims), then forwards it as is.
//!
//! Whose keys a token is checked against is fixed at start, so no token
//! makes the proxy fetch anything new or remember anything it did not
//! verify: with `allowed_tenants = ["*"]` the one key set Entra signs
//! every directory's tokens with (`common`), the token's tenant and
//! issuer then judged from its verified claims; otherwise each listed
//! directory's own. A key set is fetched at most once per
//! `REFETCH_MIN`, and a failing one not again before its backoff runs out
//! (`oauth::id_token::Jwks`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use dashmap::DashMap;
use http::{HeaderMap, header};
use url::Url;

use super::Allowlist;
use super::membership::Membership;
use crate::clock::Clock;
use crate::config::{ADO_RESOURCE, ClientTokensPlan};
use crate::error::{Error, TokenError};
use crate::oauth::id_token::{AccessClaims, Jwks, claim_is_true};
use crate::oauth::idp::IdpHttp;
use crate::session::UserInfo;

/// The audiences Azure DevOps tokens carry: the resource id (v1 and v2
/// tokens) or its v1 URI.
const AUDIENCES: &[&str] = &[ADO_RESOURCE, "https://app.vssps.visualstudio.com"];
/// At most this many validated tokens are remembered.
const MAX_REMEMBERED: usize = 10_000;

/// `auth.accept_client_tokens`.
pub(super) struct ClientTokens {
    http: IdpHttp,
    authority: Url,
    /// The signing keys, one set per admitted directory or one for all.
    keys: TenantKeys,
    /// SHA-256 of tokens already checked, their expiry (s) and holder.
    valid: DashMap<[u8; 32], (u64, Arc<UserInfo>)>,
    /// Who may use the proxy: a token's holder must pass it too.
    allow: Arc<Allowlist>,
    /// The groups and roles required, which a token must carry itself.
    membership: Option<Arc<Membership>>,
}

/// Whose keys verify a token: built from `auth.allowed_tenants` at
/// start, never grown by a request.
enum TenantKeys {
    /// Any directory (`["*"]`): Entra's `common` key set, which signs
    /// the tokens of every directory.
    Any(Box<Jwks>),
    /// Each listed directory's key set, by tenant id.
    Listed(HashMap<String, Jwks>),
}

impl ClientTokens {
    /// The key sets of the directories `allow` admits, at `plan`'s
    /// authority, their fetches spaced by `clock`.
    pub(super) fn new(
        plan: &ClientTokensPlan,
        http: IdpHttp,
        (allow, membership): (Arc<Allowlist>, Option<Arc<Membership>>),
        clock: &Clock,
    ) -> Self {
        let authority = plan.authority.clone();
        let base = authority.as_str().trim_end_matches('/').to_string();
        let jwks = |tenant: &str| {
            let uri = Url::parse(&format!("{base}/{tenant}/discovery/v2.0/keys"))
                .unwrap_or_else(|_| authority.clone());
            Jwks::new(uri, clock.clone())
        };
        let keys = if allow.tenants().iter().any(|t| t == "*") {
            TenantKeys::Any(Box::new(jwks("common")))
        } else {
            // Only tenant ids: a token names its tenant by id.
            TenantKeys::Listed(
                allow
                    .tenants()
                    .iter()
                    .filter(|t| uuid::Uuid::parse_str(t).is_ok())
                    .map(|t| (t.clone(), jwks(t)))
                    .collect(),
            )
        };
        Self {
            http,
            authority,
            keys,
            valid: DashMap::new(),
            allow,
            membership,
        }
    }

    /// The key set that verifies tokens of `tid`, when it is admitted.
    fn keys_of(&self, tid: &str) -> Option<&Jwks> {
        match &self.keys {
            TenantKeys::Any(jwks) => Some(jwks),
            TenantKeys::Listed(by_tenant) => by_tenant.get(tid),
        }
    }

    /// Whether the request carries an Entra access token for Azure DevOps
    /// that may pass as it is, with its expiry (s) and holder: `Ok(None)`
    /// when it carries none, an error naming why when it carries a bad
    /// one.
    pub(super) async fn passes(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(u64, Arc<UserInfo>)>, Error> {
        let Some(token) = bearer_jwt(headers) else {
            return Ok(None);
        };
        let now = crate::clock::real_wall()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        let digest = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut hash = [0u8; 32];
        hash.copy_from_slice(digest.as_ref());
        if let Some(known) = self
            .valid
            .get(&hash)
            .map(|e| e.clone())
            .filter(|(exp, _)| *exp > now)
        {
            return Ok(Some(known));
        }
        let tid = self.admitted_tenant(token)?;
        let keys = self.keys_of(&tid).ok_or_else(|| {
            refused(format!(
                "its tenant {tid} is not one this proxy admits (auth.allowed_tenants)"
            ))
        })?;
        let claims = keys
            .verify_access(&self.http, token, AUDIENCES)
            .await
            .map_err(|e| refused(e.to_string()))?;
        let user = Arc::new(self.holder_allowed(&claims, tid, &self.authority)?);
        if self.valid.len() >= MAX_REMEMBERED {
            self.valid.retain(|_, (exp, _)| *exp > now);
        }
        if self.valid.len() < MAX_REMEMBERED {
            self.valid.insert(hash, (claims.exp, user.clone()));
        }
        Ok(Some((claims.exp, user)))
    }
    /// The tenant an unverified token names, when this proxy admits it:
    /// it decides whose keys are fetched, so only admitted ones are.
    fn admitted_tenant(&self, token: &str) -> Result<String, Error> {
        let unverified: AccessClaims = crate::assertion::jwt_payload(token)
            .ok_or_else(|| refused("it is not a readable JWT".into()))?;
        let tid = unverified
            .tid
            .map(|t| t.to_ascii_lowercase())
            .ok_or_else(|| refused("it names no tenant (tid)".into()))?;
        if uuid::Uuid::parse_str(&tid).is_err() || !self.allow.admits_tenant(&tid) {
            return Err(refused(format!(
                "its tenant {tid} is not one this proxy admits (auth.allowed_tenants)"
            )));
        }
        Ok(tid)
    }

    /// A verified token's issuer is its tenant's, and its holder passes
    /// the allowlists: who the holder is.
    fn holder_allowed(
        &self,
        claims: &AccessClaims,
        tid: String,
        authority: &Url,
    ) -> Result<UserInfo, Error> {
        let issuers = [
            format!("https://sts.windows.net/{tid}/"),
            format!("{}/{tid}/v2.0", authority.as_str().trim_end_matches('/')),
        ];
        let same_tenant = claims.tid.as_deref().map(str::to_ascii_lowercase) == Some(tid.clone());
        if !issuers.contains(&claims.iss) || !same_tenant {
            return Err(refused(format!(
                "its issuer {:?} is not its tenant's",
                claims.iss
            )));
        }
        // The same rule as at sign-in: an email names someone only when
        // Entra says its domain's owner is verified (`xms_edov`).
        let email = claims
            .email
            .clone()
            .filter(|_| claim_is_true(claims.xms_edov.as_ref()));
        let user = UserInfo {
            upn: claims
                .upn
                .clone()
                .or(claims.unique_name.clone())
                .or(claims.preferred_username.clone()),
            email_verified: email.is_some(),
            email,
            object_id: claims.oid.clone(),
            tenant: Some(tid),
            ..UserInfo::default()
        };
        if let Some(why) = self.allow.refuse(&user) {
            return Err(refused(why));
        }
        if let Some(m) = &self.membership {
            m.of_client(&claims.membership.read()).map_err(refused)?;
        }
        Ok(user)
    }
}

fn refused(why: String) -> Error {
    Error::from(TokenError::ClientTokenRefused(why))
}

/// A JWT in `Authorization: Bearer` (not a proxy token).
fn bearer_jwt(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer")
        && token.len() <= 16 * 1024
        && token.split('.').count() == 3
        && token.starts_with("eyJ"))
    .then_some(token)
}
