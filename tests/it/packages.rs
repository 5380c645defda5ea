//! Package feeds through the proxy with real clients: npm, pip and cargo
//! against a fake Azure Artifacts whose documents name absolute
//! `https://pkgs.dev.azure.com/...` URLs (unreachable here, so a client
//! that escaped the proxy would fail), and NuGet's service index.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ado_auth_proxy::app::Running;
use ado_auth_proxy::config::{AuthMode, Secret};
use base64::Engine;
use url::Url;

use crate::support::upstream::{FakeUpstream, Recorded, respond};
use crate::support::{self, client};

/// Where the fake feed's documents say packages are.
const CANONICAL: &str = "https://pkgs.dev.azure.com/contoso/_packaging/feed";
/// The feed below the proxy's `/.hosts/pkgs/`.
const FEED: &str = "/contoso/_packaging/feed";
/// `Basic` of the proxy's PAT with an empty user name.
const PAT_BASIC: &str = "Basic OmEtcGVyc29uYWwtYWNjZXNzLXRva2Vu";

fn sha256_hex(data: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, data)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn sha512_integrity(data: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA512, data);
    format!(
        "sha512-{}",
        base64::engine::general_purpose::STANDARD.encode(d.as_ref())
    )
}

/// `tar czf` of `files` (path, content) under `dir`.
fn targz(dir: &Path, files: &[(&str, &str)]) -> Vec<u8> {
    let root = dir.join("tree");
    for (path, content) in files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let out = dir.join("out.tgz");
    let top: Vec<&str> = {
        let mut t: Vec<&str> = files
            .iter()
            .map(|(p, _)| p.split('/').next().unwrap())
            .collect();
        t.dedup();
        t
    };
    let status = Command::new("tar")
        .arg("czf")
        .arg(&out)
        .arg("-C")
        .arg(&root)
        .args(&top)
        .status()
        .unwrap();
    assert!(status.success());
    let bytes = std::fs::read(&out).unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    bytes
}

/// A minimal wheel, built with the peers' Python.
fn wheel(dir: &Path, name: &str) -> Vec<u8> {
    let path = dir.join(format!("{name}-1.0-py3-none-any.whl"));
    let script = format!(
        r#"import zipfile
z = zipfile.ZipFile(r"{path}", "w")
z.writestr("{name}/__init__.py", "")
z.writestr("{name}-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: {dash}\nVersion: 1.0\n")
z.writestr("{name}-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
z.writestr("{name}-1.0.dist-info/RECORD", "")
z.close()
"#,
        path = path.display(),
        dash = name.replace('_', "-"),
    );
    let status = Command::new(python())
        .arg("-c")
        .arg(script)
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::read(path).unwrap()
}

fn python() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/peers/.venv/bin/python")
}

/// The artifacts a fake feed serves.
struct Feed {
    npm_tgz: Vec<u8>,
    wheel_html: Vec<u8>,
    wheel_json: Vec<u8>,
    crate_file: Vec<u8>,
}

impl Feed {
    fn build(dir: &Path) -> Self {
        Self {
            npm_tgz: targz(
                dir,
                &[
                    (
                        "package/package.json",
                        r#"{"name":"left-pad","version":"1.3.0","main":"index.js"}"#,
                    ),
                    ("package/index.js", "module.exports = (s) => s;\n"),
                ],
            ),
            wheel_html: wheel(dir, "tiny_html"),
            wheel_json: wheel(dir, "tiny_json"),
            crate_file: targz(
                dir,
                &[
                    (
                        "tinycrate-0.1.0/Cargo.toml",
                        "[package]\nname = \"tinycrate\"\nversion = \"0.1.0\"\nedition = \"2021\"\n",
                    ),
                    ("tinycrate-0.1.0/src/lib.rs", "pub fn tiny() {}\n"),
                ],
            ),
        }
    }

    /// Azure Artifacts' answer to `r` (a path below the pkgs host).
    fn answer(&self, r: &Recorded) -> http::Response<crate::support::upstream::FakeBody> {
        let path = r.uri.split('?').next().unwrap_or("");
        let Some(rest) = path.strip_prefix(FEED) else {
            return respond(404, &[], "not a feed path");
        };
        let json = [("content-type", "application/json; charset=utf-8")];
        let bin = [("content-type", "application/octet-stream")];
        match rest {
            "/npm/registry/left-pad" => respond(
                200,
                &json,
                serde_json::json!({
                    "name": "left-pad",
                    "dist-tags": {"latest": "1.3.0"},
                    "versions": {"1.3.0": {
                        "name": "left-pad", "version": "1.3.0",
                        "dist": {
                            "tarball": format!("{CANONICAL}/npm/registry/left-pad/-/left-pad-1.3.0.tgz"),
                            "integrity": sha512_integrity(&self.npm_tgz),
                        }
                    }}
                })
                .to_string(),
            ),
            "/npm/registry/left-pad/-/left-pad-1.3.0.tgz" => respond(200, &bin, self.npm_tgz.clone()),
            "/pypi/simple/tiny-html/" => respond(
                200,
                &[("content-type", "text/html")],
                format!(
                    "<!DOCTYPE html><html><body><a href=\"{CANONICAL}/pypi/download/tiny-html/1.0/tiny_html-1.0-py3-none-any.whl#sha256={}\">tiny_html-1.0-py3-none-any.whl</a></body></html>",
                    sha256_hex(&self.wheel_html)
                ),
            ),
            "/pypi/simple/tiny-json/" => respond(
                200,
                &[("content-type", "application/vnd.pypi.simple.v1+json")],
                serde_json::json!({
                    "meta": {"api-version": "1.0"},
                    "name": "tiny-json",
                    "files": [{
                        "filename": "tiny_json-1.0-py3-none-any.whl",
                        "url": format!("{CANONICAL}/pypi/download/tiny-json/1.0/tiny_json-1.0-py3-none-any.whl"),
                        "hashes": {"sha256": sha256_hex(&self.wheel_json)},
                    }]
                })
                .to_string(),
            ),
            "/pypi/download/tiny-html/1.0/tiny_html-1.0-py3-none-any.whl" => {
                respond(200, &bin, self.wheel_html.clone())
            }
            "/pypi/download/tiny-json/1.0/tiny_json-1.0-py3-none-any.whl" => {
                respond(200, &bin, self.wheel_json.clone())
            }
            "/Cargo/index/config.json" => respond(
                200,
                &json,
                // As Azure Artifacts' feeds are private: cargo would
                // refuse to go on without a token of its own.
                serde_json::json!({
                    "dl": format!("{CANONICAL}/Cargo/api/v1/crates"),
                    "api": format!("{CANONICAL}/Cargo/"),
                    "auth-required": true,
                })
                .to_string(),
            ),
            "/Cargo/index/ti/ny/tinycrate" => respond(
                200,
                &[("content-type", "text/plain")],
                serde_json::json!({
                    "name": "tinycrate", "vers": "0.1.0", "deps": [],
                    "cksum": sha256_hex(&self.crate_file), "features": {}, "yanked": false,
                })
                .to_string()
                    + "\n",
            ),
            "/Cargo/api/v1/crates/tinycrate/0.1.0/download" => {
                respond(200, &bin, self.crate_file.clone())
            }
            "/nuget/v3/index.json" => respond(
                200,
                &json,
                serde_json::json!({
                    "version": "3.0.0",
                    "resources": [
                        {"@id": format!("{CANONICAL}/nuget/v3/flat2/"), "@type": "PackageBaseAddress/3.0.0"},
                        {"@id": format!("{CANONICAL}/nuget/v3/registrations2/"), "@type": "RegistrationsBaseUrl"},
                        {"@id": "https://contoso.pkgs.visualstudio.com/_packaging/feed/nuget/v3/query2/", "@type": "SearchQueryService"},
                    ]
                })
                .to_string(),
            ),
            // Azure Artifacts' refusals: its words in the reason phrase,
            // a plain-text body or none.
            "/npm/registry/private-pkg" => artifacts_refusal(
                403,
                "Forbidden - User 'a0b1c2d3-0000-4000-8000-000000000001' lacks permission to complete this action. You need to have 'ReadPackages'. (DevOps Activity ID: 8E6A5C1B-2D3F-4A5B-9C8D-7E6F5A4B3C2D)",
                "User 'a0b1c2d3-0000-4000-8000-000000000001' lacks permission to complete this action. You need to have 'ReadPackages'.",
            ),
            "/pypi/download/gone/1.0/gone-1.0-py3-none-any.whl" => artifacts_refusal(
                404,
                "Not Found - The feed with ID 'feed' doesn't exist. (DevOps Activity ID: 3B1C9E0A-7D2F-4C6B-8A5E-0F9D8C7B6A51)",
                "",
            ),
            _ => respond(404, &[], "no such package"),
        }
    }
}

/// An Azure Artifacts refusal with `reason` as its reason phrase.
fn artifacts_refusal(
    status: u16,
    reason: &str,
    body: &'static str,
) -> http::Response<crate::support::upstream::FakeBody> {
    let mut resp = respond(
        status,
        &[
            ("content-type", "text/plain; charset=utf-8"),
            ("activityid", "8e6a5c1b-2d3f-4a5b-9c8d-7e6f5a4b3c2d"),
        ],
        body,
    );
    resp.extensions_mut()
        .insert(hyper::ext::ReasonPhrase::try_from(reason.to_string()).unwrap());
    resp
}

/// The fake feed on the `pkgs` host, behind a PAT-mode proxy.
async fn feed_and_proxy(dir: &Path) -> (FakeUpstream, Running, String) {
    let feed = Feed::build(dir);
    let up = FakeUpstream::recording(move |r| feed.answer(r)).await;
    let mut c = support::config(&up.url());
    c.auth.mode = AuthMode::Pat;
    c.auth.pat = Some(Secret::new("a-personal-access-token"));
    c.upstream
        .hosts
        .insert("pkgs".into(), Url::parse(&up.url()).unwrap());
    let p = support::start(c).await;
    let base = format!("http://{}/.hosts/pkgs{FEED}", p.proxy_addr);
    (up, p, base)
}

/// Every request reached the feed through the proxy, with its credential.
fn all_through_the_proxy(up: &FakeUpstream, at_least: usize) {
    let seen = up.requests();
    assert!(
        seen.len() >= at_least,
        "{:?}",
        seen.iter().map(|r| &r.uri).collect::<Vec<_>>()
    );
    for r in &seen {
        assert_eq!(r.headers["authorization"], PAT_BASIC, "{}", r.uri);
    }
}

async fn run(mut cmd: tokio::process::Command) -> std::process::Output {
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.kill_on_drop(true).output())
        .await
        .expect("the client finished in time")
        .expect("the client runs");
    assert!(
        out.status.success(),
        "{cmd:?}\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `npm install left-pad` in a new project under `dir` whose `.npmrc`
/// is `npmrc`.
async fn npm_install(dir: &Path, npmrc: &str) {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"p","version":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(project.join(".npmrc"), npmrc).unwrap();
    let mut cmd = tokio::process::Command::new("npm");
    cmd.current_dir(&project)
        .args([
            "install",
            "left-pad",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
        ])
        .env("npm_config_cache", dir.join("cache"))
        .env("npm_config_userconfig", dir.join("no-user-npmrc"));
    run(cmd).await;
    assert!(project.join("node_modules/left-pad/index.js").exists());
}

#[tokio::test]
async fn npm_installs_a_package_and_its_tarball_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _p, base) = feed_and_proxy(dir.path()).await;
    // No token on the client side: the proxy has it.
    npm_install(dir.path(), &format!("registry={base}/npm/registry/\n")).await;
    all_through_the_proxy(&up, 2);
    assert!(
        up.requests()
            .iter()
            .any(|r| r.uri.ends_with("/left-pad-1.3.0.tgz")),
        "the tarball came through the proxy"
    );
}

#[tokio::test]
async fn pip_downloads_from_html_and_json_simple_indexes_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _p, base) = feed_and_proxy(dir.path()).await;
    let dest = dir.path().join("wheels");
    let mut cmd = tokio::process::Command::new(python());
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ])
    .args(["--no-cache-dir", "--index-url"])
    .arg(format!("{base}/pypi/simple/"))
    .args(["tiny-html", "tiny-json", "-d"])
    .arg(&dest)
    .env("PIP_CONFIG_FILE", "/dev/null");
    run(cmd).await;
    assert!(dest.join("tiny_html-1.0-py3-none-any.whl").exists());
    assert!(dest.join("tiny_json-1.0-py3-none-any.whl").exists());
    all_through_the_proxy(&up, 4);
}

#[tokio::test]
async fn cargo_fetches_from_a_sparse_registry_through_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let (up, _p, base) = feed_and_proxy(dir.path()).await;
    let project = dir.path().join("project");
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::create_dir_all(project.join(".cargo")).unwrap();
    std::fs::write(project.join("src/lib.rs"), "").unwrap();
    std::fs::write(
        project.join("Cargo.toml"),
        "[package]\nname = \"p\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n\
         [dependencies]\ntinycrate = { version = \"0.1\", registry = \"ado\" }\n",
    )
    .unwrap();
    std::fs::write(
        project.join(".cargo/config.toml"),
        format!("[registries.ado]\nindex = \"sparse+{base}/Cargo/index/\"\n"),
    )
    .unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO"));
    cmd.current_dir(&project)
        .arg("fetch")
        .env("CARGO_HOME", dir.path().join("cargo-home"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS");
    run(cmd).await;
    let lock = std::fs::read_to_string(project.join("Cargo.lock")).unwrap();
    assert!(lock.contains("name = \"tinycrate\""), "{lock}");
    all_through_the_proxy(&up, 3);
    assert!(
        up.requests()
            .iter()
            .any(|r| r.uri.ends_with("/tinycrate/0.1.0/download")),
        "the .crate came through the proxy"
    );
}

#[tokio::test]
async fn the_nuget_service_index_names_only_proxy_urls() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, p, base) = feed_and_proxy(dir.path()).await;
    let resp = client()
        .get(format!("{base}/nuget/v3/index.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("content-length").is_none());
    let index: serde_json::Value = resp.json().await.unwrap();
    let public = format!(
        "http://{}/.hosts/pkgs/contoso/_packaging/feed/nuget/v3/",
        p.proxy_addr
    );
    let ids: Vec<&str> = index["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["@id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            format!("{public}flat2/"),
            format!("{public}registrations2/"),
            format!("{public}query2/"),
        ]
    );
}

/// Mode user: npm and pip carry a signed-in user's personal proxy token
/// in their usual configuration; the feed sees the user's Azure DevOps
/// token and never the proxy token.
#[tokio::test]
async fn npm_and_pip_use_a_personal_proxy_token_in_mode_user() {
    use crate::support::fake_idp::{self, FakeIdp};
    let dir = tempfile::tempdir().unwrap();
    let idp = FakeIdp::start(Duration::from_secs(3600)).await;
    let feed = Feed::build(dir.path());
    let up = FakeUpstream::recording(move |r| feed.answer(r)).await;
    let mut c = fake_idp::entra_config(&up.url(), &idp);
    c.upstream
        .hosts
        .insert("pkgs".into(), Url::parse(&up.url()).unwrap());
    let p = support::start_with(c, idp.clock()).await;
    let host = p.proxy_addr.to_string();
    let b = crate::support::oidc::Browser::new();
    assert_eq!(
        fake_idp::sign_in(&b, &format!("http://{host}"), None)
            .await
            .status(),
        302
    );
    let v: serde_json::Value = b
        .http
        .post(format!("http://{host}/.auth/tokens"))
        .json(&serde_json::json!({"name": "packages"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = v["token"].as_str().unwrap().to_string();

    let registry = format!("//{host}/.hosts/pkgs{FEED}/npm/registry/");
    npm_install(
        dir.path(),
        &format!("registry=http:{registry}\n{registry}:_authToken={token}\n"),
    )
    .await;

    let mut pip = tokio::process::Command::new(python());
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
    ])
    .args(["--no-cache-dir", "--index-url"])
    .arg(format!(
        "http://me:{token}@{host}/.hosts/pkgs{FEED}/pypi/simple/"
    ))
    .args(["tiny-html", "-d"])
    .arg(dir.path().join("wheels"))
    .env("PIP_CONFIG_FILE", "/dev/null");
    run(pip).await;
    assert!(
        dir.path()
            .join("wheels/tiny_html-1.0-py3-none-any.whl")
            .exists()
    );

    let check = idp.checker();
    let seen = up.requests();
    assert!(seen.len() >= 4);
    for r in &seen {
        let auth = r.headers["authorization"].to_str().unwrap();
        assert!(
            check(auth).is_ok(),
            "the user's token upstream: {} {auth}",
            r.uri
        );
        assert!(!auth.contains(&token[4..]), "never the proxy token");
    }
}

/// Azure Artifacts' refusals reach npm and pip, which print the status
/// line's reason phrase: its words are kept and the explanation follows
/// (which permission, which role grants it, that a missing feed may be
/// one the identity cannot see).
#[tokio::test]
async fn npm_and_pip_print_artifacts_refusals_with_the_explanation() {
    let dir = tempfile::tempdir().unwrap();
    let (_up, p, base) = feed_and_proxy(dir.path()).await;

    // The status line itself, as a raw HTTP/1.1 client reads it.
    let path = base.split_once(&p.proxy_addr.to_string()).unwrap().1;
    let head = raw_status_line(p.proxy_addr, &format!("{path}/npm/registry/private-pkg")).await;
    assert!(
        head.starts_with("HTTP/1.1 403 Forbidden - User 'a0b1c2d3-0000-4000-8000-000000000001' lacks permission to complete this action. You need to have 'ReadPackages'. - [ado-auth-proxy] This identity lacks a permission on the Azure Artifacts feed. Ask a feed owner to give your account"),
        "{head}"
    );
    assert!(
        head.contains("the Feed Reader role on feed 'feed'"),
        "{head}"
    );
    assert!(head.len() < 700, "{head}");

    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("package.json"),
        r#"{"name":"p","version":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        project.join(".npmrc"),
        format!("registry={base}/npm/registry/\n"),
    )
    .unwrap();
    let mut npm = tokio::process::Command::new("npm");
    npm.current_dir(&project)
        .args([
            "install",
            "private-pkg",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
        ])
        .env("npm_config_cache", dir.path().join("cache"))
        .env("npm_config_userconfig", dir.path().join("no-user-npmrc"))
        .env("npm_config_fetch_retries", "0");
    let out = run_failing(npm).await;
    assert!(out.contains("403"), "{out}");
    assert!(
        out.contains("You need to have 'ReadPackages'"),
        "the original words: {out}"
    );
    assert!(
        out.contains(
            "[ado-auth-proxy] This identity lacks a permission on the Azure Artifacts feed"
        ),
        "{out}"
    );
    assert!(out.contains("Feed Reader"), "{out}");

    let mut pip = tokio::process::Command::new(python());
    pip.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-cache-dir",
        "-d",
    ])
    .arg(dir.path().join("wheels"))
    .arg(format!(
        "{base}/pypi/download/gone/1.0/gone-1.0-py3-none-any.whl"
    ))
    .env("PIP_CONFIG_FILE", "/dev/null");
    let out = run_failing(pip).await;
    assert!(out.contains("404"), "{out}");
    assert!(
        out.contains("The feed with ID 'feed' doesn't exist"),
        "the original words: {out}"
    );
    assert!(
        out.contains(
            "[ado-auth-proxy] Azure Artifacts has no such feed, or hides it from this identity"
        ),
        "{out}"
    );
}

/// Runs a client expected to fail; its stdout and stderr together.
async fn run_failing(mut cmd: tokio::process::Command) -> String {
    let out = tokio::time::timeout(Duration::from_secs(180), cmd.kill_on_drop(true).output())
        .await
        .expect("the client finished in time")
        .expect("the client runs");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{cmd:?} succeeded: {text}");
    text
}

/// The status line of a GET of `path`, read over a raw socket.
async fn raw_status_line(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost:8080\r\nAccept: application/json\r\nUser-Agent: npm/10.9.0 node/v22.0.0\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_string();
    text.split("\r\n").next().unwrap_or_default().to_string()
}
