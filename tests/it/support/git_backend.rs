//! Azure DevOps' git smart-HTTP endpoints, faked with the real
//! `git http-backend` CGI: `/{org}/{project}/_git/{repo}/...` is served from
//! the bare repository `{root}/{repo}`. Bodies stream through the CGI's
//! stdin and stdout; nothing is buffered whole.

use std::path::PathBuf;
use std::process::Stdio;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Incoming;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::upstream::{FakeBody, respond};

/// Serves one git request from `root`, demanding `Authorization: expected`
/// first, as Azure DevOps does (401 with its Basic challenge otherwise).
pub async fn serve(root: PathBuf, expected: String, req: Request<Incoming>) -> Response<FakeBody> {
    serve_checked(root, move |auth| auth == expected, req).await
}

/// [`serve`], accepting the `Authorization` values `accept` approves.
pub async fn serve_checked(
    root: PathBuf,
    accept: impl Fn(&str) -> bool,
    req: Request<Incoming>,
) -> Response<FakeBody> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !accept(auth) {
        return respond(
            401,
            &[
                (
                    "www-authenticate",
                    "Basic realm=\"https://tfsprodweu5.visualstudio.com/\"",
                ),
                (
                    "x-tfs-serviceerror",
                    "TF400813%3a+Resource+not+available+for+anonymous+access.",
                ),
            ],
            "",
        );
    }
    let path = req.uri().path().to_string();
    let Some(i) = path.find("/_git/") else {
        return respond(404, &[], "not a git path");
    };
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string()
    };
    let mut cmd = Command::new("git");
    cmd.arg("http-backend")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_PROJECT_ROOT", &root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", &path[i + "/_git".len()..])
        .env("REQUEST_METHOD", req.method().as_str())
        .env("QUERY_STRING", req.uri().query().unwrap_or(""))
        .env("CONTENT_TYPE", header("content-type"))
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_USER", "tester")
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.receivepack")
        .env("GIT_CONFIG_VALUE_0", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let length = header("content-length");
    if !length.is_empty() {
        cmd.env("CONTENT_LENGTH", length);
    }
    let mut child = cmd.spawn().expect("git http-backend runs");
    let mut stdin = child.stdin.take().unwrap();
    let mut body = req.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data()
                && stdin.write_all(&data).await.is_err()
            {
                break;
            }
        }
        // Dropping stdin tells the CGI the body ended.
    });

    let mut out = BufReader::with_capacity(64 * 1024, child.stdout.take().unwrap());
    let mut resp = Response::new(());
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).await.unwrap_or(0) == 0 {
            break;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("200");
            *resp.status_mut() = StatusCode::from_bytes(code.as_bytes()).unwrap();
        } else {
            resp.headers_mut().append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
    }
    let frames = futures_util::stream::unfold((out, child), |(mut out, child)| async move {
        let mut buf = vec![0u8; 64 * 1024];
        match out.read(&mut buf).await {
            Ok(0) | Err(_) => None,
            Ok(n) => {
                buf.truncate(n);
                let frame = http_body::Frame::data(Bytes::from(buf));
                Some((
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(frame),
                    (out, child),
                ))
            }
        }
    });
    resp.map(|()| BodyExt::boxed(StreamBody::new(frames)))
}
