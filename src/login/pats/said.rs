//! What Azure DevOps' PAT lifecycle API said when it refused: its
//! policies and errors in words a user can act on.

use http::StatusCode;

use crate::error::TokenError;

/// Why Azure DevOps' PAT lifecycle API refused a request for `org`
/// (`status`, its `body`): a PAT policy named as the catalog explains it,
/// the permissions the API needs for a 401 or 403, else its words.
pub(super) fn refusal(org: &str, status: StatusCode, bytes: &[u8]) -> TokenError {
    let message = serde_json::from_slice::<serde_json::Value>(bytes)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(bytes).trim().to_string());
    let code = status.as_u16();
    if let Some(policy) = crate::diagnose::pat_policy(&message) {
        let vars = crate::diagnose::Vars {
            code: Some(policy.to_string()),
            org: Some(org.to_string()),
            ..crate::diagnose::Vars::default()
        };
        let entry = crate::diagnose::catalog::entry("pat-policy-refused");
        return TokenError::BadRequest(format!(
            "Azure DevOps refused the PAT request for organization {org} (HTTP {code}: \
             {policy}): {}",
            crate::diagnose::entry_text(entry, &vars)
        ));
    }
    let said = if message.is_empty() {
        String::new()
    } else {
        format!(": {}", message.chars().take(300).collect::<String>())
    };
    if matches!(code, 401 | 403) {
        return TokenError::BadRequest(format!(
            "Azure DevOps refused the PAT request for organization {org} (HTTP {code}{said}): \
             the sign-in token was not accepted by the PAT lifecycle API. The proxy's app \
             registration needs the Azure DevOps delegated permissions vso.pats and \
             vso.pats_manage (required since June 2025; user_impersonation was enough before) \
             with admin consent, and your account needs access to the organization; sign out \
             and in again after the permissions change"
        ));
    }
    TokenError::BadRequest(format!(
        "Azure DevOps refused the PAT request for organization {org} (HTTP {code}{said}): the \
         organization may restrict PAT creation, your account may have no access to it, or \
         only Entra tokens are accepted"
    ))
}

/// What a `patTokenError` means and how to get past it (the
/// `SessionTokenError` values of the API's specification).
pub(super) fn pat_error(error: &str, days: u64) -> String {
    let why = match error {
        "globalPatPolicyViolation" => {
            "your directory's policy forbids PATs for all organizations; this page only makes \
             organization-scoped ones, so the policy names this one too"
                .to_string()
        }
        "fullScopePatPolicyViolation" => {
            "your directory's policy forbids full-scoped PATs: pick specific scopes".to_string()
        }
        "failedToReadTenantPolicy" => {
            "Azure DevOps could not read your directory's PAT policies; try again later (if it \
             persists, the organization's Microsoft Entra connection is broken)"
                .to_string()
        }
        "disablePatCreationPolicyViolation" => {
            "the organization's \"Restrict personal access token (PAT) creation\" policy does \
             not allow you to create one: ask an organization administrator to add you to its \
             allowlist"
                .to_string()
        }
        "patLifespanPolicyViolation" => {
            format!("{days} days is longer than your directory's policy allows: pick fewer days")
        }
        "invalidScope" => "a scope is not valid".to_string(),
        "invalidValidTo" => "the expiry date is not accepted".to_string(),
        "invalidDisplayName" | "displayNameRequired" => "the name is not accepted".to_string(),
        "accessDenied" => {
            "Azure DevOps denied it (the organization may restrict PAT creation)".to_string()
        }
        "invalidClientType" | "invalidTokenType" | "invalidAudience" => {
            "the API accepts only Microsoft Entra tokens".to_string()
        }
        other => format!("Azure DevOps answered {other}"),
    };
    format!("The personal access token was not created: {why}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(status: u16, body: &str) -> String {
        match refusal(
            "contoso",
            StatusCode::from_u16(status).unwrap(),
            body.as_bytes(),
        ) {
            TokenError::BadRequest(why) => why,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refusal_names_the_policy_the_permissions_or_the_words() {
        let why = said(400, r#"{"message":"DisablePatCreationPolicyViolation"}"#);
        assert!(
            why.contains("HTTP 400: DisablePatCreationPolicyViolation") && why.contains("contoso"),
            "{why}"
        );
        let why = said(403, "");
        assert!(
            why.contains("HTTP 403)") && why.contains("vso.pats_manage"),
            "{why}"
        );
        let why = said(404, &format!("{}x", "y".repeat(400)));
        assert!(why.contains("may restrict PAT creation"), "{why}");
        assert!(!why.contains(&"y".repeat(301)), "the words are cut");
    }
}
