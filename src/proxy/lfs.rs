//! git LFS through the proxy. The batch API (`POST
//! {repo}.git/info/lfs/objects/batch`) answers with an action per object
//! (`download`, `upload`, `verify`), each an absolute `href` and headers
//! for it. An `href` on an Azure DevOps host would send git-lfs around
//! the proxy, so it is rewritten onto the proxy, and the action's
//! `Authorization` header is dropped: the proxy attaches its own
//! credential to the transfer, and a token the upstream put there is not
//! the client's to see. An `href` elsewhere is left as it is. Its
//! `Authorization` is kept only for storage outside Azure DevOps that
//! signs its own requests, and no header of any action may carry the
//! proxy's own credential (see [`rewrite_batch`]). The locks API
//! (`{repo}.git/info/lfs/locks...`) carries no URLs and passes through
//! with the credential like any request.
//!
//! The batch call is recognised as Azure DevOps' front end routes it
//! (IIS: case-insensitive, a trailing slash tolerated, escapes decoded),
//! and by what git-lfs sends (`POST` with the LFS media type), so no
//! spelling of it reaches the upstream unrecognised; spellings the front
//! end may also route there (`batch.`, `batch;x`) are refused by
//! `path::check`. An answer that
//! cannot be rewritten (compressed, not JSON, over the limit) is not
//! passed on: the proxy fails closed with a 502 rather than hand the
//! upstream's `Authorization` to the caller.

use base64::Engine;
use http::{HeaderMap, HeaderValue, Method, header};
use serde_json::Value;
use url::Url;

use super::packages::public_url_text;
use super::rewrite::UrlMap;

/// Azure DevOps' own domains: organizations, sibling services and the
/// blob stores behind LFS and Artifacts (`*.vsblob.visualstudio.com`,
/// `*.vsblob.vsassets.io`). A token for one of them is a token for the
/// organization, whether or not the proxy routes the host.
const AZURE_DEVOPS_DOMAINS: [&str; 3] = ["azure.com", "visualstudio.com", "vsassets.io"];

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
    super::path::names_lfs_batch(&read)
}

/// The batch answer with every Azure DevOps `href` on the proxy; an
/// action keeps its `Authorization` only when its `href` is
/// [`outside_azure_devops`], and no header that [`carries`] the proxy's
/// credential. `credential` is the `Authorization` the proxy sent with
/// the call.
pub fn rewrite_batch(map: &UrlMap, body: &[u8], credential: Option<&HeaderValue>) -> Batch {
    let Ok(mut doc) = serde_json::from_slice::<Value>(body) else {
        return Batch::NotJson;
    };
    let mut changed = false;
    let Some(objects) = doc.get_mut("objects").and_then(Value::as_array_mut) else {
        return Batch::Unchanged;
    };
    let credential = credential.and_then(|v| v.to_str().ok()).map(secret_forms);
    for object in objects {
        let Some(actions) = object.get_mut("actions").and_then(Value::as_object_mut) else {
            continue;
        };
        for action in actions.values_mut() {
            let href = action.get("href").and_then(Value::as_str);
            let public = href.and_then(|h| public_url_text(map, h));
            let foreign = public.is_none()
                && href
                    .and_then(|h| Url::parse(h).ok())
                    .is_some_and(|url| outside_azure_devops(map, &url));
            if let Some(public) = public {
                action["href"] = Value::String(public);
                changed = true;
            }
            if let Some(headers) = action.get_mut("header").and_then(Value::as_object_mut) {
                let before = headers.len();
                headers.retain(|name, value| {
                    let may_stay = !name.eq_ignore_ascii_case("authorization")
                        || (foreign && value.is_string());
                    may_stay && !carries(value, credential.as_deref())
                });
                changed |= headers.len() != before;
            }
        }
    }
    match changed.then(|| serde_json::to_vec(&doc)) {
        Some(Ok(out)) => Batch::Rewritten(out),
        Some(Err(_)) => Batch::NotJson,
        None => Batch::Unchanged,
    }
}

/// Whether `url` (not on the proxy) is outside Azure DevOps: only
/// storage there needs an `Authorization` of its own (a signature, never
/// the organization's token), so only an action to it keeps one. Azure
/// DevOps' domains and the configured upstreams' hosts are not outside.
fn outside_azure_devops(map: &UrlMap, url: &Url) -> bool {
    let Some(host) = url.host_str().map(|h| h.trim_end_matches('.')) else {
        return false;
    };
    !AZURE_DEVOPS_DOMAINS
        .iter()
        .any(|domain| on_domain(host, domain))
        && !map.is_upstream_host(url)
}

/// Whether an action's header `value` carries the proxy's credential
/// (`proxy`: its [`secret_forms`]), in any of its forms or inside a
/// longer text; such a header never reaches the client, whatever its
/// name or host.
fn carries(value: &Value, proxy: Option<&[String]>) -> bool {
    let Some(proxy) = proxy else {
        return false;
    };
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let forms = secret_forms(&text);
    proxy
        .iter()
        .any(|p| forms.contains(p) || (p.len() >= 8 && text.contains(p.as_str())))
}

/// Whether `host` is `domain` or a name under it (ASCII, any case).
fn on_domain(host: &str, domain: &str) -> bool {
    let (host, domain) = (host.as_bytes(), domain.as_bytes());
    let Some(at) = host.len().checked_sub(domain.len()) else {
        return false;
    };
    host[at..].eq_ignore_ascii_case(domain) && (at == 0 || host[at - 1] == b'.')
}

/// The forms the secret of an `Authorization` value can take in another
/// one: the whole value, what follows its scheme, and for Basic the
/// decoded `user:password` and the password alone.
fn secret_forms(value: &str) -> Vec<String> {
    let value = value.trim();
    let mut forms = vec![value.to_string()];
    if let Some((scheme, rest)) = value.split_once(' ') {
        let rest = rest.trim();
        forms.push(rest.to_string());
        if scheme.eq_ignore_ascii_case("basic")
            && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest)
            && let Ok(decoded) = String::from_utf8(decoded)
        {
            if let Some((_, password)) = decoded.split_once(':') {
                forms.push(password.to_string());
            }
            forms.push(decoded);
        }
    }
    forms.retain(|f| !f.is_empty());
    forms
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
        let Batch::Rewritten(out) = rewrite_batch(&map(), batch.to_string().as_bytes(), None)
        else {
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
        assert_eq!(rewrite_batch(&map(), b"not json", None), Batch::NotJson);
        assert_eq!(
            rewrite_batch(&map(), br#"{"objects":[]}"#, None),
            Batch::Unchanged
        );
        assert_eq!(
            rewrite_batch(&map(), br#"{"message":"x"}"#, None),
            Batch::Unchanged
        );
    }

    #[test]
    fn only_foreign_storage_keeps_an_authorization_and_never_the_proxys() {
        let proxy = HeaderValue::from_static("Basic OnRoZS1wcm94eS1wYXQ="); // ":the-proxy-pat"
        let keeps = |href: &str, auth: Value| {
            let batch = serde_json::json!({"objects": [{"oid": "a", "actions": {"download": {
            "href": href, "header": {
                "Authorization": auth,
                "X-Keep": "1",
                "X-Echo": "token the-proxy-pat",
                "X-List": ["Basic OnRoZS1wcm94eS1wYXQ="],
            }}}}]});
            let out = match rewrite_batch(&map(), batch.to_string().as_bytes(), Some(&proxy)) {
                Batch::Rewritten(out) => serde_json::from_slice::<Value>(&out).unwrap(),
                Batch::Unchanged => batch,
                Batch::NotJson => panic!("{href}"),
            };
            let header = &out["objects"][0]["actions"]["download"]["header"];
            assert_eq!(header["X-Keep"], "1", "{href}");
            assert!(header.get("X-Echo").is_none(), "{href}: {header}");
            assert!(header.get("X-List").is_none(), "{href}: {header}");
            header.get("Authorization").is_some()
        };
        for href in [
            "https://contoso.vsblob.visualstudio.com/lfs/a",
            "https://VSBLOBPROD1.vsblob.vsassets.io/a",
            "https://unrouted.dev.azure.com/contoso/a",
            "https://dev.azure.com./contoso/a",
            "https://anything.azure.com/a",
            "not a url",
        ] {
            assert!(!keeps(href, "Bearer minted".into()), "{href}");
        }
        let foreign = "https://store.blob.core.windows.net/lfs/a?sv=1";
        assert!(keeps(foreign, "SharedKey store:signature".into()));
        assert!(!keeps(foreign, serde_json::json!(["SharedKey s"])));
        for auth in [
            "Basic OnRoZS1wcm94eS1wYXQ=",
            "basic   OnRoZS1wcm94eS1wYXQ= ",
            "Bearer the-proxy-pat",
            "token=the-proxy-pat",
            "Basic dXNlcjp0aGUtcHJveHktcGF0", // "user:the-proxy-pat"
        ] {
            assert!(!keeps(foreign, auth.into()), "{auth}");
        }
        assert!(!keeps(
            "https://notazure.com.evil.example/a",
            "Basic OnRoZS1wcm94eS1wYXQ=".into()
        ));
        assert!(keeps("https://notazure.com/a", "SharedKey s".into()));
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
