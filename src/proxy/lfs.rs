//! git LFS through the proxy. The batch API (`POST
//! {repo}.git/info/lfs/objects/batch`) answers with an action per object
//! (`download`, `upload`, `verify`), each an absolute `href` and headers
//! for it. An `href` on an Azure DevOps host would send git-lfs around
//! the proxy, so it is rewritten onto the proxy, and the action's
//! `Authorization` header is dropped: the proxy attaches its own
//! credential to the transfer, and a token the upstream put there is not
//! the client's to see. An `href` elsewhere (a storage account with a
//! signed URL) is left as it is, with its headers. The locks API
//! (`{repo}.git/info/lfs/locks...`) carries no URLs and passes through
//! with the credential like any request.
//!
//! The batch call is recognised as Azure DevOps' front end routes it
//! (IIS: case-insensitive, a trailing slash tolerated, escapes decoded),
//! and by what git-lfs sends (`POST` with the LFS media type), so no
//! spelling of it reaches the upstream unrecognised. An answer that
//! cannot be rewritten (compressed, not JSON, over the limit) is not
//! passed on: the proxy fails closed with a 502 rather than hand the
//! upstream's `Authorization` to the caller.

use http::{HeaderMap, Method, header};
use serde_json::Value;

use super::packages::public_url_text;
use super::rewrite::UrlMap;

/// git-lfs' media type (`Accept` and `Content-Type` of its API calls).
const LFS_MEDIA_TYPE: &str = "application/vnd.git-lfs+json";

/// What rewriting a batch answer gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Batch {
    /// Hrefs were moved onto the proxy (and their `Authorization` dropped).
    Rewritten(Vec<u8>),
    /// Valid JSON with nothing to change: passes as it is.
    Unchanged,
    /// Not a JSON document: cannot be checked, so it does not pass.
    NotJson,
}

/// Whether a `method` request to `path` with `headers` is a batch API
/// call, as the front end reads the path or as git-lfs marks its calls.
pub fn is_batch(method: &Method, path: &str, headers: &HeaderMap) -> bool {
    if *method != Method::POST {
        return false;
    }
    let lfs_typed = [header::CONTENT_TYPE, header::ACCEPT].iter().any(|name| {
        headers.get_all(name).iter().any(|v| {
            v.to_str().is_ok_and(|v| {
                v.split(',').any(|t| {
                    t.split(';')
                        .next()
                        .is_some_and(|e| e.trim().eq_ignore_ascii_case(LFS_MEDIA_TYPE))
                })
            })
        })
    });
    if lfs_typed {
        return true;
    }
    // As the front end reads it (decoded); a path it would read
    // differently never reaches the upstream anyway.
    let read = super::path::check(path).unwrap_or(std::borrow::Cow::Borrowed(path));
    let read = read.trim_end_matches('/');
    const TAIL: &str = "/info/lfs/objects/batch";
    read.len() >= TAIL.len() && read[read.len() - TAIL.len()..].eq_ignore_ascii_case(TAIL)
}

/// The batch answer with every Azure DevOps `href` on the proxy.
pub fn rewrite_batch(map: &UrlMap, body: &[u8]) -> Batch {
    let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
        return Batch::NotJson;
    };
    let mut changed = false;
    let Some(objects) = doc.get_mut("objects").and_then(Value::as_array_mut) else {
        return Batch::Unchanged;
    };
    for object in objects {
        let Some(actions) = object.get_mut("actions").and_then(Value::as_object_mut) else {
            continue;
        };
        for action in actions.values_mut() {
            let Some(href) = action.get("href").and_then(Value::as_str) else {
                continue;
            };
            let Some(public) = public_url_text(map, href) else {
                continue;
            };
            action["href"] = Value::String(public);
            if let Some(headers) = action.get_mut("header").and_then(Value::as_object_mut) {
                headers.retain(|name, _| !name.eq_ignore_ascii_case("authorization"));
            }
            changed = true;
        }
    }
    match changed.then(|| serde_json::to_vec(&doc)) {
        Some(Ok(out)) => Batch::Rewritten(out),
        Some(Err(_)) => Batch::NotJson,
        None => Batch::Unchanged,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn map() -> Arc<UrlMap> {
        crate::proxy::rewrite::dev_azure_map()
    }

    #[test]
    fn azure_devops_hrefs_come_to_the_proxy_without_the_upstreams_token() {
        let batch = serde_json::json!({
            "transfer": "basic",
            "objects": [
                {"oid": "a1", "size": 3, "authenticated": true, "actions": {
                    "upload": {
                        "href": "https://dev.azure.com/contoso/proj/_git/repo.git/info/lfs/objects/a1",
                        "header": {"Authorization": "Bearer upstream-token", "X-Keep": "1"},
                        "expires_in": 3600
                    },
                    "verify": {"href": "https://contoso.visualstudio.com/proj/_git/repo.git/info/lfs/verify"}
                }},
                {"oid": "b2", "size": 4, "actions": {
                    "download": {
                        "href": "https://store.blob.core.windows.net/lfs/b2?sig=abc",
                        "header": {"x-ms-blob-type": "BlockBlob"}
                    }
                }},
                {"oid": "c3", "size": 5, "error": {"code": 404, "message": "Object does not exist"}}
            ]
        });
        let Batch::Rewritten(out) = rewrite_batch(&map(), batch.to_string().as_bytes()) else {
            panic!("rewritten");
        };
        let out: Value = serde_json::from_slice(&out).unwrap();
        let up = &out["objects"][0]["actions"]["upload"];
        assert_eq!(
            up["href"],
            "http://localhost:8080/contoso/proj/_git/repo.git/info/lfs/objects/a1"
        );
        assert_eq!(up["header"], serde_json::json!({"X-Keep": "1"}));
        assert_eq!(up["expires_in"], 3600);
        assert_eq!(
            out["objects"][0]["actions"]["verify"]["href"],
            "http://localhost:8080/contoso/proj/_git/repo.git/info/lfs/verify"
        );
        // Another host keeps its URL and headers.
        assert_eq!(out["objects"][1], batch["objects"][1]);
        assert_eq!(out["objects"][2], batch["objects"][2]);
        assert_eq!(rewrite_batch(&map(), b"not json"), Batch::NotJson);
        assert_eq!(
            rewrite_batch(&map(), br#"{"objects":[]}"#),
            Batch::Unchanged
        );
        assert_eq!(
            rewrite_batch(&map(), br#"{"message":"x"}"#),
            Batch::Unchanged
        );
    }

    #[test]
    fn the_batch_call_is_recognised_in_every_spelling_the_front_end_routes() {
        let none = HeaderMap::new();
        let post = Method::POST;
        for path in [
            "/o/p/_git/r.git/info/lfs/objects/batch",
            "/o/p/_git/r/info/lfs/objects/batch",
            "/o/p/_git/r.git/info/lfs/objects/Batch",
            "/o/p/_git/r.git/info/lfs/objects/BATCH",
            "/o/p/_git/r.git/INFO/LFS/OBJECTS/batch",
            "/o/p/_git/r.git/info/lfs/objects/batch/",
            "/o/p/_git/r.git/info/lfs/objects/batch//",
            "/o/p/_git/r.git/info/lfs/objects/b%61tch",
            "/o/p/_git/r.git/info/lfs/objects%2Fbatch",
            "/o/p/_git/r.git/info/lfs/objects/%62%41%54%43%48",
        ] {
            assert!(is_batch(&post, path, &none), "{path}");
        }
        for path in [
            "/o/p/_git/r.git/info/lfs/objects/batchx",
            "/o/p/_git/r.git/info/lfs/locks",
            "/o/_apis/projects",
        ] {
            assert!(!is_batch(&post, path, &none), "{path}");
        }
        assert!(!is_batch(
            &Method::GET,
            "/o/p/_git/r.git/info/lfs/objects/batch",
            &none
        ));
        // Any path, when git-lfs' media type says what it is.
        for (name, value) in [
            ("content-type", "application/vnd.git-lfs+json"),
            (
                "content-type",
                "Application/VND.git-lfs+JSON; charset=utf-8",
            ),
            (
                "accept",
                "application/json, application/vnd.git-lfs+json;q=0.9",
            ),
        ] {
            let mut h = HeaderMap::new();
            h.insert(name, value.parse().unwrap());
            assert!(
                is_batch(&post, "/o/p/_git/r.git/anything", &h),
                "{name}: {value}"
            );
        }
    }
}
