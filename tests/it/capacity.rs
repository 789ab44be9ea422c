//! No tenant can take another's capacity: a worker's delivery slots are shared fairly, manual
//! runs count toward `max_runs`, backfills keep the tenant's minimum interval, the schedule quota
//! holds under concurrent creates, and a client trickling its body in is cut off.

use std::time::Duration as StdDuration;

use chrono::Duration;
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::helpers::app::{spawn_app_with, token_for};
use crate::helpers::{eventually, spawn_app, Backend, Receiver, Reply};
use crate::on_both_databases;
use hookbeat_scheduler::Clock;

async fn hanging_receivers_cost_their_own_tenant_not_the_others(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |options| {
        // Each tenant has one receiving host: only the per-tenant share may stop it.
        options.worker.max_in_flight_per_host = 10_000;
    })
    .await
    else {
        return;
    };
    let t0 = app.clock.now();
    // Three tenants, 150 runs each due at once, all to receivers that hang.
    let mut slow = Vec::new();
    for tenant in ["hang-a", "hang-b", "hang-c"] {
        let receiver = Receiver::start();
        receiver.script((0..400).map(|_| Reply::status(200).delayed(StdDuration::from_secs(60))));
        let token = token_for(tenant, "schedules:read schedules:write");
        let made = app
            .create_schedule_as(
                &token,
                json!({
                    "name": "hangs",
                    "schedule": {"kind": "interval", "every_seconds": 1},
                    "target": {"url": receiver.url, "timeout_ms": 60_000},
                    "retry": {"max_attempts": 1}
                }),
            )
            .await;
        let id = made["id"].as_str().unwrap();
        let backfill = app
            .call_as(
                &token,
                Method::POST,
                &format!("/v1/schedules/{id}/backfill"),
                Some(json!({
                    "from": (t0 - Duration::seconds(150)).to_rfc3339(),
                    "to": (t0 - Duration::seconds(1)).to_rfc3339()
                })),
            )
            .await;
        assert_eq!(backfill.body["created"], 150, "{}", backfill.body);
        slow.push(receiver);
    }
    // A fourth tenant fires every second.
    let receiver = Receiver::start();
    app.create_schedule(json!({
        "name": "every-second",
        "schedule": {"kind": "interval", "every_seconds": 1},
        "target": {"url": receiver.url}
    }))
    .await;

    let cancel = CancellationToken::new();
    let worker = tokio::spawn(app.worker.clone().run(cancel.clone()));
    let hanging = || slow.iter().map(|r| r.received().len()).sum::<usize>();
    let held = eventually(StdDuration::from_secs(20), || async {
        (hanging() >= 180).then_some(())
    })
    .await;
    assert!(
        held.is_some(),
        "the hanging tenants took {} slots",
        hanging()
    );
    for second in 1..=3 {
        let fire = t0 + Duration::seconds(second);
        app.clock.set(fire);
        let expected = fire.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let delivered = eventually(StdDuration::from_secs(10), || async {
            receiver
                .received()
                .iter()
                .any(|r| r.header("hookbeat-scheduled-for") == expected)
                .then_some(())
        })
        .await;
        assert!(
            delivered.is_some(),
            "the fire at {expected} was not delivered while {} requests hang",
            hanging()
        );
    }
    let per_tenant: Vec<usize> = slow.iter().map(|r| r.received().len()).collect();
    assert!(
        per_tenant.iter().all(|n| *n <= 128) && per_tenant.iter().sum::<usize>() < 256,
        "the hanging tenants left slots free: {per_tenant:?}"
    );
    cancel.cancel();
    worker.abort();
}

/// A schedule that fires hourly, capped at `max_runs`.
async fn capped(app: &crate::helpers::TestApp, name: &str, max_runs: i64) -> String {
    let made = app
        .create_schedule(json!({
            "name": name,
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": "https://example.com/hook"},
            "max_runs": max_runs
        }))
        .await;
    made["id"].as_str().unwrap().to_owned()
}

fn assert_max_runs_conflict(answer: &crate::helpers::app::Answer) {
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.body);
    assert_eq!(
        answer.body["errors"][0]["field"], "max_runs",
        "{}",
        answer.body
    );
    assert_eq!(answer.headers["content-type"], "application/problem+json");
}

async fn manual_runs_count_toward_max_runs(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let once = capped(&app, "once", 1).await;
    let first = app.trigger(&once).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    app.clock.advance(Duration::seconds(5));
    let second = app.trigger(&once).await;
    assert_max_runs_conflict(&second);
    let schedule = app.get(&format!("/v1/schedules/{once}")).await;
    assert_eq!(schedule.body["total_runs"], 1);
    assert_eq!(
        schedule.body["next_run_at"],
        Value::Null,
        "its last run is made"
    );

    // A backfill that would pass the cap makes nothing.
    let three = capped(&app, "three", 3).await;
    let now = app.clock.now();
    let window = json!({
        "from": (now - Duration::hours(5)).to_rfc3339(),
        "to": now.to_rfc3339()
    });
    let answer = app
        .post(&format!("/v1/schedules/{three}/backfill"), window)
        .await;
    assert_max_runs_conflict(&answer);
    let runs = app.get(&format!("/v1/schedules/{three}/runs")).await;
    assert_eq!(runs.body["items"], json!([]));

    // Concurrent backfills of one fire each, from several API processes: exactly the cap.
    let addresses = [
        app.address.clone(),
        app.another_api().await,
        app.another_api().await,
    ];
    let five = capped(&app, "five", 5).await;
    let on_the_hour = crate::helpers::app::start_time();
    let requests = (0..20)
        .map(|n| {
            let fire = on_the_hour - Duration::hours(n + 1);
            (
                format!("/v1/schedules/{five}/backfill"),
                json!({"from": fire.to_rfc3339(), "to": fire.to_rfc3339()}),
            )
        })
        .collect();
    let statuses = post_concurrently(&app, &addresses, requests).await;
    assert_only(&statuses, StatusCode::ACCEPTED, 5, StatusCode::CONFLICT);
    let schedule = app.get(&format!("/v1/schedules/{five}")).await;
    assert_eq!(schedule.body["total_runs"], 5);
}

async fn a_backfill_keeps_the_tenants_minimum_interval(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let made = app
        .create_schedule(json!({
            "name": "minutely",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": "https://example.com/hook"}
        }))
        .await;
    let id = made["id"].as_str().unwrap();
    let admin = token_for("operator", "admin");
    let raised = app
        .call_as(
            &admin,
            Method::PATCH,
            &format!("/v1/tenants/{}", app.tenant),
            Some(json!({"min_interval_seconds": 120})),
        )
        .await;
    assert_eq!(raised.status, StatusCode::OK, "{}", raised.body);

    // The schedule fires every 60 s; the tenant now allows one fire per 120 s.
    let now = app.clock.now();
    let backfill = app
        .post(
            &format!("/v1/schedules/{id}/backfill"),
            json!({
                "from": (now - Duration::minutes(30)).to_rfc3339(),
                "to": (now - Duration::minutes(20)).to_rfc3339()
            }),
        )
        .await;
    assert_eq!(
        backfill.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        backfill.body
    );
    assert_eq!(backfill.body["errors"][0]["field"], "from");
}

async fn the_schedule_quota_holds_under_concurrent_creates(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // The tenant exists from its first call; then an admin sets its quota to 3.
    app.get("/v1/schedules").await;
    let admin = token_for("operator", "admin");
    let quota = app
        .call_as(
            &admin,
            Method::PATCH,
            &format!("/v1/tenants/{}", app.tenant),
            Some(json!({"max_schedules": 3})),
        )
        .await;
    assert_eq!(quota.status, StatusCode::OK, "{}", quota.body);
    let addresses = [
        app.address.clone(),
        app.another_api().await,
        app.another_api().await,
    ];
    let creates = (0..30)
        .map(|n| {
            (
                "/v1/schedules".to_owned(),
                json!({
                    "name": format!("s-{n}"),
                    "schedule": {"kind": "interval", "every_seconds": 60},
                    "target": {"url": "https://example.com/hook"}
                }),
            )
        })
        .collect();
    let statuses = post_concurrently(&app, &addresses, creates).await;
    assert_only(
        &statuses,
        StatusCode::CREATED,
        3,
        StatusCode::TOO_MANY_REQUESTS,
    );
    let listed = app.get("/v1/schedules").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 3);
}

/// Sends every (path, body) at once as the app's tenant, spread over the API processes at
/// `addresses`; returns the statuses.
async fn post_concurrently(
    app: &crate::helpers::TestApp,
    addresses: &[String],
    requests: Vec<(String, Value)>,
) -> Vec<StatusCode> {
    let sent = requests.into_iter().enumerate().map(|(n, (path, body))| {
        let request = app
            .http
            .post(format!("{}{path}", addresses[n % addresses.len()]))
            .bearer_auth(&app.token)
            .json(&body);
        async move { request.send().await.expect("calling the API").status() }
    });
    join_all(sent).await
}

/// Exactly `count` of `statuses` are `wanted`, and the rest `refused`.
fn assert_only(statuses: &[StatusCode], wanted: StatusCode, count: usize, refused: StatusCode) {
    let got = statuses.iter().filter(|s| **s == wanted).count();
    assert_eq!(got, count, "{statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == wanted || *s == refused),
        "{statuses:?}"
    );
}

on_both_databases!(
    hanging_receivers_cost_their_own_tenant_not_the_others,
    manual_runs_count_toward_max_runs,
    a_backfill_keeps_the_tenants_minimum_interval,
    the_schedule_quota_holds_under_concurrent_creates,
);

/// Sends a request whose body trickles in, a byte at a time, and returns what came back.
async fn trickle(address: &str, token: &str) -> String {
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connecting");
    let head = format!(
        "POST /v1/schedules HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{"
    );
    stream.write_all(head.as_bytes()).await.expect("sending");
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    // A byte every 100 ms, for at most 10 s: the server must answer long before that.
    for _ in 0..100 {
        let read = tokio::time::timeout(StdDuration::from_millis(100), stream.read(&mut buffer));
        match read.await {
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => {
                answer.extend_from_slice(&buffer[..n]);
                if answer.windows(4).any(|w| w == b"\r\n\r\n") && answer.ends_with(b"}") {
                    break;
                }
            }
            Ok(Err(_)) => break,
            Err(_) => {
                if stream.write_all(b" ").await.is_err() {
                    break;
                }
            }
        }
    }
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_that_trickles_in_is_cut_off_with_408() {
    let Some(app) = spawn_app_with(Backend::Sqlite, |options| {
        options.body_timeout = StdDuration::from_secs(1);
    })
    .await
    else {
        return;
    };
    let answer = trickle(&app.address, &app.token).await;
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "expected 408, got {answer:?}"
    );
    assert!(answer.contains("application/problem+json"), "{answer}");
    let body: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..])
        .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(body["status"], 408);
    assert!(body["detail"].as_str().unwrap().contains("1 s"), "{body}");
}

/// What the server answers a connection that sends `sent` and then nothing, within 10 s.
async fn answer_to_a_stalled_head(address: &str, sent: &[u8]) -> String {
    let host = address.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(host)
        .await
        .expect("connecting");
    stream.write_all(sent).await.expect("sending");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(StdDuration::from_secs(10), stream.read_to_end(&mut answer));
    let _ = read.await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_head_that_stalls_gets_a_408_problem() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    for sent in [&b"GET /v1/schedules HTTP/1.1\r\nhost: x\r\n"[..], &b""[..]] {
        let answer = answer_to_a_stalled_head(&app.address, sent).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
        assert!(answer.contains("application/problem+json"), "{answer}");
        let body: Value = serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..])
            .unwrap_or_else(|e| panic!("{e}: {answer}"));
        assert_eq!(body["status"], 408);
    }
    // A head that arrives is served as before.
    assert_eq!(app.get("/v1/schedules").await.status, StatusCode::OK);
}
