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
}

/// A proxy config in mode `user` signing in through this fake Entra,
/// forwarding to `upstream`.
pub fn entra_config(upstream: &str, idp: &FakeIdp) -> ado_auth_proxy::config::Config {
    use ado_auth_proxy::config::{AuthMode, Provider, Secret};
    let mut c = super::config(upstream);
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
        let proxy = super::start_with(c, idp.clock()).await;
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

    /// Signs a new browser in (returning to [`super::PROJECTS`]): the
    /// browser and the callback's answer.
    pub async fn sign_in(&self) -> (Browser, reqwest::Response) {
        let b = Browser::new();
        let resp = sign_in(&b, &self.url, Some(super::PROJECTS)).await;
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

/// The running fake.
pub struct FakeIdp {
    server: FakeUpstream,
    state: Arc<Mutex<State>>,
    knobs: Arc<Mutex<Knobs>>,
}

/// Test keys: the fake's ID-token signing key, and the proxy's client
/// certificate for `private_key_jwt`.
pub struct Keys {
    pub signing_key: PathBuf,
    /// A key the fake never publishes.
    pub foreign_key: PathBuf,
    /// JWKS `n` of the signing key.
    pub signing_n: String,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub client_pub: PathBuf,
    /// Base64url SHA-256 of the client certificate's DER.
    pub client_x5t_s256: String,
}

/// Made once per test run with the openssl command line.
pub fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let run = |args: &[&str]| -> Vec<u8> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&dir)
                .output()
                .expect("openssl is installed");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        for name in ["signing.key", "foreign.key"] {
            run(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
                name,
            ]);
        }
        let modulus =
            String::from_utf8(run(&["rsa", "-in", "signing.key", "-noout", "-modulus"])).unwrap();
        let hex = modulus.trim().trim_start_matches("Modulus=");
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "client.key",
            "-out",
            "client.pem",
            "-subj",
            "/CN=ado-auth-proxy test",
            "-days",
            "2",
        ]);
        let public = run(&["x509", "-in", "client.pem", "-pubkey", "-noout"]);
        std::fs::write(dir.join("client.pub"), public).unwrap();
        let der = run(&["x509", "-in", "client.pem", "-outform", "der"]);
        let digest = ring::digest::digest(&ring::digest::SHA256, &der);
        Keys {
            signing_key: dir.join("signing.key"),
            foreign_key: dir.join("foreign.key"),
            signing_n: URL_SAFE_NO_PAD.encode(bytes),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
            client_pub: dir.join("client.pub"),
            client_x5t_s256: URL_SAFE_NO_PAD.encode(digest.as_ref()),
        }
    })
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

fn new_token(s: &mut State, kind: &str) -> String {
    s.serial += 1;
    format!("{kind}.{}.{}", s.serial, uuid::Uuid::new_v4().simple())
}

fn entra_authorize(r: &Recorded, mode: Mode, s: &mut State) -> http::Response<FakeBody> {
    let q = query(&r.uri);
    s.authorize_queries.push(q.clone());
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let state = q.get("state").cloned().unwrap_or_default();
    let mut to = url::Url::parse(&redirect_uri).unwrap();
    if mode == Mode::Deny {
        to.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair(
                "error_description",
                "AADSTS65004: User declined to consent to access the app.",
            )
            .append_pair("state", &state);
        return redirect(to.to_string());
    }
    if let Mode::AuthorizeError(error, code) = mode {
        to.query_pairs_mut()
            .append_pair("error", error)
            .append_pair(
                "error_description",
                &format!("AADSTS{code}: The sign-in was refused.\r\nTrace ID: 0000aaaa-11bb-cccc-dd33-eeeeee333333\r\nCorrelation ID: aaaa0000-bb11-2222-33cc-444444dddddd\r\nTimestamp: 2026-11-22 04:00:00Z"),
            )
            .append_pair("state", &state);
        return redirect(to.to_string());
    }
    let code = new_token(s, "code");
    s.codes.insert(
        code.clone(),
        Code {
            client_id: q.get("client_id").cloned().unwrap_or_default(),
            redirect_uri,
            challenge: q.get("code_challenge").cloned(),
            nonce: q.get("nonce").cloned(),
        },
    );
    if q.get("response_mode").map(String::as_str) == Some("form_post") {
        // Entra's form_post page: the browser posts code and state back.
        let html = format!(
            "<html><body onload=\"document.forms[0].submit()\"><form method=\"post\" action=\"{}\">\
             <input type=\"hidden\" name=\"code\" value=\"{code}\"/>\
             <input type=\"hidden\" name=\"state\" value=\"{state}\"/></form></body></html>",
            s.codes[&code].redirect_uri,
        );
        return respond(200, &[("content-type", "text/html; charset=utf-8")], html);
    }
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &state);
    redirect(to.to_string())
}

/// Checks the client's secret or `private_key_jwt` assertion.
fn client_ok(f: &HashMap<String, String>, token_url: &str, s: &mut State) -> bool {
    if f.get("client_id").map(String::as_str) != Some(CLIENT_ID) {
        return false;
    }
    if s.public_client && !f.contains_key("client_secret") && !f.contains_key("client_assertion") {
        return true;
    }
    if let Some(assertion) = f.get("client_assertion") {
        // A certificate assertion names its certificate (x5t#S256); a
        // federated token (workload identity) does not.
        let names_certificate =
            jsonwebtoken::decode_header(assertion).is_ok_and(|h| h.x5t_s256.is_some());
        if s.federated.is_some() && !names_certificate {
            s.federated_seen.push(assertion.clone());
            return s.federated.as_deref() == Some(assertion.as_str());
        }
        if f.get("client_assertion_type").map(String::as_str)
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return false;
        }
        let Ok(header) = jsonwebtoken::decode_header(assertion) else {
            return false;
        };
        if header.x5t_s256.as_deref() != Some(keys().client_x5t_s256.as_str()) {
            return false;
        }
        let pem = std::fs::read(&keys().client_pub).unwrap();
        let key = DecodingKey::from_rsa_pem(&pem).unwrap();
        let mut v = Validation::new(header.alg);
        v.set_audience(&[token_url]);
        v.set_issuer(&[CLIENT_ID]);
        v.set_required_spec_claims(&["exp", "aud", "iss", "sub"]);
        // Entra refuses assertions valid for more than 10 minutes.
        let now = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ok = jsonwebtoken::decode::<serde_json::Value>(assertion, &key, &v).is_ok_and(|d| {
            d.claims["sub"] == CLIENT_ID
                && d.claims["jti"].is_string()
                && d.claims["exp"].as_u64().is_some_and(|exp| exp <= now + 600)
        });
        if ok {
            s.assertions_verified += 1;
        }
        return ok;
    }
    f.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET)
}

fn entra_token(
    r: &Recorded,
    token_url: &str,
    base: &str,
    k: &Knobs,
    ttl: Duration,
    s: &mut State,
) -> http::Response<FakeBody> {
    let mode = k.mode;
    let tenant = match s.token_tenants.last().map(String::as_str) {
        Some("organizations") | None => TENANT.to_string(),
        Some(t) => t.to_string(),
    };
    let f = form(&r.body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    *s.token_calls.entry(grant.clone()).or_default() += 1;
    if let Some(c) = f.get("claims") {
        s.token_claims.push(c.clone());
    }
    if let Mode::Raw(status, body) = mode {
        return respond(status, &[("content-type", "text/plain")], body);
    }
    if let Mode::Refuse(r) = mode {
        let extra = match r.suberror {
            Some(sub) => json!({ "suberror": sub }),
            None => json!({}),
        };
        return aadsts(r.status, r.error, r.code, r.text, extra);
    }
    if let (Mode::RedeemError(status, error, code), "authorization_code") = (mode, grant.as_str()) {
        return aadsts(status, error, code, "The request was refused.", json!({}));
    }
    if mode == Mode::Down {
        return aadsts(
            503,
            "temporarily_unavailable",
            90033,
            "A transient error has occurred. Please try again.",
            json!({}),
        );
    }
    if mode == Mode::InvalidClient {
        return aadsts(
            401,
            "invalid_client",
            7000222,
            "The provided client secret keys for app are expired.",
            json!({}),
        );
    }
    if !client_ok(&f, token_url, s) {
        return aadsts(
            401,
            "invalid_client",
            7000215,
            "Invalid client secret provided.",
            json!({}),
        );
    }
    match grant.as_str() {
        "urn:ietf:params:oauth:grant-type:device_code" => {
            s.device_polls.push(Instant::now());
            if f.get("device_code").map(String::as_str) != Some("DAQABAAEAAAD-device-code") {
                return aadsts(
                    400,
                    "bad_verification_code",
                    70019,
                    "Verification code mismatch.",
                    json!({}),
                );
            }
            match s.device_script.pop_front() {
                Some("authorization_pending") => aadsts(
                    400,
                    "authorization_pending",
                    70016,
                    "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
                    json!({}),
                ),
                Some("slow_down") => aadsts(400, "slow_down", 70016, "Slow down.", json!({})),
                Some("authorization_declined") => aadsts(
                    400,
                    "authorization_declined",
                    70016,
                    "The end user denied the authorization request.",
                    json!({}),
                ),
                Some("expired_token") => aadsts(
                    400,
                    "expired_token",
                    70019,
                    "Verification code expired.",
                    json!({}),
                ),
                Some("bad_verification_code") => aadsts(
                    400,
                    "bad_verification_code",
                    70019,
                    "Verification code mismatch.",
                    json!({}),
                ),
                _ => issue(base, k, ttl, None, s),
            }
        }
        "client_credentials" => {
            let scope = f.get("scope").map(String::as_str).unwrap_or_default();
            if scope != "499b84ac-1321-427f-aa17-267ca6975798/.default" {
                return aadsts(
                    400,
                    "invalid_scope",
                    1002012,
                    "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
                    json!({}),
                );
            }
            if let Some(refused) = cae_unsatisfied(&f, s) {
                return refused;
            }
            s.serial += 1;
            let claims = json!({
                "aud": "499b84ac-1321-427f-aa17-267ca6975798",
                "appid": CLIENT_ID,
                "oid": "99999999-8888-7777-6666-555555555555",
                "tid": tenant,
                "idtyp": "app",
                "n": s.serial,
            });
            let access = format!(
                "eyJhbGciOiJub25lIn0.{}.sig",
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            s.access_tokens.insert(
                access.clone(),
                (
                    format!("app:{CLIENT_ID}"),
                    s.clock.now() + ttl,
                    tenant.to_string(),
                ),
            );
            json_resp(
                200,
                json!({
                    "token_type": "Bearer",
                    "expires_in": ttl.as_secs(),
                    "ext_expires_in": ttl.as_secs(),
                    "access_token": access,
                }),
            )
        }
        "authorization_code" => {
            let code = f.get("code").cloned().unwrap_or_default();
            if s.used_codes.contains(&code) {
                return aadsts(
                    400,
                    "invalid_grant",
                    54005,
                    "OAuth2 Authorization code was already redeemed.",
                    json!({"error_codes": [70002, 54005]}),
                );
            }
            let Some(c) = s.codes.remove(&code) else {
                return aadsts(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided authorization code is not valid.",
                    json!({}),
                );
            };
            s.used_codes.insert(code);
            if f.get("redirect_uri") != Some(&c.redirect_uri)
                || f.get("client_id") != Some(&c.client_id)
            {
                return aadsts(
                    400,
                    "invalid_grant",
                    50011,
                    "The redirect URI does not match.",
                    json!({}),
                );
            }
            let verifier = f.get("code_verifier").cloned().unwrap_or_default();
            let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
            if c.challenge.as_deref() != Some(URL_SAFE_NO_PAD.encode(digest.as_ref()).as_str()) {
                return aadsts(
                    400,
                    "invalid_grant",
                    501481,
                    "The Code_Verifier does not match the code_challenge supplied in the authorization request.",
                    json!({}),
                );
            }
            issue(base, k, ttl, c.nonce, s)
        }
        "refresh_token" => {
            let rt = f.get("refresh_token").cloned().unwrap_or_default();
            s.redeemed_refresh.push(rt.clone());
            if let Some(refused) = cae_unsatisfied(&f, s) {
                return refused;
            }
            match mode {
                Mode::Revoked => aadsts(
                    400,
                    "invalid_grant",
                    50173,
                    "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
                    json!({}),
                ),
                Mode::Mfa => aadsts(
                    400,
                    "invalid_grant",
                    50076,
                    "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '499b84ac-1321-427f-aa17-267ca6975798'.",
                    json!({"suberror": "basic_action", "claims": MFA_CLAIMS}),
                ),
                _ if s.refresh_tokens.get(&rt) == Some(&true) => {
                    if s.strict_rotation {
                        s.refresh_tokens.insert(rt, false);
                    }
                    issue(base, k, ttl, None, s)
                }
                _ if s.refresh_tokens.get(&rt) == Some(&false) => {
                    s.reuses += 1;
                    aadsts(
                        400,
                        "invalid_grant",
                        70000,
                        "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
                        json!({}),
                    )
                }
                _ => aadsts(
                    400,
                    "invalid_grant",
                    70000,
                    "The provided value for the input parameter 'refresh_token' or 'assertion' is not valid.",
                    json!({}),
                ),
            }
        }
        _ => aadsts(
            400,
            "unsupported_grant_type",
            70003,
            "The app requested an unsupported grant type.",
            json!({}),
        ),
    }
}

/// After a CAE revocation: the refusal of a token request that does not
/// ask for the demanded claims (or of any, while only the user can
/// satisfy them); `None` lets it through and ends the demand.
fn cae_unsatisfied(f: &HashMap<String, String>, s: &mut State) -> Option<http::Response<FakeBody>> {
    let required = s.cae_claims.clone()?;
    if s.cae_interaction {
        return Some(aadsts(
            400,
            "invalid_grant",
            50076,
            "Due to a configuration change made by your administrator, or because you moved to a new location, you must use multi-factor authentication to access '499b84ac-1321-427f-aa17-267ca6975798'.",
            json!({"suberror": "basic_action"}),
        ));
    }
    if !f.get("claims").is_some_and(|c| claims_cover(c, &required)) {
        return Some(aadsts(
            400,
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
            json!({}),
        ));
    }
    s.cae_claims = None;
    None
}

/// Whether the `claims` request asks for every member of `required`'s
/// `access_token` (as Entra checks a claims challenge was echoed).
fn claims_cover(asked: &str, required: &str) -> bool {
    let (Ok(asked), Ok(required)) = (
        serde_json::from_str::<serde_json::Value>(asked),
        serde_json::from_str::<serde_json::Value>(required),
    ) else {
        return false;
    };
    required["access_token"]
        .as_object()
        .is_some_and(|want| want.iter().all(|(k, v)| asked["access_token"][k] == *v))
}

/// A v2 token response; Entra keeps earlier refresh tokens redeemable.
fn issue(
    base: &str,
    k: &Knobs,
    ttl: Duration,
    nonce: Option<String>,
    s: &mut State,
) -> http::Response<FakeBody> {
    let user = &k.user;
    // `organizations` issues from the user's home directory.
    let tenant = match s.token_tenants.last().map(String::as_str) {
        Some(t) if t != "organizations" => t.to_string(),
        _ => user.tid.clone(),
    };
    let access = new_token(s, "at");
    let refresh = new_token(s, "rt");
    s.access_tokens.insert(
        access.clone(),
        (user.upn.clone(), s.clock.now() + ttl, tenant),
    );
    s.refresh_tokens.insert(refresh.clone(), true);
    s.issued_refresh.push(refresh.clone());
    let mut body = json!({
        "token_type": "Bearer",
        "scope": "499b84ac-1321-427f-aa17-267ca6975798/user_impersonation",
        "expires_in": ttl.as_secs(),
        "ext_expires_in": ttl.as_secs(),
        "access_token": access,
        "refresh_token": refresh,
    });
    body["id_token"] = json!(id_token_for(base, k, nonce));
    json_resp(200, body)
}

fn id_token_for(base: &str, k: &Knobs, nonce: Option<String>) -> String {
    let user = &k.user;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(k.kid.clone());
    let mut claims = json!({
        "aud": CLIENT_ID,
        "iss": format!("{base}/{}/v2.0", user.tid),
        "iat": now, "nbf": now, "exp": now + 3600,
        "sub": format!("sub-{}", user.oid),
        "oid": user.oid, "tid": user.tid,
        "preferred_username": user.upn, "name": user.name,
        "ver": "2.0",
    });
    if let Some(c) = claims.as_object_mut() {
        c.extend(user.extra.clone());
    }
    if let Some(n) = nonce {
        claims["nonce"] = json!(n);
    }
    let mut key_file = &keys().signing_key;
    match k.flaw {
        IdTokenFlaw::None => {}
        IdTokenFlaw::WrongAudience => claims["aud"] = json!("another-app"),
        IdTokenFlaw::WrongIssuer => claims["iss"] = json!("https://evil.example/v2.0"),
        IdTokenFlaw::Expired => {
            claims["iat"] = json!(now - 7200);
            claims["nbf"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
        IdTokenFlaw::WrongNonce => claims["nonce"] = json!("replayed-nonce"),
        IdTokenFlaw::ForeignKey => key_file = &keys().foreign_key,
    }
    let key = EncodingKey::from_rsa_pem(&std::fs::read(key_file).unwrap()).unwrap();
    jsonwebtoken::encode(&header, &claims, &key).unwrap()
}

// --- legacy Azure DevOps OAuth (reference §3) ---

fn legacy_authorize(r: &Recorded, s: &mut State) -> http::Response<FakeBody> {
    let q = query(&r.uri);
    s.authorize_queries.push(q.clone());
    if q.get("response_type").map(String::as_str) != Some("Assertion") {
        return respond(
            400,
            &[("content-type", "text/html")],
            "<html><title>400</title>response_type must be Assertion</html>",
        );
    }
    let redirect_uri = q.get("redirect_uri").cloned().unwrap_or_default();
    let code = new_token(s, "legacy-code");
    s.codes.insert(
        code.clone(),
        Code {
            client_id: q.get("client_id").cloned().unwrap_or_default(),
            redirect_uri: redirect_uri.clone(),
            challenge: None,
            nonce: None,
        },
    );
    let mut to = url::Url::parse(&redirect_uri).unwrap();
    to.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map_or("", String::as_str));
    redirect(to.to_string())
}

fn legacy_error(error: &str, description: &str) -> http::Response<FakeBody> {
    json_resp(
        400,
        json!({"Error": error, "ErrorDescription": description}),
    )
}

fn legacy_token(
    r: &Recorded,
    mode: Mode,
    user: &User,
    ttl: Duration,
    s: &mut State,
) -> http::Response<FakeBody> {
    let content_type = r
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type.starts_with("application/x-www-form-urlencoded") {
        return respond(400, &[], "");
    }
    let f = form(&r.body);
    let grant = f.get("grant_type").cloned().unwrap_or_default();
    // The endpoint as it may answer once Microsoft ends the flow.
    if let Mode::Raw(status, body) = mode {
        *s.token_calls.entry("legacy_raw".into()).or_default() += 1;
        return respond(status, &[("content-type", "text/html")], body);
    }
    if f.get("client_assertion_type").map(String::as_str)
        != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        || f.get("client_assertion").map(String::as_str) != Some(LEGACY_SECRET)
        || mode == Mode::InvalidClient
    {
        *s.token_calls
            .entry("legacy_invalid_client".into())
            .or_default() += 1;
        return legacy_error(
            "invalid_client",
            "Failed to deserialize the JsonWebToken object.",
        );
    }
    let assertion = f.get("assertion").cloned().unwrap_or_default();
    match grant.as_str() {
        "urn:ietf:params:oauth:grant-type:jwt-bearer" => {
            *s.token_calls.entry("legacy_code".into()).or_default() += 1;
            if s.codes.remove(&assertion).is_none() {
                return legacy_error("invalid_grant", "The authorization code is not valid.");
            }
        }
        "refresh_token" => {
            *s.token_calls.entry("legacy_refresh".into()).or_default() += 1;
            s.redeemed_refresh.push(assertion.clone());
            // Treated as single-use (reference §3.2): redeeming retires it.
            if s.refresh_tokens.insert(assertion.clone(), false) != Some(true)
                || mode == Mode::Revoked
            {
                return legacy_error("invalid_request", "The access token is not valid");
            }
        }
        _ => return legacy_error("unsupported_grant_type", "grant_type is not supported"),
    }
    let access = new_token(s, "legacy-at");
    let refresh = new_token(s, "legacy-rt");
    s.access_tokens.insert(
        access.clone(),
        (user.upn.clone(), s.clock.now() + ttl, String::new()),
    );
    s.refresh_tokens.insert(refresh.clone(), true);
    s.issued_refresh.push(refresh.clone());
    json_resp(
        200,
        json!({
            "access_token": access,
            "token_type": "jwt-bearer",
            "expires_in": ttl.as_secs().to_string(),
            "refresh_token": refresh,
            "scope": "vso.code vso.profile",
        }),
    )
}
