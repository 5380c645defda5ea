//! An in-process fake of Microsoft Entra ID (v2 endpoints) and of the
//! legacy Azure DevOps OAuth service, faithful to the shapes Microsoft
//! documents (Microsoft identity platform: authorization code flow, error
//! codes; Azure DevOps OAuth 2.0): codes bound to
//! client, redirect URI and PKCE challenge; single-use codes (54005);
//! rotating refresh tokens (Entra keeps old ones valid, legacy does not);
//! AADSTS error bodies with trace and correlation ids; legacy PascalCase
//! errors and string `expires_in`. It also answers as Azure DevOps'
//! profile API, and `token_owner` lets a fake Azure DevOps check tokens.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ado_auth_proxy::clock::Clock;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::json;

mod entra;
mod graph;
mod keys;
mod legacy;
mod setup;

pub use keys::*;
pub use setup::*;

use self::entra::*;
use self::legacy::*;
use super::oidc::Browser;
use super::upstream::{FakeBody, FakeUpstream, Recorded, respond};

/// What the fake does on the next calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Normal,
    /// Authorize answers `error=access_denied` (AADSTS65004).
    Deny,
    /// Refresh: `invalid_grant` 50173 (grant revoked).
    Revoked,
    /// Refresh: `invalid_grant` 50076 with `suberror` and `claims`.
    Mfa,
    /// Token calls: HTTP 401 `invalid_client` 7000222 (secret expired).
    InvalidClient,
    /// Token calls: HTTP 503 `temporarily_unavailable`.
    Down,
    /// Authorize redirects back with this `error` and AADSTS code.
    AuthorizeError(&'static str, u64),
    /// Code redemption answers this status, `error` and AADSTS code.
    RedeemError(u16, &'static str, u64),
    /// Every token call (any grant) answers this refusal, shaped like
    /// Entra's real ones.
    Refuse(Refusal),
    /// Every token call answers this status and body verbatim, as
    /// `text/plain`: a refusal cut, wrapped or flattened on its way.
    Raw(u16, &'static str),
}

/// An Entra token endpoint refusal: status, `error`, the AADSTS code and
/// the description's first line, `suberror`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    pub status: u16,
    pub error: &'static str,
    pub code: u64,
    pub text: &'static str,
    pub suberror: Option<&'static str>,
}

/// What is wrong with the next ID tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdTokenFlaw {
    None,
    WrongAudience,
    WrongIssuer,
    Expired,
    WrongNonce,
    /// Signed with a key that is not in the key set (under a known kid).
    ForeignKey,
}

/// Everything a test can turn.
struct Knobs {
    mode: Mode,
    flaw: IdTokenFlaw,
    kid: String,
    user: User,
    /// The key endpoints answer this status instead of the key set.
    keys_status: Option<u16>,
}

pub const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
/// A second directory: the home of organization `fabrikam` in
/// [`fake_ado_tenants`], where the test user is a guest.
pub const OTHER_TENANT: &str = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0";
/// What Azure DevOps names as the tenant of a Microsoft-account-backed
/// organization.
pub const MSA_TENANT: &str = "00000000-0000-0000-0000-000000000000";
pub const CLIENT_ID: &str = "4b7c5e8a-2f1d-4c3b-9a6e-0d8f7e6c5b4a";
pub const CLIENT_SECRET: &str = "entra-secret";
/// The legacy app's "Client Secret" (a JWT in reality; any string here).
pub const LEGACY_SECRET: &str = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.legacy.secret";
/// What the tests' CAE challenges demand: a token issued after the
/// revocation (as CAE's `nbf` demand does).
pub const CAE_CLAIMS: &str = r#"{"access_token":{"nbf":{"essential":true,"value":"1796000000"}}}"#;

pub const MFA_CLAIMS: &str =
    r#"{"access_token":{"capolids":{"essential":true,"values":["c0ffee"]}}}"#;

/// The user the fake signs in.
#[derive(Debug, Clone)]
pub struct User {
    pub oid: String,
    pub tid: String,
    pub upn: String,
    pub name: String,
    /// More claims of the ID token (`email`, `xms_edov`, `upn`, ...).
    pub extra: serde_json::Map<String, serde_json::Value>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: Option<String>,
    nonce: Option<String>,
}

#[derive(Default)]
struct State {
    codes: HashMap<String, Code>,
    used_codes: HashSet<String>,
    /// Refresh token → still redeemable.
    refresh_tokens: HashMap<String, bool>,
    /// Access token → (user upn, expiry, issuing tenant).
    access_tokens: HashMap<String, (String, Instant, String)>,
    /// The tenant segment of every Entra token call, in order.
    token_tenants: Vec<String>,
    /// Refresh tokens in the order they were issued.
    issued_refresh: Vec<String>,
    /// Refresh tokens in the order they were redeemed.
    redeemed_refresh: Vec<String>,
    authorize_queries: Vec<HashMap<String, String>>,
    token_calls: HashMap<String, u64>,
    assertions_verified: u64,
    jwks_fetches: u64,
    /// The path of every key-set fetch, in order.
    jwks_paths: Vec<String>,
    serial: u64,
    /// Refresh tokens are single-use (as legacy Azure DevOps OAuth and
    /// most OIDC providers with rotation): a second redemption fails.
    strict_rotation: bool,
    /// Redemptions of an already redeemed refresh token.
    reuses: u64,
    /// Workload identity: the federated token the fake accepts as a
    /// client assertion (what the test wrote into the token file).
    federated: Option<String>,
    /// Federated assertions received, in order.
    federated_seen: Vec<String>,
    /// Device code: the answers to the next polls (`authorization_pending`,
    /// `slow_down`, `authorization_declined`, `expired_token`,
    /// `bad_verification_code`); an empty script approves.
    device_script: std::collections::VecDeque<&'static str>,
    /// When each device-code poll arrived.
    device_polls: Vec<Instant>,
    /// Public clients (no secret, no assertion) are accepted.
    public_client: bool,
    /// The time access tokens expire by; a proxy started by [`Setup`]
    /// shares it, so moving it ages tokens for both sides.
    clock: Clock,
    /// Continuous Access Evaluation: access tokens Azure DevOps refuses
    /// with a claims challenge, and the claims a refresh must carry.
    cae_revoked: HashSet<String>,
    cae_claims: Option<String>,
    /// A refresh with the claims still needs the user (MFA, location).
    cae_interaction: bool,
    /// The `claims` parameter of every token call, in order.
    token_claims: Vec<String>,
    /// The `scope` of the token call being answered.
    asked_scope: Option<String>,
    /// Access token → the scope it was asked for.
    token_scopes: HashMap<String, String>,
    /// The fake Microsoft Graph.
    graph: graph::GraphState,
}

/// The running fake.
pub struct FakeIdp {
    server: FakeUpstream,
    state: Arc<Mutex<State>>,
    knobs: Arc<Mutex<Knobs>>,
}

impl FakeIdp {
    /// Starts the fake; access tokens live `access_ttl`.
    pub async fn start(access_ttl: Duration) -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let knobs = Arc::new(Mutex::new(Knobs {
            mode: Mode::Normal,
            flaw: IdTokenFlaw::None,
            kid: "fake-key".into(),
            user: User {
                oid: "00000000-1111-2222-3333-444444444444".into(),
                tid: TENANT.into(),
                upn: "dana@contoso.com".into(),
                name: "Dana Scully".into(),
                extra: serde_json::Map::new(),
            },
            keys_status: None,
        }));
        let base: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let (s, k, b) = (state.clone(), knobs.clone(), base.clone());
        let server = FakeUpstream::recording(move |r: &Recorded| {
            let base = b.get().cloned().unwrap_or_default();
            let knobs = k.lock().unwrap();
            handle(r, &base, &knobs, access_ttl, &mut s.lock().unwrap())
        })
        .await;
        let _ = base.set(server.url());
        Self {
            server,
            state,
            knobs,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// The time this fake's access tokens expire by (see [`Setup`]).
    pub fn clock(&self) -> Clock {
        self.state.lock().unwrap().clock.clone()
    }

    pub fn set_mode(&self, mode: Mode) {
        self.knobs.lock().unwrap().mode = mode;
    }

    pub fn set_user(&self, f: impl FnOnce(&mut User)) {
        f(&mut self.knobs.lock().unwrap().user);
    }

    pub fn set_id_token_flaw(&self, flaw: IdTokenFlaw) {
        self.knobs.lock().unwrap().flaw = flaw;
    }

    /// Rotates the signing key id: the key set and new tokens name `kid`.
    pub fn set_kid(&self, kid: &str) {
        self.knobs.lock().unwrap().kid = kid.into();
    }

    /// How often a key set was fetched (any tenant's).
    pub fn jwks_fetches(&self) -> u64 {
        self.state.lock().unwrap().jwks_fetches
    }

    /// The path of every key-set fetch so far.
    pub fn jwks_paths(&self) -> Vec<String> {
        self.state.lock().unwrap().jwks_paths.clone()
    }

    /// The key endpoints answer `status` (as Entra's outages do), or the
    /// key set again with `None`.
    pub fn set_keys_status(&self, status: Option<u16>) {
        self.knobs.lock().unwrap().keys_status = status;
    }

    /// Token calls so far for `grant` (`authorization_code`,
    /// `refresh_token`, `legacy_code`, `legacy_refresh`,
    /// `legacy_invalid_client`).
    pub fn calls(&self, grant: &str) -> u64 {
        *self
            .state
            .lock()
            .unwrap()
            .token_calls
            .get(grant)
            .unwrap_or(&0)
    }

    /// Client assertions that verified against the client certificate.
    pub fn assertions_verified(&self) -> u64 {
        self.state.lock().unwrap().assertions_verified
    }

    /// The query of every authorize request.
    pub fn authorize_queries(&self) -> Vec<HashMap<String, String>> {
        self.state.lock().unwrap().authorize_queries.clone()
    }

    /// (issued, redeemed) refresh tokens, in order.
    pub fn refresh_history(&self) -> (Vec<String>, Vec<String>) {
        let s = self.state.lock().unwrap();
        (s.issued_refresh.clone(), s.redeemed_refresh.clone())
    }

    /// Device code: the answers to the next polls, then approval; public
    /// clients are accepted from now on.
    pub fn set_device_script(&self, script: &[&'static str]) {
        let mut s = self.state.lock().unwrap();
        s.device_script = script.iter().copied().collect();
        s.public_client = true;
    }

    /// When each device-code poll arrived.
    pub fn device_polls(&self) -> Vec<Instant> {
        self.state.lock().unwrap().device_polls.clone()
    }

    /// Workload identity: accept `token` (the federated token file's
    /// current content) as the client assertion.
    pub fn set_federated_token(&self, token: &str) {
        self.state.lock().unwrap().federated = Some(token.to_string());
    }

    /// The federated assertions received so far.
    pub fn federated_seen(&self) -> Vec<String> {
        self.state.lock().unwrap().federated_seen.clone()
    }

    /// Makes refresh tokens single-use; a reuse is refused and counted.
    pub fn set_strict_rotation(&self, on: bool) {
        self.state.lock().unwrap().strict_rotation = on;
    }

    /// Redemptions of refresh tokens that had been redeemed already.
    pub fn refresh_reuses(&self) -> u64 {
        self.state.lock().unwrap().reuses
    }

    /// Continuous Access Evaluation: Azure DevOps refuses every access
    /// token issued so far with a claims challenge for `claims` (JSON), and
    /// a refresh issues a new token only when it asks for them (or, with
    /// `interaction`, not at all: the user must sign in).
    pub fn cae_revoke(&self, claims: &str, interaction: bool) {
        let mut s = self.state.lock().unwrap();
        let live: Vec<String> = s.access_tokens.keys().cloned().collect();
        s.cae_revoked.extend(live);
        s.cae_claims = Some(claims.to_string());
        s.cae_interaction = interaction;
    }

    /// The tenant segment of every Entra token call so far.
    pub fn token_tenants(&self) -> Vec<String> {
        self.state.lock().unwrap().token_tenants.clone()
    }

    /// The `claims` parameter of every token call so far.
    pub fn token_claims(&self) -> Vec<String> {
        self.state.lock().unwrap().token_claims.clone()
    }

    /// Revokes every access token issued so far (Azure DevOps answers 401
    /// to them from now on).
    pub fn revoke_access_tokens(&self) {
        self.state.lock().unwrap().access_tokens.clear();
    }

    /// The user's groups as the fake Graph knows them (all of them,
    /// transitively).
    pub fn set_graph_groups(&self, groups: &[&str]) {
        self.state.lock().unwrap().graph.groups =
            groups.iter().map(|g| g.to_ascii_lowercase()).collect();
    }

    /// The fake Graph answers `status` (403: the permission is missing).
    pub fn set_graph_status(&self, status: Option<u16>) {
        self.state.lock().unwrap().graph.status = status;
    }

    /// The `groupIds` of every `checkMemberGroups` call, in order.
    pub fn graph_asked(&self) -> Vec<Vec<String>> {
        self.state.lock().unwrap().graph.asked.clone()
    }

    /// The scopes of the token calls made so far, in order.
    pub fn token_scopes(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        let mut out: Vec<(&String, &String)> = s.token_scopes.iter().collect();
        out.sort_by_key(|(t, _)| token_serial(t));
        out.into_iter().map(|(_, sc)| sc.clone()).collect()
    }

    /// A closure for a fake Azure DevOps: checks tokens against this IdP
    /// (`Err` carries the claims of a CAE challenge, base64).
    pub fn checker(
        &self,
    ) -> impl Fn(&str) -> Result<String, Option<String>> + Send + Sync + 'static {
        let state = self.state.clone();
        move |auth| {
            let s = state.lock().unwrap();
            let token = auth.strip_prefix("Bearer ").unwrap_or("");
            if s.cae_revoked.contains(token) {
                let claims = s.cae_claims.clone().unwrap_or_default();
                return Err(Some(STANDARD.encode(claims)));
            }
            token_owner(&s, auth).ok_or(None)
        }
    }
}

fn token_owner(s: &State, authorization: &str) -> Option<String> {
    let token = authorization.strip_prefix("Bearer ")?;
    // A Graph token is not for Azure DevOps.
    if s.token_scopes
        .get(token)
        .is_some_and(|sc| graph::is_graph_scope(sc))
    {
        return None;
    }
    let (who, exp, _) = s.access_tokens.get(token)?;
    (*exp > s.clock.now()).then(|| who.clone())
}

fn form(body: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

fn query(uri: &str) -> HashMap<String, String> {
    uri.split_once('?')
        .map(|(_, q)| form(q.as_bytes()))
        .unwrap_or_default()
}

fn json_resp(status: u16, v: serde_json::Value) -> http::Response<FakeBody> {
    respond(
        status,
        &[("content-type", "application/json; charset=utf-8")],
        v.to_string(),
    )
}

/// An Entra error body, with the trace/correlation lines of real ones.
fn aadsts(
    status: u16,
    error: &str,
    code: u64,
    text: &str,
    extra: serde_json::Value,
) -> http::Response<FakeBody> {
    let mut body = json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {text}\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-11-22 04:00:00Z"),
        "error_codes": [code],
        "timestamp": "2026-11-22 04:00:00Z",
        "trace_id": "0000aaaa-11bb-cccc-dd33-eeeeee333333",
        "correlation_id": "aaaa0000-bb11-2222-33cc-444444dddddd",
        "error_uri": format!("https://login.microsoftonline.com/error?code={code}"),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    json_resp(status, body)
}

fn redirect(to: String) -> http::Response<FakeBody> {
    respond(302, &[("location", &to)], "")
}

fn handle(
    r: &Recorded,
    base: &str,
    k: &Knobs,
    ttl: Duration,
    s: &mut State,
) -> http::Response<FakeBody> {
    let (mode, user) = (k.mode, &k.user);
    let path = r.uri.split('?').next().unwrap_or("");
    let authorize = format!("/{TENANT}/oauth2/v2.0/authorize");
    match path {
        p if p == authorize || p == "/organizations/oauth2/v2.0/authorize" => {
            entra_authorize(r, mode, s)
        }
        p if p.strip_suffix("/oauth2/v2.0/token").is_some_and(|t| {
            [TENANT, OTHER_TENANT, "organizations"].contains(&t.trim_start_matches('/'))
        }) =>
        {
            let tenant = p
                .trim_start_matches('/')
                .split('/')
                .next()
                .unwrap_or_default();
            s.token_tenants.push(tenant.to_string());
            entra_token(r, &format!("{base}{p}"), base, k, ttl, s)
        }
        p if p == format!("/{TENANT}/oauth2/v2.0/devicecode") => {
            let f = form(&r.body);
            if f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
                return aadsts(
                    400,
                    "unauthorized_client",
                    700016,
                    "Application was not found in the directory.",
                    json!({}),
                );
            }
            json_resp(
                200,
                json!({
                    "device_code": "DAQABAAEAAAD-device-code",
                    "user_code": "F7XK2M9QP",
                    "verification_uri": "https://microsoft.com/devicelogin",
                    "expires_in": "900",
                    "interval": "1",
                    "message": "To sign in, use a web browser to open the page https://microsoft.com/devicelogin and enter the code F7XK2M9QP to authenticate.",
                }),
            )
        }
        p if p
            .strip_suffix("/discovery/v2.0/keys")
            .is_some_and(|t| is_tenant_segment(t.trim_start_matches('/'))) =>
        {
            s.jwks_fetches += 1;
            s.jwks_paths.push(p.to_string());
            match k.keys_status {
                Some(status) => aadsts(
                    status,
                    "temporarily_unavailable",
                    50196,
                    "The server is temporarily unavailable.",
                    json!({}),
                ),
                None => json_resp(200, key_set(&k.kid)),
            }
        }
        "/graph/v1.0/me/checkMemberGroups" => graph::check_member_groups(r, s),
        "/oauth2/authorize" => legacy_authorize(r, s),
        "/oauth2/token" => legacy_token(r, mode, user, ttl, s),
        "/_apis/profile/profiles/me" => {
            let auth = r
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match token_owner(s, auth) {
                Some(_) => json_resp(
                    200,
                    json!({
                        "displayName": user.name, "publicAlias": user.oid, "emailAddress": user.upn,
                        "id": user.oid, "coreRevision": 1, "timeStamp": "2026-11-22T04:00:00Z", "revision": 1,
                    }),
                ),
                None => respond(401, &[], ""),
            }
        }
        _ => respond(404, &[], "not a fake endpoint"),
    }
}

/// A tenant segment Entra serves keys for: a tenant id (every
/// directory's, signed with the same keys) or `common`/`organizations`.
fn is_tenant_segment(t: &str) -> bool {
    uuid::Uuid::parse_str(t).is_ok() || t == "common" || t == "organizations"
}

/// A key set shaped like Entra's: the signing key as `kid`, beside the
/// other keys Entra publishes (each with its certificate chain), so a
/// cached set weighs what a real one does.
fn key_set(kid: &str) -> serde_json::Value {
    let n = &keys().signing_n;
    let mut set =
        vec![json!({"kty": "RSA", "use": "sig", "kid": kid, "alg": "RS256", "n": n, "e": "AQAB"})];
    for i in 0..6 {
        let cert = STANDARD.encode(vec![i as u8; 1200]);
        set.push(json!({
            "kty": "RSA", "use": "sig", "kid": format!("entra-key-{i}"), "x5t": format!("entra-key-{i}"),
            "n": n, "e": "AQAB", "x5c": [cert],
            "cloud_instance_name": "microsoftonline.com",
            "issuer": "https://login.microsoftonline.com/{tenantid}/v2.0",
        }));
    }
    json!({"keys": set})
}

/// The serial number in a token the fake issued.
fn token_serial(token: &str) -> u64 {
    token
        .split('.')
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn new_token(s: &mut State, kind: &str) -> String {
    s.serial += 1;
    format!("{kind}.{}.{}", s.serial, uuid::Uuid::new_v4().simple())
}
