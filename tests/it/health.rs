//! Every schedule accounts for itself (issue 18): its `health` kept by the worker as runs finish,
//! the state it is in and the filter that finds the ones that need attention. The worker is
//! driven by `run_once` at instants the test sets.

use chrono::{DateTime, Duration, Utc};
use hookbeat_scheduler::Clock;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::instant as t;
use crate::helpers::{minutely, spawn_app, Backend, Receiver, Reply, TestApp};
use crate::on_both_databases;

async fn health_of(app: &TestApp, id: &str) -> Value {
    let schedule = app.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(schedule.status, StatusCode::OK, "{}", schedule.body);
    schedule.body["health"].clone()
}

/// The names of the schedules `GET /v1/schedules?health=<state>` lists.
async fn listed(app: &TestApp, state: &str) -> Vec<String> {
    let page = app.get(&format!("/v1/schedules?health={state}")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    page.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect()
}

/// A run failed for good counts once however many attempts it took; three in a row make the
/// schedule `failing`; a redelivered run that succeeds makes it healthy again and resets the
/// count. Each state shows in the filter.
async fn failures_in_a_row_make_a_schedule_failing_and_a_success_ends_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    // Two runs that fail after a retry each, then one refused outright.
    receiver.script([
        Reply::status(502),
        Reply::status(502),
        Reply::status(503),
        Reply::status(503),
        Reply::status(400).body("no such job"),
    ]);
    let schedule = app
        .create_schedule(json!({
            "name": "flaky",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url},
            "retry": {"max_attempts": 2, "initial_backoff_ms": 1000}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    let fresh = &schedule["health"];
    assert_eq!(fresh["state"], "healthy", "{schedule}");
    assert_eq!(fresh["consecutive_failures"], 0);
    assert_eq!(fresh["last_success_at"], Value::Null);
    assert_eq!(fresh["last_fire_lag_ms"], Value::Null);
    assert_eq!(fresh["late_after_ms"], 60_000);
    assert_eq!(
        fresh["last_24h"],
        json!({"succeeded": 0, "failed": 0, "late": 0, "skipped": {}})
    );

    let mut fire = t(&schedule["next_run_at"]);
    for n in 1..=2 {
        app.run_worker_at(fire).await;
        let health = health_of(&app, &id).await;
        assert_eq!(
            health["consecutive_failures"],
            n - 1,
            "a retry is not a failure yet"
        );
        assert_eq!(health["last_fire_lag_ms"], 0, "{health}");
        app.run_worker_at(fire + Duration::seconds(1)).await;
        let health = health_of(&app, &id).await;
        assert_eq!(health["consecutive_failures"], n, "{health}");
        assert_eq!(health["state"], "healthy", "{health}");
        assert_eq!(t(&health["last_failure_at"]), fire + Duration::seconds(1));
        fire += Duration::hours(1);
    }
    assert!(listed(&app, "failing").await.is_empty());

    app.run_worker_at(fire).await;
    let health = health_of(&app, &id).await;
    assert_eq!(health["consecutive_failures"], 3, "{health}");
    assert_eq!(health["state"], "failing", "{health}");
    assert_eq!(health["last_24h"]["failed"], 3, "{health}");
    assert_eq!(listed(&app, "failing").await, ["flaky"]);
    assert!(listed(&app, "healthy").await.is_empty());

    // The failed run is redelivered and succeeds: healthy again, the count starts afresh.
    let run_id = receiver
        .received()
        .last()
        .unwrap()
        .header("webhook-id")
        .to_owned();
    let redelivered = app
        .call(Method::POST, &format!("/v1/runs/{run_id}/redeliver"), None)
        .await;
    assert_eq!(redelivered.status, StatusCode::ACCEPTED);
    let recovered_at = fire + Duration::seconds(30);
    app.run_worker_at(recovered_at).await;
    let health = health_of(&app, &id).await;
    assert_eq!(health["state"], "healthy", "{health}");
    assert_eq!(health["consecutive_failures"], 0);
    assert_eq!(t(&health["last_success_at"]), recovered_at);
    assert_eq!(
        health["last_24h"],
        json!({"succeeded": 1, "failed": 2, "late": 0, "skipped": {}}),
        "{health}"
    );
    assert_eq!(listed(&app, "healthy").await, ["flaky"]);
    assert!(listed(&app, "failing").await.is_empty());
}

/// A fire whose first attempt starts more than `late_after_ms` after it is late: the state,
/// the count and the filter say so; a longer threshold makes the same fire on time.
async fn a_fire_delivered_after_its_threshold_is_late(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "slow-start",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    let fire = t(&schedule["next_run_at"]);
    // The worker was away for 90 s; the fire is within the catch-up grace and is delivered.
    app.run_worker_at(fire + Duration::seconds(90)).await;
    assert_eq!(receiver.received().len(), 1);
    let health = health_of(&app, &id).await;
    assert_eq!(health["last_fire_lag_ms"], 90_000, "{health}");
    assert_eq!(health["state"], "late", "{health}");
    assert_eq!(health["last_24h"]["late"], 1, "{health}");
    assert_eq!(health["last_24h"]["succeeded"], 1, "{health}");
    assert_eq!(listed(&app, "late").await, ["slow-start"]);

    let patched = app
        .call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"late_after_ms": 120_000})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["late_after_ms"], 120_000);
    let health = &patched.body["health"];
    assert_eq!(health["state"], "healthy", "{health}");
    assert_eq!(health["late_after_ms"], 120_000);
    assert_eq!(health["last_24h"]["late"], 0, "{health}");
    assert!(listed(&app, "late").await.is_empty());

    for bad in [json!(0), json!(86_400_001), json!("soon")] {
        let refused = app
            .call(
                Method::PATCH,
                &format!("/v1/schedules/{id}"),
                Some(json!({"late_after_ms": bad})),
            )
            .await;
        assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}");
        assert_eq!(refused.body["errors"][0]["field"], "late_after_ms", "{bad}");
    }
}

/// Paused and ended schedules are in their own states; an unknown state is a 422 naming the
/// parameter; another tenant's schedules never show.
async fn paused_and_ended_schedules_are_listed_by_state(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let hourly = app
        .create_schedule(json!({
            "name": "hourly",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url}
        }))
        .await;
    let once = app
        .create_schedule(json!({
            "name": "once",
            "schedule": {"kind": "once", "at": (app.clock.now() + Duration::minutes(5)).to_rfc3339()},
            "target": {"url": receiver.url}
        }))
        .await;
    let paused = app
        .call(
            Method::POST,
            &format!("/v1/schedules/{}/pause", hourly["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(paused.body["health"]["state"], "paused", "{}", paused.body);
    app.run_worker_at(t(&once["next_run_at"])).await;
    assert_eq!(listed(&app, "paused").await, ["hourly"]);
    assert_eq!(listed(&app, "ended").await, ["once"]);
    assert!(listed(&app, "healthy").await.is_empty());

    let refused = app.get("/v1/schedules?health=sad").await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(
        refused.body["errors"][0]["field"], "health",
        "{}",
        refused.body
    );

    // Resumed ten minutes later: the fires that fell in the pause are recorded as skipped.
    let minutely = app
        .create_schedule(json!({
            "name": "minutely",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": receiver.url}
        }))
        .await;
    let minutely_id = minutely["id"].as_str().unwrap();
    let first = t(&minutely["next_run_at"]);
    app.clock.set(first - Duration::seconds(1));
    app.call(
        Method::POST,
        &format!("/v1/schedules/{minutely_id}/pause"),
        None,
    )
    .await;
    app.clock
        .set(first + Duration::minutes(9) + Duration::seconds(30));
    let resumed = app
        .call(
            Method::POST,
            &format!("/v1/schedules/{minutely_id}/resume"),
            None,
        )
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(
        resumed.body["health"]["last_24h"]["skipped"],
        json!({"paused": 10}),
        "{}",
        resumed.body
    );
    assert_eq!(
        t(&resumed.body["next_run_at"]),
        first + Duration::minutes(10)
    );

    let other = crate::helpers::app::token_for("another-tenant", "schedules:read");
    let theirs = app
        .call_as(&other, Method::GET, "/v1/schedules?health=paused", None)
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert_eq!(theirs.body["items"], json!([]));
}

/// The health recorded for `id`.
async fn recorded_health(
    app: &TestApp,
    id: hookbeat_entity::ScheduleId,
) -> hookbeat_scheduler::health::Recorded {
    hookbeat_scheduler::health::read(&app.db, &[id], app.clock.now())
        .await
        .unwrap()
        .remove(&id)
        .unwrap()
        .recorded
}

/// Two workers' groups of one schedule can commit in either order: the last success and the
/// last failure never move back, and a success older than the failures recorded neither resets
/// the count nor ends a failing episode.
async fn the_last_success_and_failure_never_move_back(backend: Backend) {
    use hookbeat_entity::{RunId, ScheduleId};
    use hookbeat_scheduler::health::{self, Change};
    use hookbeat_scheduler::notices;
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let schedule = app
        .create_schedule(minutely("both-ways", "https://example.com/hook", json!({})))
        .await;
    let id = ScheduleId::from(uuid::Uuid::parse_str(schedule["id"].as_str().unwrap()).unwrap());
    let later = app.clock.now() + Duration::minutes(2);
    let earlier = app.clock.now() + Duration::minutes(1);
    let change = |at: DateTime<Utc>, success: bool| Change {
        schedule_id: id,
        failures: i32::from(!success),
        last_success_at: success.then_some(at),
        last_failure_at: (!success).then_some(at),
        last_fire_lag_ms: Some(5),
        last_failed: (!success).then(|| (RunId::new(), None)),
        last_succeeded: success.then(RunId::new),
    };
    for group in [
        change(later, true),
        change(later, false),
        change(earlier, true),
        change(earlier, false),
    ] {
        health::record(&app.db, &[group]).await.unwrap();
    }
    let recorded = recorded_health(&app, id).await;
    assert_eq!(recorded.last_success_at, Some(later));
    assert_eq!(recorded.last_failure_at, Some(later));

    // The groups above leave 2 failures in a row (the earlier success came after the later
    // failure was recorded, so it reset nothing). Three more open an episode; a success older
    // than them, committed late, neither resets the count nor ends the episode.
    let failed = |minute: i64| change(app.clock.now() + Duration::minutes(minute), false);
    for minute in 3..=5 {
        let group = failed(minute);
        let after = health::record(&app.db, std::slice::from_ref(&group))
            .await
            .unwrap();
        notices::follow(&app.db, &[group], &after, app.clock.now())
            .await
            .unwrap();
    }
    let stale = change(earlier, true);
    let after = health::record(&app.db, std::slice::from_ref(&stale))
        .await
        .unwrap();
    assert_eq!(after[0].consecutive_failures, 5, "{after:?}");
    assert!(!after[0].recovered(), "{after:?}");
    notices::follow(&app.db, &[stale], &after, app.clock.now())
        .await
        .unwrap();
    let recorded = recorded_health(&app, id).await;
    assert_eq!(recorded.consecutive_failures, 5);
    assert!(recorded.failing_since.is_some(), "still failing");
    // A success newer than every failure ends it.
    let fresh = change(app.clock.now() + Duration::minutes(6), true);
    let after = health::record(&app.db, std::slice::from_ref(&fresh))
        .await
        .unwrap();
    assert!(after[0].recovered(), "{after:?}");
}

on_both_databases!(
    the_last_success_and_failure_never_move_back,
    failures_in_a_row_make_a_schedule_failing_and_a_success_ends_it,
    a_fire_delivered_after_its_threshold_is_late,
    paused_and_ended_schedules_are_listed_by_state,
);

/// Fires the engine decides not to deliver are counted in `health.last_24h.skipped` by reason
/// and in `hookbeat_fires_skipped_total`: missed fires dropped by `catchup: skip`, fires past
/// `max_runs`, a fire while the previous run is unfinished under `overlap: skip`, and the
/// local times a spring-forward gap swallowed under `dst_gap: skip`.
async fn skipped_fires_are_counted_by_reason(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let minutely = |name: &str, extra: Value| minutely(name, &receiver.url, extra);
    let dropped = app
        .create_schedule(minutely("dropped", json!({"catchup": "skip"})))
        .await;
    let capped = app
        .create_schedule(minutely("capped", json!({"catchup": "all", "max_runs": 3})))
        .await;
    let fire = t(&dropped["next_run_at"]);
    // The worker was away for ten minutes: fires fire … fire+8m are missed (older than the
    // 60 s grace), fire+9m and fire+10m are on time.
    app.run_worker_at(fire + Duration::minutes(10)).await;
    let skipped = health_of(&app, dropped["id"].as_str().unwrap()).await["last_24h"].clone();
    assert_eq!(skipped["skipped"], json!({"catchup": 9}), "{skipped}");
    assert_eq!(skipped["succeeded"], 2, "{skipped}");
    let capped_health = health_of(&app, capped["id"].as_str().unwrap()).await;
    assert_eq!(
        capped_health["last_24h"]["skipped"],
        json!({"max_runs": 8}),
        "{capped_health}"
    );
    assert_eq!(capped_health["state"], "ended", "{capped_health}");
    assert_eq!(
        app.metric("hookbeat_fires_skipped_total{reason=\"catchup\"}")
            .await,
        9.0
    );
    assert_eq!(
        app.metric("hookbeat_fires_skipped_total{reason=\"max_runs\"}")
            .await,
        8.0
    );

    // Overlap: the first run keeps failing and retrying; the next fire is passed over.
    let busy = Receiver::start();
    busy.script([Reply::status(503), Reply::status(503)]);
    let single = app
        .create_schedule(json!({
            "name": "single",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": busy.url},
            "overlap": "skip",
            "retry": {"max_attempts": 5, "initial_backoff_ms": 7200000, "max_backoff_ms": 7200000}
        }))
        .await;
    let first = t(&single["next_run_at"]);
    app.run_worker_at(first).await;
    app.run_worker_at(first + Duration::hours(1)).await;
    let health = health_of(&app, single["id"].as_str().unwrap()).await;
    assert_eq!(
        health["last_24h"]["skipped"],
        json!({"overlap": 1}),
        "{health}"
    );
    assert_eq!(
        app.metric("hookbeat_fires_skipped_total{reason=\"overlap\"}")
            .await,
        1.0
    );

    // Berlin springs forward on 2030-03-31 at 01:00 UTC (02:00 CET becomes 03:00 CEST): an
    // every-quarter crontab (`dst_gap: skip`, the default for a non-fixed time) loses 02:00,
    // 02:15, 02:30 and 02:45.
    let quarterly = app
        .create_schedule(json!({
            "name": "quarterly",
            "schedule": {"kind": "crontab", "expression": "*/15 * * * *", "timezone": "Europe/Berlin"},
            "target": {"url": receiver.url},
            "start_at": "2030-03-31T00:30:00Z"
        }))
        .await;
    app.run_worker_at("2030-03-31T00:45:00Z".parse().unwrap())
        .await;
    let health = health_of(&app, quarterly["id"].as_str().unwrap()).await;
    assert_eq!(
        health["last_24h"]["skipped"],
        json!({"dst_gap": 4}),
        "{health}"
    );
    assert_eq!(
        app.metric("hookbeat_fires_skipped_total{reason=\"dst_gap\"}")
            .await,
        4.0
    );
}

on_both_databases!(skipped_fires_are_counted_by_reason);
