//! `private_key_jwt` client assertions for Entra: a short-lived JWT signed
//! with the app's certificate key, which Microsoft recommends over client
//! secrets in production.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;

/// The assertion type sent beside `client_assertion`.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The payload of a JWT, unverified: for showing who a token names, or
/// saying that an assertion expired before sending it.
pub fn jwt_payload<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// When a JWT's `exp` (seconds since the epoch) has passed, that time.
pub fn expired_at(token: &str, now: SystemTime) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<u64>,
    }
    let exp = jwt_payload::<Exp>(token)?.exp?;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    (exp <= now).then_some(exp)
}

/// How long a signed assertion is valid.
const LIFETIME_SECS: u64 = 300;

/// Signs client assertions with a certificate's key.
pub struct Signer {
    key: EncodingKey,
    /// Base64url SHA-1 thumbprint of the certificate (`x5t`), which Entra
    /// uses to find the registered certificate.
    x5t: String,
    /// Base64url SHA-256 thumbprint (`x5t#S256`).
    x5t_s256: String,
}

/// A certificate or key that cannot be used, naming the config key.
#[derive(Debug)]
pub struct LoadError {
    /// The config key.
    pub key: &'static str,
    /// What is wrong and how to fix it.
    pub message: String,
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: u64,
    iat: u64,
    exp: u64,
}

// === impl Signer ===

impl Signer {
    /// Reads a PEM certificate and its RSA private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, LoadError> {
        let der = CertificateDer::from_pem_file(cert).map_err(|e| LoadError {
            key: "auth.client_certificate_file",
            message: format!("cannot read a PEM certificate from {}: {e}", cert.display()),
        })?;
        let pem = std::fs::read(key).map_err(|e| LoadError {
            key: "auth.client_key_file",
            message: format!("cannot read {}: {e}", key.display()),
        })?;
        let key = EncodingKey::from_rsa_pem(&pem).map_err(|e| LoadError {
            key: "auth.client_key_file",
            message: format!(
                "{} is not a PEM RSA private key ({e}); Entra certificates use RSA keys",
                key.display()
            ),
        })?;
        let sha1 = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &der);
        let sha256 = ring::digest::digest(&ring::digest::SHA256, &der);
        let signer = Self {
            key,
            x5t: URL_SAFE_NO_PAD.encode(sha1.as_ref()),
            x5t_s256: URL_SAFE_NO_PAD.encode(sha256.as_ref()),
        };
        // Fail at load, not at the first login, if the key cannot sign.
        signer
            .sign("check", "https://login.invalid/")
            .map_err(|e| LoadError {
                key: "auth.client_key_file",
                message: format!("the key cannot sign a client assertion: {e}"),
            })?;
        Ok(signer)
    }

    /// A fresh assertion for `client_id` at the token endpoint `audience`.
    pub fn sign(
        &self,
        client_id: &str,
        audience: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let now = crate::clock::real_wall()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut header = Header::new(Algorithm::PS256);
        header.x5t = Some(self.x5t.clone());
        header.x5t_s256 = Some(self.x5t_s256.clone());
        let claims = Claims {
            aud: audience,
            iss: client_id,
            sub: client_id,
            jti: uuid::Uuid::new_v4().to_string(),
            nbf: now.saturating_sub(5),
            iat: now,
            exp: now + LIFETIME_SECS,
        };
        jsonwebtoken::encode(&header, &claims, &self.key)
    }
}
