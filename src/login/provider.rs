//! The three ways of signing users in, behind one type: where to send the
//! browser, how to redeem a code, how to refresh, and who the user is.
//!
//! Entra and generic OIDC share the standard flow (PKCE S256, nonce, ID
//! token); Entra's endpoints are built from authority and tenant, so
//! start-up needs no network, and OIDC reads discovery on first use. The
//! legacy Azure DevOps OAuth uses its own grant (`client_assertion_type=
//! urn:ietf:params:oauth:client-assertion-type:jwt-bearer` with the
//! client secret as assertion, and `grant_type=urn:ietf:params:oauth:
//! grant-type:jwt-bearer` with the code or refresh token).
//! Authorize URLs and PKCE come from the `oauth2` crate; token calls are
//! written here because classifying failures needs the raw error bodies
//! (Entra's `error_codes`/`suberror`/`claims`, legacy PascalCase keys).

use oauth2::basic::BasicClient;
use oauth2::{AuthUrl, ClientId, CsrfToken, PkceCodeChallenge, RedirectUrl, ResponseType, Scope};
use serde::Deserialize;
use tokio::sync::OnceCell;
use url::Url;

use crate::assertion::ASSERTION_TYPE;
use crate::challenge::claims_request;
use crate::clock::Clock;
use crate::config::{AppCredential, Provider as Kind, ProviderPlan, ResponseMode};
use crate::oauth::client_auth::{ClientAuth, Presented};
use crate::oauth::group_claims::GroupClaims;
use crate::oauth::id_token::{
    ExpectedIssuer, FAILED_MAX, IdClaims, IdTokenError, REFETCH_MIN, claim_is_true,
};
use crate::oauth::idp::{Grant, IdpError, IdpHttp, TokenSet, parse_token_response, rejected};
use crate::oauth::managed::ManagedIdentity;

mod discovery;

pub use self::discovery::Metadata;
use self::discovery::{DiscoveryFailed, ExpectedIssuerSpec};

/// The client of the configured sign-in provider (`config::Provider` names
/// which kind it is).
pub struct ProviderClient {
    kind: Kind,
    client_id: String,
    credential: Option<ClientAuth>,
    /// `client_credential = "managed-identity-federation"`: the identity
    /// whose token is the assertion of every token call.
    managed: Option<ManagedIdentity>,
    redirect_uri: Url,
    scopes: Vec<String>,
    response_mode: ResponseMode,
    authority: Url,
    /// Entra: the tenant segment of the endpoints.
    tenant: Option<String>,
    issuer_url: Option<Url>,
    metadata: OnceCell<Metadata>,
    /// OIDC: the last failed discovery, answered until its backoff runs
    /// out, so sign-in starts (anyone can make them) do not each fetch it.
    discovery_failed: std::sync::Mutex<DiscoveryFailed>,
    http: IdpHttp,
    /// Spaces the key-set fetches.
    clock: Clock,
}

/// What the browser is sent to, and what must be kept until the callback.
pub struct Authorize {
    /// The provider's authorize URL.
    pub url: Url,
    /// The `state` value (at least 128 random bits).
    pub state: String,
    /// The PKCE verifier, when the provider uses PKCE.
    pub pkce_verifier: Option<String>,
    /// The nonce expected in the ID token.
    pub nonce: Option<String>,
}

use crate::session::UserInfo;

use crate::oauth::GrantError;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Profile {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    email_address: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    public_alias: Option<String>,
}

// === impl ProviderClient ===

impl ProviderClient {
    /// Builds the provider `plan` names; `callback` is the redirect URI,
    /// `clock` spaces the fetches of its signing keys. `local` reaches a
    /// managed identity's endpoint (never through the egress proxy).
    pub fn new(
        plan: &ProviderPlan,
        callback: Url,
        (http, local): (IdpHttp, IdpHttp),
        clock: &Clock,
    ) -> Result<Self, String> {
        let (credential, managed) = match &plan.credential {
            Some(AppCredential::ManagedIdentity { managed, audience }) => {
                (None, Some(ManagedIdentity::new(local, managed, audience)))
            }
            // None: a public client (OIDC with PKCE only).
            other => (other.as_ref().map(ClientAuth::load).transpose()?, None),
        };
        let kind = plan.kind;
        let provider = Self {
            kind,
            client_id: plan.client_id.clone(),
            credential,
            managed,
            redirect_uri: callback,
            scopes: plan.scopes.clone(),
            response_mode: plan.response_mode,
            tenant: plan.tenant.clone(),
            issuer_url: plan.issuer_url.clone(),
            authority: plan.authority.clone(),
            metadata: OnceCell::new(),
            discovery_failed: std::sync::Mutex::new(DiscoveryFailed {
                error: None,
                retry_at: None,
                backoff: crate::backoff::Backoff::new(REFETCH_MIN, FAILED_MAX),
            }),
            http,
            clock: clock.clone(),
        };
        if kind != Kind::Oidc {
            // Built from configuration: no network at start-up.
            let meta = provider.static_metadata();
            let _ = provider.metadata.set(meta);
        }
        Ok(provider)
    }

    /// The provider kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The redirect URI the proxy sends.
    pub fn redirect_uri(&self) -> &Url {
        &self.redirect_uri
    }

    /// Entra: where a directory administrator grants tenant-wide consent
    /// to the app's Azure DevOps permission.
    pub fn admin_consent_url(&self) -> Option<String> {
        if self.kind != Kind::Entra {
            return None;
        }
        let tenant = self.tenant.as_deref().unwrap_or("organizations");
        let mut url = self.join(&format!("{tenant}/v2.0/adminconsent"));
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("scope", "499b84ac-1321-427f-aa17-267ca6975798/.default")
            .append_pair("redirect_uri", self.redirect_uri.as_str());
        Some(url.to_string())
    }

    /// The proxy's client id at the provider.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    fn join(&self, path: &str) -> Url {
        let base = self.authority.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{path}")).unwrap_or_else(|_| self.authority.clone())
    }

    /// The client secret files, for the age metric.
    pub fn secret_files(&self) -> Vec<(&'static str, std::path::PathBuf)> {
        self.credential
            .as_ref()
            .map(ClientAuth::secret_files)
            .unwrap_or_default()
    }

    /// Starts a sign-in: state, PKCE and nonce, and the URL to send the
    /// browser to. `claims` is a challenge from a failed refresh.
    pub async fn authorize(&self, claims: Option<&str>) -> Result<Authorize, GrantError> {
        let meta = self.metadata().await?;
        let auth_url = AuthUrl::from_url(meta.authorization_endpoint.clone());
        let redirect = RedirectUrl::from_url(self.redirect_uri.clone());
        let client = BasicClient::new(ClientId::new(self.client_id.clone()))
            .set_auth_uri(auth_url)
            .set_redirect_uri(redirect);
        let state = random_token();
        let state_for_url = state.clone();
        let mut req = client
            .authorize_url(move || CsrfToken::new(state_for_url))
            .add_scopes(self.scopes.iter().map(|s| Scope::new(s.clone())));
        if self.kind == Kind::AzureDevops {
            // Legacy OAuth has its own response type and no PKCE or nonce.
            let (url, _) = req
                .set_response_type(&ResponseType::new("Assertion".into()))
                .url();
            return Ok(Authorize {
                url,
                state,
                pkce_verifier: None,
                nonce: None,
            });
        }
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let nonce = random_token();
        req = req
            .set_pkce_challenge(challenge)
            .add_extra_param("nonce", nonce.clone());
        if self.response_mode == ResponseMode::FormPost {
            req = req.add_extra_param("response_mode", "form_post");
        }
        if self.kind == Kind::Entra {
            // Entra learns that the proxy handles claims challenges (CAE).
            req = req.add_extra_param("claims", claims_request(claims));
        } else if let Some(claims) = claims {
            req = req.add_extra_param("claims", claims.to_string());
        }
        let (url, _) = req.url();
        Ok(Authorize {
            url,
            state,
            pkce_verifier: Some(verifier.secret().to_string()),
            nonce: Some(nonce),
        })
    }

    /// Redeems an authorization code and identifies the user, with the
    /// groups and roles the ID token names.
    pub async fn redeem(
        &self,
        code: &str,
        pkce_verifier: Option<&str>,
        nonce: Option<&str>,
    ) -> Result<(TokenSet, UserInfo, GroupClaims), GrantError> {
        let meta = self.metadata().await?;
        let mut form: Vec<(&str, String)> = Vec::new();
        if self.kind == Kind::AzureDevops {
            form.push((
                "grant_type",
                "urn:ietf:params:oauth:grant-type:jwt-bearer".into(),
            ));
            form.push(("assertion", code.to_string()));
            form.push(("redirect_uri", self.redirect_uri.to_string()));
        } else {
            form.push(("grant_type", "authorization_code".into()));
            form.push(("code", code.to_string()));
            form.push(("redirect_uri", self.redirect_uri.to_string()));
            if let Some(v) = pkce_verifier {
                form.push(("code_verifier", v.to_string()));
            }
            if self.kind == Kind::Entra {
                form.push(("scope", self.scopes.join(" ")));
                form.push(("claims", claims_request(None)));
            }
        }
        let tokens = self
            .token_call(&meta.token_endpoint, form, Grant::Code)
            .await?;
        let (user, groups) = match self.kind {
            Kind::AzureDevops => (self.legacy_profile(&tokens).await?, GroupClaims::default()),
            _ => {
                let claims = self.id_claims(meta, &tokens, nonce).await?;
                let groups = claims.membership.read();
                (user_from_claims(self.kind, claims), groups)
            }
        };
        Ok((tokens, user, groups))
    }

    /// The verified claims of the ID token in `tokens`, which must carry
    /// one; `nonce` is checked when given (a sign-in, not a refresh).
    async fn id_claims(
        &self,
        meta: &Metadata,
        tokens: &TokenSet,
        nonce: Option<&str>,
    ) -> Result<IdClaims, GrantError> {
        let id_token = tokens.id_token.as_ref().ok_or_else(|| {
            GrantError::IdToken(IdTokenError::Invalid(
                "the token response has no id_token; request the openid scope".into(),
            ))
        })?;
        self.verify_id_token(meta, id_token.expose(), nonce).await
    }

    /// After a refresh: the user and the groups and roles the new ID
    /// token names, verified as at sign-in (without a nonce: a refreshed
    /// ID token carries none of its own).
    pub async fn refreshed_claims(
        &self,
        tokens: &TokenSet,
    ) -> Result<(UserInfo, GroupClaims), GrantError> {
        let meta = self.metadata().await?;
        let claims = self.id_claims(meta, tokens, None).await?;
        let groups = claims.membership.read();
        Ok((user_from_claims(self.kind, claims), groups))
    }

    /// Entra: redeems a refresh token for a token of another resource
    /// (`scope`, such as Microsoft Graph's `User.Read`), at the user's
    /// own authority. The answer's refresh token is not kept: the one
    /// redeemed stays valid.
    pub async fn token_for(&self, refresh_token: &str, scope: &str) -> Result<TokenSet, IdpError> {
        let meta = self
            .metadata()
            .await
            .map_err(|e| IdpError::Transport(e.to_string()))?;
        self.refresh_with(&meta.token_endpoint, refresh_token, (None, Some(scope)))
            .await
    }

    /// Redeems a refresh token; `challenge` is the claims of a claims
    /// challenge to satisfy (Entra).
    pub async fn refresh(
        &self,
        refresh_token: &str,
        challenge: Option<&str>,
    ) -> Result<TokenSet, IdpError> {
        let meta = self
            .metadata()
            .await
            .map_err(|e| IdpError::Transport(e.to_string()))?;
        self.refresh_with(&meta.token_endpoint, refresh_token, (challenge, None))
            .await
    }

    /// Entra: redeems a refresh token at another directory's authority,
    /// for a token that directory issues (an organization of that
    /// directory accepts no other). A user's refresh token is good at
    /// every directory they are a member or guest of, for the same app.
    pub async fn refresh_at(
        &self,
        tenant: &str,
        refresh_token: &str,
        challenge: Option<&str>,
    ) -> Result<TokenSet, IdpError> {
        let endpoint = self.join(&format!("{tenant}/oauth2/v2.0/token"));
        self.refresh_with(&endpoint, refresh_token, (challenge, None))
            .await
    }

    /// One refresh-token call, asking for the claims of a `challenge` and
    /// for `scope` instead of `auth.scopes` when given.
    async fn refresh_with(
        &self,
        token_endpoint: &Url,
        refresh_token: &str,
        (challenge, scope): (Option<&str>, Option<&str>),
    ) -> Result<TokenSet, IdpError> {
        let mut form: Vec<(&str, String)> = Vec::new();
        if self.kind == Kind::AzureDevops {
            // The legacy grant carries the refresh token in `assertion`.
            form.push(("grant_type", "refresh_token".into()));
            form.push(("assertion", refresh_token.to_string()));
            form.push(("redirect_uri", self.redirect_uri.to_string()));
        } else {
            form.push(("grant_type", "refresh_token".into()));
            form.push(("refresh_token", refresh_token.to_string()));
            if self.kind == Kind::Entra {
                form.push((
                    "scope",
                    scope.map_or_else(|| self.scopes.join(" "), str::to_string),
                ));
                form.push(("claims", claims_request(challenge)));
            }
        }
        match self.token_call(token_endpoint, form, Grant::Refresh).await {
            Ok(t) => Ok(t),
            Err(GrantError::Token(e)) => Err(e),
            Err(other) => Err(IdpError::Transport(other.to_string())),
        }
    }

    /// One token call; when the provider refuses the client secret as
    /// invalid and a second secret slot is configured, once more with it.
    async fn token_call(
        &self,
        endpoint: &Url,
        form: Vec<(&str, String)>,
        grant: Grant,
    ) -> Result<TokenSet, GrantError> {
        let (result, slot) = self
            .token_call_once(endpoint, form.clone(), grant, None)
            .await;
        match result {
            Err(GrantError::Token(e)) if e.is_invalid_client() => {
                match self.credential.as_ref().and_then(|c| c.other_secret(slot)) {
                    Some(other) => {
                        self.token_call_once(endpoint, form, grant, Some(other))
                            .await
                            .0
                    }
                    None => Err(GrantError::Token(e)),
                }
            }
            other => other,
        }
    }

    async fn token_call_once(
        &self,
        endpoint: &Url,
        form: Vec<(&str, String)>,
        grant: Grant,
        slot: Option<usize>,
    ) -> (Result<TokenSet, GrantError>, usize) {
        let presented = match (&self.managed, &self.credential) {
            // A managed identity's token, fetched for this call.
            (Some(identity), _) => match identity.fetch().await {
                Ok(t) => Some((Presented::Assertion(t.token.expose().to_string()), 0)),
                Err(e) => {
                    let why = format!("the sign-in app's managed identity assertion: {}", e.detail);
                    return (Err(GrantError::Local(why)), 0);
                }
            },
            (None, Some(auth)) => match auth.present_in(&self.client_id, endpoint.as_str(), slot) {
                Ok((p, used)) => Some((p, used)),
                Err(e) => return (Err(GrantError::Local(e)), 0),
            },
            (None, None) => None,
        };
        let used = presented.as_ref().map_or(0, |(_, u)| *u);
        (
            self.send_token_call(endpoint, form, grant, presented.map(|(p, _)| p))
                .await,
            used,
        )
    }

    /// One token call presenting `presented`.
    async fn send_token_call(
        &self,
        endpoint: &Url,
        mut form: Vec<(&str, String)>,
        grant: Grant,
        presented: Option<Presented>,
    ) -> Result<TokenSet, GrantError> {
        match presented {
            // Legacy Azure DevOps OAuth: the secret is the assertion, and
            // no client_id is sent.
            Some(Presented::Secret(secret)) if self.kind == Kind::AzureDevops => {
                form.push(("client_assertion_type", ASSERTION_TYPE.into()));
                form.push(("client_assertion", secret));
            }
            Some(Presented::Secret(secret)) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_secret", secret));
            }
            Some(Presented::Assertion(assertion)) => {
                form.push(("client_id", self.client_id.clone()));
                form.push(("client_assertion_type", ASSERTION_TYPE.into()));
                form.push(("client_assertion", assertion));
            }
            None => form.push(("client_id", self.client_id.clone())),
        }
        let req = self
            .http
            .client()
            .post(endpoint.clone())
            .header("accept", "application/json")
            .form(&form);
        let (status, body) = self
            .http
            .send(req, grant)
            .await
            .map_err(GrantError::Token)?;
        // Microsoft has not said how the endpoint answers once the flow
        // ends; an answer that looks like it is explained as such.
        if self.kind == Kind::AzureDevops
            && let Some(said) = crate::diagnose::legacy_retired(status, &body)
        {
            return Err(GrantError::Token(rejected(status, &said)));
        }
        parse_token_response(status, &body).map_err(GrantError::Token)
    }

    async fn verify_id_token(
        &self,
        meta: &Metadata,
        token: &str,
        nonce: Option<&str>,
    ) -> Result<IdClaims, GrantError> {
        let jwks = meta
            .jwks
            .as_ref()
            .ok_or_else(|| GrantError::Local("the provider has no signing keys".into()))?;
        let expected = match &meta.issuer {
            ExpectedIssuerSpec::Exact(s) => ExpectedIssuer::Exact(s.clone()),
            ExpectedIssuerSpec::EntraTemplate(p) => {
                ExpectedIssuer::EntraTemplate { prefix: p.clone() }
            }
            ExpectedIssuerSpec::None => {
                return Err(GrantError::Local(
                    "this provider issues no ID tokens".into(),
                ));
            }
        };
        Ok(jwks
            .verify(&self.http, token, &self.client_id, &expected, nonce)
            .await?)
    }

    /// Legacy OAuth has no ID token: the profile API says who signed in.
    async fn legacy_profile(&self, tokens: &TokenSet) -> Result<UserInfo, GrantError> {
        let url = self.join("_apis/profile/profiles/me?api-version=7.1");
        let p: Profile = self
            .http
            .get_json(&url, Some(tokens.access_token.expose()))
            .await
            .map_err(GrantError::Metadata)?;
        // The profile's address is the account's name, matched as such
        // (UPN); nothing says it was verified as an email.
        Ok(UserInfo {
            name: p.display_name,
            upn: p.email_address.clone(),
            email: p.email_address,
            email_verified: false,
            object_id: p.id.or(p.public_alias),
            tenant: None,
        })
    }
}

fn user_from_claims(kind: Kind, c: IdClaims) -> UserInfo {
    // An address names someone only when the provider vouches for it. An
    // OIDC provider says so with `email_verified`; absent is not a yes
    // (OpenID Connect Core §5.1: anybody can type any address in).
    // Entra never sends that claim: its `email` is the `mail` attribute,
    // which a directory's administrators set to anything ("nOAuth"), so
    // only the optional claim `xms_edov` (the domain's owner is
    // verified) counts.
    let verified = match kind {
        Kind::Entra => claim_is_true(c.xms_edov.as_ref()),
        _ => claim_is_true(c.email_verified.as_ref()),
    };
    let email = c.email.filter(|_| verified);
    UserInfo {
        name: c.name,
        upn: c.preferred_username.or(c.upn),
        email_verified: email.is_some(),
        email,
        object_id: c.oid.or(Some(c.sub)),
        tenant: c.tid,
    }
}

/// 256 random bits, base64url: for `state`, nonces and session ids.
pub fn random_token() -> String {
    crate::seal::random_id()
}
