//! A fake Microsoft Graph at `{idp}/graph`: `POST /v1.0/me/checkMemberGroups`
//! as Graph answers it (the asked ids the user is a member of, at most 20
//! per call), for a bearer the fake issued for Graph's `User.Read` only.

use super::*;

/// What the fake Graph knows and saw.
#[derive(Default)]
pub(super) struct GraphState {
    /// The user's groups (transitive), lowercase.
    pub groups: Vec<String>,
    /// Answer this status instead (403: the permission is missing).
    pub status: Option<u16>,
    /// The `groupIds` of every call, in order.
    pub asked: Vec<Vec<String>>,
}

/// Whether `scope` is a token request for Graph (`{graph_url}/User.Read`).
pub(super) fn is_graph_scope(scope: &str) -> bool {
    scope.ends_with("/graph/User.Read")
}

pub(super) fn check_member_groups(r: &Recorded, s: &mut State) -> http::Response<FakeBody> {
    let auth = r
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let for_graph = s
        .token_scopes
        .get(auth)
        .is_some_and(|sc| is_graph_scope(sc));
    let live = s
        .access_tokens
        .get(auth)
        .is_some_and(|(_, exp, _)| *exp > s.clock.now());
    if !for_graph || !live {
        return json_resp(
            401,
            json!({"error": {"code": "InvalidAuthenticationToken", "message": "Access token validation failure. Invalid audience."}}),
        );
    }
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
    let ids: Vec<String> = body["groupIds"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    s.graph.asked.push(ids.clone());
    if let Some(status) = s.graph.status {
        return json_resp(
            status,
            json!({"error": {"code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}}),
        );
    }
    if ids.len() > 20 {
        return json_resp(
            400,
            json!({"error": {"code": "Request_BadRequest", "message": "Too many groupIds."}}),
        );
    }
    let member: Vec<&String> = ids
        .iter()
        .filter(|id| s.graph.groups.contains(&id.to_ascii_lowercase()))
        .collect();
    json_resp(
        200,
        json!({"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(Edm.String)", "value": member}),
    )
}
