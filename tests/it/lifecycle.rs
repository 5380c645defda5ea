//! The real binary: graceful shutdown on SIGTERM, readiness, and logs that
//! never carry a secret.

use std::time::{Duration, Instant};

use crate::support::process::ProxyProcess;
use crate::support::upstream::{FakeUpstream, respond};
use crate::support::{blocking_get, client, get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_not_ready_keeps_serving_then_drains_in_flight_requests() {
    let up = FakeUpstream::raw(|req| async move {
        if req.uri().path().ends_with("/slow") {
            tokio::time::sleep(Duration::from_millis(4000)).await;
            return respond(200, &[], "slow done");
        }
        respond(200, &[], "fast")
    })
    .await;
    let toml = format!(
        "[listen]\nshutdown_delay = \"1s\"\nshutdown_grace = \"10s\"\n[upstream]\nurl = \"{}\"\n",
        up.url()
    );
    let mut proxy = ProxyProcess::spawn(&toml, &[]);
    let (addr, admin) = (proxy.proxy, proxy.admin);
    assert!(blocking_get(admin, "/readyz").starts_with("HTTP/1.1 200"));

    let in_flight = tokio::spawn(async move {
        let resp = get(format!("http://{addr}/org/slow")).await;
        (resp.status(), resp.text().await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    proxy.signal(rustix::process::Signal::TERM);
    tokio::time::sleep(Duration::from_millis(150)).await;

    // Not ready at once, but still accepting during shutdown_delay.
    let ready = tokio::task::spawn_blocking(move || blocking_get(admin, "/readyz"))
        .await
        .unwrap();
    assert!(ready.starts_with("HTTP/1.1 503"), "{ready}");
    let during = client()
        .get(format!("http://{addr}/org/fast"))
        .header("connection", "close")
        .send()
        .await
        .unwrap();
    assert_eq!(during.text().await.unwrap(), "fast");

    // After the delay, new connections are refused while the request in
    // flight (4 s upstream) is still running...
    let deadline = signalled + Duration::from_secs(3);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            Instant::now() < deadline,
            "still accepting 3 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        signalled.elapsed() >= Duration::from_millis(900),
        "stopped accepting before shutdown_delay"
    );
    assert!(
        !in_flight.is_finished(),
        "the slow request should still be in flight"
    );
    // ...and it completes.
    let (status, body) = in_flight.await.unwrap();
    assert_eq!((status.as_u16(), body.as_str()), (200, "slow done"));

    let exit = tokio::task::spawn_blocking(move || {
        let status = proxy.wait_exit(Duration::from_secs(10));
        (status, proxy)
    })
    .await
    .unwrap();
    assert!(exit.0.success(), "exit status {:?}", exit.0);
    assert!(signalled.elapsed() < Duration::from_secs(8));
    assert!(
        exit.1.logs().contains("shutdown signal received"),
        "{}",
        exit.1.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_grace_bounds_how_long_a_request_may_hold_the_exit_after_sigint() {
    let up = FakeUpstream::raw(|_| async move {
        tokio::time::sleep(Duration::from_secs(60)).await;
        respond(200, &[], "never")
    })
    .await;
    let toml = format!(
        "[listen]\nshutdown_delay = \"100ms\"\nshutdown_grace = \"1s\"\n[upstream]\nurl = \"{}\"\nresponse_timeout = \"5m\"\n",
        up.url()
    );
    let mut proxy = ProxyProcess::spawn(&toml, &[]);
    let addr = proxy.proxy;
    let _stuck = tokio::spawn(async move {
        client()
            .get(format!("http://{addr}/org/stuck"))
            .send()
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    // SIGINT (Ctrl-C) runs the same sequence as SIGTERM.
    proxy.signal(rustix::process::Signal::INT);
    let status = tokio::task::spawn_blocking(move || proxy.wait_exit(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_access_lines_but_never_secrets() {
    let up = FakeUpstream::recording(|req| {
        if req.uri.contains("fail") {
            return respond(
                500,
                &[("x-vss-e2eid", "e2e-abc"), ("activityid", "act-def")],
                "boom",
            );
        }
        respond(
            200,
            &[
                ("set-cookie", "VstsSession=UPSTREAM-COOKIE-SECRET; path=/"),
                ("x-vss-e2eid", "e2e-123"),
                ("activityid", "act-456"),
            ],
            "ok",
        )
    })
    .await;
    let toml = format!(
        "[upstream]\nurl = \"{}\"\n[auth]\nmode = \"pat\"\n[log]\nlevel = \"trace\"\n",
        up.url()
    );
    let pat = "PAT-SECRET-VALUE-123";
    let proxy = ProxyProcess::spawn(&toml, &[("ADO_AUTH_PROXY_AUTH__PAT", pat)]);
    let base = format!("http://{}", proxy.proxy);
    for path in [
        "/org/_apis/ok?token=QUERY-SECRET-789",
        "/org/_apis/fail",
        "/.auth/login",
    ] {
        let resp = client()
            .get(format!("{base}{path}"))
            .header("authorization", "Bearer CLIENT-TOKEN-SECRET")
            .header("cookie", "session=CLIENT-COOKIE-SECRET")
            .send()
            .await
            .unwrap();
        assert!(!resp.headers().contains_key("set-cookie"));
        resp.bytes().await.unwrap();
    }
    // The upstream did get the PAT (so it was in the process).
    assert!(
        up.requests()[0].headers["authorization"]
            .to_str()
            .unwrap()
            .starts_with("Basic ")
    );
    let pat_b64 = up.requests()[0].headers["authorization"].to_str().unwrap()[6..].to_string();

    let deadline = Instant::now() + Duration::from_secs(5);
    while proxy.logs().matches("\"message\":\"request\"").count() < 3 {
        assert!(
            Instant::now() < deadline,
            "access lines missing:\n{}",
            proxy.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = proxy.logs();
    for secret in [
        pat,
        pat_b64.as_str(),
        "CLIENT-TOKEN-SECRET",
        "CLIENT-COOKIE-SECRET",
        "UPSTREAM-COOKIE-SECRET",
        "QUERY-SECRET-789",
    ] {
        assert!(
            !logs.contains(secret),
            "{secret} appears in the logs:\n{logs}"
        );
    }
    let access: Vec<serde_json::Value> = logs
        .lines()
        .filter(|l| l.contains("\"message\":\"request\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let ok = access
        .iter()
        .find(|a| a["path"] == "/org/_apis/ok")
        .expect("access line for /ok");
    assert_eq!(ok["status"], 200);
    assert_eq!(ok["method"], "GET");
    assert_eq!(ok["e2eid"], "e2e-123");
    assert_eq!(ok["activity_id"], "act-456");
    assert_eq!(ok["bytes"], 2);
    assert!(ok["request_id"].as_str().unwrap().len() == 36);
    assert!(ok["duration_ms"].as_f64().is_some());
    let fail = access
        .iter()
        .find(|a| a["path"] == "/org/_apis/fail")
        .unwrap();
    assert_eq!(fail["status"], 500);
    assert_eq!(fail["e2eid"], "e2e-abc");
}

/// A config built in code is checked like a loaded one: the constructors
/// never see a config that breaks a rule.
#[tokio::test]
async fn starting_with_a_broken_config_names_every_problem() {
    let mut c = crate::support::config("http://127.0.0.1:9");
    c.auth.mode = ado_auth_proxy::config::AuthMode::Service;
    c.listen.max_header_bytes = 10;
    let err = ado_auth_proxy::app::start(c)
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("auth.source"), "{err}");
    assert!(err.contains("listen.max_header_bytes"), "{err}");
}
