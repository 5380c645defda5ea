//! `private_key_jwt` client assertions for Entra: a short-lived JWT signed
//! with the app's certificate key, which Microsoft recommends over client
//! secrets in production.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
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

/// When a file was last written, and its length: what tells a renewed
/// certificate (a Kubernetes Secret volume swaps both files at once).
type Stamp = [Option<(SystemTime, u64)>; 2];

fn stamp(cert: &Path, key: &Path) -> Stamp {
    [cert, key].map(|p| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().unwrap_or(UNIX_EPOCH), m.len()))
    })
}

/// A [`Signer`] whose certificate and key are read again when the files
/// change, so a renewed certificate needs no restart. A change that does
/// not load (a half-written pair) keeps the signer in use and says so in
/// the log; the next change is tried again.
pub struct ReloadingSigner {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<(Arc<Signer>, Stamp)>,
}

impl ReloadingSigner {
    /// Reads the pair now; its errors name the key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, LoadError> {
        let seen = stamp(cert, key);
        let signer = Signer::load(cert, key)?;
        Ok(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new((Arc::new(signer), seen)),
        })
    }

    /// A fresh assertion (see [`Signer::sign`]) with the pair the files
    /// hold now.
    pub fn sign(
        &self,
        client_id: &str,
        audience: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        self.signer().sign(client_id, audience)
    }

    fn signer(&self) -> Arc<Signer> {
        let now = stamp(&self.cert, &self.key);
        {
            let current = self.current.read().unwrap_or_else(|p| p.into_inner());
            if current.1 == now {
                return current.0.clone();
            }
        }
        let mut current = self.current.write().unwrap_or_else(|p| p.into_inner());
        current.1 = now;
        match Signer::load(&self.cert, &self.key) {
            Ok(signer) => {
                tracing::info!(
                    certificate = %self.cert.display(),
                    thumbprint = %signer.x5t_s256,
                    "client certificate reloaded"
                );
                current.0 = Arc::new(signer);
            }
            Err(e) => tracing::warn!(
                key = e.key,
                error = %e.message,
                "the changed client certificate does not load; the one in use is kept"
            ),
        }
        current.0.clone()
    }
}

#[cfg(test)]
mod reload_tests {
    use super::*;

    /// A new self-signed certificate and key at `dir/{name}.pem|.key`.
    fn pair(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        let ok = std::process::Command::new("openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=t",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs (scripts/test-peers.sh installs it)")
            .status
            .success();
        assert!(ok);
        (cert, key)
    }

    fn thumbprint(jwt: &str) -> String {
        jsonwebtoken::decode_header(jwt).unwrap().x5t_s256.unwrap()
    }

    #[test]
    fn a_renewed_certificate_is_used_without_a_restart_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let (a_cert, a_key) = pair(dir.path(), "a");
        let (b_cert, b_key) = pair(dir.path(), "b");
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::copy(&a_cert, &cert).unwrap();
        std::fs::copy(&a_key, &key).unwrap();
        let signer = ReloadingSigner::load(&cert, &key).unwrap();
        let first = thumbprint(&signer.sign("c", "https://t/").unwrap());
        assert_eq!(first, thumbprint(&signer.sign("c", "https://t/").unwrap()));

        // The pair is renewed (both files replaced, as a Secret volume does).
        std::fs::copy(&b_cert, &cert).unwrap();
        std::fs::copy(&b_key, &key).unwrap();
        let second = thumbprint(&signer.sign("c", "https://t/").unwrap());
        assert_ne!(first, second, "the new certificate signs");
        assert_eq!(second, Signer::load(&b_cert, &b_key).unwrap().x5t_s256);

        // A broken write keeps the pair in use.
        std::fs::write(&key, "not a key").unwrap();
        assert_eq!(thumbprint(&signer.sign("c", "https://t/").unwrap()), second);
    }
}
