//! An identity provider's refusal of a token request: which catalog case
//! its AADSTS codes (or `error`) are, for the two places the proxy asks
//! for tokens: a browser sign-in's code redemption (or the authorize
//! redirect's `error`), and the service identity's token calls. The same
//! code means the same thing in both, but the reader differs: a person at
//! a browser, or a program calling a service-mode proxy that acts as its
//! identity; each case names an entry for each.

use http::StatusCode;

use super::catalog::{Entry, entry};
use super::{Finding, Vars, aadsts_codes};

/// Where the refusal arrived: whose answer explains it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenPath {
    /// A browser sign-in (the callback), read by the person signing in.
    SignIn,
    /// The service identity's token call, read by the programs that call
    /// the proxy.
    Service,
}

/// What a family of AADSTS codes means. The order is the precedence
/// when one answer carries codes of several (`70002` beside `54005`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Case {
    /// The authorization code was redeemed before.
    Replayed,
    /// The user declined the permissions.
    Declined,
    /// Consent (user or admin) is missing.
    ConsentRequired,
    /// Multi-factor authentication or another interactive step.
    Interaction,
    /// Conditional Access requires a registered, managed or compliant
    /// device.
    DeviceState,
    /// Conditional Access blocked the token.
    ConditionalAccess,
    /// The client id is not known in the directory.
    AppNotInTenant,
    /// A federated assertion's issuer or subject matches no federated
    /// credential of the app.
    FederationMismatch,
    /// The client assertion is outside its valid time range.
    AssertionExpired,
    /// The client assertion is signed with a key the app does not have.
    AssertionKeyUnknown,
    /// The client secret or certificate is wrong or expired.
    CredentialInvalid,
    /// The scope the proxy asks for is not valid.
    InvalidScope,
    /// Azure DevOps is not among the app's API permissions.
    ResourceNotPermitted,
    /// Azure DevOps' service principal is not in the directory.
    ResourceNotFound,
    /// The redirect URI is not registered.
    RedirectMismatch,
    /// The account is not in the directory.
    WrongTenantUser,
    /// The app requires assignment and the account has none.
    NotAssigned,
    /// The grant (code or refresh token) expired or was revoked.
    GrantExpired,
    /// No managed identity is assigned (or the one named is not):
    /// IMDS's "Identity not found", App Service's "Unable to load the
    /// proper Managed Identity". No AADSTS code.
    IdentityMissing,
    /// The legacy Azure DevOps OAuth token endpoint says the flow is
    /// gone ([`super::LEGACY_RETIRED`]).
    LegacyRetired,
}

/// One AADSTS code the catalog explains.
#[derive(Debug)]
pub struct Code {
    /// The number, as in `error_codes`.
    pub number: u64,
    /// `AADSTS<number>`: the metric label and what answers quote.
    pub label: &'static str,
    /// What it means.
    pub case: Case,
}

macro_rules! codes {
    ($( $n:literal => $case:ident, )+) => {
        /// Every AADSTS code the catalog explains (Microsoft's "Microsoft
        /// Entra authentication and authorization error codes").
        pub static CODES: &[Code] = &[
            $( Code { number: $n, label: concat!("AADSTS", $n), case: Case::$case }, )+
        ];
    };
}

codes! {
    54005 => Replayed,
    65004 => Declined,
    65001 => ConsentRequired,
    90094 => ConsentRequired,
    90095 => ConsentRequired,
    50076 => Interaction,
    50079 => Interaction,
    50074 => Interaction,
    50158 => Interaction,
    50097 => DeviceState,
    50155 => DeviceState,
    53000 => DeviceState,
    530003 => DeviceState,
    53001 => ConditionalAccess,
    53002 => ConditionalAccess,
    53003 => ConditionalAccess,
    530032 => ConditionalAccess,
    700016 => AppNotInTenant,
    70021 => FederationMismatch,
    700211 => FederationMismatch,
    700213 => FederationMismatch,
    7002137 => FederationMismatch,
    7002138 => FederationMismatch,
    700024 => AssertionExpired,
    700027 => AssertionKeyUnknown,
    70011 => InvalidScope,
    650057 => ResourceNotPermitted,
    500011 => ResourceNotFound,
    7000215 => CredentialInvalid,
    7000222 => CredentialInvalid,
    7000218 => CredentialInvalid,
    50011 => RedirectMismatch,
    50020 => WrongTenantUser,
    90072 => WrongTenantUser,
    50105 => NotAssigned,
    70008 => GrantExpired,
    700082 => GrantExpired,
    50173 => GrantExpired,
    70043 => GrantExpired,
}

/// The `code` label of a failure whose provider named no code of
/// [`CODES`]: another AADSTS code, an OAuth `error` only, or no usable
/// answer at all.
pub const OTHER_AADSTS: &str = "aadsts-other";
/// See [`OTHER_AADSTS`].
pub const OAUTH_ERROR: &str = "oauth-error";
/// See [`OTHER_AADSTS`].
pub const UNAVAILABLE: &str = "unavailable";

/// The longest code or id an answer repeats from the provider (its body
/// is untrusted; the description's line is cut at 500).
const MAX_FIELD: usize = 100;

/// What the provider said when it refused: the fields of Entra's (and
/// OAuth's) error body. Untrusted text; answers escape it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProviderSaid {
    /// `error`.
    pub error: String,
    /// `error_codes`.
    pub codes: Vec<u64>,
    /// `error_description`.
    pub description: String,
    /// `suberror`.
    pub suberror: Option<String>,
    /// `trace_id`, `correlation_id` and `timestamp` when the body has
    /// them as fields; otherwise read from the description.
    pub ids: Vec<(String, String)>,
}

impl Case {
    /// The entry explaining this case on `path`.
    pub fn entry(self, path: TokenPath) -> &'static Entry {
        let (sign_in, service) = match self {
            Self::Replayed => ("code-replayed", "service-token-refused"),
            Self::Declined => ("consent-declined", "service-consent-required"),
            Self::ConsentRequired => ("consent-required", "service-consent-required"),
            Self::Interaction => ("mfa-required", "service-interaction-required"),
            Self::DeviceState => ("device-required", "service-device-required"),
            Self::ConditionalAccess => ("conditional-access-sign-in", "service-conditional-access"),
            Self::AppNotInTenant => ("app-not-in-tenant", "app-not-in-tenant"),
            Self::FederationMismatch => (
                "federated-credential-mismatch",
                "federated-credential-mismatch",
            ),
            Self::AssertionExpired => ("client-assertion-expired", "client-assertion-expired"),
            Self::AssertionKeyUnknown => (
                "client-assertion-key-unknown",
                "client-assertion-key-unknown",
            ),
            Self::CredentialInvalid => ("client-credential-invalid", "client-credential-invalid"),
            Self::InvalidScope => ("invalid-scope", "invalid-scope"),
            Self::ResourceNotPermitted => (
                "azure-devops-permission-missing",
                "azure-devops-permission-missing",
            ),
            Self::ResourceNotFound => (
                "azure-devops-not-in-directory",
                "azure-devops-not-in-directory",
            ),
            Self::RedirectMismatch => ("redirect-uri-mismatch", "service-token-refused"),
            Self::WrongTenantUser => ("wrong-tenant-user", "service-account-refused"),
            Self::NotAssigned => ("user-not-assigned", "service-account-refused"),
            Self::GrantExpired => ("sign-in-expired", "service-sign-in-expired"),
            Self::IdentityMissing => (
                "managed-identity-not-assigned",
                "managed-identity-not-assigned",
            ),
            // Legacy OAuth signs users in only; no service source uses it.
            Self::LegacyRetired => ("legacy-oauth-retired", "service-token-refused"),
        };
        entry(match path {
            TokenPath::SignIn => sign_in,
            TokenPath::Service => service,
        })
    }
}

// === impl ProviderSaid ===

impl ProviderSaid {
    /// Every AADSTS number: `error_codes`, then those in the description.
    pub fn all_codes(&self) -> Vec<u64> {
        let mut all = self.codes.clone();
        for n in aadsts_codes(&self.description) {
            if !all.contains(&n) {
                all.push(n);
            }
        }
        all
    }

    /// The catalog's codes among them, most telling first.
    fn known(&self) -> Option<&'static Code> {
        let all = self.all_codes();
        CODES
            .iter()
            .filter(|c| all.contains(&c.number))
            .min_by_key(|c| c.case)
    }

    /// What it means, if the catalog knows.
    pub fn case(&self) -> Option<Case> {
        if self.error == super::LEGACY_RETIRED {
            return Some(Case::LegacyRetired);
        }
        match self.known() {
            Some(c) => Some(c.case),
            None if self.error == "access_denied" => Some(Case::Declined),
            None if super::said::IDENTITY_MISSING
                .iter()
                .any(|p| self.description.contains(p)) =>
            {
                Some(Case::IdentityMissing)
            }
            None => None,
        }
    }

    /// The bounded `code` label for metrics: `AADSTS<n>` for a code of
    /// [`CODES`], else [`OTHER_AADSTS`] or [`OAUTH_ERROR`].
    pub fn code_label(&self) -> &'static str {
        match self.known() {
            Some(c) => c.label,
            None if !self.all_codes().is_empty() => OTHER_AADSTS,
            None => OAUTH_ERROR,
        }
    }

    /// The code answers quote: `AADSTS<n>` (the first), else `error`.
    pub fn code(&self) -> String {
        match self.all_codes().first() {
            Some(n) => format!("AADSTS{n}"),
            None if self.error.is_empty() => "no error code".to_string(),
            None => self.error.chars().take(MAX_FIELD).collect(),
        }
    }
    /// The catalog's explanation as one paragraph of text (title, cause,
    /// fix for whoever reads it), for a terminal: the device-code sign-in
    /// of `ado-auth-proxy login`, read by the operator.
    pub fn explained(&self, path: TokenPath) -> Option<String> {
        let e = self.case()?.entry(path);
        let vars = Vars {
            code: Some(self.code()),
            ..Vars::default()
        };
        let fix = match e.fixer {
            super::Fixer::User => e.user_fix,
            _ => e.admin_fix,
        };
        let fill = |t| super::render::fill(t, &vars);
        Some(format!("{}. {} {}", e.title, fill(e.cause), fill(fix)))
    }

    /// The provider's own words: the description's first line (the
    /// trace lines follow it), else `error`; at most 500 characters.
    pub fn message(&self) -> String {
        let first = self
            .description
            .split(['\r', '\n'])
            .next()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or(&self.error);
        first.chars().take(500).collect()
    }

    /// The trace and correlation ids (and timestamp) Microsoft support
    /// asks for.
    pub fn correlation(&self) -> Vec<(String, String)> {
        let ids = if self.ids.is_empty() {
            super::ids_in_description(&self.description)
        } else {
            self.ids.clone()
        };
        ids.into_iter()
            .map(|(k, v)| (k, v.chars().take(MAX_FIELD).collect()))
            .collect()
    }

    /// The catalog's explanation on `path`, answered with `status`. On
    /// the service path every refusal has one (an unknown code gets the
    /// general `service-token-refused`); at sign-in only known cases do.
    pub fn finding(&self, path: TokenPath, status: StatusCode, vars: Vars) -> Option<Finding> {
        let entry = match (self.case(), path) {
            (Some(case), _) => case.entry(path),
            (None, TokenPath::Service) => entry("service-token-refused"),
            (None, TokenPath::SignIn) => return None,
        };
        Some(Finding {
            entry,
            status,
            message: Some(self.message()),
            type_key: None,
            original: None,
            said_by: match path {
                TokenPath::SignIn => "The sign-in provider",
                TokenPath::Service => "The identity provider",
            },
            ids: self.correlation(),
            retry_after: None,
            vars: Vars {
                code: Some(self.code()),
                ..vars
            },
        })
    }
}

/// The service identity's failing acquisitions: what the last one was
/// told, and since when they fail. Kept until a token is acquired.
#[derive(Debug, Clone)]
pub struct ServiceFailure {
    /// The provider's refusal; `None` when it gave no usable answer
    /// (unreachable, timeout, 5xx without a body).
    pub said: Option<ProviderSaid>,
    /// Asking again can succeed without anyone changing anything.
    pub retryable: bool,
    /// The proxy's account of the last attempt (never a secret).
    pub detail: String,
    /// The first failure of this kind in a row.
    pub since: std::time::SystemTime,
}

impl ServiceFailure {
    /// The bounded `code` label: `AADSTS<n>` of [`CODES`],
    /// [`OTHER_AADSTS`], [`OAUTH_ERROR`] or [`UNAVAILABLE`].
    pub fn code_label(&self) -> &'static str {
        self.said
            .as_ref()
            .map_or(UNAVAILABLE, ProviderSaid::code_label)
    }

    /// What `/.auth/me` shows: the provider's code, words and ids, the
    /// catalog's diagnosis, and since when (a token call's refusal
    /// carries no secret).
    pub fn describe(&self) -> serde_json::Value {
        let said = self.said.as_ref();
        let finding = self.finding();
        let ids: serde_json::Map<String, serde_json::Value> = said
            .map(ProviderSaid::correlation)
            .unwrap_or_default()
            .into_iter()
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        serde_json::json!({
            "code": said.map(ProviderSaid::code),
            "error": said.map(|s| s.error.clone()),
            "message": said.map(ProviderSaid::message),
            "suberror": said.and_then(|s| s.suberror.clone()),
            "diagnosis": finding.as_ref().map(|d| d.entry.id),
            "fixer": finding.as_ref().map(|d| d.entry.fixer.as_str()),
            "retryable": self.retryable,
            "detail": self.detail,
            "since": humantime::format_rfc3339_seconds(self.since).to_string(),
            "ids": ids,
        })
    }

    /// The catalog's explanation for the programs calling the proxy: 503
    /// while retrying can help (the caller adds `Retry-After`), 502 when
    /// only an operator or administrator can fix it. `None` without a
    /// provider's refusal to explain.
    pub fn finding(&self) -> Option<Finding> {
        let status = if self.retryable {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_GATEWAY
        };
        let said = self.said.as_ref()?;
        let mut finding = said.finding(TokenPath::Service, status, Vars::default())?;
        if self.retryable && said.case().is_none() {
            // Waiting helps: nobody has anything to fix.
            finding.entry = entry("service-provider-busy");
        }
        finding.ids.push((
            "Failing since".to_string(),
            humantime::format_rfc3339_seconds(self.since).to_string(),
        ));
        Some(finding)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diagnose::{CATALOG, Caller};

    /// The AADSTS numbers a text names: `AADSTS50076, 50079 or 50158`,
    /// `AADSTS53000-53003` (a range).
    fn named_codes(text: &str) -> Vec<u64> {
        let mut out = Vec::new();
        for (i, _) in text.match_indices("AADSTS") {
            let tail = &text[i + 6..];
            let list: String = tail
                .chars()
                .take_while(|c| c.is_ascii_digit() || ", -–or".contains(*c))
                .collect();
            for part in list
                .split([',', ' '])
                .filter(|p| !p.is_empty() && *p != "or")
            {
                match part.split_once(['-', '–']) {
                    Some((a, b)) => {
                        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
                        out.extend(a..=b);
                    }
                    None => out.push(part.parse().unwrap()),
                }
            }
        }
        out
    }

    /// The catalog's texts and [`CODES`] name the same codes, each
    /// code's label is its number, and each code has an entry on both
    /// paths that applies to whoever reads it there.
    #[test]
    fn every_code_the_catalog_names_is_explained_on_both_paths() {
        let mut named: Vec<u64> = CATALOG
            .iter()
            .flat_map(|e| named_codes(&format!("{} {}", e.cause, e.title)))
            .collect();
        named.sort_unstable();
        named.dedup();
        let mut table: Vec<u64> = CODES.iter().map(|c| c.number).collect();
        table.sort_unstable();
        assert_eq!(named, table, "codes the catalog's texts name vs CODES");
        for c in CODES {
            assert_eq!(c.label, format!("AADSTS{}", c.number));
            let sign_in = c.case.entry(TokenPath::SignIn);
            assert!(
                sign_in.applies.has(Caller::EntraUser) || sign_in.applies.has(Caller::DeviceUser),
                "{} at sign-in: {}",
                c.label,
                sign_in.id
            );
            let service = c.case.entry(TokenPath::Service);
            for caller in [
                Caller::ServicePrincipal,
                Caller::ManagedIdentity,
                Caller::DeviceUser,
            ] {
                assert!(
                    service.applies.has(caller),
                    "{} on the service path: {} for {caller:?}",
                    c.label,
                    service.id
                );
            }
        }
    }

    #[test]
    fn the_most_telling_code_wins_and_labels_stay_bounded() {
        let said = |error: &str, codes: &[u64], description: &str| ProviderSaid {
            error: error.into(),
            codes: codes.to_vec(),
            description: description.into(),
            ..ProviderSaid::default()
        };
        // 70002 beside 54005: the replay.
        let s = said("invalid_grant", &[70002, 54005], "");
        assert_eq!(s.case(), Some(Case::Replayed));
        assert_eq!(s.code_label(), "AADSTS54005");
        // A code only in the description counts.
        let s = said(
            "invalid_client",
            &[],
            "AADSTS7000215: Invalid client secret provided.",
        );
        assert_eq!(s.code_label(), "AADSTS7000215");
        assert_eq!(s.code(), "AADSTS7000215");
        assert_eq!(
            s.message(),
            "AADSTS7000215: Invalid client secret provided."
        );
        // Unknown codes and bare errors share one label each.
        assert_eq!(
            said("invalid_grant", &[123_456_789], "").code_label(),
            OTHER_AADSTS
        );
        assert_eq!(
            said("invalid_request", &[], "Identity not found").code_label(),
            OAUTH_ERROR
        );
        let unavailable = ServiceFailure {
            said: None,
            retryable: true,
            detail: "connection refused".into(),
            since: std::time::UNIX_EPOCH,
        };
        assert_eq!(unavailable.code_label(), UNAVAILABLE);
        assert!(unavailable.finding().is_none(), "nothing to explain");
        // Hostile lengths are cut.
        let long = "x".repeat(100_000);
        let s = ProviderSaid {
            error: long.clone(),
            description: format!("{long}\r\nTrace ID: {long}"),
            ..ProviderSaid::default()
        };
        assert_eq!(s.code().len(), MAX_FIELD);
        assert_eq!(s.message().len(), 500);
        assert_eq!(s.correlation()[0].1.len(), MAX_FIELD);
        assert_eq!(s.code_label(), OAUTH_ERROR);
        // access_denied without a code is a declined consent.
        assert_eq!(said("access_denied", &[], "").case(), Some(Case::Declined));
    }

    /// On the service path every provider refusal is explained (unknown
    /// ones generally), with the code, the ids and since when; at
    /// sign-in only the catalog's cases are.
    #[test]
    fn a_service_refusal_always_has_an_explanation_with_its_ids() {
        let said = ProviderSaid {
            error: "invalid_grant".into(),
            codes: vec![9_999_999],
            description: "AADSTS9999999: Something new.\r\nTrace ID: t-1\r\nCorrelation ID: c-2\r\nTimestamp: 2026-11-27 04:00:00Z".into(),
            ..ProviderSaid::default()
        };
        assert!(
            said.finding(TokenPath::SignIn, StatusCode::BAD_REQUEST, Vars::default())
                .is_none()
        );
        let failure = ServiceFailure {
            said: Some(said),
            retryable: false,
            detail: String::new(),
            since: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
        };
        let f = failure.finding().unwrap();
        assert_eq!(f.entry.id, "service-token-refused");
        assert_eq!(f.status, StatusCode::BAD_GATEWAY);
        let answer = f.into_answer();
        assert!(answer.cause.contains("AADSTS9999999"), "{}", answer.cause);
        let ids: Vec<&str> = answer.ids.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            ids,
            ["Trace ID", "Correlation ID", "Timestamp", "Failing since"]
        );
        assert_eq!(answer.ids[3].1, "2027-01-15T08:00:00Z");
    }
}
