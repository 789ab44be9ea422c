//! Failure and recovery notices and the pause after failures (issue 18, item 4): a schedule
//! that turns `failing` sends one signed notice to its `notify` target, one more when it
//! recovers, none in between; a notice is retried with its `webhook-id` until it is answered;
//! `pause_after_failures` pauses the schedule and resuming starts the count again. The worker
//! is driven by `run_once` at instants the test sets.

use chrono::Duration;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::delivery::signature_is_valid;
use crate::helpers::app::token_for;
use crate::helpers::instant as t;
use crate::helpers::receiver::Received;
use crate::helpers::{spawn_app, Backend, Receiver, Reply, TestApp};
use crate::on_both_databases;

/// Whether `request` is signed with `secret` (checked independently of hookbeat's signing).
fn signed(secret: &str, request: &Received) -> bool {
    signature_is_valid(
        secret,
        request.header("webhook-id"),
        request.header("webhook-timestamp"),
        &request.body,
        request.header("webhook-signature"),
    )
}

fn body(request: &Received) -> Value {
    serde_json::from_slice(&request.body).expect("a notice is JSON")
}

async fn schedule_of(app: &TestApp, id: &str) -> Value {
    let schedule = app.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(schedule.status, StatusCode::OK, "{}", schedule.body);
    schedule.body
}

/// A schedule firing hourly at `target`, whose runs get one attempt each.
pub(crate) fn hourly(name: &str, target: &str, extra: Value) -> Value {
    let mut body = json!({
        "name": name,
        "schedule": {"kind": "interval", "every_seconds": 3600},
        "target": {"url": target},
        "retry": {"max_attempts": 1}
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

/// The failing notice goes out once, when the `after_failures`-th run in a row fails for good;
/// the recovery notice once, when a run (here a redelivered one) succeeds; both signed, each
/// with its own `webhook-id`, naming the schedule, the run and the last error.
async fn a_failing_schedule_is_announced_once_and_so_is_its_recovery(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let target = Receiver::start();
    let notices = Receiver::start();
    let tenant_notices = Receiver::start();
    target.script([Reply::status(500), Reply::status(500), Reply::status(500)]);
    // The schedule's own target wins over its tenant's default.
    let settings = app
        .call(
            Method::PATCH,
            "/v1/tenant",
            Some(json!({"notify": {"url": tenant_notices.url}})),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    let schedule = app
        .create_schedule(hourly(
            "flaky",
            &target.url,
            json!({"notify": {"url": notices.url, "after_failures": 2}}),
        ))
        .await;
    assert_eq!(
        schedule["notify"],
        json!({"url": notices.url, "after_failures": 2, "timeout_ms": 15000})
    );
    let id = schedule["id"].as_str().unwrap().to_owned();
    let mut fire = t(&schedule["next_run_at"]);

    app.run_worker_at(fire).await;
    assert!(notices.received().is_empty(), "one failure is not failing");
    assert_eq!(schedule_of(&app, &id).await["health"]["state"], "healthy");

    fire += Duration::hours(1);
    let report = app.run_worker_at(fire).await;
    assert_eq!(report.notices, 1, "{report:?}");
    let health = &schedule_of(&app, &id).await["health"];
    assert_eq!(health["state"], "failing", "{health}");
    assert_eq!(t(&health["failing_since"]), fire);
    let received = notices.received();
    assert_eq!(received.len(), 1);
    let failing = &received[0];
    let secret = app.signing_secret().await;
    assert!(signed(&secret, failing), "the notice is signed");
    let notice = body(failing);
    let failed_run = target.received()[1].header("webhook-id").to_owned();
    assert_eq!(notice["type"], "schedule.failing", "{notice}");
    assert_eq!(notice["transition"], "failing");
    assert_eq!(notice["notice_id"], failing.header("webhook-id"));
    assert_eq!(notice["schedule"], json!({"id": id, "name": "flaky"}));
    assert_eq!(notice["consecutive_failures"], 2);
    assert_eq!(notice["failing_after"], 2);
    assert_eq!(notice["last_error"], "receiver answered 500");
    assert_eq!(notice["run_id"], failed_run.as_str());
    assert_eq!(notice["links"]["run"], format!("/v1/runs/{failed_run}"));
    assert_eq!(
        notice["links"]["failed_runs"],
        format!("/v1/runs?schedule_id={id}&status=failed")
    );
    assert_eq!(failing.header("hookbeat-schedule-id"), id);

    // Still failing: no second notice for the same episode.
    fire += Duration::hours(1);
    let report = app.run_worker_at(fire).await;
    assert_eq!(report.notices, 0);
    assert_eq!(notices.received().len(), 1);
    assert_eq!(
        app.metric("hookbeat_notices_total{transition=\"failing\"}")
            .await,
        1.0
    );

    // The last failed run is redelivered and succeeds: recovered, announced once.
    let last_failed = target.received()[2].header("webhook-id").to_owned();
    let redelivered = app
        .call(
            Method::POST,
            &format!("/v1/runs/{last_failed}/redeliver"),
            None,
        )
        .await;
    assert_eq!(redelivered.status, StatusCode::ACCEPTED);
    let recovered_at = fire + Duration::seconds(30);
    app.run_worker_at(recovered_at).await;
    let health = &schedule_of(&app, &id).await["health"];
    assert_eq!(health["state"], "healthy", "{health}");
    assert_eq!(health["failing_since"], Value::Null);
    let received = notices.received();
    assert_eq!(received.len(), 2);
    let recovered = &received[1];
    assert!(signed(&secret, recovered));
    let notice = body(recovered);
    assert_eq!(notice["type"], "schedule.recovered", "{notice}");
    assert_eq!(notice["notice_id"], recovered.header("webhook-id"));
    assert_eq!(notice["run_id"], last_failed.as_str());
    assert_eq!(t(&notice["failing_since"]), fire - Duration::hours(1));
    assert_eq!(notice["consecutive_failures"], 0);

    // Healthy fires announce nothing.
    app.run_worker_at(fire + Duration::hours(1)).await;
    assert_eq!(notices.received().len(), 2);
    assert_eq!(
        app.metric("hookbeat_notices_total{transition=\"recovered\"}")
            .await,
        1.0
    );
    assert!(tenant_notices.received().is_empty());

    // The schedule's notices, newest first, with how each went; another tenant sees none.
    let listed = app.get(&format!("/v1/schedules/{id}/notices")).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    let items = listed.body["items"].as_array().unwrap();
    let summary: Vec<(&str, &str, i64)> = items
        .iter()
        .map(|n| {
            (
                n["transition"].as_str().unwrap(),
                n["status"].as_str().unwrap(),
                n["attempts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [("recovered", "delivered", 1), ("failing", "delivered", 1)]
    );
    assert_eq!(items[1]["id"], failing.header("webhook-id"));
    assert_eq!(items[1]["body"], body(failing));
    assert_eq!(items[1]["next_attempt_at"], Value::Null);
    let page = app
        .get(&format!("/v1/schedules/{id}/notices?limit=1"))
        .await;
    let cursor = page.body["next_cursor"].as_str().unwrap().to_owned();
    let rest = app
        .get(&format!(
            "/v1/schedules/{id}/notices?limit=1&cursor={cursor}"
        ))
        .await;
    assert_eq!(rest.body["items"][0]["transition"], "failing");
    assert_eq!(rest.body["next_cursor"], Value::Null);
    let stranger = token_for("another-tenant", "schedules:read");
    let hidden = app
        .call_as(
            &stranger,
            Method::GET,
            &format!("/v1/schedules/{id}/notices"),
            None,
        )
        .await;
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
}

/// A notice its target does not take is tried again, not before its backoff, with the same
/// `webhook-id` and body; once answered it is not sent again. One the target refuses (a 4xx)
/// is given up at once, and counted: here the recovery notice of the episode.
async fn a_notice_is_retried_until_answered_and_given_up_when_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let target = Receiver::start();
    let notices = Receiver::start();
    target.script([Reply::status(500), Reply::status(500)]);
    notices.script([
        Reply::status(503),
        Reply::status(200),
        Reply::status(400).body("unknown hook"),
    ]);
    let schedule = app
        .create_schedule(hourly(
            "refused",
            &target.url,
            json!({"notify": {"url": notices.url, "after_failures": 1}}),
        ))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    let fire = t(&schedule["next_run_at"]);

    app.run_worker_at(fire).await;
    assert_eq!(notices.received().len(), 1);
    assert_eq!(
        app.metric("hookbeat_notice_deliveries_total{outcome=\"retry\"}")
            .await,
        1.0
    );
    // The backoff of the default policy is at least 2.5 s.
    app.run_worker_at(fire + Duration::seconds(2)).await;
    assert_eq!(notices.received().len(), 1, "not before its backoff");
    let report = app.run_worker_at(fire + Duration::seconds(6)).await;
    assert_eq!(report.notices, 1);
    let received = notices.received();
    assert_eq!(received.len(), 2);
    assert_eq!(
        received[1].header("webhook-id"),
        received[0].header("webhook-id")
    );
    assert_eq!(received[1].body, received[0].body);
    assert_eq!(received[1].header("hookbeat-attempt"), "2");
    app.run_worker_at(fire + Duration::minutes(30)).await;
    assert_eq!(notices.received().len(), 2, "an answered notice is done");

    // One more failure (still failing, nothing sent), then a success: the recovery notice is
    // refused and given up.
    let next = fire + Duration::hours(1);
    app.run_worker_at(next).await; // 500: still failing, nothing sent
    assert_eq!(notices.received().len(), 2);
    app.run_worker_at(next + Duration::hours(1)).await; // 200: recovered, the notice gets 400
    let received = notices.received();
    assert_eq!(received.len(), 3);
    assert_eq!(body(&received[2])["type"], "schedule.recovered");
    assert_eq!(
        app.metric("hookbeat_notice_deliveries_total{outcome=\"failed\"}")
            .await,
        1.0
    );
    app.run_worker_at(next + Duration::hours(1) + Duration::minutes(30))
        .await;
    assert_eq!(
        notices.received().len(),
        3,
        "a refused notice is not retried"
    );
    let listed = app.get(&format!("/v1/schedules/{id}/notices")).await;
    let items = listed.body["items"].as_array().unwrap();
    assert_eq!(items[0]["status"], "failed", "{}", listed.body);
    assert_eq!(items[0]["last_status_code"], 400);
    assert_eq!(items[0]["last_error"], "receiver answered 400");
    assert_eq!(items[1]["status"], "delivered");
    assert_eq!(items[1]["attempts"], 2);
    assert_eq!(schedule_of(&app, &id).await["health"]["state"], "healthy");
}

/// `pause_after_failures` pauses the schedule with a reason, tells the tenant's default
/// `notify` target (the schedule has none of its own), and its fires stop; resuming clears the
/// reason and starts the count again.
async fn a_schedule_pauses_after_its_failures_and_resuming_starts_again(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let target = Receiver::start();
    let notices = Receiver::start();
    target.script([Reply::status(500), Reply::status(500), Reply::status(500)]);
    let settings = app
        .call(
            Method::PATCH,
            "/v1/tenant",
            Some(json!({"notify": {"url": notices.url, "after_failures": 5}})),
        )
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.body);
    assert_eq!(settings.body["notify"]["after_failures"], 5);
    assert_eq!(
        app.get("/v1/tenant").await.body["notify"]["url"],
        notices.url
    );

    let schedule = app
        .create_schedule(hourly(
            "fragile",
            &target.url,
            json!({"pause_after_failures": 2}),
        ))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    let version = schedule["version"].as_i64().unwrap();
    let fire = t(&schedule["next_run_at"]);
    app.run_worker_at(fire).await;
    assert_eq!(schedule_of(&app, &id).await["enabled"], true);
    app.run_worker_at(fire + Duration::hours(1)).await;

    let paused = schedule_of(&app, &id).await;
    assert_eq!(paused["enabled"], false, "{paused}");
    let reason = paused["paused_reason"].as_str().unwrap();
    assert!(reason.contains("pause_after_failures"), "{reason}");
    assert!(reason.contains("last 2 runs"), "{reason}");
    assert_eq!(paused["health"]["state"], "paused");
    assert_eq!(paused["health"]["consecutive_failures"], 2);
    assert_eq!(paused["next_run_at"], Value::Null);
    assert!(paused["version"].as_i64().unwrap() > version);
    let received = notices.received();
    assert_eq!(
        received.len(),
        1,
        "the paused notice, and no failing one (5 not reached)"
    );
    let notice = body(&received[0]);
    assert_eq!(notice["type"], "schedule.paused", "{notice}");
    assert_eq!(notice["paused_reason"], reason);
    assert_eq!(
        app.metric("hookbeat_notices_total{transition=\"paused\"}")
            .await,
        1.0
    );

    // Paused: its fires stop.
    app.run_worker_at(fire + Duration::hours(3)).await;
    assert_eq!(target.received().len(), 2);

    let resumed = app
        .call(Method::POST, &format!("/v1/schedules/{id}/resume"), None)
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.body["paused_reason"], Value::Null);
    assert_eq!(resumed.body["health"]["consecutive_failures"], 0);
    assert_eq!(resumed.body["health"]["state"], "healthy");
    // The fires of the pause (2 and 3 hours after the first) are recorded and counted.
    assert_eq!(resumed.body["health"]["last_24h"]["skipped"]["paused"], 2);
    assert_eq!(
        app.metric("hookbeat_fires_skipped_total{reason=\"paused\"}")
            .await,
        2.0
    );
    // One more failure is one, not three: it stays enabled.
    app.run_worker_at(t(&resumed.body["next_run_at"])).await;
    let after = schedule_of(&app, &id).await;
    assert_eq!(after["enabled"], true, "{after}");
    assert_eq!(after["health"]["consecutive_failures"], 1);

    // The tenant's default goes away with null.
    let cleared = app
        .call(Method::PATCH, "/v1/tenant", Some(json!({"notify": null})))
        .await;
    assert_eq!(cleared.status, StatusCode::OK);
    assert_eq!(cleared.body["notify"], Value::Null);
}

on_both_databases!(
    a_failing_schedule_is_announced_once_and_so_is_its_recovery,
    a_notice_is_retried_until_answered_and_given_up_when_refused,
    a_schedule_pauses_after_its_failures_and_resuming_starts_again,
);

/// Bad `notify` members and thresholds are refused naming the field, on a schedule and on the
/// tenant; a merge patch changes and removes them; a read-only token cannot change the tenant's
/// settings.
#[tokio::test]
async fn notify_targets_and_thresholds_are_validated() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    for (extra, field) in [
        (
            json!({"notify": {"url": "ftp://example.com/x"}}),
            "notify.url",
        ),
        (
            json!({"notify": {"url": "https://example.com/x", "after_failures": 0}}),
            "notify.after_failures",
        ),
        (
            json!({"notify": {"url": "https://example.com/x", "headers": {"webhook-id": "x"}}}),
            "notify.headers.webhook-id",
        ),
        (json!({"pause_after_failures": 0}), "pause_after_failures"),
        (
            json!({"pause_after_failures": 1001}),
            "pause_after_failures",
        ),
    ] {
        let answer = app
            .post(
                "/v1/schedules",
                hourly("bad", "https://example.com/hook", extra.clone()),
            )
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{extra}");
        let fields = answer.error_fields();
        assert_eq!(fields, [field], "{}", answer.body);
    }
    // A merge patch changes a member of `notify`, and `null` removes it.
    let schedule = app
        .create_schedule(hourly(
            "good",
            "https://example.com/hook",
            json!({"notify": {"url": "https://example.com/n"}, "pause_after_failures": 4}),
        ))
        .await;
    let path = format!("/v1/schedules/{}", schedule["id"].as_str().unwrap());
    let changed = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"notify": {"after_failures": 5}})),
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(
        changed.body["notify"],
        json!({"url": "https://example.com/n", "after_failures": 5, "timeout_ms": 15000})
    );
    let removed = app
        .call(
            Method::PATCH,
            &path,
            Some(json!({"notify": null, "pause_after_failures": null})),
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{}", removed.body);
    assert!(removed.body.get("notify").is_none(), "{}", removed.body);
    assert!(removed.body.get("pause_after_failures").is_none());

    let answer = app
        .call(
            Method::PATCH,
            "/v1/tenant",
            Some(json!({"notify": {"url": "not a url"}})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(answer.body["errors"][0]["field"], "notify.url");
    let reader = token_for(&app.tenant, "schedules:read");
    let refused = app
        .call_as(
            &reader,
            Method::PATCH,
            "/v1/tenant",
            Some(json!({"notify": null})),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let read = app.call_as(&reader, Method::GET, "/v1/tenant", None).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body["id"], app.tenant.as_str());
}
