//! `ado-auth-proxy login`: the Entra device-code flow in a terminal, for
//! mode `service` with `source = "device-code"`. The refresh token lands,
//! sealed, in the configured session store, where the running proxy picks
//! it up within seconds (the embedded database is opened beside it in
//! redb's multi-writer mode) and a restarted one finds it again.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::oauth::idp::{
    Grant, IdpError, IdpHttp, TokenSet, lenient_seconds, parse_token_response,
};
use crate::session::Sessions;
use crate::session::record::{RECORD_VERSION, StoredService};

/// What the device-code identity asks for: Azure DevOps, and a refresh
/// token so the proxy can keep it fresh.
pub const DEVICE_SCOPE: &str =
    "499b84ac-1321-427f-aa17-267ca6975798/.default offline_access openid profile";

#[derive(Deserialize)]
struct DeviceCode {
    device_code: String,
    user_code: String,
    verification_uri: String,
    #[serde(default, deserialize_with = "lenient_seconds")]
    expires_in: Option<u64>,
    #[serde(default, deserialize_with = "lenient_seconds")]
    interval: Option<u64>,
    #[serde(default)]
    message: Option<String>,
}

/// Entra's endpoints for the configured tenant.
pub fn endpoint(config: &Config, name: &str) -> Result<Url, String> {
    crate::config::EntraApp::of(&config.auth).endpoint(name)
}

/// Runs the device-code flow, printing the instructions to `out`, and
/// stores the result. Returns who signed in.
pub async fn login(config: &Config, out: &mut (dyn Write + Send)) -> Result<String, String> {
    // What the provider says reaches the operator's terminal: no escape
    // sequences in it.
    signed_in(config, out)
        .await
        .map(|who| printable(&who))
        .map_err(|e| printable(&e))
}

/// `text` without control characters but line ends, for a terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\n' { ' ' } else { c })
        .collect()
}

async fn signed_in(config: &Config, out: &mut (dyn Write + Send)) -> Result<String, String> {
    let metrics =
        Arc::new(Metrics::new(prometheus::Registry::new()).map_err(|e| format!("metrics: {e}"))?);
    let plan = crate::config::plan(config).map_err(|e| e.to_string())?;
    let crate::config::AuthPlan::Service(crate::config::SourcePlan::DeviceCode { store }) = &plan
    else {
        return Err(
            "`ado-auth-proxy login` is for mode \"service\" with source = \"device-code\"".into(),
        );
    };
    let store = Sessions::open_for_tool(&config.session, store, metrics.clone())?;
    let http = IdpHttp::new(&crate::config::CallsPlan::of(config), metrics)?;
    let client_id = config.auth.client_id.clone().unwrap_or_default();
    let set = sign_in(&http, config, &client_id, out).await?;
    let refresh_token = set.refresh_token.ok_or(
        "the provider issued no refresh token; the app registration must allow public client \
         flows and the offline_access scope",
    )?;
    let upn = set
        .id_token
        .as_ref()
        .and_then(|t| claim(t.expose(), &["preferred_username", "upn", "email"]));
    let generation = store
        .get_service()
        .await
        .map_err(|e| e.to_string())?
        .map(|r| r.generation + 1)
        .unwrap_or(1);
    store
        .put_service(&StoredService {
            v: RECORD_VERSION,
            refresh_token: refresh_token.expose().to_string(),
            upn: upn.clone(),
            signed_in_ms: store.clock().now_ms(),
            generation,
        })
        .await
        .map_err(|e| format!("cannot store the sign-in: {e}"))?;
    Ok(upn.unwrap_or_else(|| "the signed-in account".into()))
}

/// The device-code flow itself: code, instructions, polling.
async fn sign_in(
    http: &IdpHttp,
    config: &Config,
    client_id: &str,
    out: &mut (dyn Write + Send),
) -> Result<TokenSet, String> {
    let code = device_code(http, config, client_id).await?;
    let text = code.message.clone().unwrap_or_else(|| {
        format!(
            "To sign in, open {} and enter the code {}",
            code.verification_uri, code.user_code
        )
    });
    let _ = writeln!(out, "{}", printable(&text));
    let _ = writeln!(out, "Waiting for the sign-in to complete...");
    let _ = out.flush();

    let mut interval = Duration::from_secs(code.interval.unwrap_or(5).max(1));
    let deadline =
        crate::clock::real_instant() + Duration::from_secs(code.expires_in.unwrap_or(900));
    let token_url = endpoint(config, "token")?;
    loop {
        tokio::time::sleep(interval).await;
        if crate::clock::real_instant() >= deadline {
            return Err("the code expired before the sign-in completed; run login again".into());
        }
        let req = http
            .client()
            .post(token_url.clone())
            .header("accept", "application/json")
            .form(&[
                ("grant_type", "urn:ietf:params:oauth:grant-type:device_code"),
                ("client_id", client_id),
                ("device_code", code.device_code.as_str()),
            ]);
        let (status, body) = match http.send(req, Grant::DeviceCode).await {
            Ok(answer) => answer,
            // A network hiccup: keep polling until the code expires.
            Err(e) => {
                let _ = writeln!(out, "(provider unreachable: {e}; still waiting)");
                continue;
            }
        };
        match parse_token_response(status, &body) {
            Ok(set) => return Ok(set),
            Err(IdpError::Rejected { body, .. }) if body.error == "authorization_pending" => {}
            // RFC 8628: wait 5 seconds longer from now on.
            Err(IdpError::Rejected { body, .. }) if body.error == "slow_down" => {
                interval += Duration::from_secs(5);
            }
            Err(IdpError::Rejected { body, .. }) => return Err(refusal(&body)),
            // A 5xx or 429 without anything to read: a passing failure.
            Err(IdpError::Status { status }) if status >= 500 || status == 429 => {
                let _ = writeln!(out, "(provider answered HTTP {status}; still waiting)");
            }
            Err(e) => return Err(format!("polling failed: {e}")),
        }
    }
}

/// Asks for a device code.
async fn device_code(
    http: &IdpHttp,
    config: &Config,
    client_id: &str,
) -> Result<DeviceCode, String> {
    let req = http
        .client()
        .post(endpoint(config, "devicecode")?)
        .header("accept", "application/json")
        .form(&[("client_id", client_id), ("scope", DEVICE_SCOPE)]);
    let (status, body) = http
        .send(req, Grant::DeviceCode)
        .await
        .map_err(|e| format!("device code request: {e}"))?;
    if status != 200 {
        let why = parse_token_response(status, &body)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(format!(
            "the provider refused the device code request: {why} (is auth.client_id a public \
             client with \"Allow public client flows\" enabled, and auth.tenant right?)"
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("unreadable device code answer: {e}"))
}

/// Why polling ended without a token (RFC 8628 §3.5 errors in words).
fn refusal(body: &crate::oauth::idp::TokenErrorBody) -> String {
    match body.error.as_str() {
        "authorization_declined" => "the sign-in was declined at the provider".into(),
        "expired_token" => "the code expired before the sign-in completed; run login again".into(),
        "bad_verification_code" => {
            "the provider does not know this device code; run login again".into()
        }
        _ => {
            let said = crate::oauth::idp::said_of(body);
            let mut text = format!(
                "the provider refused the sign-in: {}: {}",
                said.code(),
                said.message()
            );
            if let Some(why) = said.explained(crate::diagnose::TokenPath::SignIn) {
                text.push('\n');
                text.push_str(&why);
            }
            text
        }
    }
}

/// A string claim of a JWT (not verified; only shown).
pub fn claim(jwt: &str, names: &[&str]) -> Option<String> {
    let v: serde_json::Value = crate::assertion::jwt_payload(jwt)?;
    names
        .iter()
        .find_map(|n| v.get(*n).and_then(|c| c.as_str()).map(str::to_string))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_gets_no_escape_sequences() {
        assert_eq!(printable("a\u{1b}[2Jb\r\nc\0"), "a [2Jb \nc ");
    }
}
