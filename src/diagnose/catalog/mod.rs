//! The catalog of recognised failures, as data: one entry per case with a
//! stable id, a title, the cause, what the user can do, what an
//! administrator can do, and a documentation link. Placeholders, filled
//! by `render::fill`: `{org}` (the organization of the request),
//! `{redirect_uri}` and `{admin_consent_url}` (the proxy's values),
//! `{resource_tenant}` and `{user_tenant}` (the directories of a
//! wrong-directory refusal).
//!
//! The same upstream answer means different things for different
//! credentials: each entry says which [`Caller`]s it [`Applies`] to
//! (`callers.rs`).

pub use super::callers::{Applies, Caller};

/// Who can fix the problem; decides the wording and the status for git.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fixer {
    /// The user (sign in again, use another account, wait).
    User,
    /// An administrator of the organization or tenant.
    Admin,
    /// The operator of this proxy (its registration or secret).
    Operator,
}

/// One recognised case.
#[derive(Debug)]
pub struct Entry {
    /// Stable id: metric label, `adoAuthProxy.id`, problem type.
    pub id: &'static str,
    /// One line.
    pub title: &'static str,
    /// What happened.
    pub cause: &'static str,
    /// What the user can do.
    pub user_fix: &'static str,
    /// What an administrator can do.
    pub admin_fix: &'static str,
    /// Where to read more.
    pub docs: &'static str,
    /// Whether signing in again may help (a link is offered).
    pub sign_in_again: bool,
    /// Who must act.
    pub fixer: Fixer,
    /// Whose failures it explains.
    pub applies: Applies,
}

const AUTH_DOCS: &str = "https://learn.microsoft.com/azure/devops/organizations/accounts/faq-user-and-permissions-management";
const POLICY_DOCS: &str = "https://learn.microsoft.com/azure/devops/organizations/accounts/change-application-access-policies";
const CA_DOCS: &str = "https://learn.microsoft.com/azure/devops/organizations/accounts/change-application-access-policies#cap-support-on-azure-devops";
const PERMISSION_DOCS: &str =
    "https://learn.microsoft.com/azure/devops/organizations/security/troubleshoot-permissions";
const RATE_DOCS: &str = "https://learn.microsoft.com/azure/devops/integrate/concepts/rate-limits";
const ENTRA_ERRORS: &str =
    "https://learn.microsoft.com/entra/identity-platform/reference-error-codes";
const CONSENT_DOCS: &str =
    "https://learn.microsoft.com/entra/identity/enterprise-apps/grant-admin-consent";

/// Every case, upstream (Azure DevOps) first, then sign-in (Entra).
pub static CATALOG: &[Entry] = &[
    // --- Azure DevOps answers ---
    Entry {
        id: "token-not-accepted",
        title: "Azure DevOps did not accept the credential",
        cause: "Azure DevOps answered as if no one were signed in (TF400813, a sign-in page, or a bare 401): the token was expired, revoked, issued for another directory, or sent in a form it ignores.",
        user_fix: "Sign in again. If it keeps happening, make sure you sign in with the account that belongs to the organization.",
        admin_fix: "Check that the proxy's app registration requests the Azure DevOps scope (499b84ac-1321-427f-aa17-267ca6975798) and that the tenant is the organization's.",
        docs: AUTH_DOCS,
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::USERS,
    },
    Entry {
        id: "claims-challenge",
        title: "Azure DevOps revoked the token before it expired",
        cause: "Azure DevOps refused the access token with a claims challenge (Continuous Access Evaluation): your account was disabled or its password reset, your sessions were revoked, or your network location no longer meets the organization's Conditional Access policy. The proxy asked the identity provider for a token with the demanded claims once; this request could not be sent again with it.",
        user_fix: "Send the request again. If it is refused again, sign in again (the sign-in may ask for multi-factor authentication or a compliant location).",
        admin_fix: "Check the user's sign-in logs in Entra (Conditional Access, Continuous Access Evaluation) for the correlation id; the proxy counts these in ado_proxy_claims_challenges_total.",
        docs: "https://learn.microsoft.com/entra/identity/conditional-access/concept-continuous-access-evaluation",
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::USERS,
    },
    Entry {
        id: "service-claims-challenge",
        title: "Azure DevOps revoked the proxy's token before it expired",
        cause: "Azure DevOps refused the service identity's access token with a claims challenge (Continuous Access Evaluation): the identity was disabled or its credentials changed, or the proxy's network location no longer meets a Conditional Access policy. A client-credentials, workload-identity or device-code source gets a token with the demanded claims and sends the request again once; this source cannot (a managed identity), or the new token was refused too.",
        user_fix: "Send the request again in a minute; if it keeps failing, tell the proxy's operator.",
        admin_fix: "Check the identity's sign-in logs in Entra (Conditional Access for workload identities, Continuous Access Evaluation) and whether it is still enabled; the proxy counts these in ado_proxy_claims_challenges_total.",
        docs: "https://learn.microsoft.com/entra/identity/conditional-access/concept-continuous-access-evaluation-workload",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "wrong-directory",
        title: "This organization belongs to another directory",
        cause: "Azure DevOps did not accept the token because the organization is connected to directory {resource_tenant}, and you signed in with an account of directory {user_tenant}.",
        user_fix: "Sign in again with an account of the organization's directory (a guest account in it works too).",
        admin_fix: "To serve this organization, sign users in against tenant {resource_tenant} (auth.tenant), or use \"organizations\", list both tenants in auth.allowed_tenants and consent to the app in {resource_tenant}: the proxy then sends a token of that directory (the user must be a member or guest there).",
        docs: "https://learn.microsoft.com/azure/devops/organizations/accounts/connect-organization-to-azure-ad",
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::USERS,
    },
    Entry {
        id: "service-wrong-directory",
        title: "This organization belongs to another directory than the proxy's identity",
        cause: "Azure DevOps did not accept the service identity's token because the organization is connected to directory {resource_tenant}, and the proxy gets its token from directory {user_tenant}. Azure DevOps only accepts a token from the organization's own directory.",
        user_fix: "Nothing you can fix: tell the proxy's operator.",
        admin_fix: "Set auth.tenant to {resource_tenant} and make the app exist there (a multi-tenant app consented in that directory, or an app registered in it). A managed identity lives in one directory: for an organization of another directory, make it the federated credential of an app in {resource_tenant} (auth.source = \"managed-identity-federation\").",
        docs: "https://learn.microsoft.com/entra/workload-id/workload-identity-federation-config-app-trust-managed-identity",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "pat-not-accepted",
        title: "Azure DevOps did not accept the proxy's personal access token",
        cause: "Azure DevOps answered as if no one were signed in to the personal access token this proxy sends. Global tokens (\"all accessible organizations\") stopped working on 2026-12-01: the likely cause when a token that worked before is refused now. Otherwise the token is revoked, mistyped, expired or for another organization, or the organization's policy restricts personal access tokens.",
        user_fix: "Nothing you can fix: tell the proxy's operator.",
        admin_fix: "Create (or regenerate) a personal access token scoped to this organization, with the scopes the tools need, and write it to auth.pat_file (the proxy re-reads it; no restart needed); a global token cannot be made to work again. Better, and required where the organization restricts personal access tokens: mode \"service\" with a service principal, workload identity or managed identity.",
        docs: "https://learn.microsoft.com/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::PAT,
    },
    Entry {
        id: "client-token-not-accepted",
        title: "Azure DevOps did not accept your credential",
        cause: "Azure DevOps answered as if no one were signed in: the token or personal access token your client sent (this proxy passes it through unchanged) is expired, revoked, for another organization or directory, or refused by an organization policy.",
        user_fix: "Get a new token (az account get-access-token --resource 499b84ac-1321-427f-aa17-267ca6975798, or a new personal access token scoped to this organization) and send it again.",
        admin_fix: "No action needed on the proxy: in mode \"none\" it sends the client's credential unchanged.",
        docs: "https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/authentication-guidance",
        sign_in_again: false,
        fixer: Fixer::User,
        applies: Applies::CLIENT,
    },
    Entry {
        id: "service-token-not-accepted",
        title: "Azure DevOps did not accept the proxy's service identity",
        cause: "Azure DevOps answered as if no one were signed in to the service identity's token: the service principal or managed identity was never added to the organization (or was removed), the token comes from another directory than the organization's, or the account signed in with ado-auth-proxy login lost its access.",
        user_fix: "Nothing you can fix: tell the proxy's operator.",
        admin_fix: "Add the service principal or managed identity in Organization settings > Users (https://dev.azure.com/{org}/_settings/users) with an access level; check that auth.tenant is the organization's directory; for source device-code, run ado-auth-proxy login again with an account of the organization.",
        docs: "https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/service-principal-managed-identity",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "oauth-disabled",
        title: "The organization refuses access through OAuth apps, or you have no access",
        cause: "Azure DevOps accepted who you are but refused the request (TF400813: the user is not authorized). For an app of the legacy Azure DevOps OAuth, as this proxy is, that is the answer when the organization has turned off \"Third-party application access via OAuth\" (off by default for new organizations; tokens are issued, every call fails), and also when your account has no access to the organization or project.",
        user_fix: "Ask an organization administrator whether OAuth application access is allowed, and whether your account has access to this organization.",
        admin_fix: "In Organization settings > Policies, turn on \"Third-party application access via OAuth\" (https://dev.azure.com/{org}/_settings/organizationPolicy), or grant the user access.",
        docs: POLICY_DOCS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::LEGACY_USER,
    },
    Entry {
        id: "entra-access-refused",
        title: "Azure DevOps refused your account through this app",
        cause: "Azure DevOps accepted who you are but refused the request (TF400813: the user is not authorized). The organization's \"Third-party application access via OAuth\" policy does not apply to Microsoft Entra apps; the usual causes are a missing or revoked consent to the app's Azure DevOps permission, a Conditional Access policy on the Azure DevOps resource (policies target Azure DevOps itself since September 2025, not Azure Resource Manager), or an account without access to this organization or project.",
        user_fix: "Sign in again (you may be asked to consent or to meet a policy); if it keeps happening, ask an administrator whether your account has an access level in this organization.",
        admin_fix: "Grant consent for the app's Azure DevOps permission ({admin_consent_url}), look up the Conditional Access policies that target Azure DevOps (499b84ac-1321-427f-aa17-267ca6975798) in the sign-in logs, and check the user's access level in Organization settings > Users.",
        docs: "https://learn.microsoft.com/azure/devops/organizations/accounts/conditional-access-policies",
        sign_in_again: true,
        fixer: Fixer::Admin,
        applies: Applies::ENTRA_USER
            .with(Applies::OIDC_USER)
            .with(Applies::DEVICE_USER),
    },
    Entry {
        id: "identity-not-in-organization",
        title: "The proxy's service identity is not in this organization",
        cause: "Azure DevOps knows the token's service principal or managed identity, but it has not been added to the organization, or has no access to this project (TF400813, TF401444 or VS30063). Service principals and managed identities never sign in on the web: an administrator adds them.",
        user_fix: "Nothing you can fix: tell the proxy's operator.",
        admin_fix: "Add the service principal or managed identity in Organization settings > Users (https://dev.azure.com/{org}/_settings/users) with an access level, and give it the project permissions the tools need.",
        docs: "https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/service-principal-managed-identity",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::SERVICE_PRINCIPAL.with(Applies::MANAGED_IDENTITY),
    },
    Entry {
        id: "client-oauth-policy",
        title: "Azure DevOps refused your token: the organization may block OAuth apps",
        cause: "Azure DevOps accepted who you are but refused access (TF400813). For a token of an Azure DevOps OAuth app (which yours is, or cannot be told apart from), the usual cause is the organization's policy \"Third-party application access via OAuth\" being off; otherwise the account has no access level in the organization or no permission on the project.",
        user_fix: "Ask an organization administrator whether \"Third-party application access via OAuth\" is on; or use a Microsoft Entra token (az account get-access-token --resource 499b84ac-1321-427f-aa17-267ca6975798), which that policy does not affect.",
        admin_fix: "In Organization settings > Policies (https://dev.azure.com/{org}/_settings/organizationPolicy), turn on \"Third-party application access via OAuth\" if the app may be used; check the account's access level in Organization settings > Users.",
        docs: "https://learn.microsoft.com/azure/devops/organizations/accounts/change-application-access-policies",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::CLIENT,
    },
    Entry {
        id: "client-entra-access-refused",
        title: "Azure DevOps refused your Microsoft Entra token",
        cause: "Azure DevOps accepted who you are but refused access (TF400813). Your token is a Microsoft Entra token, so the organization's \"Third-party application access via OAuth\" policy does not apply: the account has no access level in the organization or no permission on the project, the organization is connected to another directory, or a Conditional Access policy on Azure DevOps refused it.",
        user_fix: "Check that the account has access to this organization (sign in at https://dev.azure.com/{org} once), and get the token from the organization's directory (az account get-access-token --tenant <its tenant> --resource 499b84ac-1321-427f-aa17-267ca6975798).",
        admin_fix: "Give the account an access level in Organization settings > Users (https://dev.azure.com/{org}/_settings/users) and check Conditional Access policies that target Azure DevOps.",
        docs: "https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/entra-oauth",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::CLIENT,
    },
    Entry {
        id: "access-refused",
        title: "Azure DevOps refused this identity",
        cause: "Azure DevOps accepted who the credential belongs to but refused the request (TF400813: the user is not authorized): the account has no access to this organization or project, or the personal access token's scopes do not cover the request.",
        user_fix: "Check that the account behind the credential has access to this organization, and that a personal access token has the scopes the request needs.",
        admin_fix: "Grant the account an access level in Organization settings > Users (https://dev.azure.com/{org}/_settings/users), or create a personal access token with the needed scopes.",
        docs: AUTH_DOCS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::CLIENT.with(Applies::PAT),
    },
    Entry {
        id: "not-a-member",
        title: "Your account is not a member of this organization",
        cause: "Azure DevOps does not know this identity in the organization (VS30063): the account is not a member, has no license, or belongs to another directory.",
        user_fix: "Sign in with the account that belongs to the organization, or ask to be added to it.",
        admin_fix: "Add the user (Organization settings > Users) with an access level, or connect the organization to the user's directory.",
        docs: AUTH_DOCS,
        sign_in_again: true,
        fixer: Fixer::Admin,
        applies: Applies::PEOPLE,
    },
    Entry {
        id: "conditional-access",
        title: "Blocked by your organization's Conditional Access policy",
        cause: "Microsoft Entra Conditional Access refused this request (VS403463), usually because of the network or device it comes from.",
        user_fix: "Connect from an allowed network or a compliant device, then try again.",
        admin_fix: "Review the Conditional Access policies that target Azure DevOps (resource 499b84ac-1321-427f-aa17-267ca6975798; since September 2025 policies on Azure Resource Manager no longer cover it) and the organization's IP policy (\"Enable IP Conditional Access policy validation on non-interactive flows\").",
        docs: CA_DOCS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ALL,
    },
    Entry {
        id: "first-sign-in-required",
        title: "This identity has never signed in to the organization",
        cause: "Azure DevOps has not yet materialised this identity in the organization (TF401444). A user must sign in once on the web; a service principal or managed identity must be added by an administrator.",
        user_fix: "Open https://dev.azure.com/{org} in a browser and sign in once, then try again.",
        admin_fix: "For a service principal or managed identity, add it in Organization settings > Users.",
        docs: AUTH_DOCS,
        sign_in_again: false,
        fixer: Fixer::User,
        applies: Applies::PEOPLE,
    },
    Entry {
        id: "pat-expired",
        title: "The personal access token has expired",
        cause: "Azure DevOps refused the personal access token because it expired. Since 2026-03-31 an expired token can no longer be edited or extended.",
        user_fix: "Ask the operator of this proxy for a new token.",
        admin_fix: "Create a new organization-scoped personal access token, or regenerate this one (User settings > Personal access tokens > the token > Regenerate), and write it to auth.pat_file (the proxy re-reads it; no restart needed); or move to mode \"service\" with an Entra identity, which does not expire this way.",
        docs: "https://learn.microsoft.com/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::PAT,
    },
    Entry {
        id: "not-found-or-no-permission",
        title: "Not found, or you have no permission to see it",
        cause: "Azure DevOps hides what you may not read: the repository or project does not exist, or you lack the permission to see it (TF401019, VS800075, TF200016).",
        user_fix: "Check the name in the URL; if it is right, ask a project administrator for Read permission.",
        admin_fix: "Grant the user Read on the repository or \"View project-level information\" on the project.",
        docs: PERMISSION_DOCS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ALL,
    },
    Entry {
        id: "pat-policy-refused",
        title: "A personal access token policy refused this",
        cause: "Azure DevOps refused to create or use the personal access token because of a policy ({code}). FullScopePatPolicyViolation: the directory forbids full-scoped tokens. DisablePatCreationPolicyViolation: the organization's \"Restrict personal access token (PAT) creation\" policy allows only listed users, or only packaging scopes. GlobalPatPolicyViolation: global tokens are not allowed (and none work since 2026-12-01). PatLifespanPolicyViolation: the lifetime is longer than the directory allows. FailedToReadTenantPolicy: Azure DevOps could not read the directory's policies (try again later; if it persists, the organization's Microsoft Entra connection is broken).",
        user_fix: "Ask for a token with specific scopes for this one organization, within the allowed lifetime; if creation is restricted, ask an organization administrator to add you to the policy's allowlist, or use a Microsoft Entra sign-in instead of a token.",
        admin_fix: "Review the policies at https://dev.azure.com/{org}/_settings/organizationPolicy (Restrict personal access token (PAT) creation) and the tenant-level ones in the Microsoft Entra section of Organization settings (Restrict global / full-scoped PAT creation, maximum lifespan).",
        docs: "https://learn.microsoft.com/azure/devops/organizations/accounts/manage-pats-with-policies-for-administrators",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ALL,
    },
    Entry {
        id: "feed-permission-missing",
        title: "This identity lacks a permission on the Azure Artifacts feed",
        cause: "Azure Artifacts refused the request: the identity needs the '{permission}' permission on {feed}, which the {feed_role} role grants. Feed permissions are set on each feed (and its views), apart from the project's permissions, so a project member can still lack them.",
        user_fix: "Ask a feed owner to give your account (or the pipeline's or service's identity) the {feed_role} role on {feed}; Azure Artifacts' words and its activity id are below.",
        admin_fix: "In Artifacts, open {feed} > Feed settings > Permissions > Add users/groups and give the identity named in the message the {feed_role} role (pipelines use '<project> Build Service (<organization>)' or 'Project Collection Build Service'; saving packages from upstream sources needs Feed and Upstream Reader (Collaborator)).",
        docs: "https://learn.microsoft.com/azure/devops/artifacts/feeds/feed-permissions",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ALL,
    },
    Entry {
        id: "feed-not-found",
        title: "Azure Artifacts has no such feed, or hides it from this identity",
        cause: "Azure Artifacts says {feed} does not exist at this address. Either the name or ID is wrong, the feed is project-scoped and the URL lacks its project (or organization-scoped and the URL names a project), the feed was deleted (it stays in the feed recycle bin for a while), or the identity may not read it: a feed it has no permission on answers the same.",
        user_fix: "Compare the URL with the feed's Connect to feed page (project-scoped feeds are /<organization>/<project>/_packaging/<feed>/...); if it is right, ask a feed owner for the Feed Reader role.",
        admin_fix: "Check that {feed} exists (Artifacts > feed list, and the feed recycle bin) and which project it belongs to, and give the identity at least Feed Reader in Feed settings > Permissions.",
        docs: "https://learn.microsoft.com/azure/devops/artifacts/feeds/project-scoped-feeds",
        sign_in_again: false,
        fixer: Fixer::User,
        applies: Applies::ALL,
    },
    Entry {
        id: "permission-denied",
        title: "You lack a permission for this action",
        cause: "Azure DevOps knows you but a permission is missing (for example TF401027 or \"Access Denied: ... needs the following permission(s)\").",
        user_fix: "Ask a project administrator for the permission named in the message.",
        admin_fix: "Grant the permission named in the message to the user or one of their groups.",
        docs: PERMISSION_DOCS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ALL,
    },
    Entry {
        id: "throttled",
        title: "Azure DevOps is rate-limiting you",
        cause: "Your usage went over Azure DevOps' global limit (200 TSTUs in a sliding 5-minute window), so requests are blocked for now (TF400733, HTTP 429).",
        user_fix: "Wait the number of seconds in Retry-After, then retry; spread heavy jobs out.",
        admin_fix: "Find the heavy caller on https://dev.azure.com/{org}/_usersSettings/usage; a Basic + Test Plans access level raises the limits.",
        docs: RATE_DOCS,
        sign_in_again: false,
        fixer: Fixer::User,
        applies: Applies::ALL,
    },
    // --- sign-in answers (Microsoft Entra ID) ---
    Entry {
        id: "consent-declined",
        title: "You declined the permissions",
        cause: "The sign-in stopped because the permissions the proxy asks for were declined (access_denied, AADSTS65004).",
        user_fix: "Sign in again and accept the permissions.",
        admin_fix: "If users may not consent, grant admin consent for the app ({admin_consent_url}).",
        docs: CONSENT_DOCS,
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::USERS.with(Applies::DEVICE_USER),
    },
    Entry {
        id: "consent-required",
        title: "An administrator must approve this app",
        cause: "Your directory requires an administrator to consent to the app's Azure DevOps permission before users can sign in (AADSTS65001, 90094 or 90095).",
        user_fix: "Ask a directory administrator to grant consent; send them this page.",
        admin_fix: "Grant tenant-wide admin consent: {admin_consent_url}",
        docs: CONSENT_DOCS,
        sign_in_again: true,
        fixer: Fixer::Admin,
        applies: Applies::ENTRA_SIGN_IN,
    },
    Entry {
        id: "mfa-required",
        title: "Multi-factor authentication is required",
        cause: "Your directory requires multi-factor authentication (or security-info registration) for this sign-in (AADSTS50076, 50079, 50074 or 50158).",
        user_fix: "Sign in again and complete the multi-factor prompt; register security info if asked.",
        admin_fix: "No action needed unless the MFA policy is wrong.",
        docs: ENTRA_ERRORS,
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::ENTRA_SIGN_IN,
    },
    Entry {
        id: "device-required",
        title: "This sign-in needs a registered or compliant device",
        cause: "A Conditional Access policy requires a device that is registered with Microsoft Entra, managed, or compliant (AADSTS50097, 50155, 53000 or 530003), and the browser you signed in with does not prove one: an unregistered or non-compliant device, a private window, or a browser without the Microsoft single sign-on extension.",
        user_fix: "Sign in again from your managed work device in its regular browser (Edge, or Chrome with the Microsoft Single Sign On extension); register or enroll the device in Company Portal if asked.",
        admin_fix: "Check the user's sign-in log for the correlation id below (Conditional Access > device state); enroll the device, or scope the policy's device requirement.",
        docs: "https://learn.microsoft.com/entra/identity/conditional-access/concept-conditional-access-grant",
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::ENTRA_SIGN_IN,
    },
    Entry {
        id: "conditional-access-sign-in",
        title: "Sign-in blocked by Conditional Access",
        cause: "A Conditional Access policy blocked this sign-in (AADSTS53001-53003, 530032): the device is not domain-joined, the app is not approved, or the location or risk is blocked.",
        user_fix: "Sign in from a compliant device or an allowed network.",
        admin_fix: "Review the Conditional Access sign-in logs with the correlation id below.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ENTRA_SIGN_IN,
    },
    Entry {
        id: "app-not-in-tenant",
        title: "The proxy's app is not registered in this directory",
        cause: "Microsoft Entra does not know the proxy's client id in this directory (AADSTS700016): wrong auth.client_id or auth.tenant.",
        user_fix: "Nothing you can fix: tell the proxy's operator.",
        admin_fix: "Check auth.client_id and auth.tenant against the app registration, or consent to the app in this tenant.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::ENTRA_SIGN_IN.with(Applies::SERVICE),
    },
    Entry {
        id: "federated-credential-mismatch",
        title: "No federated credential of the app matches the proxy's token",
        cause: "Microsoft Entra refused the proxy's federated assertion ({code}, one of AADSTS70021, 700211, 700213, 7002137 and 7002138): no federated identity credential of the app has this token's issuer, subject and audience. Matching is exact and case-sensitive (AADSTS7002138 says the subject only matches when case is ignored). In Kubernetes the subject is system:serviceaccount:<namespace>:<service account> and the issuer is the cluster's OIDC issuer URL.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "On the app registration (or user-assigned managed identity) named by auth.client_id, open Certificates & secrets > Federated credentials and make one match the provider's message exactly: issuer (the cluster's OIDC issuer, with or without its trailing slash as the token has it), subject (the pod's service account, same case), audience api://AzureADTokenExchange. Check auth.federated_token_file reads the projected token of that service account.",
        docs: "https://learn.microsoft.com/entra/workload-id/workload-identity-federation-create-trust",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::ENTRA_SIGN_IN.with(Applies::SERVICE),
    },
    Entry {
        id: "client-assertion-expired",
        title: "The proxy's client assertion is outside its valid time",
        cause: "Microsoft Entra refused the proxy's signed client assertion (AADSTS700024): it is not valid at Entra's current time. Either the proxy's clock is off, or the federated token it presents has expired (the kubelet stopped rotating the projected token file, or the file is a copy made once).",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Check the node's clock (NTP) and that auth.federated_token_file is the projected service-account token the kubelet rotates (not a copied file); the provider's message names the assertion's valid-from and expiry times.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::ENTRA_SIGN_IN.with(Applies::SERVICE),
    },
    Entry {
        id: "client-assertion-key-unknown",
        title: "The proxy signs with a certificate the app does not know",
        cause: "Microsoft Entra refused the proxy's client assertion (AADSTS700027): its signature's key is not registered on the app. The certificate in auth.client_certificate_file was never uploaded, was removed, or belongs to another app registration.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Upload the public certificate of auth.client_certificate_file under the app's Certificates & secrets > Certificates (the thumbprint in the provider's message must be listed), or point the proxy at the certificate that is registered.",
        docs: "https://learn.microsoft.com/entra/identity-platform/certificate-credentials",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::ENTRA_SIGN_IN.with(Applies::SERVICE),
    },
    Entry {
        id: "invalid-scope",
        title: "The proxy asks for a scope Entra does not accept",
        cause: "Microsoft Entra refused the scope in the proxy's token request (AADSTS70011): a scope in auth.scopes is misspelled or not exposed by its API, or it mixes resources (a .default scope cannot be combined with another resource's scopes).",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Correct auth.scopes (the default asks for 499b84ac-1321-427f-aa17-267ca6975798/.default with openid, profile and offline_access); the provider's message names the scope it refused.",
        docs: "https://learn.microsoft.com/entra/identity-platform/scopes-oidc",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::ENTRA_SIGN_IN.with(Applies::SERVICE),
    },
    Entry {
        id: "azure-devops-permission-missing",
        title: "The proxy's app lacks the Azure DevOps API permission",
        cause: "Microsoft Entra refused the token because Azure DevOps is not among the API permissions of the app registration (AADSTS650057: the client asked for a resource its registration does not list).",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "In the app registration, API permissions > Add a permission > Azure DevOps > Delegated > user_impersonation (and vso.pats for /.auth/pats), then Grant admin consent ({admin_consent_url}).",
        docs: "https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/entra-oauth",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ENTRA_SIGN_IN.with(Applies::SERVICE),
    },
    Entry {
        id: "azure-devops-not-in-directory",
        title: "Azure DevOps is not known in this directory",
        cause: "Microsoft Entra does not know Azure DevOps (resource 499b84ac-1321-427f-aa17-267ca6975798) in the directory the token was asked of (AADSTS500011, also relayed by managed-identity endpoints): the directory never used Azure DevOps, or auth.tenant names another directory than the organization's.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Set auth.tenant to the directory the organization is connected to (Organization settings > Microsoft Entra). If it is that directory, an administrator signs in once at https://dev.azure.com, or creates the service principal: az ad sp create --id 499b84ac-1321-427f-aa17-267ca6975798.",
        docs: "https://learn.microsoft.com/azure/devops/organizations/accounts/connect-organization-to-azure-ad",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ENTRA_SIGN_IN.with(Applies::SERVICE),
    },
    Entry {
        id: "client-credential-invalid",
        title: "The proxy's client secret or certificate is wrong or expired",
        cause: "Microsoft Entra refused the proxy's own credential (AADSTS7000215, 7000222 or 7000218): the client secret is wrong, has expired (AADSTS7000222; secrets live at most two years, often six months), or is missing. This is an operator error, not yours.",
        user_fix: "Nothing you can fix: tell the proxy's operator.",
        admin_fix: "Create a new client secret (or certificate) on the app registration and update auth.client_secret_file (re-read without restart) or the certificate files.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::ENTRA_SIGN_IN
            .with(Applies::LEGACY_USER)
            .with(Applies::SERVICE),
    },
    Entry {
        id: "redirect-uri-mismatch",
        title: "The proxy's callback URL is not registered",
        cause: "The redirect URI the proxy sent ({redirect_uri}) is not registered on the app (AADSTS50011).",
        user_fix: "Nothing you can fix: tell the proxy's operator.",
        admin_fix: "Add {redirect_uri} as a Web redirect URI on the app registration, or set listen.public_url to the registered URL.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::ENTRA_USER,
    },
    Entry {
        id: "wrong-tenant-user",
        title: "Your account is not in this directory",
        cause: "The account you signed in with is not a member or guest of the directory this proxy uses (AADSTS50020 or 90072).",
        user_fix: "Sign in with your work account of the organization's directory.",
        admin_fix: "Invite the user as a guest, or configure the right auth.tenant.",
        docs: ENTRA_ERRORS,
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::ENTRA_SIGN_IN,
    },
    Entry {
        id: "user-not-assigned",
        title: "You are not assigned to this app",
        cause: "The app requires assignment and your account is not assigned to it (AADSTS50105).",
        user_fix: "Ask a directory administrator to assign you to the app.",
        admin_fix: "Assign the user (or a group) in Enterprise applications > the proxy's app > Users and groups.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::ENTRA_SIGN_IN,
    },
    Entry {
        id: "code-replayed",
        title: "This sign-in was already used",
        cause: "The sign-in code was redeemed before (AADSTS54005): a double submit, the browser's back button, or a retried request.",
        user_fix: "Sign in again.",
        admin_fix: "No action needed.",
        docs: ENTRA_ERRORS,
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::ENTRA_USER,
    },
    Entry {
        id: "sign-in-expired",
        title: "This sign-in expired",
        cause: "Microsoft Entra says the grant the proxy redeemed has expired or was revoked (AADSTS70008, 700082, 50173 or 70043): the sign-in took too long to complete, or your sessions were revoked meanwhile.",
        user_fix: "Sign in again.",
        admin_fix: "No action needed, unless it happens to every sign-in: then check the proxy's clock and the sign-in logs for the correlation id below.",
        docs: ENTRA_ERRORS,
        sign_in_again: true,
        fixer: Fixer::User,
        applies: Applies::ENTRA_SIGN_IN,
    },
    Entry {
        id: "legacy-oauth-retired",
        title: "Azure DevOps OAuth, which this proxy signs in with, has been retired",
        cause: "The legacy Azure DevOps OAuth token endpoint answered the proxy's token call as a retired service does (HTTP 404 or 410, or a notice that the flow is deprecated or retired). Microsoft has accepted no new Azure DevOps OAuth apps since April 2025 and retires the flow in 2026; once it has ended, no sign-in or refresh through it works again, however often it is retried.",
        user_fix: "Nothing you can fix: tell the proxy's operator. Once the proxy uses Microsoft Entra ID, you sign in once more.",
        admin_fix: "Move the proxy to Microsoft Entra ID: register an Entra app with the Azure DevOps user_impersonation permission and set auth.provider = \"entra\" with auth.tenant and auth.client_id (docs/providers.md, Retirement). Sessions of the legacy app end with the switch.",
        docs: "https://learn.microsoft.com/azure/devops/integrate/get-started/authentication/azure-devops-oauth",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::LEGACY_USER,
    },
    // --- the service identity's token calls (Microsoft Entra ID) ---
    Entry {
        id: "service-consent-required",
        title: "The proxy's identity has no consent to use Azure DevOps",
        cause: "Microsoft Entra refused the service identity's token ({code}): consent to the app's Azure DevOps permission is missing in this directory, or was declined when the account was signed in. Retrying does not help until consent exists.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Grant tenant-wide admin consent for the app's Azure DevOps permission ({admin_consent_url}). For source device-code, run ado-auth-proxy login again and accept the permissions.",
        docs: CONSENT_DOCS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "service-interaction-required",
        title: "The proxy's identity must sign in interactively again",
        cause: "Microsoft Entra refused to renew the service identity's token without an interactive step ({code}): multi-factor authentication, security-info registration or an external challenge is now required, because a policy changed or the proxy runs from a new location. A stored sign-in cannot satisfy it; retrying does not help.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "For source device-code, run ado-auth-proxy login again (or sign in at /.auth/login when auth.allow_browser_login is on) and complete the prompt. A service principal cannot do multi-factor authentication: find the Conditional Access policy in the sign-in logs with the correlation id below and exclude the workload identity, or use a service principal instead of a user account.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "service-conditional-access",
        title: "Conditional Access blocks the proxy's identity",
        cause: "A Conditional Access policy refused the service identity's token ({code}): for a service principal, a policy for workload identities (usually its network location or risk); for the account signed in with ado-auth-proxy login, a device or location requirement. Retrying does not help until the policy or the proxy's location changes.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Look the sign-in up in Entra's sign-in logs (service principal sign-ins for an app) with the correlation id below, and allow the proxy's network location or exclude the identity from the policy.",
        docs: "https://learn.microsoft.com/entra/identity/conditional-access/workload-identity",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "service-device-required",
        title: "Conditional Access wants a compliant device from the proxy's identity",
        cause: "A Conditional Access policy requires a registered, managed or compliant device ({code}, one of Entra's AADSTS50097, 50155, 53000 and 530003) for the account signed in with ado-auth-proxy login. A proxy in a container is no such device; retrying does not help.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Use an identity device policies do not apply to (a service principal or managed identity: auth.source), or exclude this account from the device requirement; the sign-in logs show the policy for the correlation id below.",
        docs: "https://learn.microsoft.com/entra/identity/conditional-access/concept-conditional-access-grant",
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "managed-identity-not-assigned",
        title: "No managed identity is assigned where the proxy runs",
        cause: "The managed-identity endpoint has no identity to issue a token for: IMDS answers \"Identity not found\", App Service \"Unable to load the proper Managed Identity\". The resource (VM, scale set, node pool, app) has no managed identity, or several user-assigned ones and auth.managed_identity_client_id names none of them (or one that is not assigned).",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the correlation id below.",
        admin_fix: "Assign the identity to the resource the proxy runs on (for AKS, the kubelet identity or the node pool's; prefer workload identity there), and set auth.managed_identity_client_id to the client id of the user-assigned identity to use.",
        docs: "https://learn.microsoft.com/entra/identity/managed-identities-azure-resources/how-to-configure-managed-identities",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::SERVICE.with(Applies::ENTRA_USER),
    },
    Entry {
        id: "service-account-refused",
        title: "The account behind the proxy's identity may not use this app",
        cause: "Microsoft Entra refused the token of the account signed in with ado-auth-proxy login ({code}): it is not a member or guest of this directory, or the app requires assignment and the account is not assigned to it.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Run ado-auth-proxy login again with an account of the directory auth.tenant names, or assign the account to the app (Enterprise applications > the app > Users and groups).",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Admin,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "service-sign-in-expired",
        title: "The proxy's stored sign-in expired",
        cause: "Microsoft Entra refused the refresh token stored by ado-auth-proxy login ({code}; Entra's AADSTS70008, 700082, 50173 or 70043 mean this): it expired after inactivity, its sessions were revoked (password change, an administrator's revocation), or a sign-in frequency policy ended it. Only a new sign-in fixes it.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Run ado-auth-proxy login again (or sign in at /.auth/login when auth.allow_browser_login is on). For an identity without this limit, use a service principal or managed identity (auth.source).",
        docs: "https://learn.microsoft.com/entra/identity-platform/refresh-tokens",
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "service-token-refused",
        title: "The identity provider refused the proxy's token request",
        cause: "The identity provider refused the service identity's token request ({code}); its own message is below. The proxy keeps asking, backing off, and serves requests again as soon as a token is issued.",
        user_fix: "Nothing you can fix: tell the proxy's operator, with the code and correlation id below.",
        admin_fix: "Look the code up in Microsoft's list of Entra error codes and correct what it names in the app registration or the [auth] settings; the proxy's log (\"service token\") has each attempt.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::Operator,
        applies: Applies::SERVICE,
    },
    Entry {
        id: "service-provider-busy",
        title: "The identity provider cannot issue the proxy a token right now",
        cause: "The identity provider answered the service identity's token request with a temporary failure ({code}): it is overloaded, throttling, or briefly unavailable. The proxy asks again on its own schedule (backing off) and serves requests as soon as a token is issued.",
        user_fix: "Send the request again after the Retry-After delay.",
        admin_fix: "No action needed if it passes; if it lasts, check the provider's service health and the proxy's log (\"service token\") for the codes and correlation ids.",
        docs: ENTRA_ERRORS,
        sign_in_again: false,
        fixer: Fixer::User,
        applies: Applies::SERVICE,
    },
];

impl Fixer {
    /// The label used in JSON answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Admin => "administrator",
            Self::Operator => "operator",
        }
    }
}

/// The entry with `id`. Ids are compile-time constants of this file; an
/// unknown one is a bug, answered with the first entry rather than a panic.
pub fn entry(id: &str) -> &'static Entry {
    CATALOG.iter().find(|e| e.id == id).unwrap_or(&CATALOG[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_every_entry_is_complete() {
        let mut ids: Vec<&str> = CATALOG.iter().map(|e| e.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), CATALOG.len());
        for e in CATALOG {
            assert!(
                e.id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                e.id
            );
            for text in [e.title, e.cause, e.user_fix, e.admin_fix] {
                assert!(!text.is_empty(), "{}", e.id);
            }
            assert!(e.docs.starts_with("https://"), "{}", e.id);
        }
    }
}
