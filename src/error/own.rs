//! The proxy's own answers as data: each one's id, status, title and
//! text, with `{placeholders}` filled in one pass (a value that looks
//! like a placeholder stays as it is). A key is an answer id, or
//! `id/variant` where one answer reads differently by case. Every id is
//! documented in docs/errors.md (checked by `error::ids`).

use http::StatusCode;

use crate::answer::Answer;
use crate::session::Miss;

/// One of the proxy's own answers.
pub struct Own {
    /// The answer id, or `id/variant`.
    pub key: &'static str,
    /// The status it is sent with.
    pub status: StatusCode,
    /// One line.
    pub title: &'static str,
    /// What happened and what to do, with `{placeholders}`.
    pub text: &'static str,
    /// It links to `/.auth/login` to start again.
    pub sign_in_again: bool,
}

const fn own(
    key: &'static str,
    status: StatusCode,
    title: &'static str,
    text: &'static str,
) -> Own {
    Own {
        key,
        status,
        title,
        text,
        sign_in_again: false,
    }
}

/// An answer that links to `/.auth/login` to start again.
const fn again(
    key: &'static str,
    status: StatusCode,
    title: &'static str,
    text: &'static str,
) -> Own {
    Own {
        sign_in_again: true,
        ..own(key, status, title, text)
    }
}

use StatusCode as S;

/// Every own answer, in the order of docs/errors.md's table.
pub const OWN: &[Own] = &[
    // The request itself (`Refusal`).
    own(
        "reserved-path",
        S::NOT_FOUND,
        "Not found",
        "{path} belongs to the proxy's own endpoints and is not forwarded to Azure DevOps.",
    ),
    own(
        "unknown-host",
        S::NOT_FOUND,
        "Unknown Azure DevOps host",
        "/.hosts/{name}/ names no configured host. Known hosts: {known}. Add it under \
         [upstream.hosts] to reach it.",
    ),
    own(
        "organization-not-allowed",
        S::FORBIDDEN,
        "Organization not allowed",
        "This proxy only serves the organizations {allowed}; \"{org}\" is not one of them. An \
         operator can add it to upstream.allowed_organizations.",
    ),
    own(
        "organization-required",
        S::FORBIDDEN,
        "Organization required",
        "This proxy only serves the organizations {allowed}; start the path with one of them, \
         e.g. /{first}/_apis/projects.",
    ),
    own(
        "host-not-allowed",
        S::MISDIRECTED_REQUEST,
        "This proxy does not answer to that name",
        "The request was addressed to \"{host}\", which is not a name of this proxy. It answers \
         to the host of listen.public_url, localhost and IP addresses, and to the names in \
         listen.allowed_hosts; an operator can add a name there (a Kubernetes Service name, a \
         DNS alias). Any other name is refused because a web page can point its own name at \
         the proxy (DNS rebinding) and would otherwise act with the proxy's credential.",
    ),
    own(
        "bad-host",
        S::BAD_REQUEST,
        "Bad Host header",
        "The proxy cannot tell which host this request is addressed to: {why}. Send exactly one \
         Host header (over HTTP/2, none or one equal to :authority) naming the proxy.",
    ),
    own(
        "cross-site-request",
        S::FORBIDDEN,
        "Requests from other sites are refused",
        "This request came from a web page of another site ({why}). The proxy attaches its own \
         credential to what it forwards, so it only serves pages of its own origin and programs \
         that are not browsers. Open the page from the proxy itself, or call it from a program.",
    ),
    own(
        "bad-path",
        S::BAD_REQUEST,
        "Path refused",
        "The proxy does not forward this path: {why}. A path is only forwarded when Azure \
         DevOps reads it exactly as the proxy does, so that it cannot leave the organization it \
         names.",
    ),
    own(
        "bad-target",
        S::BAD_REQUEST,
        "Bad request target",
        "The request path cannot be forwarded: {reason}.",
    ),
    own(
        "upgrade-not-allowed",
        S::BAD_REQUEST,
        "This proxy does not tunnel that protocol",
        "The request asks to tunnel \"{protocol}\", which is not in listen.tunnel_protocols. The \
         proxy only tunnels the protocols an operator listed there (WebSockets by default), \
         because a tunnel carries the proxy's credential past every later check.",
    ),
    own(
        "caller-not-allowed",
        S::FORBIDDEN,
        "This proxy does not accept requests from you",
        "The proxy acts as a fixed identity, so it only serves callers it was told to trust: \
         {reason}. If you should be allowed, ask the administrator to add your address to \
         auth.allowed_client_cidrs or to give you the caller secret.",
    ),
    own(
        "access-rule-refused",
        S::FORBIDDEN,
        "Refused by the proxy's access rules",
        "The proxy's access rules do not let this request through: {why}. Its administrator \
         sets them ([access] in the proxy's configuration); ask them if you need this.",
    ),
    own(
        "access-rule-refused/read-only",
        S::FORBIDDEN,
        "This proxy only reads",
        "The proxy forwards only requests that read (access.read_only = true), and {why}: it \
         passes GET, HEAD and OPTIONS, git fetches and the POSTs that only read (WIQL queries, \
         batch reads, search) and refuses every write. Use a tool or proxy that may write, or \
         ask its administrator.",
    ),
    // Personal proxy tokens, clients' tokens and PATs (`TokenError`).
    own(
        "proxy-token-refused",
        S::UNAUTHORIZED,
        "The proxy token was not accepted",
        "{reason}. Sign in at {tokens_url} in a browser and create a new proxy token there; send \
         it as the password of HTTP Basic (any user name; git's credential helper asks for it) \
         or as Authorization: Bearer.",
    ),
    own(
        "sign-in-required",
        S::UNAUTHORIZED,
        "Sign-in required",
        "{why} Sign in at {login_url} in a browser, then try again.",
    ),
    own(
        "sign-in-required/tokens",
        S::UNAUTHORIZED,
        "Sign-in required",
        "{why} Programs (git, curl, package managers) use a personal proxy token: sign in at \
         {login_url} in a browser, create one at {tokens_url}, and send it as the password of \
         HTTP Basic (any user name; git's credential helper asks for it) or as Authorization: \
         Bearer.",
    ),
    own(
        "sign-in-required/manage-tokens",
        S::UNAUTHORIZED,
        "Sign-in required",
        "Proxy tokens are managed from a signed-in browser: sign in at {login_url}, then open \
         /.auth/tokens. A proxy token cannot create or list tokens.",
    ),
    own(
        "token-request-invalid",
        S::BAD_REQUEST,
        "The token request cannot be served",
        "{why}.",
    ),
    own(
        "client-token-refused",
        S::UNAUTHORIZED,
        "Your Entra token was not accepted",
        "The proxy accepts clients' own Entra access tokens for Azure DevOps, but not this one: \
         {why}. Get a new one (az account get-access-token --resource \
         499b84ac-1321-427f-aa17-267ca6975798) with an account this proxy admits, or sign in in \
         a browser.",
    ),
    own(
        "token-not-found",
        S::NOT_FOUND,
        "No such token",
        "This sign-in has no token with that id (revoked already, expired, or created from \
         another sign-in).",
    ),
    own(
        "too-many-tokens",
        S::CONFLICT,
        "You hold as many personal proxy tokens as you may",
        "You have {max} personal proxy tokens already, the most one user may hold \
         (auth.max_tokens_per_user). Revoke the ones you no longer use at /.auth/tokens, then \
         create this one.",
    ),
    own(
        "pat-api-unavailable",
        S::SERVICE_UNAVAILABLE,
        "Azure DevOps' PAT service is not answering",
        "Azure DevOps' personal access token API could not serve this request ({reason}). \
         Nothing was changed. Try again shortly; if it persists, an administrator can check \
         that the proxy reaches upstream.hosts.vssps.",
    ),
    // The proxy and its credential (`Error`).
    own(
        "no-credential",
        S::SERVICE_UNAVAILABLE,
        "The proxy has no usable credential",
        "{error}. An operator must fix the [auth] configuration.",
    ),
    own(
        "answer-not-rewritable",
        S::BAD_GATEWAY,
        "Azure DevOps' answer could not be passed on safely",
        "Azure DevOps answered this request with a {what} that the proxy must rewrite before \
         passing it on (it carries URLs and credentials meant for the proxy), and {reason}, so \
         it was not passed on. The answer's size grows with the objects asked for at once: ask \
         for fewer (git-lfs 3.3 and later: git config lfs.transfer.batchSize 50) and try again.",
    ),
    own(
        "proxy-busy",
        S::SERVICE_UNAVAILABLE,
        "The proxy is serving as many requests as it may",
        "{max} requests are in flight through this proxy (listen.max_requests), so this one was \
         not forwarded. Try again in a moment; if it happens under normal load, an \
         administrator can raise listen.max_requests (each request in flight may hold one \
         upstream connection, so keep it within the process's file-descriptor limit) or run \
         more replicas.",
    ),
    own(
        "session-store-unavailable",
        S::SERVICE_UNAVAILABLE,
        "The proxy cannot reach its session store",
        "Signing in, or resuming a session this proxy instance has not seen yet, needs the \
         session store, and it is not answering ({error}). Sessions already in use here keep \
         working. Try again in a few seconds; if it persists, an administrator must check the \
         store (session.store, session.redis_url, or the disk holding session.path). The admin \
         /readyz endpoint reports not ready meanwhile.",
    ),
    own(
        "service-token-unavailable",
        S::SERVICE_UNAVAILABLE,
        "The proxy has no token for its service identity",
        "The proxy acts as a fixed identity (auth.source = \"{source}\") and could not get a \
         token for it from the identity provider.{last} Try again shortly. An administrator can \
         see more in the proxy's log (\"service token\"), in /.auth/me (lastFailure) and in \
         ado_proxy_service_token_failing_since_timestamp_seconds.",
    ),
    own(
        "service-token-unavailable/permanent",
        S::BAD_GATEWAY,
        "The proxy has no token for its service identity",
        "The proxy acts as a fixed identity (auth.source = \"{source}\") and could not get a \
         token for it from the identity provider.{last} Retrying does not help until an \
         operator fixes it. An administrator can see more in the proxy's log (\"service \
         token\"), in /.auth/me (lastFailure) and in \
         ado_proxy_service_token_failing_since_timestamp_seconds.",
    ),
    own(
        "tunnels-full",
        S::SERVICE_UNAVAILABLE,
        "No room for another WebSocket",
        "The proxy already carries {max} WebSocket or upgraded connections, as many as \
         listen.max_tunnels allows. Try again shortly; an operator can raise listen.max_tunnels.",
    ),
    own(
        "tunnels-full/stopping",
        S::SERVICE_UNAVAILABLE,
        "No room for another WebSocket",
        "The proxy is shutting down and opens no new WebSocket or upgraded connection; connect \
         again and another instance will serve you.",
    ),
    own(
        "provider-configuration",
        S::BAD_GATEWAY,
        "The proxy's sign-in configuration is broken",
        "Your access token expired and the identity provider refused the proxy's own \
         credentials ({detail}). This is not your fault: an administrator must fix the client \
         secret or certificate, auth.client_id or the tenant. Your session is kept.",
    ),
    own(
        "provider-unavailable",
        S::SERVICE_UNAVAILABLE,
        "The identity provider is not answering",
        "Your access token expired and refreshing it failed ({detail}). Your session is kept; \
         try again shortly.",
    ),
    own(
        "upstream-unreachable",
        S::BAD_GATEWAY,
        "Azure DevOps could not be reached",
        "Upstream {upstream} ({target}): {reason}.",
    ),
    own(
        "upstream-timeout",
        S::GATEWAY_TIMEOUT,
        "Azure DevOps did not answer in time",
        "Upstream {upstream} ({target}): {reason}.",
    ),
    own(
        "upstream-failed",
        S::BAD_GATEWAY,
        "The connection to Azure DevOps failed",
        "Upstream {upstream} ({target}): {reason}.",
    ),
    own(
        "egress-proxy-credentials",
        S::BAD_GATEWAY,
        "The egress proxy asks for credentials",
        "Upstream {upstream} ({target}): {reason}. The proxy needs a user and password for it: \
         put \"user:password\" in the file named by upstream.egress_proxy_credentials_file (or \
         write them in HTTPS_PROXY as http://user:password@host:port). If they are there \
         already, the egress proxy did not accept them.",
    ),
    own(
        "egress-proxy-refused",
        S::BAD_GATEWAY,
        "The egress proxy refused the connection",
        "Upstream {upstream} ({target}): {reason}. Its rules do not let this proxy reach that \
         host: ask the egress proxy's operators to allow it, or, if the host is reachable \
         directly, name it in upstream.no_proxy (or NO_PROXY).",
    ),
    own(
        "egress-proxy-failed",
        S::BAD_GATEWAY,
        "The egress proxy could not be used",
        "Upstream {upstream} ({target}): {reason}. Check the egress proxy's address \
         (upstream.egress_proxy or HTTPS_PROXY; the proxy logs the one in use at start-up) and \
         that it is running.",
    ),
    // Signing in (`LoginError`).
    own(
        "method-not-allowed",
        S::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "This endpoint accepts {allowed}.",
    ),
    own(
        "bad-return-path",
        S::BAD_REQUEST,
        "Return address refused",
        "After signing in, the proxy only returns to a path on itself (such as \
         /contoso/_apis/projects), never to another site.",
    ),
    own(
        "sign-in-provider-unavailable",
        S::BAD_GATEWAY,
        "The sign-in provider could not be reached",
        "{detail}. Try again shortly; if it persists, an administrator should check \
         auth.issuer_url or auth.authority_host.",
    ),
    again(
        "missing-state",
        S::BAD_REQUEST,
        "This sign-in link is not valid",
        "The sign-in answer does not match a sign-in this proxy started, or it was already \
         used. Start again.",
    ),
    again(
        "unknown-state",
        S::BAD_REQUEST,
        "This sign-in link is not valid",
        "The sign-in answer does not match a sign-in this proxy started, or it was already \
         used. Start again.",
    ),
    again(
        "sign-in-timed-out",
        S::BAD_REQUEST,
        "The sign-in took too long",
        "The sign-in was started too long ago and has expired. Start again.",
    ),
    again(
        "wrong-browser",
        S::BAD_REQUEST,
        "The sign-in was started elsewhere",
        "The sign-in answer arrived without the cookie of the browser that started it (started \
         in another browser, or cookies are blocked). Start again in this browser and allow \
         cookies for this site.",
    ),
    again(
        "provider-error",
        S::BAD_REQUEST,
        "Sign-in was not completed",
        "The sign-in provider answered \"{error}\"{description}.",
    ),
    again(
        "provider-error/access-denied",
        S::FORBIDDEN,
        "Sign-in was not completed",
        "The sign-in provider answered \"{error}\"{description}. If you declined, sign in again \
         and accept; if an administrator must approve the app, ask them.",
    ),
    again(
        "missing-code",
        S::BAD_REQUEST,
        "The sign-in answer is incomplete",
        "The provider's answer carried no authorization code. Start again.",
    ),
    again(
        "wrong-issuer",
        S::BAD_REQUEST,
        "The sign-in answer came from another provider",
        "The answer names an issuer other than the one this sign-in was started with, which is \
         how a mix-up attack looks. Start again.",
    ),
    again(
        "id-token-invalid",
        S::BAD_REQUEST,
        "The sign-in answer could not be verified",
        "{error}. Start again; if it persists, the provider or the proxy's clock is \
         misconfigured.",
    ),
    again(
        "id-token-invalid/keys",
        S::SERVICE_UNAVAILABLE,
        "The sign-in provider is not answering",
        "Its signing keys could not be read ({error}). Try again in a moment.",
    ),
    again(
        "code-redemption-failed/refused",
        S::BAD_REQUEST,
        "The sign-in code was refused",
        "The provider refused the sign-in code ({error}). A code works once and only with the \
         browser session that asked for it. Start again.",
    ),
    own(
        "code-redemption-failed/operator",
        S::BAD_GATEWAY,
        "The proxy's sign-in configuration is broken",
        "The provider refused the proxy's own credentials ({error}). This is not your fault: an \
         administrator must fix auth.client_id, the tenant, the redirect URI registration or \
         the client secret/certificate.",
    ),
    again(
        "code-redemption-failed/transient",
        S::SERVICE_UNAVAILABLE,
        "The sign-in provider is not answering",
        "Redeeming the sign-in code failed ({error}). Try again in a moment.",
    ),
    again(
        "code-redemption-failed/metadata",
        S::BAD_GATEWAY,
        "The sign-in provider answered badly",
        "Reading the provider's metadata or the user's profile failed ({error}).",
    ),
    own(
        "code-redemption-failed/local",
        S::INTERNAL_SERVER_ERROR,
        "The proxy could not complete the sign-in",
        "{error}.",
    ),
    own(
        "user-not-allowed",
        S::FORBIDDEN,
        "You may not use this proxy",
        "You signed in successfully, but {reason}. Ask the proxy's administrator for access \
         (auth.allowed_tenants, auth.allowed_users, auth.allowed_email_domains).",
    ),
    own(
        "membership-required",
        S::FORBIDDEN,
        "You may not use this proxy",
        "You signed in successfully, but {reason}. Group membership is granted by the group's \
         owners or your directory's administrators; app roles by the owners of the proxy's app \
         registration (Enterprise applications, the app, Users and groups). Sign in again once \
         you have it.",
    ),
    own(
        "membership-unverified",
        S::SERVICE_UNAVAILABLE,
        "Your groups could not be checked",
        "This proxy admits only members of certain groups, and could not find out whether you \
         are one ({detail}). Try again in a moment.",
    ),
    own(
        "membership-unverified/operator",
        S::BAD_GATEWAY,
        "Your groups could not be checked",
        "This proxy admits only members of certain groups, and Microsoft Graph or the sign-in \
         provider refused to say whether you are one ({detail}). The proxy's administrator must \
         grant its app registration the delegated Microsoft Graph permission User.Read, and \
         keep openid in auth.scopes (docs/providers.md).",
    ),
    again(
        "not-signed-in",
        S::UNAUTHORIZED,
        "Not signed in",
        "There is no session for this request. Sign in at /.auth/login.",
    ),
    again(
        "bad-form",
        S::BAD_REQUEST,
        "Unreadable sign-in answer",
        "The provider's form could not be read.",
    ),
];

/// What a request without a usable session is told first, by why.
pub const NO_SESSION: &[(Miss, &str)] = &[
    (Miss::NoCookie, "You are not signed in."),
    (
        Miss::Unknown,
        "Your session is not known to the proxy (it restarted, or the cookie is not valid).",
    ),
    (Miss::Idle, "Your session ended after a period without use."),
    (Miss::Expired, "Your session has ended."),
];

/// The sentence of [`NO_SESSION`] for `miss`.
pub fn no_session(miss: Miss) -> &'static str {
    NO_SESSION
        .iter()
        .find(|(m, _)| *m == miss)
        .map_or("You are not signed in.", |(_, why)| why)
}

/// The entry of `key`.
pub fn entry(key: &str) -> &'static Own {
    OWN.iter()
        .find(|o| o.key == key)
        .unwrap_or_else(|| panic!("no own answer {key:?}"))
}

/// The id of an entry: its key up to the variant.
pub fn id_of(key: &'static str) -> &'static str {
    key.split_once('/').map_or(key, |(id, _)| id)
}

/// The answer `key` with its placeholders filled from `vars`.
pub fn answer(key: &'static str, vars: &[(&str, &str)]) -> Answer {
    let e = entry(key);
    let text = crate::answer::fill(e.text, |name| {
        let found = vars.iter().find(|(n, _)| *n == name).map(|(_, v)| *v);
        debug_assert!(found.is_some(), "{key}: no value for {{{name}}}");
        found.map(str::to_string)
    });
    let ans = Answer::new(e.status, id_of(e.key), e.title, text);
    if e.sign_in_again {
        ans.sign_in_again("/.auth/login")
    } else {
        ans
    }
}
