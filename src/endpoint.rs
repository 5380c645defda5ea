//! The proxy's own endpoints under `/.auth/`, read once from the path:
//! the pipeline serves them instead of forwarding, the metrics label
//! them, `login` dispatches on them. `/.auth/tokens` and `/.auth/pats`
//! are the same kind of resource (a list, its items) with one dispatch.

use http::Method;

/// An own endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/.auth/login`.
    Login,
    /// `/.auth/callback`.
    Callback,
    /// `/.auth/logout`.
    Logout,
    /// `/.auth/me`.
    Me,
    /// `/.auth/tokens`, or one token: personal proxy tokens.
    Tokens(Option<String>),
    /// `/.auth/pats`, or one PAT: Azure DevOps personal access tokens.
    Pats(Option<String>),
    /// Any other path under `/.auth`: reserved, never forwarded.
    Reserved,
}

/// What a request asks of a list resource (`/.auth/tokens`,
/// `/.auth/pats`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// `GET` the list.
    List,
    /// `POST` to the list.
    Create,
    /// `DELETE` an item, or `POST` to it (a page's form has no DELETE).
    Revoke {
        /// The item.
        id: &'a str,
        /// Asked by a form: answered by sending the browser back.
        form: bool,
    },
    /// Another method: the ones allowed.
    NotAllowed(&'static str),
}

// === impl Endpoint ===

impl Endpoint {
    /// The own endpoint `path` names; `None` for a path to forward.
    pub fn of(path: &str) -> Option<Self> {
        let rest = match path.strip_prefix("/.auth") {
            Some("") => return Some(Self::Reserved),
            Some(rest) => rest.strip_prefix('/')?,
            None => return None,
        };
        let item = |prefix: &str| -> Option<Option<String>> {
            match rest.strip_prefix(prefix)? {
                "" => Some(None),
                sub => sub
                    .strip_prefix('/')
                    .map(|id| Some(id.to_string()).filter(|id| !id.is_empty())),
            }
        };
        Some(match rest {
            "login" => Self::Login,
            "callback" => Self::Callback,
            "logout" => Self::Logout,
            "me" => Self::Me,
            _ => {
                if let Some(id) = item("tokens") {
                    Self::Tokens(id)
                } else if let Some(id) = item("pats") {
                    Self::Pats(id)
                } else {
                    Self::Reserved
                }
            }
        })
    }
}

/// What `method` on a list resource's item `id` (or the list) asks.
pub fn action<'a>(method: &Method, id: Option<&'a str>) -> Action<'a> {
    match (method, id) {
        (&Method::GET, None) => Action::List,
        (&Method::POST, None) => Action::Create,
        (&Method::DELETE, Some(id)) => Action::Revoke { id, form: false },
        (&Method::POST, Some(id)) => Action::Revoke { id, form: true },
        (_, Some(_)) => Action::NotAllowed("DELETE, POST"),
        (_, None) => Action::NotAllowed("GET, POST"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_their_endpoint() {
        let t = |id: &str| Some(id.to_string());
        for (path, want) in [
            ("/.auth/login", Some(Endpoint::Login)),
            ("/.auth/callback", Some(Endpoint::Callback)),
            ("/.auth/logout", Some(Endpoint::Logout)),
            ("/.auth/me", Some(Endpoint::Me)),
            ("/.auth/tokens", Some(Endpoint::Tokens(None))),
            ("/.auth/tokens/", Some(Endpoint::Tokens(None))),
            ("/.auth/tokens/abc", Some(Endpoint::Tokens(t("abc")))),
            ("/.auth/tokens/a/b", Some(Endpoint::Tokens(t("a/b")))),
            ("/.auth/pats", Some(Endpoint::Pats(None))),
            ("/.auth/pats/x-1", Some(Endpoint::Pats(t("x-1")))),
            ("/.auth", Some(Endpoint::Reserved)),
            ("/.auth/", Some(Endpoint::Reserved)),
            ("/.auth/tokensx", Some(Endpoint::Reserved)),
            ("/.auth/login/", Some(Endpoint::Reserved)),
            ("/.auth/LOGIN", Some(Endpoint::Reserved)),
            ("/.authx", None),
            ("/org/.auth/login", None),
            ("/org/_apis/projects", None),
            ("/", None),
        ] {
            assert_eq!(Endpoint::of(path), want, "{path}");
        }
    }

    #[test]
    fn list_resources_share_one_dispatch() {
        assert_eq!(action(&Method::GET, None), Action::List);
        assert_eq!(action(&Method::POST, None), Action::Create);
        assert_eq!(
            action(&Method::DELETE, Some("a")),
            Action::Revoke {
                id: "a",
                form: false
            }
        );
        assert_eq!(
            action(&Method::POST, Some("a")),
            Action::Revoke {
                id: "a",
                form: true
            }
        );
        assert_eq!(
            action(&Method::GET, Some("a")),
            Action::NotAllowed("DELETE, POST")
        );
        assert_eq!(action(&Method::PUT, None), Action::NotAllowed("GET, POST"));
    }

    proptest::proptest! {
        #[test]
        fn only_paths_under_auth_are_own(path in "/[./a-z]{0,20}") {
            let own = path == "/.auth" || path.starts_with("/.auth/");
            proptest::prop_assert_eq!(Endpoint::of(&path).is_some(), own);
        }
    }
}
