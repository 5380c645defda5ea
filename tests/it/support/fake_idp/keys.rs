//! The fake's signing keys, made once per test process.

use super::*;

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
