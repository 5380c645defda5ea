//! Entra groups and app roles (`auth.allowed_groups`, `allowed_roles`,
//! rules for groups and roles) through the proxy, against the fake Entra
//! (ID tokens with `groups`, `roles` and the overage marker) and its fake
//! Microsoft Graph: checked at sign-in and again at every refresh, for
//! browsers, personal proxy tokens and clients' own tokens.

use std::time::Duration;

use serde_json::json;

use crate::support::fake_idp::{Setup, keys, set_cookie};
use crate::support::{PROJECTS, metrics};

const DEVS: &str = "9f2c6a4e-1b7d-4e3a-8c5f-2d6b0a1e7c94";
const OPS: &str = "0b6d1c2e-3f4a-4b5c-9d6e-7f8a9b0c1d2e";
const OTHER: &str = "5e1f0a9b-8c7d-4e6f-a5b4-c3d2e1f0a9b8";
/// Tokens live an hour; moving the clock past it makes the next request
/// refresh.
const HOUR: Duration = Duration::from_secs(3600);

/// A proxy requiring group DEVS, asking the fake's Graph.
async fn requiring_devs(tweak: impl FnOnce(&mut ado_auth_proxy::config::Config)) -> Setup {
    Setup::start(HOUR, |c, idp| {
        c.auth.allowed_groups = vec![DEVS.to_ascii_uppercase()];
        c.auth.graph_url = url::Url::parse(&format!("{idp}/graph")).unwrap();
        tweak(c);
    })
    .await
}

fn groups(s: &Setup, list: &[&str]) {
    let list: Vec<serde_json::Value> = list.iter().map(|g| json!(g)).collect();
    s.idp.set_user(|u| {
        u.extra.insert("groups".into(), json!(list));
    });
}

/// The ID token has too many groups to carry: Entra's overage marker.
fn overage(s: &Setup) {
    s.idp.set_user(|u| {
        u.extra.remove("groups");
        u.extra
            .insert("_claim_names".into(), json!({"groups": "src1"}));
        u.extra.insert(
            "_claim_sources".into(),
            json!({"src1": {"endpoint": "https://graph.windows.net/t/users/u/getMemberObjects"}}),
        );
    });
}

/// A GET of the projects with `token` as the bearer: status and body.
async fn with_bearer(s: &Setup, token: String) -> (u16, String) {
    let resp = crate::support::client()
        .get(format!("{}{PROJECTS}", s.url))
        .bearer_auth(token)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

async fn get(b: &crate::support::oidc::Browser, url: &str) -> (u16, String) {
    let resp = b
        .http
        .get(url)
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

#[tokio::test]
async fn only_members_of_an_allowed_group_sign_in() {
    let s = requiring_devs(|_| {}).await;
    groups(&s, &[OTHER]);
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 403);
    assert!(set_cookie(&resp, "_ado_proxy").is_none(), "no session");
    let page = resp.text().await.unwrap();
    assert!(page.contains("You may not use this proxy"), "{page}");
    assert!(page.contains(DEVS), "names the group: {page}");
    assert!(
        page.contains("group&#39;s owners") || page.contains("group's owners"),
        "{page}"
    );

    // Without any groups claim the answer says the app must emit them.
    s.idp.set_user(|u| {
        u.extra.remove("groups");
    });
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("groupMembershipClaims"));

    groups(&s, &[OTHER, DEVS]);
    let b = s.signed_in().await;
    let (status, body) = get(&b, &format!("{}{PROJECTS}", s.url)).await;
    assert_eq!(status, 200, "{body}");
    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_login_failures_total{reason=\"not_member\"} 2"),
        "{m}"
    );
    assert!(
        s.idp.graph_asked().is_empty(),
        "the claim sufficed: no Graph call"
    );
}

#[tokio::test]
async fn losing_the_group_ends_access_at_the_next_refresh_for_sessions_and_tokens() {
    let s = requiring_devs(|_| {}).await;
    groups(&s, &[DEVS]);
    let b = s.signed_in().await;
    let made: serde_json::Value = b
        .http
        .post(format!("{}/.auth/tokens", s.url))
        .json(&json!({"name": "ci", "expires_in_days": 7}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = made["token"]
        .as_str()
        .expect("a personal token")
        .to_string();
    assert_eq!(with_bearer(&s, token.clone()).await.0, 200);
    assert_eq!(get(&b, &format!("{}{PROJECTS}", s.url)).await.0, 200);

    // Still a member at the first refresh: nothing changes.
    s.advance(HOUR);
    assert_eq!(get(&b, &format!("{}{PROJECTS}", s.url)).await.0, 200);

    // Removed from the group: the next refresh ends both.
    groups(&s, &[OTHER]);
    s.advance(HOUR);
    let (status, body) = get(&b, &format!("{}{PROJECTS}", s.url)).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body.contains("membership-required") && body.contains(DEVS),
        "{body}"
    );
    let (status, body) = with_bearer(&s, token.clone()).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("membership-required"), "{body}");
    // The session is over: the browser is sent to sign in again.
    let (status, _) = get(&b, &format!("{}{PROJECTS}", s.url)).await;
    assert_eq!(status, 401);
    let m = metrics(s.proxy.admin_addr).await;
    assert!(
        m.contains("ado_proxy_token_refreshes_total{outcome=\"not_member\"} 2"),
        "{m}"
    );
}

#[tokio::test]
async fn an_overage_is_settled_with_microsoft_graph_and_its_own_token() {
    // More groups than one Graph call takes: rules name 24 besides DEVS.
    let many: Vec<String> = (0..24)
        .map(|i| format!("00000000-0000-4000-8000-{i:012}"))
        .collect();
    let rule_groups = many.clone();
    let s = requiring_devs(move |c| {
        c.access.rules = vec![ado_auth_proxy::config::AccessRule {
            groups: rule_groups,
            ..ado_auth_proxy::config::AccessRule::named(
                "many",
                ado_auth_proxy::config::RuleAction::Allow,
            )
        }];
    })
    .await;
    overage(&s);
    s.idp.set_graph_groups(&[DEVS, &many[3], OTHER]);
    let b = s.signed_in().await;
    let (status, body) = get(&b, &format!("{}{PROJECTS}", s.url)).await;
    assert_eq!(
        status, 200,
        "the Azure DevOps token went to Azure DevOps: {body}"
    );
    let asked = s.idp.graph_asked();
    assert_eq!(asked.len(), 2, "25 groups, 20 per call: {asked:?}");
    assert!(asked.iter().all(|a| a.len() <= 20));
    assert!(asked.concat().contains(&DEVS.to_string()));
    assert!(
        !asked.concat().contains(&OTHER.to_string()),
        "only the groups it needs"
    );
    let graph_scope = format!("{}/graph/User.Read", s.idp.url());
    assert!(
        s.idp.token_scopes().contains(&graph_scope),
        "{:?}",
        s.idp.token_scopes()
    );

    // Graph says no more DEVS: the refresh finds it out.
    s.idp.set_graph_groups(&[OTHER]);
    s.advance(HOUR);
    let (status, body) = get(&b, &format!("{}{PROJECTS}", s.url)).await;
    assert_eq!(status, 403, "{body}");

    // Graph refuses the proxy's app: the operator is told what to grant.
    s.idp.set_graph_groups(&[DEVS]);
    s.idp.set_graph_status(Some(403));
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 502);
    let page = resp.text().await.unwrap();
    assert!(
        page.contains("Your groups could not be checked") && page.contains("User.Read"),
        "{page}"
    );
}

#[tokio::test]
async fn app_roles_and_rules_for_groups_and_roles() {
    let s = Setup::start(HOUR, |c, idp| {
        use ado_auth_proxy::config::{AccessRule, RuleAction};
        c.auth.allowed_roles = vec!["Tools.User".into()];
        c.auth.graph_url = url::Url::parse(&format!("{idp}/graph")).unwrap();
        c.access.rules = vec![
            AccessRule {
                groups: vec![OPS.into()],
                ..AccessRule::named("ops-write", RuleAction::Allow)
            },
            AccessRule {
                roles: vec!["Tools.Reader".into()],
                methods: Some(vec!["GET".into()]),
                ..AccessRule::named("readers", RuleAction::Allow)
            },
        ];
        c.access.default = RuleAction::Deny;
    })
    .await;
    let roles = |list: &[&str]| {
        let list: Vec<serde_json::Value> = list.iter().map(|r| json!(r)).collect();
        s.idp.set_user(|u| {
            u.extra.insert("roles".into(), json!(list));
        });
    };
    roles(&["Tools.Reader"]);
    let (_, resp) = s.sign_in().await;
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("app roles Tools.User"));

    roles(&["Tools.User", "Tools.Reader"]);
    groups(&s, &[]);
    let b = s.signed_in().await;
    let item = format!("{}/contoso/_apis/wit/workitems/1?api-version=7.1", s.url);
    assert_eq!(get(&b, &item).await.0, 200, "a reader reads");
    let patch = b.http.patch(&item).header("accept", "application/json");
    let resp = patch.send().await.unwrap();
    assert_eq!(resp.status(), 403);
    assert!(resp.text().await.unwrap().contains("access-rule-refused"));

    groups(&s, &[OPS]);
    let ops = s.signed_in().await;
    let resp = ops.http.patch(&item).send().await.unwrap();
    assert_eq!(resp.status(), 200, "a member of OPS writes");
}

#[tokio::test]
async fn a_clients_own_token_needs_the_role_in_its_own_claims() {
    let s = Setup::start(HOUR, |c, _| {
        c.auth.allowed_roles = vec!["Tools.User".into()];
        c.auth.accept_client_tokens = true;
    })
    .await;
    let signing = &keys().signing_key;
    let with_role =
        crate::client_tokens::token(|c| c["roles"] = json!(["Tools.User"]), signing, "fake-key");
    let (status, body) = with_bearer(&s, with_role).await;
    // The fake Azure DevOps knows only the fake's own tokens: the proxy
    // forwarded it, which is what passing means.
    assert_eq!(status, 401, "forwarded: {body}");
    assert!(!body.contains("client-token-refused"), "{body}");
    let without = crate::client_tokens::token(|_| {}, signing, "fake-key");
    let (status, body) = with_bearer(&s, without).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body.contains("client-token-refused") && body.contains("app roles Tools.User"),
        "{body}"
    );
    let overflowing = crate::client_tokens::token(
        |c| c["_claim_names"] = json!({"groups": "src1"}),
        signing,
        "fake-key",
    );
    let (status, body) = with_bearer(&s, overflowing).await;
    assert_eq!(status, 401, "{body}");
    assert!(body.contains("client-token-refused"), "{body}");
}

/// Setting up groups outside mode user with Entra is refused at load,
/// naming the key.
#[test]
fn groups_outside_entra_sign_in_are_refused_at_load() {
    let mut c = crate::support::config("http://127.0.0.1:9");
    c.auth.mode = ado_auth_proxy::config::AuthMode::Pat;
    c.auth.pat = Some(ado_auth_proxy::config::Secret::new("x"));
    c.auth.allowed_groups = vec![DEVS.into()];
    let problems = ado_auth_proxy::config::validate(&c);
    assert!(
        problems
            .iter()
            .any(|p| p.key == "auth.allowed_groups" && p.message.contains("auth.mode = \"user\"")),
        "{problems:?}"
    );
}

// ---------------------------------------------------------------------
// Attack 31: review findings (these tests are expected to FAIL while the
// findings stand).
// ---------------------------------------------------------------------

/// Two replicas on one Redis (a shared key file): `a` without groups
/// (before the change, or a replica whose config lags), `b` requiring DEVS.
struct Replicas {
    idp: crate::support::fake_idp::FakeIdp,
    _ado: crate::support::upstream::FakeUpstream,
    vssps: crate::support::upstream::FakeUpstream,
    _redis: crate::support::redis::RedisServer,
    _dir: tempfile::TempDir,
    a: ado_auth_proxy::app::Running,
    b: ado_auth_proxy::app::Running,
}

impl Replicas {
    async fn start() -> Self {
        use crate::support::fake_idp::{self, FakeIdp};
        use crate::support::upstream::{FakeUpstream, Recorded, respond};
        use ado_auth_proxy::config::{Secret, StoreKind};
        let idp = FakeIdp::start(HOUR).await;
        let ado = fake_idp::fake_ado(&idp).await;
        let check = idp.checker();
        // A fake PAT lifecycle API: mints a PAT for any live token.
        let vssps = FakeUpstream::recording(move |r: &Recorded| {
            let auth = r
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if check(auth).is_err() {
                return respond(401, &[], "");
            }
            let pat = json!({"displayName": "x", "scope": "vso.code", "validTo": "2027-01-01T00:00:00Z",
                "validFrom": "2026-11-27T00:00:00Z", "authorizationId": "00000000-0000-4000-8000-000000000000",
                "targetAccounts": [], "token": "fakepat0secretvalue"});
            respond(
                200,
                &[("content-type", "application/json")],
                json!({"patToken": pat, "patTokenError": "none"}).to_string(),
            )
        })
        .await;
        let redis = crate::support::redis::RedisServer::start();
        let dir = tempfile::tempdir().unwrap();
        let keys = dir.path().join("keys");
        std::fs::write(&keys, ado_auth_proxy::seal::generate_key().unwrap() + "\n").unwrap();
        let config = |groups: bool| {
            let mut c = fake_idp::entra_config(&ado.url(), &idp);
            c.session.store = StoreKind::Redis;
            c.session.redis_url = Some(Secret::new(redis.url()));
            c.session.encryption_keys_file = Some(keys.clone());
            c.session.revalidate_interval = Duration::from_secs(1);
            c.session.key_prefix = "t:".into();
            c.listen.public_url = Some(url::Url::parse("http://127.0.0.1:9").unwrap());
            c.upstream
                .hosts
                .insert("vssps".into(), url::Url::parse(&vssps.url()).unwrap());
            if groups {
                c.auth.allowed_groups = vec![DEVS.into()];
                c.auth.graph_url = url::Url::parse(&format!("{}/graph", idp.url())).unwrap();
            }
            c
        };
        let a = crate::support::start_with(config(false), idp.clock()).await;
        let b = crate::support::start_with(config(true), idp.clock()).await;
        Self {
            idp,
            _ado: ado,
            vssps,
            _redis: redis,
            _dir: dir,
            a,
            b,
        }
    }

    fn url(p: &ado_auth_proxy::app::Running) -> String {
        format!("http://{}", p.proxy_addr)
    }

    fn groups(&self, list: &[&str]) {
        let list: Vec<serde_json::Value> = list.iter().map(|g| json!(g)).collect();
        self.idp.set_user(|u| {
            u.extra.insert("groups".into(), json!(list));
        });
    }

    /// A browser signed in at `at` (the provider's redirect delivered to it).
    async fn signed_in_at(
        &self,
        at: &ado_auth_proxy::app::Running,
    ) -> crate::support::oidc::Browser {
        let b = crate::support::oidc::Browser::new();
        let port = at.proxy_addr.port();
        let resp = crate::support::fake_idp::sign_in_via(&b, &Self::url(at), None, |c| {
            let mut u = url::Url::parse(c).unwrap();
            u.set_port(Some(port)).unwrap();
            u.to_string()
        })
        .await;
        assert_eq!(resp.status(), 302, "{:?}", resp.text().await);
        b
    }
}

/// `/.auth/pats` checks the finding as proxied requests do: a session
/// whose groups were found before they were required (with Redis its
/// access token is stored, so nothing else forces a refresh) mints no
/// Azure DevOps PAT, which would outlive every later check.
#[tokio::test]
async fn a_session_found_under_another_configuration_mints_no_pat() {
    let r = Replicas::start().await;
    r.groups(&[OTHER]); // not a member of DEVS
    let pat_browser = r.signed_in_at(&r.a).await;
    let api_browser = r.signed_in_at(&r.a).await;
    let ub = Replicas::url(&r.b);

    // B refuses proxied requests of this non-member...
    let (status, body) = get(&api_browser, &format!("{ub}{PROJECTS}")).await;
    assert_eq!(status, 403, "B refuses the non-member: {body}");

    // ...but lets the same kind of session mint an Azure DevOps PAT.
    let resp = pat_browser
        .http
        .post(format!("{ub}/.auth/pats"))
        .json(&json!({"org": "contoso", "display_name": "keep", "scopes": ["vso.code"], "expires_in_days": 30}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    let minted = r
        .vssps
        .requests()
        .iter()
        .filter(|q| q.method == "POST")
        .count();
    assert!(
        status == 403 && minted == 0,
        "a non-member minted an Azure DevOps PAT through replica B: status {status}, \
         {minted} POST(s) reached the PAT API, body {body}"
    );
}

/// A refresh on a replica that reads no groups leaves the new
/// generation without a finding: a replica that requires groups finds
/// them again instead of adopting the previous generation's, so a user
/// removed from DEVS is refused there.
#[tokio::test]
async fn a_replica_that_reads_no_groups_vouches_for_no_finding() {
    let r = Replicas::start().await;
    r.groups(&[DEVS]);
    let browser = r.signed_in_at(&r.b).await; // found at B: a member of DEVS
    let (ua, ub) = (Replicas::url(&r.a), Replicas::url(&r.b));
    assert_eq!(get(&browser, &format!("{ub}{PROJECTS}")).await.0, 200);

    // Removed from DEVS; the token comes due and A refreshes it first.
    r.groups(&[OTHER]);
    r.idp.clock().advance(HOUR);
    assert_eq!(get(&browser, &format!("{ua}{PROJECTS}")).await.0, 200);
    // B re-reads the record (revalidate_interval 1 s) and adopts the
    // new generation with the old finding.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, body) = get(&browser, &format!("{ub}{PROJECTS}")).await;
    let refreshes = r.idp.calls("refresh_token");
    assert_eq!(
        status, 403,
        "B admitted a user no longer in DEVS on a finding it never made for this \
         generation ({refreshes} refresh(es) so far, none by B): {body}"
    );
}

/// A deny rule for a group holds beside an entry the proxy cannot read,
/// and when the token carries no groups claim at all: not knowing the
/// groups never opens the door the rule closes.
#[tokio::test]
async fn a_deny_rule_for_a_group_holds_when_the_groups_are_not_known() {
    use ado_auth_proxy::config::{AccessRule, RuleAction};
    let s = Setup::start(HOUR, |c, idp| {
        c.auth.graph_url = url::Url::parse(&format!("{idp}/graph")).unwrap();
        c.access.rules = vec![AccessRule {
            groups: vec![OPS.into()],
            methods: Some(vec!["PATCH".into()]),
            ..AccessRule::named("contractors-read-only", RuleAction::Deny)
        }];
    })
    .await;
    let item = format!("{}/contoso/_apis/wit/workitems/1?api-version=7.1", s.url);
    let patch = |b: crate::support::oidc::Browser| {
        let item = item.clone();
        async move { b.http.patch(&item).send().await.unwrap().status().as_u16() }
    };
    // The token names OPS: refused, as it should be.
    groups(&s, &[OPS]);
    assert_eq!(patch(s.signed_in().await).await, 403);
    // The token names OPS and one long on-premises name: allowed.
    let long = format!("corp.{}.example.com\\release-engineering", "a".repeat(240));
    s.idp.set_user(|u| {
        u.extra.insert("groups".into(), json!([OPS, long]));
    });
    let odd = patch(s.signed_in().await).await;
    // The app registration emits no groups claim: allowed, silently.
    s.idp.set_user(|u| {
        u.extra.remove("groups");
    });
    let none = patch(s.signed_in().await).await;
    assert!(
        odd == 403 && none == 403,
        "the deny rule for {OPS} did not hold: with an odd entry beside {OPS} PATCH got \
         {odd}, with no groups claim {none}"
    );
}
