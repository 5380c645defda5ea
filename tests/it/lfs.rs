//! The real `git-lfs` client through the proxy: push and clone of LFS
//! objects and the locks API, against a fake Azure Repos whose batch
//! answers name absolute `https://dev.azure.com/...` hrefs with a token of
//! its own in the action headers (unreachable here: an escape fails).

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::process::Command;

use crate::support::upstream::{FakeBody, FakeUpstream, respond};
use crate::support::{self, git_backend};

const PAT: &str = "lfs-test-pat";
/// What the fake puts into each action: the proxy must not pass it on.
const UPSTREAM_TOKEN: &str = "Bearer upstream-only-token";

/// Fake Azure Repos LFS state: objects, locks, and every LFS request's
/// (method, path, Authorization).
#[derive(Default)]
struct Lfs {
    objects: HashMap<String, Vec<u8>>,
    locks: Vec<serde_json::Value>,
    seen: Vec<(String, String, String)>,
}

fn lfs_json(status: u16, v: serde_json::Value) -> Response<FakeBody> {
    respond(
        status,
        &[("content-type", "application/vnd.git-lfs+json")],
        v.to_string(),
    )
}

async fn serve_lfs(
    state: Arc<Mutex<Lfs>>,
    expected: String,
    req: Request<Incoming>,
) -> Response<FakeBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let mut s = state.lock().unwrap();
    s.seen
        .push((method.to_string(), path.clone(), auth.clone()));
    if auth != expected {
        return respond(401, &[("www-authenticate", "Basic realm=\"x\"")], "");
    }
    let (repo, rest) = path.split_once(".git/info/lfs").unwrap();
    let canonical = format!("https://dev.azure.com{repo}.git/info/lfs");
    match (method.as_str(), rest) {
        ("POST", "/objects/batch") => {
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let upload = req["operation"] == "upload";
            let objects: Vec<serde_json::Value> = req["objects"]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| {
                    let oid = o["oid"].as_str().unwrap();
                    let action = serde_json::json!({
                        "href": format!("{canonical}/objects/{oid}"),
                        "header": {"Authorization": UPSTREAM_TOKEN},
                        "expires_in": 3600,
                    });
                    let mut out =
                        serde_json::json!({"oid": oid, "size": o["size"], "authenticated": true});
                    if upload && !s.objects.contains_key(oid) {
                        out["actions"] = serde_json::json!({"upload": action});
                    } else if !upload {
                        out["actions"] = serde_json::json!({"download": action});
                    }
                    out
                })
                .collect();
            lfs_json(
                200,
                serde_json::json!({"transfer": "basic", "objects": objects}),
            )
        }
        ("PUT", r) if r.starts_with("/objects/") => {
            s.objects
                .insert(r["/objects/".len()..].to_string(), body.to_vec());
            respond(200, &[], "")
        }
        ("GET", r) if r.starts_with("/objects/") => match s.objects.get(&r["/objects/".len()..]) {
            Some(data) => respond(
                200,
                &[("content-type", "application/octet-stream")],
                Bytes::from(data.clone()),
            ),
            None => respond(404, &[], ""),
        },
        ("GET", "/locks") => lfs_json(200, serde_json::json!({"locks": s.locks})),
        ("POST", "/locks/verify") => {
            lfs_json(200, serde_json::json!({"ours": s.locks, "theirs": []}))
        }
        ("POST", "/locks") => {
            let req: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let lock = serde_json::json!({
                "id": (s.locks.len() + 1).to_string(),
                "path": req["path"],
                "locked_at": "2026-11-27T10:00:00Z",
                "owner": {"name": "T"},
            });
            s.locks.push(lock.clone());
            lfs_json(201, serde_json::json!({"lock": lock}))
        }
        _ => respond(404, &[], "no such LFS endpoint"),
    }
}

async fn git(dir: &Path, home: &Path, args: &[&str]) -> Output {
    let run = Command::new("git")
        .args(["-c", "credential.helper=", "-c", "protocol.version=2"])
        .args(args)
        .current_dir(dir)
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true")
        .env_remove("GIT_DIR")
        .kill_on_drop(true)
        .output();
    // git-lfs retries a refused transfer for a long time.
    tokio::time::timeout(Duration::from_secs(120), run)
        .await
        .unwrap_or_else(|_| panic!("git {args:?} did not finish"))
        .expect("git runs")
}

async fn git_ok(dir: &Path, home: &Path, args: &[&str]) -> String {
    let out = git(dir, home, args).await;
    assert!(
        out.status.success(),
        "git {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_lfs_pushes_clones_and_locks_through_the_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, work, clone, home) = (
        tmp.path().join("root"),
        tmp.path().join("work"),
        tmp.path().join("clone"),
        tmp.path().join("home"),
    );
    for d in [&root, &work, &home] {
        std::fs::create_dir_all(d).unwrap();
    }
    git_ok(&home, &home, &["lfs", "install", "--skip-repo"]).await;
    git_ok(
        &root,
        &home,
        &["init", "-q", "--bare", "-b", "main", "repo"],
    )
    .await;
    git_ok(&work, &home, &["init", "-q", "-b", "main"]).await;
    for (k, v) in [("user.email", "t@example.com"), ("user.name", "T")] {
        git_ok(&work, &home, &["config", k, v]).await;
    }
    git_ok(&work, &home, &["lfs", "track", "*.dat"]).await;
    let data: Vec<u8> = (0..3 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(work.join("big.dat"), &data).unwrap();
    git_ok(&work, &home, &["add", "."]).await;
    git_ok(&work, &home, &["commit", "-q", "-m", "an LFS object"]).await;

    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{PAT}"))
    );
    let lfs = Arc::new(Mutex::new(Lfs::default()));
    let (server_root, state, exp) = (root.clone(), lfs.clone(), expected.clone());
    let up = FakeUpstream::raw(move |req: Request<Incoming>| {
        let (root, state, exp) = (server_root.clone(), state.clone(), exp.clone());
        async move {
            if req.uri().path().contains(".git/info/lfs") {
                serve_lfs(state, exp, req).await
            } else {
                git_backend::serve(root, exp, req).await
            }
        }
    })
    .await;
    let mut config = support::config(&up.url());
    config.auth.mode = ado_auth_proxy::config::AuthMode::Pat;
    config.auth.pat = Some(ado_auth_proxy::config::Secret::new(PAT));
    let proxy = support::start(config).await;
    let remote = format!("http://{}/contoso/proj/_git/repo", proxy.proxy_addr);

    git_ok(&work, &home, &["push", "-q", &remote, "main"]).await;
    assert_eq!(
        lfs.lock().unwrap().objects.values().next().map(Vec::len),
        Some(data.len()),
        "the object was uploaded through the proxy"
    );

    let clone_s = clone.to_str().unwrap().to_string();
    git_ok(tmp.path(), &home, &["clone", "-q", &remote, &clone_s]).await;
    assert!(
        std::fs::read(clone.join("big.dat")).unwrap() == data,
        "the clone has the object's content, not its pointer"
    );

    // Locks.
    git_ok(&clone, &home, &["lfs", "lock", "big.dat"]).await;
    let listed = git_ok(&clone, &home, &["lfs", "locks"]).await;
    assert!(listed.contains("big.dat"), "{listed}");

    let seen = lfs.lock().unwrap().seen.clone();
    for (method, path, auth) in &seen {
        assert_eq!(
            auth, &expected,
            "{method} {path}: the proxy's credential, not the upstream's"
        );
    }
    for want in ["/objects/batch", "/locks"] {
        assert!(
            seen.iter().any(|(_, p, _)| p.ends_with(want)),
            "{want}: {seen:?}"
        );
    }
    assert!(
        seen.iter()
            .any(|(m, p, _)| m == "PUT" && p.contains("/objects/"))
    );
    assert!(
        seen.iter()
            .any(|(m, p, _)| m == "GET" && p.contains("/objects/"))
    );

    // What git-lfs reads: proxy hrefs, no upstream token.
    let batch = support::client()
        .post(format!("{remote}.git/info/lfs/objects/batch"))
        .header("accept", "application/vnd.git-lfs+json")
        .header("content-type", "application/vnd.git-lfs+json")
        .body(r#"{"operation":"download","objects":[{"oid":"x","size":1}]}"#)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        batch.contains(&format!("\"href\":\"{remote}.git/info/lfs/objects/x\"")),
        "{batch}"
    );
    assert!(
        !batch.contains("upstream-only-token") && !batch.contains("dev.azure.com"),
        "{batch}"
    );
}

/// A batch answer of `objects` objects, each with an Azure DevOps href
/// and the upstream's token in its `Authorization`.
pub(crate) fn lfs_batch(base: &str, objects: usize) -> String {
    let one = |i: usize| {
        format!(
            r#"{{"oid":"{i:064x}","size":3,"actions":{{"download":{{"href":"{base}/contoso/p/_git/r.git/info/lfs/objects/{i:064x}","header":{{"Authorization":"Basic UPSTREAM-SECRET-TOKEN"}}}}}}}}"#
        )
    };
    let list: Vec<String> = (0..objects).map(one).collect();
    format!(r#"{{"transfer":"basic","objects":[{}]}}"#, list.join(","))
}

/// A raw `POST path` with `content_type` and an empty JSON body, as
/// git-lfs sends its batch call but with no library to clean the path.
async fn raw_post(addr: std::net::SocketAddr, path: &str, content_type: &str) -> String {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: {content_type}\r\n\
         Content-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    support::raw_http(addr, &request).await
}

/// The base URL of `up` for hrefs, set once the fake listens.
type Base = Arc<std::sync::OnceLock<String>>;

#[tokio::test]
async fn a_batch_answer_is_rewritten_or_refused_whatever_diagnosis_makes_of_it() {
    // Answers that diagnosis inspects: a 2xx HTML answer on an `/_apis/`
    // path (read as a batch by its media type), a 203 larger than
    // diagnosis reads, and a refusal it quotes; and a batch answer on a
    // discovery path.
    let base: Base = Arc::default();
    let b = base.clone();
    let up = FakeUpstream::recording(move |r| {
        let base = b.get().unwrap();
        if r.uri.contains("html=1") {
            respond(200, &[("content-type", "text/html")], lfs_batch(base, 2))
        } else if r.uri.contains("resourceAreas") {
            respond(
                200,
                &[("content-type", "application/json")],
                lfs_batch(base, 2),
            )
        } else if r.uri.contains("refused=1") {
            let mut v: serde_json::Value = serde_json::from_str(&lfs_batch(base, 2)).unwrap();
            v["message"] =
                "TF400813: The user 'x' is not authorized to access this resource.".into();
            respond(403, &[("content-type", "application/json")], v.to_string())
        } else {
            respond(
                203,
                &[("content-type", "application/vnd.git-lfs+json")],
                lfs_batch(base, 1_000),
            )
        }
    })
    .await;
    base.set(up.url()).unwrap();
    let (proxy, _dir) = support::pat_proxy(&up, |_| {}).await;

    let resp = raw_post(
        proxy.proxy_addr,
        "/contoso/_apis/lfs/objects/batch?html=1",
        "application/vnd.git-lfs+json",
    )
    .await;
    assert!(!resp.contains("UPSTREAM-SECRET-TOKEN"), "{resp}");
    assert_eq!(support::status_of(&resp), 502, "{resp}");
    assert!(resp.contains("answer-not-rewritable"), "{resp}");

    let resp = raw_post(
        proxy.proxy_addr,
        "/contoso/p/_git/r.git/info/lfs/objects/batch",
        "application/vnd.git-lfs+json",
    )
    .await;
    assert!(
        !resp.contains("UPSTREAM-SECRET-TOKEN"),
        "{}",
        &resp[..resp.len().min(600)]
    );
    // The 203 is the sign-in refusal it is, in the proxy's words.
    assert_eq!(support::status_of(&resp), 401, "{resp}");

    // A discovery path is no exception to the media type.
    let resp = raw_post(
        proxy.proxy_addr,
        "/contoso/_apis/resourceAreas",
        "application/vnd.git-lfs+json",
    )
    .await;
    assert_eq!(support::status_of(&resp), 200, "{resp}");
    assert!(!resp.contains("UPSTREAM-SECRET-TOKEN"), "{resp}");

    // A refusal in Azure DevOps' JSON shape quotes the upstream's object:
    // not a batch answer's.
    let resp = raw_post(
        proxy.proxy_addr,
        "/contoso/p/_git/r.git/info/lfs/objects/batch?refused=1",
        "application/vnd.git-lfs+json",
    )
    .await;
    assert_eq!(support::status_of(&resp), 403, "{resp}");
    assert!(resp.contains("TF400813"), "{resp}");
    assert!(!resp.contains("UPSTREAM-SECRET-TOKEN"), "{resp}");
}

#[tokio::test]
async fn no_action_of_a_hostile_batch_answer_hands_out_the_proxys_credential() {
    // The upstream echoes the credential it received into actions on
    // Azure DevOps hosts the proxy does not route and on a foreign host,
    // mints a token for another, and signs a storage request its own way.
    let up = FakeUpstream::recording(|r| {
        let echoed = r.headers["authorization"].to_str().unwrap();
        let minted = "Bearer UPSTREAM-MINTED";
        let bearer_pat = "Bearer the-proxy-pat-0123456789";
        let signed = "SharedKey store:THIRD-PARTY-SIGNATURE";
        let actions = [
            (
                "https://contoso.vsblob.visualstudio.com/_apis/lfs/a1",
                "Authorization",
                echoed,
            ),
            (
                "https://contoso.unknown.visualstudio.com/lfs/a2",
                "Authorization",
                minted,
            ),
            (
                "https://unrouted.dev.azure.com/contoso/lfs/a3",
                "Authorization",
                minted,
            ),
            ("https://lfs.azure.com/contoso/a4", "Authorization", minted),
            ("https://evil.example/a5", "Authorization", echoed),
            ("https://evil.example/a6", "Authorization", bearer_pat),
            (
                "https://store.blob.core.windows.net/lfs/a7?sv=1",
                "Authorization",
                signed,
            ),
            // On the proxy, the credential under another name.
            (
                "https://dev.azure.com/contoso/p/_git/r.git/info/lfs/objects/a8",
                "X-Echo",
                echoed,
            ),
        ];
        let objects: Vec<serde_json::Value> = actions
            .iter()
            .enumerate()
            .map(|(i, (href, name, value))| {
                let actions =
                    serde_json::json!({"download": {"href": href, "header": {*name: value}}});
                serde_json::json!({"oid": i.to_string(), "size": 1, "actions": actions})
            })
            .collect();
        respond(
            200,
            &[("content-type", "application/vnd.git-lfs+json")],
            serde_json::json!({"transfer": "basic", "objects": objects}).to_string(),
        )
    })
    .await;
    let (proxy, _dir) = support::pat_proxy(&up, |_| {}).await;
    let resp = raw_post(
        proxy.proxy_addr,
        "/contoso/p/_git/r.git/info/lfs/objects/batch",
        "application/vnd.git-lfs+json",
    )
    .await;
    assert_eq!(support::status_of(&resp), 200, "{resp}");
    let sent = up.single().headers["authorization"]
        .to_str()
        .unwrap()
        .to_string();
    let body: serde_json::Value =
        serde_json::from_str(resp.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let header = |i: usize| body["objects"][i]["actions"]["download"]["header"].clone();
    for i in 0..6 {
        assert_eq!(header(i), serde_json::json!({}), "action {i}: {body}");
    }
    assert!(
        !resp.contains(&sent)
            && !resp.contains("the-proxy-pat")
            && !resp.contains("UPSTREAM-MINTED"),
        "{resp}"
    );
    assert_eq!(header(7), serde_json::json!({}), "{body}");
    // Storage that signs its own requests keeps its header.
    assert_eq!(
        header(6),
        serde_json::json!({"Authorization": "SharedKey store:THIRD-PARTY-SIGNATURE"})
    );
}

#[tokio::test]
async fn spellings_the_front_end_may_route_to_the_batch_call_are_refused() {
    let base: Base = Arc::default();
    let b = base.clone();
    let up = FakeUpstream::recording(move |_| {
        respond(
            200,
            &[("content-type", "application/json")],
            lfs_batch(b.get().unwrap(), 2),
        )
    })
    .await;
    base.set(up.url()).unwrap();
    let (proxy, _dir) = support::pat_proxy(&up, |_| {}).await;
    for path in [
        "/contoso/p/_git/r.git/info/lfs/objects/batch.",
        "/contoso/p/_git/r.git/info/lfs/objects/batch..",
        "/contoso/p/_git/r.git/info/lfs/objects/batch%2E",
        "/contoso/p/_git/r.git/info/lfs/objects/batch%20",
        "/contoso/p/_git/r.git/info/lfs/objects/batch.%20.",
        "/contoso/p/_git/r.git/info/lfs/objects/batch;x",
        "/contoso/p/_git/r/info/lfs/objects/batch;x",
        "/contoso/p/_git/r.git/info/lfs/objects/batch;x/",
        "/contoso/p/_git/r.git/info/lfs/objects/batch%3Bx",
        "/contoso/p/_git/r.git/info/lfs/objects;x/batch",
        "/contoso/p/_git/r.git/info/lfs./objects/batch",
        "/contoso/p/_git/r/info/lfs/objects//batch",
    ] {
        let resp = raw_post(proxy.proxy_addr, path, "application/json").await;
        assert!(!resp.contains("UPSTREAM-SECRET-TOKEN"), "{path}: {resp}");
        assert_eq!(support::status_of(&resp), 400, "{path}: {resp}");
    }
    assert!(up.requests().is_empty(), "{:?}", up.requests());
    // The call itself, and paths that only look alike, still pass.
    for path in [
        "/contoso/p/_git/r.git/info/lfs/objects/batch",
        "/contoso/p/_git/r.git/info/lfs/objects/batch/",
        "/contoso/p/_git/r.git/info/lfs/objects/batchx",
        "/contoso/p/_git/r.git/info/lfs/objects/x.batch.",
        "/contoso/_apis/x;y",
        "/contoso/_apis/v1.",
    ] {
        let resp = raw_post(proxy.proxy_addr, path, "application/json").await;
        assert_eq!(support::status_of(&resp), 200, "{path}: {resp}");
    }
}
