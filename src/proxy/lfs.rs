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

use http::Method;
use serde_json::Value;

use super::packages::public_url_text;
use super::rewrite::UrlMap;

/// Whether `path` is a batch API call.
pub fn is_batch(method: &Method, path: &str) -> bool {
    *method == Method::POST && path.ends_with("/info/lfs/objects/batch")
}

/// The batch answer with every Azure DevOps `href` on the proxy; `None`
/// when it is not JSON or nothing changed.
pub fn rewrite_batch(map: &UrlMap, body: &[u8]) -> Option<Vec<u8>> {
    let mut doc: Value = serde_json::from_slice(body).ok()?;
    let mut changed = false;
    let objects = doc.get_mut("objects")?.as_array_mut()?;
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
    changed.then(|| serde_json::to_vec(&doc).ok()).flatten()
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
        let out: Value =
            serde_json::from_slice(&rewrite_batch(&map(), batch.to_string().as_bytes()).unwrap())
                .unwrap();
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
        assert!(rewrite_batch(&map(), b"not json").is_none());
        assert!(rewrite_batch(&map(), br#"{"objects":[]}"#).is_none());
    }
}
