//! The components of mode `user`, each through its own interface, on a
//! memory store and a provider that cannot be reached (a test that makes
//! a token call sees it fail).

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};
use url::Url;

use super::refresh::{Refused, Stale};
use super::*;
use crate::clock::Clock;
use crate::config::{Config, Secret};
use crate::session::{Issued, SessionKey, UserInfo};

/// The session cookie's name (configured `_ado_proxy`; the public URL is
/// https).
const COOKIE: &str = "__Host-_ado_proxy";

pub(super) const TENANT: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";

/// Mode `user` with Entra in one directory, changed by `f`; its clock.
pub(super) fn login_with(f: impl FnOnce(&mut Config)) -> (Login, Clock) {
    let mut c = Config::default();
    c.auth.mode = crate::config::AuthMode::User;
    c.auth.provider = Some(ProviderKind::Entra);
    c.session.cookie_name = "_ado_proxy".into();
    c.auth.client_id = Some("11111111-2222-3333-4444-555555555555".into());
    c.auth.tenant = Some(TENANT.into());
    // Port 9 (discard) on loopback: nothing listens, a call fails at once.
    c.auth.authority_host = Some(Url::parse("http://127.0.0.1:9/").unwrap());
    c.auth.provider_timeout = Duration::from_secs(2);
    f(&mut c);
    let clock = Clock::default();
    let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
    let public = Url::parse("https://proxy.example/").unwrap();
    let store = Sessions::open(
        &c.session,
        &crate::config::StorePlan::Memory,
        metrics.clone(),
        &clock,
    )
    .unwrap();
    let plan = crate::config::user_plan(&c, ProviderKind::Entra);
    let login = Login::new(&plan, Arc::new(store), &public, metrics).unwrap();
    (login, clock)
}

/// A signed-in session of `login` whose token lasts `lifetime`, with a
/// refresh token when `refresh`.
pub(super) fn session(
    login: &Login,
    clock: &Clock,
    lifetime: Duration,
    refresh: bool,
) -> Arc<Session> {
    let id = provider::random_token();
    let user = UserInfo {
        upn: Some("dana@contoso.com".into()),
        object_id: Some("oid-1".into()),
        tenant: Some(TENANT.into()),
        ..UserInfo::default()
    };
    let issued = Issued {
        access_token: Secret::new("access-1"),
        expires_in: lifetime,
        refresh_token: refresh.then(|| Secret::new("refresh-1")),
        id_token: None,
        member: Default::default(),
    };
    Arc::new(
        Session::new(
            SessionKey::of(&id),
            login.store.store_key(&id),
            user,
            issued,
            clock,
        )
        .unwrap(),
    )
}

fn cookie(name: &str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::COOKIE,
        HeaderValue::from_str(&format!("{name}={value}")).unwrap(),
    );
    h
}

// --- Refresher: refreshed / sign in again / failed ---

#[tokio::test]
async fn a_token_far_from_expiry_is_used_without_a_call() {
    let (login, clock) = login_with(|_| {});
    let s = session(&login, &clock, Duration::from_secs(3600), true);
    let tokens = login.refresher.fresh(&s, None).await.unwrap();
    assert_eq!(tokens.generation, 1);
}

#[tokio::test]
async fn an_expired_token_without_a_refresh_token_means_signing_in_again() {
    let (login, clock) = login_with(|_| {});
    let s = session(&login, &clock, Duration::from_secs(600), false);
    clock.advance(Duration::from_secs(601));
    match login.refresher.fresh(&s, None).await {
        Err(Stale::SignInAgain { miss, claims }) => {
            assert_eq!(miss, Miss::Expired);
            assert_eq!(claims, None);
        }
        other => panic!("{:?}", other.err()),
    }
}

#[tokio::test]
async fn a_provider_that_cannot_be_reached_fails_with_a_retry_and_backs_off() {
    let (login, clock) = login_with(|_| {});
    let s = session(&login, &clock, Duration::from_secs(600), true);
    clock.advance(Duration::from_secs(601));
    let first = login.refresher.fresh(&s, None).await;
    let Err(Stale::Failed(Error::ProviderFailed {
        operator: false,
        retry_after: Some(wait),
        ..
    })) = first
    else {
        panic!("{:?}", first.err());
    };
    assert!((1..=60).contains(&wait), "{wait}");
    // Within the backoff the next request shares the outcome: no call.
    let attempts = s.attempts();
    assert!(matches!(
        login.refresher.fresh(&s, None).await,
        Err(Stale::Failed(Error::ProviderFailed { .. }))
    ));
    assert_eq!(
        s.attempts(),
        attempts,
        "no second token call in the backoff"
    );
}

#[tokio::test]
async fn a_refusal_of_an_older_generation_is_not_a_reason_to_refresh() {
    let (login, clock) = login_with(|_| {});
    let s = session(&login, &clock, Duration::from_secs(3600), true);
    let old = Refused {
        generation: 0,
        claims: None,
    };
    let tokens = login.refresher.fresh(&s, Some(old)).await.unwrap();
    assert_eq!(tokens.generation, 1);
    // The current one refused: a call (which fails here) is made.
    let current = Refused {
        generation: 1,
        claims: None,
    };
    let before = s.attempts();
    // Still valid: the failed refresh leaves the token in use.
    assert!(login.refresher.fresh(&s, Some(current)).await.is_ok());
    assert_ne!(s.attempts(), before);
}

// --- SignIn: cookies, and what a request without a session is told ---

#[tokio::test]
async fn a_cookie_names_a_live_session_or_says_why_not() {
    let (login, clock) = login_with(|_| {});
    let none = login.sign_in.session(&HeaderMap::new()).await.unwrap();
    assert_eq!(none.err(), Some(Miss::NoCookie));
    let unknown = login
        .sign_in
        .session(&cookie(COOKIE, &provider::random_token()))
        .await
        .unwrap();
    assert_eq!(unknown.err(), Some(Miss::Unknown));

    let id = provider::random_token();
    let s = Arc::new(
        Session::new(
            SessionKey::of(&id),
            login.store.store_key(&id),
            UserInfo::default(),
            Issued {
                access_token: Secret::new("a"),
                expires_in: Duration::from_secs(3600),
                refresh_token: None,
                id_token: None,
                member: Default::default(),
            },
            &clock,
        )
        .unwrap(),
    );
    login.store.create(s.clone()).await.unwrap();
    let name = COOKIE;
    let found = login.sign_in.session(&cookie(name, &id)).await.unwrap();
    assert!(found.is_ok_and(|f| f.key == s.key));
    // Past its maximum lifetime it ends, and the cookie says so.
    clock.advance(Duration::from_secs(13 * 3600));
    let ended = login.sign_in.session(&cookie(name, &id)).await.unwrap();
    assert!(matches!(ended.err(), Some(Miss::Expired | Miss::Idle)));
}

#[test]
fn signing_in_again_keeps_the_way_back_and_the_claims() {
    let (login, _) = login_with(|c| c.auth.personal_tokens = Some(true));
    let Error::NeedsLogin {
        login_url,
        reason,
        clear_cookie,
        tokens_url,
    } = login
        .sign_in
        .needs_login(Miss::Expired, "/org/_git/repo?x=1", Some("{\"c\":1}"))
    else {
        panic!()
    };
    let url = Url::parse(&login_url).unwrap();
    assert_eq!(url.path(), "/.auth/login");
    let q: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert!(
        q.contains(&("rd".into(), "/org/_git/repo?x=1".into())),
        "{q:?}"
    );
    assert!(q.contains(&("claims".into(), "{\"c\":1}".into())), "{q:?}");
    assert_eq!(reason, Miss::Expired);
    assert!(clear_cookie.is_some(), "a dead cookie is cleared");
    assert_eq!(
        tokens_url.as_deref(),
        Some("https://proxy.example/.auth/tokens")
    );

    // Another site's address is never a way back; no cookie, none cleared.
    let Error::NeedsLogin {
        login_url,
        clear_cookie,
        ..
    } = login
        .sign_in
        .needs_login(Miss::NoCookie, "//evil.example/x", None)
    else {
        panic!()
    };
    assert!(!login_url.contains("rd="), "{login_url}");
    assert!(clear_cookie.is_none());
}

// --- PersonalTokens ---

#[tokio::test]
async fn only_known_proxy_tokens_act_for_a_session() {
    let (login, clock) = login_with(|c| c.auth.personal_tokens = Some(true));
    let personal = login.personal.as_ref().unwrap();
    let mut h = HeaderMap::new();
    assert!(personal.session_of(&h).await.unwrap().is_none());
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer eyJ.a.b"),
    );
    assert!(
        personal.session_of(&h).await.unwrap().is_none(),
        "no proxy token"
    );
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_static("Bearer adp_0000000000000000000000000000000000000000000"),
    );
    let Err(e) = personal.session_of(&h).await else {
        panic!("an unknown token passed")
    };
    assert!(format!("{e:?}").contains("not known"), "{e:?}");

    let owner = session(&login, &clock, Duration::from_secs(3600), true);
    login.store.create(owner.clone()).await.unwrap();
    let (value, _) = login
        .store
        .create_token(&owner, "ci", Duration::from_secs(86_400), 10)
        .await
        .unwrap()
        .unwrap();
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {value}")).unwrap(),
    );
    let acting = personal.session_of(&h).await.unwrap().unwrap();
    assert_eq!(acting.user.upn, owner.user.upn);
    assert!(acting.until.is_some());
}

// --- ClientTokens ---

fn unsigned_jwt(claims: serde_json::Value) -> String {
    use base64::Engine;
    let b64 = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.{}",
        b64(br#"{"alg":"RS256","kid":"k"}"#),
        b64(claims.to_string().as_bytes()),
        b64(b"sig")
    )
}

#[tokio::test]
async fn a_client_token_of_another_directory_is_refused_before_any_key_is_fetched() {
    let (login, _) = login_with(|c| c.auth.accept_client_tokens = true);
    let ct = login.client_tokens.as_ref().unwrap();
    assert!(ct.passes(&HeaderMap::new()).await.unwrap().is_none());
    let mut h = HeaderMap::new();
    let other = unsigned_jwt(serde_json::json!({
        "tid": "00000000-1111-2222-3333-444444444444", "aud": crate::config::ADO_RESOURCE,
        "iss": "https://sts.windows.net/00000000-1111-2222-3333-444444444444/", "exp": 4102444800u64
    }));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {other}")).unwrap(),
    );
    let e = ct.passes(&h).await.unwrap_err();
    assert!(
        format!("{e:?}").contains("not one this proxy admits"),
        "{e:?}"
    );
    // The admitted directory's token is checked against its keys, which
    // cannot be fetched here: refused, not passed.
    let own = unsigned_jwt(serde_json::json!({
        "tid": TENANT, "aud": crate::config::ADO_RESOURCE,
        "iss": format!("https://sts.windows.net/{TENANT}/"), "exp": 4102444800u64
    }));
    h.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {own}")).unwrap(),
    );
    assert!(ct.passes(&h).await.is_err());
}

// --- Membership: what was found decides, found again when stale ---

/// A session found against the current groups is admitted without a
/// call; one from before the check (or another configuration) is
/// refreshed first, and while that cannot happen it is not admitted.
#[tokio::test]
async fn a_stale_membership_is_found_again_before_it_admits() {
    const DEVS: &str = "9f2c6a4e-1b7d-4e3a-8c5f-2d6b0a1e7c94";
    let (login, clock) = login_with(|c| c.auth.allowed_groups = vec![DEVS.into()]);
    let membership = login.membership.clone().unwrap();
    let found = membership
        .find(
            &crate::oauth::group_claims::GroupClaims {
                groups: Some(vec![DEVS.into()]),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
    let store_session = |member: crate::session::Member| {
        let id = provider::random_token();
        let s = Arc::new(
            Session::new(
                SessionKey::of(&id),
                login.store.store_key(&id),
                UserInfo::default(),
                Issued {
                    access_token: Secret::new("a"),
                    expires_in: Duration::from_secs(3600),
                    refresh_token: Some(Secret::new("r")),
                    id_token: None,
                    member,
                },
                &clock,
            )
            .unwrap(),
        );
        (id, s)
    };
    let (id, s) = store_session(found);
    login.store.create(s).await.unwrap();
    let ok = login.credential(&cookie(COOKIE, &id), "/", None).await;
    assert!(ok.is_ok_and(|c| c.member.groups == vec![DEVS.to_string()]));

    let (id, s) = store_session(crate::session::Member::default());
    login.store.create(s).await.unwrap();
    match login.credential(&cookie(COOKIE, &id), "/", None).await {
        Err(Error::Login(e)) => match *e {
            crate::error::LoginError::MembershipUnverified { retry_after, .. } => {
                assert_eq!(retry_after, Some(5))
            }
            other => panic!("{other}"),
        },
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("a stale finding admitted"),
    }
}
