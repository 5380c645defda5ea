//! The real OpenID provider (`tests/peers/oidc.mjs`, npm `oidc-provider`)
//! and a client that signs in through its own login and consent pages the
//! way a browser would: keeping cookies, following redirects by hand.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use reqwest::cookie::Jar;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use url::Url;

/// A running `oidc-provider` on a free loopback port.
pub struct OidcPeer {
    pub issuer: String,
    _child: Child,
}

/// The directory holding the npm test peers.
pub fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers")
}

impl OidcPeer {
    /// Starts the provider; access tokens live `access_ttl` seconds.
    pub async fn start(access_ttl: u64) -> Self {
        let dir = peers_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "tests/peers/node_modules is missing: run scripts/test.sh (it runs npm ci there)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("oidc.mjs"))
            .env("ACCESS_TTL", access_ttl.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("node is installed (scripts/test.sh installs it)");
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("oidc-provider starts within 30 s")
            .unwrap()
            .expect("oidc-provider prints its issuer");
        // Keep draining stdout: a closed pipe would kill node at its next
        // write.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        Self {
            issuer: v["issuer"].as_str().unwrap().to_string(),
            _child: child,
        }
    }

    /// Grant counters: `authorization_code`, `refresh_token`, `refresh_errors`.
    pub async fn stats(&self) -> serde_json::Value {
        super::get(format!("{}/_stats", self.issuer))
            .await
            .json()
            .await
            .unwrap()
    }

    /// How many refresh grants succeeded so far.
    pub async fn refreshes(&self) -> u64 {
        self.stats().await["refresh_token"].as_u64().unwrap()
    }

    /// The provider's signing keys.
    pub async fn jwks(&self) -> JwkSet {
        super::get(format!("{}/jwks", self.issuer))
            .await
            .json()
            .await
            .unwrap()
    }
}

/// Checks a bearer access token as Azure DevOps would: a JWT from
/// `issuer` for Azure DevOps' resource id, signed with one of `keys`.
/// Returns its subject.
pub fn verify_access_token(keys: &JwkSet, issuer: &str, authorization: &str) -> Option<String> {
    let token = authorization.strip_prefix("Bearer ")?;
    let header = jsonwebtoken::decode_header(token).ok()?;
    let jwk = keys.find(header.kid.as_deref()?)?;
    let key = DecodingKey::from_jwk(jwk).ok()?;
    let mut v = Validation::new(header.alg);
    v.set_audience(&["499b84ac-1321-427f-aa17-267ca6975798"]);
    v.set_issuer(&[issuer]);
    v.leeway = 0;
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v).ok()?;
    data.claims["sub"].as_str().map(str::to_string)
}

/// A cookie-keeping client that never follows redirects by itself.
pub struct Browser {
    pub http: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        super::install_crypto();
        let jar = Arc::new(Jar::default());
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .cookie_provider(jar)
            .no_proxy()
            .build()
            .unwrap();
        Self { http }
    }

    /// A navigation: `GET url` with a browser's `Accept`.
    pub async fn navigate(&self, url: &str) -> reqwest::Response {
        self.http
            .get(url)
            .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
            .send()
            .await
            .expect("a response")
    }

    /// From the provider's authorize URL, signs in as `user` on the
    /// provider's pages and returns the URL the provider redirects to
    /// (the proxy's callback, not yet visited).
    pub async fn sign_in_at_provider(&self, authorize_url: &str, user: &str) -> String {
        let mut url = authorize_url.to_string();
        for _ in 0..20 {
            if url.contains("/.auth/callback") {
                return url;
            }
            let resp = self.navigate(&url).await;
            if resp.status().is_redirection() {
                url = absolute(&url, resp.headers()["location"].to_str().unwrap());
                continue;
            }
            let html = resp.text().await.unwrap();
            let action = form_action(&html).unwrap_or_else(|| panic!("no form in {html}"));
            let form: Vec<(&str, &str)> = if html.contains("name=\"login\"") {
                vec![("prompt", "login"), ("login", user), ("password", "any")]
            } else {
                vec![("prompt", "consent")]
            };
            let resp = self
                .http
                .post(absolute(&url, &action))
                .form(&form)
                .send()
                .await
                .unwrap();
            assert!(
                resp.status().is_redirection(),
                "form post: {}",
                resp.status()
            );
            url = absolute(&url, resp.headers()["location"].to_str().unwrap());
        }
        panic!("sign-in did not reach the callback; last URL {url}");
    }

    /// The whole sign-in: `/.auth/login?rd=..` on `proxy`, the provider's
    /// pages, the callback. Returns the callback's response.
    pub async fn sign_in(&self, proxy: &str, user: &str, rd: &str) -> reqwest::Response {
        let callback = self.start_sign_in(proxy, user, rd).await;
        self.navigate(&callback).await
    }

    /// As [`sign_in`] but stops before the callback, returning its URL.
    pub async fn start_sign_in(&self, proxy: &str, user: &str, rd: &str) -> String {
        let mut login = Url::parse(&format!("{proxy}/.auth/login")).unwrap();
        login.query_pairs_mut().append_pair("rd", rd);
        let resp = self.navigate(login.as_str()).await;
        assert_eq!(resp.status(), 302, "/.auth/login answers 302");
        let authorize = resp.headers()["location"].to_str().unwrap().to_string();
        self.sign_in_at_provider(&authorize, user).await
    }
}

/// Resolves `location` against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    Url::parse(base)
        .unwrap()
        .join(location)
        .unwrap()
        .to_string()
}

fn form_action(html: &str) -> Option<String> {
    let start = html.find("action=\"")? + "action=\"".len();
    let end = html[start..].find('"')? + start;
    Some(html[start..end].replace("&amp;", "&"))
}
