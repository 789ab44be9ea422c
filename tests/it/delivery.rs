//! From a due schedule to the receiver: the request it gets (CONTRACT §5), retries, failures,
//! redelivery, and what run history records. The worker is driven by `run_once` at instants the
//! test sets, so nothing here sleeps; the one test of the loop itself, on a frozen clock, waits
//! for what it checks with the polling helper.

use base64::Engine;
use chrono::Duration;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Sha256;

use hookbeat_scheduler::Clock;

use crate::helpers::instant as t;
use crate::helpers::{eventually, spawn_app, Backend, Receiver, Reply};
use crate::on_both_databases;

/// Verifies a `webhook-signature` independently of hookbeat's signing code.
pub(crate) fn signature_is_valid(
    secret: &str,
    id: &str,
    timestamp: &str,
    body: &[u8],
    header: &str,
) -> bool {
    let key = base64::engine::general_purpose::STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap())
        .unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    let expected = format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    );
    header.split(' ').any(|signature| signature == expected)
}

async fn a_schedule_fires_and_is_delivered_signed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "report",
            "schedule": {"kind": "interval", "every_seconds": 10},
            "target": {
                "url": format!("{}/hooks/report", receiver.url),
                "headers": {"x-team": "billing"},
                "body": {"report": "daily"}
            }
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    let first = t(&schedule["next_run_at"]);
    assert_eq!(
        first,
        app.clock.now() + Duration::seconds(10),
        "the epoch-anchored grid"
    );

    // Nothing is due before the first fire.
    let report = app.run_worker_at(first - Duration::milliseconds(1)).await;
    assert_eq!((report.runs_created, report.attempts), (0, 0));
    assert!(receiver.received().is_empty());

    let report = app.run_worker_at(first).await;
    assert_eq!((report.runs_created, report.attempts), (1, 1));
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    let request = &got[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/hooks/report");
    assert_eq!(request.body, br#"{"report":"daily"}"#);
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("x-team"), "billing");
    assert_eq!(request.header("hookbeat-schedule-id"), id);
    assert_eq!(t(&json!(request.header("hookbeat-scheduled-for"))), first);
    assert_eq!(request.header("hookbeat-attempt"), "1");
    assert_eq!(
        request.header("user-agent"),
        concat!("hookbeat/", env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(
        request.header("webhook-timestamp"),
        first.timestamp().to_string()
    );
    let webhook_id = request.header("webhook-id");
    let secret = app.signing_secret().await;
    assert!(signature_is_valid(
        &secret,
        webhook_id,
        request.header("webhook-timestamp"),
        &request.body,
        request.header("webhook-signature"),
    ));

    // History: the run is the webhook id, succeeded at the first attempt.
    let run = app.get(&format!("/v1/runs/{webhook_id}")).await;
    assert_eq!(run.status, StatusCode::OK);
    assert_eq!(run.body["status"], "succeeded");
    assert_eq!(run.body["schedule_id"], id);
    assert_eq!(t(&run.body["scheduled_for"]), first);
    assert_eq!(run.body["attempt_count"], 1);
    let attempts = run.body["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["outcome"], "success");
    assert_eq!(attempts[0]["response_excerpt"], "ok");

    // The schedule moved on by exactly one period, without drift.
    let schedule = app.get(&format!("/v1/schedules/{id}")).await.body;
    assert_eq!(t(&schedule["next_run_at"]), first + Duration::seconds(10));
    assert_eq!(t(&schedule["last_run_at"]), first);
    assert_eq!(schedule["total_runs"], 1);

    // A second pass at the same instant delivers nothing twice.
    let report = app.run_worker().await;
    assert_eq!((report.runs_created, report.attempts), (0, 0));
    assert_eq!(receiver.received().len(), 1);
}

async fn failures_are_retried_with_backoff_until_success(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    receiver.script([Reply::status(500).body("boom"), Reply::status(503)]);
    let schedule = app
        .create_schedule(json!({
            "name": "flaky",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url},
            "retry": {"max_attempts": 5, "initial_backoff_ms": 1000, "multiplier": 2.0, "max_backoff_ms": 60000}
        }))
        .await;
    let fire = t(&schedule["next_run_at"]);
    app.run_worker_at(fire).await;
    let run_id = receiver.received()[0].header("webhook-id").to_owned();

    let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "retrying");
    assert_eq!(run["last_status_code"], 500);
    let retry_at = t(&run["next_attempt_at"]);
    let delay = retry_at - fire;
    assert!(
        delay >= Duration::milliseconds(500) && delay <= Duration::milliseconds(1000),
        "first backoff {delay}"
    );

    // Not before the backoff is over.
    assert_eq!(
        app.run_worker_at(retry_at - Duration::milliseconds(1))
            .await
            .attempts,
        0
    );
    assert_eq!(app.run_worker_at(retry_at).await.attempts, 1);
    let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "retrying");
    let second_retry = t(&run["next_attempt_at"]);
    let delay = second_retry - retry_at;
    assert!(
        delay >= Duration::milliseconds(1000) && delay <= Duration::milliseconds(2000),
        "second backoff {delay}"
    );

    assert_eq!(app.run_worker_at(second_retry).await.attempts, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    for (n, request) in got.iter().enumerate() {
        assert_eq!(
            request.header("webhook-id"),
            run_id,
            "the same webhook-id on every attempt"
        );
        assert_eq!(request.header("hookbeat-attempt"), (n + 1).to_string());
    }
    let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "succeeded");
    let outcomes: Vec<_> = run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["outcome"].clone(), a["status_code"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (json!("retry"), json!(500)),
            (json!("retry"), json!(503)),
            (json!("success"), json!(200))
        ]
    );
    assert_eq!(run["attempts"][0]["response_excerpt"], "boom");

    // Counters moved by exactly what happened.
    let metrics = app.get("/metrics").await.body;
    let text = metrics.as_str().unwrap();
    assert!(
        text.contains("hookbeat_deliveries_total{outcome=\"retry\"} 2"),
        "{text}"
    );
    assert!(text.contains("hookbeat_deliveries_total{outcome=\"success\"} 1"));
    assert!(text.contains("hookbeat_fire_lag_seconds_count 1"));
}

async fn a_permanent_failure_fails_at_once_and_can_be_redelivered(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    receiver.script([Reply::status(400).body("no such job")]);
    let schedule = app
        .create_schedule(json!({
            "name": "strict",
            "schedule": {"kind": "once", "at": (app.clock.now() + Duration::minutes(5)).to_rfc3339()},
            "target": {"url": receiver.url}
        }))
        .await;
    app.run_worker_at(t(&schedule["next_run_at"])).await;
    let run_id = receiver.received()[0].header("webhook-id").to_owned();
    let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["attempt_count"], 1);
    assert_eq!(run["last_error"], "receiver answered 400");

    let failed = app.get("/v1/runs?status=failed").await.body;
    assert_eq!(failed["items"].as_array().unwrap().len(), 1);
    assert_eq!(failed["items"][0]["id"], run_id.as_str());

    let redelivered = app
        .call(Method::POST, &format!("/v1/runs/{run_id}/redeliver"), None)
        .await;
    assert_eq!(redelivered.status, StatusCode::ACCEPTED);
    assert_eq!(redelivered.body["status"], "pending");
    assert_eq!(app.run_worker().await.attempts, 1);
    let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "succeeded");
    assert_eq!(run["attempt_count"], 2);
    let got = receiver.received();
    assert_eq!(
        got[1].header("webhook-id"),
        run_id,
        "a redelivery keeps the webhook-id"
    );
    assert_eq!(got[1].header("hookbeat-attempt"), "2");

    // A succeeded run cannot be redelivered; the once schedule is finished.
    let again = app
        .call(Method::POST, &format!("/v1/runs/{run_id}/redeliver"), None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let schedule = app
        .get(&format!(
            "/v1/schedules/{}",
            schedule["id"].as_str().unwrap()
        ))
        .await
        .body;
    assert_eq!(schedule["next_run_at"], Value::Null);
}

async fn retries_stop_at_max_attempts(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    receiver.script([Reply::status(502), Reply::status(502), Reply::status(502)]);
    let schedule = app
        .create_schedule(json!({
            "name": "down",
            "schedule": {"kind": "interval", "every_seconds": 86400},
            "target": {"url": receiver.url},
            "retry": {"max_attempts": 2, "initial_backoff_ms": 1000}
        }))
        .await;
    app.run_worker_at(t(&schedule["next_run_at"])).await;
    let run_id = receiver.received()[0].header("webhook-id").to_owned();
    let retry_at = t(&app.get(&format!("/v1/runs/{run_id}")).await.body["next_attempt_at"]);
    app.run_worker_at(retry_at).await;
    let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["attempt_count"], 2);
    assert_eq!(
        app.run_worker_at(retry_at + Duration::hours(1))
            .await
            .attempts,
        0
    );
    assert_eq!(receiver.received().len(), 2);
    let metrics = app.get("/metrics").await.body;
    let text = metrics.as_str().unwrap();
    assert!(text.contains("hookbeat_dead_letters_total 1"), "{text}");
    assert!(text.contains("hookbeat_deliveries_total{outcome=\"failed\"} 1"));
    assert!(text.contains("hookbeat_deliveries_total{outcome=\"retry\"} 1"));
    assert!(text.contains(concat!(
        "hookbeat_build_info{version=\"",
        env!("CARGO_PKG_VERSION"),
        "\"} 1"
    )));
}

async fn a_connection_error_is_recorded_and_retried(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // A port with nothing listening: bind one, then close it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let schedule = app
        .create_schedule(json!({
            "name": "nobody-home",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": format!("http://{closed}/")}
        }))
        .await;
    app.run_worker_at(t(&schedule["next_run_at"])).await;
    let runs = app.get("/v1/runs").await.body;
    let run = &runs["items"][0];
    assert_eq!(run["status"], "retrying");
    assert!(
        run["last_error"]
            .as_str()
            .unwrap()
            .starts_with("connection failed"),
        "{run}"
    );
    assert_eq!(run["last_status_code"], Value::Null);
}

async fn a_change_takes_effect_without_a_restart(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let old = Receiver::start();
    let new = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "moving",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": old.url}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    let patched = app
        .call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"schedule": {"every_seconds": 15}, "target": {"url": new.url}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let next = t(&patched.body["next_run_at"]);
    assert_eq!(next, app.clock.now() + Duration::seconds(15));
    app.run_worker_at(next).await;
    assert!(old.received().is_empty());
    assert_eq!(new.received().len(), 1);
}

async fn paused_schedules_do_not_fire_and_trigger_fires_now(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "pausable",
            "schedule": {"kind": "interval", "every_seconds": 10},
            "target": {"url": receiver.url}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    let paused = app
        .call(Method::POST, &format!("/v1/schedules/{id}/pause"), None)
        .await;
    assert_eq!(paused.status, StatusCode::OK);
    assert_eq!(paused.body["enabled"], false);
    assert_eq!(paused.body["next_run_at"], Value::Null);
    assert_eq!(
        app.run_worker_at(app.clock.now() + Duration::minutes(5))
            .await
            .runs_created,
        0
    );

    let triggered = app.trigger(id).await;
    assert_eq!(triggered.status, StatusCode::ACCEPTED);
    assert_eq!(triggered.body["trigger"], "manual");
    assert_eq!(app.run_worker().await.attempts, 1);
    assert_eq!(
        receiver.received()[0].header("webhook-id"),
        triggered.body["id"].as_str().unwrap()
    );

    let resumed = app
        .call(Method::POST, &format!("/v1/schedules/{id}/resume"), None)
        .await;
    assert_eq!(resumed.body["enabled"], true);
    // Resuming fires from now on; the fires that fell in the pause are not made up.
    let next = t(&resumed.body["next_run_at"]);
    assert!(next > app.clock.now() && next <= app.clock.now() + Duration::seconds(10));
    assert_eq!(app.run_worker_at(next).await.runs_created, 1);
    assert_eq!(receiver.received().len(), 2);
}

async fn missed_fires_follow_catchup_after_downtime(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let mut fires = Vec::new();
    for catchup in ["skip", "latest", "all"] {
        let s = app
            .create_schedule(json!({
                "name": format!("catchup-{catchup}"),
                "schedule": {"kind": "interval", "every_seconds": 600},
                "target": {"url": format!("{}/{catchup}", receiver.url)},
                "catchup": catchup
            }))
            .await;
        fires.push(t(&s["next_run_at"]));
    }
    // No worker for an hour: six fires missed, then one on time.
    app.run_worker_at(fires[0] + Duration::minutes(60)).await;
    let count = |path: &str| {
        receiver
            .received()
            .iter()
            .filter(|r| r.path == path)
            .count()
    };
    assert_eq!(count("/skip"), 1, "skip: only the on-time fire");
    assert_eq!(
        count("/latest"),
        2,
        "latest: one run for all missed, plus the on-time fire"
    );
    assert_eq!(count("/all"), 7, "all: every fire");
}

on_both_databases!(
    a_schedule_fires_and_is_delivered_signed,
    failures_are_retried_with_backoff_until_success,
    a_permanent_failure_fails_at_once_and_can_be_redelivered,
    retries_stop_at_max_attempts,
    a_connection_error_is_recorded_and_retried,
    a_change_takes_effect_without_a_restart,
    paused_schedules_do_not_fire_and_trigger_fires_now,
    missed_fires_follow_catchup_after_downtime,
);

mod receiver_answers {
    //! How each kind of answer is treated: 429 with Retry-After, 410 Gone, redirects, a receiver
    //! that hangs past the timeout.

    use super::*;

    async fn retry_after_is_honoured(backend: Backend) {
        let Some(app) = spawn_app(backend).await else {
            return;
        };
        let receiver = Receiver::start();
        let mut slow_down = Reply::status(429);
        slow_down.headers.push(("retry-after".into(), "120".into()));
        receiver.script([slow_down]);
        let schedule = app
            .create_schedule(json!({
                "name": "throttled",
                "schedule": {"kind": "interval", "every_seconds": 86400},
                "target": {"url": receiver.url},
                "retry": {"initial_backoff_ms": 1000}
            }))
            .await;
        let fire = t(&schedule["next_run_at"]);
        app.run_worker_at(fire).await;
        let run = &app.get("/v1/runs").await.body["items"][0];
        assert_eq!(run["status"], "retrying");
        assert_eq!(
            t(&run["next_attempt_at"]),
            fire + Duration::seconds(120),
            "Retry-After beats the 1 s backoff"
        );
    }

    async fn gone_pauses_the_schedule(backend: Backend) {
        let Some(app) = spawn_app(backend).await else {
            return;
        };
        let receiver = Receiver::start();
        receiver.script([Reply::status(410)]);
        let schedule = app
            .create_schedule(json!({
                "name": "gone",
                "schedule": {"kind": "interval", "every_seconds": 60},
                "target": {"url": receiver.url}
            }))
            .await;
        let id = schedule["id"].as_str().unwrap();
        app.run_worker_at(t(&schedule["next_run_at"])).await;
        let run = &app.get("/v1/runs").await.body["items"][0];
        assert_eq!(
            (run["status"].as_str(), run["attempt_count"].as_i64()),
            (Some("failed"), Some(1))
        );
        let schedule = app.get(&format!("/v1/schedules/{id}")).await.body;
        assert_eq!(schedule["enabled"], false);
        assert!(
            schedule["paused_reason"]
                .as_str()
                .unwrap()
                .contains("410 Gone"),
            "{schedule}"
        );
        assert_eq!(
            app.run_worker_at(app.clock.now() + Duration::minutes(10))
                .await
                .runs_created,
            0
        );
        // Resuming clears the reason and fires again.
        let resumed = app
            .call(Method::POST, &format!("/v1/schedules/{id}/resume"), None)
            .await
            .body;
        assert_eq!(resumed["paused_reason"], Value::Null);
        assert_eq!(
            app.run_worker_at(t(&resumed["next_run_at"])).await.attempts,
            1
        );
        assert_eq!(receiver.received().len(), 2);
    }

    async fn redirects_are_not_followed(backend: Backend) {
        let Some(app) = spawn_app(backend).await else {
            return;
        };
        let receiver = Receiver::start();
        let mut moved = Reply::status(301);
        moved
            .headers
            .push(("location".into(), format!("{}/elsewhere", receiver.url)));
        receiver.script([moved]);
        let schedule = app
            .create_schedule(json!({
                "name": "moved",
                "schedule": {"kind": "interval", "every_seconds": 60},
                "target": {"url": format!("{}/here", receiver.url)}
            }))
            .await;
        app.run_worker_at(t(&schedule["next_run_at"])).await;
        let got = receiver.received();
        assert_eq!(got.len(), 1, "the redirect was not followed");
        assert_eq!(got[0].path, "/here");
        let run = &app.get("/v1/runs").await.body["items"][0];
        assert_eq!(
            (run["status"].as_str(), run["last_status_code"].as_i64()),
            (Some("failed"), Some(301))
        );
    }

    async fn a_hanging_receiver_times_out_and_is_retried(backend: Backend) {
        let Some(app) = spawn_app(backend).await else {
            return;
        };
        let receiver = Receiver::start();
        let mut hang = Reply::status(200);
        hang.delay = Some(std::time::Duration::from_secs(5));
        receiver.script([hang]);
        let schedule = app
            .create_schedule(json!({
                "name": "hangs",
                "schedule": {"kind": "interval", "every_seconds": 3600},
                "target": {"url": receiver.url, "timeout_ms": 200}
            }))
            .await;
        app.run_worker_at(t(&schedule["next_run_at"])).await;
        let runs = app.get("/v1/runs").await.body;
        let run_id = runs["items"][0]["id"].as_str().unwrap();
        let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
        assert_eq!(run["status"], "retrying");
        assert_eq!(run["last_error"], "timed out after 200 ms");
        let duration = run["attempts"][0]["duration_ms"].as_i64().unwrap();
        assert!(
            (200..2000).contains(&duration),
            "gave up after the timeout, took {duration} ms"
        );
    }

    /// The API accepted these targets (the test server allows private targets); a worker that
    /// does not refuses them when connecting. (Names are resolved through the guarded resolver,
    /// whose refusal of a name resolving to loopback is tested in `scheduler::ssrf`.)
    async fn private_targets_are_refused_when_connecting(backend: Backend) {
        let Some(app) = spawn_app(backend).await else {
            return;
        };
        let receiver = Receiver::start();
        let port = receiver.url.rsplit(':').next().unwrap();
        for (name, url) in [
            ("literal", receiver.url.clone()),
            ("name", format!("http://localhost:{port}/")),
        ] {
            app.create_schedule(json!({
                "name": name,
                "schedule": {"kind": "interval", "every_seconds": 60},
                "target": {"url": url}
            }))
            .await;
        }
        let guarded = app.another_worker(hookbeat_scheduler::WorkerConfig {
            allow_private_targets: false,
            ..hookbeat_scheduler::WorkerConfig::default()
        });
        app.clock.advance(Duration::seconds(60));
        assert_eq!(guarded.run_once().await.unwrap().attempts, 2);
        assert!(
            receiver.received().is_empty(),
            "nothing reached the private receiver"
        );
        let runs = app.get("/v1/runs").await.body;
        let errors: Vec<&str> = runs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["last_error"].as_str().unwrap())
            .collect();
        assert_eq!(errors.len(), 2);
        assert!(
            errors.iter().all(|e| e.contains("loopback address")),
            "{errors:?}"
        );
    }

    /// Five fires due at once for one tenant, with at most two deliveries in flight per tenant:
    /// two go at once, the other three wait in the worker, still leased, and go as places come
    /// free, all at the fire's instant. (They were handed back to the database, due half a
    /// second later, and claimed again: a write and a round trip each way.)
    async fn runs_over_a_tenant_limit_wait_in_the_worker_for_a_place(backend: Backend) {
        let Some(app) = spawn_app(backend).await else {
            return;
        };
        let receiver = Receiver::start();
        app.create_minutely_schedules("burst", 5, &receiver.url)
            .await;
        let polite = app.another_worker(hookbeat_scheduler::WorkerConfig {
            allow_private_targets: true,
            max_in_flight_per_tenant: 2,
            ..hookbeat_scheduler::WorkerConfig::default()
        });
        app.clock.advance(Duration::seconds(60));
        assert_eq!(polite.run_once().await.unwrap().attempts, 5);
        assert_eq!(receiver.received().len(), 5);
        assert!(receiver.most_at_once() <= 2, "{}", receiver.most_at_once());
        assert_every_run_went_once_at_its_fire(&app).await;
    }

    /// Ten fires due for one host that takes two at a time: one pass at the fire's instant
    /// delivers all ten, two at a time, none handed back to wait for a later claim.
    async fn runs_over_a_host_limit_wait_in_the_worker_for_a_place(backend: Backend) {
        let Some(app) = spawn_app(backend).await else {
            return;
        };
        let receiver = Receiver::start();
        app.create_minutely_schedules("narrow", 10, &receiver.url)
            .await;
        let narrow = app.another_worker(hookbeat_scheduler::WorkerConfig {
            allow_private_targets: true,
            max_in_flight_per_host: 2,
            ..hookbeat_scheduler::WorkerConfig::default()
        });
        app.clock.advance(Duration::seconds(60));
        assert_eq!(narrow.run_once().await.unwrap().attempts, 10);
        assert_eq!(receiver.received().len(), 10);
        assert!(receiver.most_at_once() <= 2, "{}", receiver.most_at_once());
        assert_every_run_went_once_at_its_fire(&app).await;
    }

    /// A worker that stops hands the runs waiting in it for a place back at once, unattempted:
    /// due again for any worker, with no attempt counted and no lost attempt recorded.
    async fn a_stopping_worker_hands_back_the_runs_waiting_in_it(backend: Backend) {
        let Some(app) = spawn_app(backend).await else {
            return;
        };
        let receiver = Receiver::start();
        let slow = Reply::status(200).delayed(std::time::Duration::from_millis(1500));
        receiver.script([slow.clone(), slow.clone(), slow]);
        app.create_minutely_schedules("waiting", 3, &receiver.url)
            .await;
        let worker = app.another_worker(hookbeat_scheduler::WorkerConfig {
            allow_private_targets: true,
            max_in_flight_per_host: 1,
            shutdown_grace: std::time::Duration::from_secs(10),
            ..hookbeat_scheduler::WorkerConfig::default()
        });
        app.clock.advance(Duration::seconds(60));
        let cancel = tokio_util::sync::CancellationToken::new();
        let running = tokio::spawn(worker.run(cancel.clone()));
        let sent = eventually(std::time::Duration::from_secs(10), || async {
            (!receiver.received().is_empty()).then_some(())
        })
        .await;
        cancel.cancel();
        running.await.unwrap().unwrap();
        assert!(sent.is_some(), "the first fire was sent");
        assert_eq!(receiver.received().len(), 1, "the other two waited");
        let runs = app.get("/v1/runs").await.body;
        let mut states: Vec<(String, i64, Value)> = runs["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["status"].as_str().unwrap().to_owned(),
                    r["attempt_count"].as_i64().unwrap(),
                    r["last_error"].clone(),
                )
            })
            .collect();
        states.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            states,
            vec![
                ("pending".to_owned(), 0, Value::Null),
                ("pending".to_owned(), 0, Value::Null),
                ("succeeded".to_owned(), 1, Value::Null),
            ]
        );
    }

    /// Every run succeeded at its first attempt, which started at the clock's instant: none was
    /// handed back to wait for a later one.
    async fn assert_every_run_went_once_at_its_fire(app: &crate::helpers::TestApp) {
        let now = app.clock.now();
        let runs = app.get("/v1/runs").await.body;
        for run in runs["items"].as_array().unwrap() {
            assert_eq!(run["status"], "succeeded", "{run}");
            assert_eq!(run["attempt_count"], 1, "{run}");
            let detail = app
                .get(&format!("/v1/runs/{}", run["id"].as_str().unwrap()))
                .await;
            let attempts = detail.body["attempts"].as_array().unwrap();
            assert_eq!(attempts.len(), 1, "{}", detail.body);
            assert_eq!(t(&attempts[0]["started_at"]), now, "{}", detail.body);
        }
    }

    on_both_databases!(
        runs_over_a_host_limit_wait_in_the_worker_for_a_place,
        runs_over_a_tenant_limit_wait_in_the_worker_for_a_place,
        a_stopping_worker_hands_back_the_runs_waiting_in_it,
        private_targets_are_refused_when_connecting,
        retry_after_is_honoured,
        gone_pauses_the_schedule,
        redirects_are_not_followed,
        a_hanging_receiver_times_out_and_is_retried,
    );
}

/// Finished runs older than the retention are pruned with their attempts; unfinished runs and
/// recent history stay.
async fn history_is_pruned_after_the_retention(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "history",
            "schedule": {"kind": "interval", "every_seconds": 86400},
            "target": {"url": receiver.url}
        }))
        .await;
    let first = t(&schedule["next_run_at"]);
    app.run_worker_at(first).await;
    app.run_worker_at(first + Duration::days(1)).await;
    receiver.script([Reply::status(503)]);
    app.run_worker_at(first + Duration::days(2)).await;
    let runs = app.get("/v1/runs").await.body;
    let statuses: Vec<&str> = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["retrying", "succeeded", "succeeded"]);
    let oldest = runs["items"][2]["id"].as_str().unwrap().to_owned();

    let retention = Duration::days(30);
    let pruned = hookbeat_scheduler::maintenance::prune(
        &app.db,
        first + Duration::days(30) + Duration::hours(1),
        retention,
        10,
    )
    .await
    .unwrap();
    assert_eq!(
        pruned.runs, 1,
        "only the run finished more than 30 days before"
    );
    assert_eq!(
        app.get(&format!("/v1/runs/{oldest}")).await.status,
        StatusCode::NOT_FOUND
    );
    let left: Vec<String> = app.get("/v1/runs").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, vec!["retrying", "succeeded"]);
}

on_both_databases!(history_is_pruned_after_the_retention);

/// A trigger retried with the same Idempotency-Key returns the first run and fires once.
async fn a_retried_trigger_fires_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "manual",
            "schedule": {"kind": "interval", "every_seconds": 86400},
            "target": {"url": receiver.url}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    let trigger = || {
        app.http
            .post(format!("{}/v1/schedules/{id}/trigger", app.address))
            .bearer_auth(&app.token)
            .header("idempotency-key", "fire-once")
            .send()
    };
    let first = trigger().await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    let first: Value = first.json().await.unwrap();
    let retried = trigger().await.unwrap();
    assert_eq!(retried.status(), StatusCode::ACCEPTED);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    let retried: Value = retried.json().await.unwrap();
    assert_eq!(retried["id"], first["id"]);
    assert_eq!(app.run_worker().await.attempts, 1);
    assert_eq!(receiver.received().len(), 1, "fired once");
}

on_both_databases!(a_retried_trigger_fires_once);

/// A delivery's slot comes free when the receiver has answered, not when the result is recorded:
/// with one slot and every write-back held up (a trigger on the updates of `runs` that give a
/// lease up waits for a row the test holds locked), the worker loop still sends both due fires, one after the other; both
/// are recorded once the lock is gone.
#[tokio::test]
async fn a_slot_comes_free_when_the_answer_is_in() {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let receiver = Receiver::start();
    app.create_minutely_schedules("slot", 2, &receiver.url)
        .await;
    let worker = app.another_worker(hookbeat_scheduler::WorkerConfig {
        concurrency: 1,
        allow_private_targets: true,
        ..hookbeat_scheduler::WorkerConfig::default()
    });
    app.clock.advance(Duration::seconds(60));

    for statement in [
        "CREATE TABLE gate (x int)",
        "INSERT INTO gate VALUES (1)",
        "CREATE FUNCTION wait_at_gate() RETURNS trigger AS $$ BEGIN \
         PERFORM 1 FROM gate FOR SHARE; RETURN NEW; END $$ LANGUAGE plpgsql",
        // The write-back gives the lease up; a claim takes one.
        "CREATE TRIGGER wait_at_gate BEFORE UPDATE ON runs FOR EACH ROW \
         WHEN (OLD.locked_by IS NOT NULL AND NEW.locked_by IS NULL) \
         EXECUTE FUNCTION wait_at_gate()",
    ] {
        app.db.execute_unprepared(statement).await.unwrap();
    }
    let lock = app.db.begin().await.unwrap();
    lock.execute_unprepared("SELECT * FROM gate FOR UPDATE")
        .await
        .unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(cancel.clone()));
    let wait = std::time::Duration::from_secs(20);
    let both_sent = eventually(wait, || async {
        (receiver.received().len() == 2).then_some(())
    })
    .await;
    let recorded_meanwhile = succeeded_runs(&app).await;
    lock.rollback().await.unwrap();

    assert!(
        both_sent.is_some(),
        "with one slot, the second fire waited for the first one's write-back"
    );
    assert_eq!(recorded_meanwhile, 0, "a write-back got past the lock");
    let recorded = eventually(wait, || async {
        (succeeded_runs(&app).await == 2).then_some(())
    })
    .await;
    cancel.cancel();
    running.await.unwrap().unwrap();
    assert!(
        recorded.is_some(),
        "the results were not recorded after the lock"
    );
    assert_eq!(receiver.received().len(), 2);
}

async fn succeeded_runs(app: &crate::helpers::TestApp) -> usize {
    let runs = app.get("/v1/runs?status=succeeded").await.body;
    runs["items"].as_array().unwrap().len()
}
