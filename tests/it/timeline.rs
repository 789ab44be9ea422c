//! The timeline of a schedule (issue 18): every nominal fire in a window with what became of
//! it, on the schedule's wall clock. The worker is driven by `run_once` at instants the test
//! sets.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::instant as t;
use crate::helpers::{minutely, spawn_app, Backend, Receiver, Reply, TestApp};
use crate::on_both_databases;

fn z(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

async fn timeline(app: &TestApp, id: &str, query: &str) -> Value {
    let answer = app
        .get(&format!("/v1/schedules/{id}/timeline?{query}"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// (at, status, reason) of each entry.
fn outline(page: &Value) -> Vec<(String, String, Option<String>)> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["at"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
                e["reason"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

fn entry(
    at: DateTime<Utc>,
    status: &str,
    reason: Option<&str>,
) -> (String, String, Option<String>) {
    (z(at), status.to_owned(), reason.map(str::to_owned))
}

/// Delivered, failed, retrying, skipped by `overlap`, and expected; each delivered or failed
/// fire names its run; pages join up through the cursor.
async fn the_timeline_says_what_became_of_each_fire(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    receiver.script([Reply::status(200), Reply::status(400), Reply::status(503)]);
    let schedule = app
        .create_schedule(json!({
            "name": "explained",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": receiver.url},
            "overlap": "skip",
            "retry": {"max_attempts": 3, "initial_backoff_ms": 3600000, "max_backoff_ms": 3600000}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    let f = t(&schedule["next_run_at"]);
    let m = Duration::minutes(1);
    for n in 0..4 {
        app.run_worker_at(f + m * n).await;
    }
    let window = format!("from={}&to={}", z(f), z(f + m * 5));
    let page = timeline(&app, &id, &window).await;
    assert_eq!(
        outline(&page),
        [
            entry(f, "delivered", None),
            entry(f + m, "failed", None),
            entry(f + m * 2, "retrying", None),
            entry(f + m * 3, "skipped", Some("overlap")),
            entry(f + m * 4, "expected", None),
            entry(f + m * 5, "expected", None),
        ],
        "{page}"
    );
    assert_eq!(page["next_cursor"], Value::Null);
    let first = &page["items"][0];
    assert_eq!(first["fire_lag_ms"], 0, "{first}");
    assert_eq!(first["attempts"], 1, "{first}");
    assert_eq!(first["utc_offset"], "+00:00", "{first}");
    assert_eq!(first["local_time"], z(f).trim_end_matches('Z'), "{first}");
    let run = app
        .get(&format!("/v1/runs/{}", first["run_id"].as_str().unwrap()))
        .await;
    assert_eq!(run.body["scheduled_for"], z(f).as_str(), "{}", run.body);

    // Two at a time, the pages join up to the same entries.
    let mut joined = Vec::new();
    let mut query = format!("{window}&limit=2");
    for _ in 0..4 {
        let page = timeline(&app, &id, &query).await;
        joined.extend(outline(&page));
        match page["next_cursor"].as_str() {
            Some(cursor) => query = format!("{window}&limit=2&cursor={cursor}"),
            None => break,
        }
    }
    assert_eq!(joined, outline(&timeline(&app, &id, &window).await));
}

/// Every skip reason appears: `catchup`, `max_runs`, `end_at`, and `paused` both while paused
/// and after the resume.
async fn every_skip_reason_shows_in_the_timeline(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let minutely = |name: &str, extra: Value| minutely(name, &receiver.url, extra);
    let f = t(&app
        .create_schedule(minutely("dropped", json!({"catchup": "skip"})))
        .await["next_run_at"]);
    let m = Duration::minutes(1);
    app.create_schedule(minutely("capped", json!({"catchup": "all", "max_runs": 1})))
        .await;
    app.create_schedule(minutely(
        "ending",
        json!({"end_at": z(f + Duration::seconds(30))}),
    ))
    .await;
    let paused = app.create_schedule(minutely("paused", json!({}))).await;
    let paused_id = paused["id"].as_str().unwrap();
    app.clock.set(f - Duration::seconds(1));
    app.call(
        Method::POST,
        &format!("/v1/schedules/{paused_id}/pause"),
        None,
    )
    .await;
    // The worker was away for three minutes.
    app.run_worker_at(f + m * 3).await;
    let page = |name: &str| {
        let list = &app;
        let name = name.to_owned();
        async move {
            let all = list.get("/v1/schedules?limit=10").await.body;
            let id = all["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["name"] == name.as_str())
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned();
            outline(&timeline(list, &id, &format!("from={}&to={}", z(f), z(f + m * 4))).await)
        }
    };
    assert_eq!(
        page("dropped").await,
        [
            entry(f, "skipped", Some("catchup")),
            entry(f + m, "skipped", Some("catchup")),
            entry(f + m * 2, "delivered", None),
            entry(f + m * 3, "delivered", None),
            entry(f + m * 4, "expected", None),
        ]
    );
    let capped_outline = page("capped").await;
    assert_eq!(capped_outline[0].1, "delivered", "{capped_outline:?}");
    assert!(
        capped_outline[1..]
            .iter()
            .all(|(_, status, reason)| status == "skipped" && reason.as_deref() == Some("max_runs")),
        "{capped_outline:?}"
    );
    let ending_outline = page("ending").await;
    assert_eq!(ending_outline[0], entry(f, "delivered", None));
    assert!(
        ending_outline[1..]
            .iter()
            .all(|(_, status, reason)| status == "skipped" && reason.as_deref() == Some("end_at")),
        "{ending_outline:?}"
    );
    let while_paused = page("paused").await;
    assert_eq!(
        while_paused,
        [
            entry(f, "skipped", Some("paused")),
            entry(f + m, "skipped", Some("paused")),
            entry(f + m * 2, "skipped", Some("paused")),
            entry(f + m * 3, "skipped", Some("paused")),
            entry(f + m * 4, "expected", None),
        ]
    );
    app.call(
        Method::POST,
        &format!("/v1/schedules/{paused_id}/resume"),
        None,
    )
    .await;
    assert_eq!(page("paused").await, while_paused, "recorded on resume");
}

/// The wall clock around DST changes: New York's fall-back hour fires twice under
/// `dst_overlap: both` (first and second occurrence); Berlin's spring-forward gap is one
/// `gap_skipped` entry under `dst_gap: skip` and a `gap_shifted` fire under `shift`.
async fn dst_changes_are_annotated(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let crontab = |name: &str, spec: Value| json!({"name": name, "schedule": spec, "target": {"url": receiver.url}});
    let ny = app
        .create_schedule(crontab(
            "ny",
            json!({"kind": "crontab", "expression": "30 1 * * *", "timezone": "America/New_York", "dst_overlap": "both"}),
        ))
        .await;
    // 2030-11-03: 02:00 EDT becomes 01:00 EST.
    let page = timeline(
        &app,
        ny["id"].as_str().unwrap(),
        "from=2030-11-03T00:00:00Z&to=2030-11-03T23:59:59Z",
    )
    .await;
    let readings: Vec<_> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["at"].clone(),
                e["local_time"].clone(),
                e["utc_offset"].clone(),
                e["dst"].clone(),
            )
        })
        .collect();
    assert_eq!(
        readings,
        [
            (
                json!("2030-11-03T05:30:00Z"),
                json!("2030-11-03T01:30:00"),
                json!("-04:00"),
                json!("overlap_first")
            ),
            (
                json!("2030-11-03T06:30:00Z"),
                json!("2030-11-03T01:30:00"),
                json!("-05:00"),
                json!("overlap_second")
            ),
        ],
        "{page}"
    );
    assert!(page["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["status"] == "expected"));

    let quarter = app
        .create_schedule(crontab(
            "berlin-half-hourly",
            json!({"kind": "crontab", "expression": "*/30 * * * *", "timezone": "Europe/Berlin"}),
        ))
        .await;
    // 2030-03-31 01:00 UTC: 02:00 CET becomes 03:00 CEST.
    let page = timeline(
        &app,
        quarter["id"].as_str().unwrap(),
        "from=2030-03-31T00:30:00Z&to=2030-03-31T01:30:00Z",
    )
    .await;
    let items = page["items"].as_array().unwrap();
    let readings: Vec<_> = items
        .iter()
        .map(|e| {
            (
                e["at"].clone(),
                e["local_time"].clone(),
                e["dst"].clone(),
                e["fires"].clone(),
            )
        })
        .collect();
    assert_eq!(
        readings,
        [
            (
                json!("2030-03-31T00:30:00Z"),
                json!("2030-03-31T01:30:00"),
                Value::Null,
                Value::Null
            ),
            (
                json!("2030-03-31T01:00:00Z"),
                json!("2030-03-31T02:00:00"),
                json!("gap_skipped"),
                json!(2)
            ),
            (
                json!("2030-03-31T01:00:00Z"),
                json!("2030-03-31T03:00:00"),
                Value::Null,
                Value::Null
            ),
            (
                json!("2030-03-31T01:30:00Z"),
                json!("2030-03-31T03:30:00"),
                Value::Null,
                Value::Null
            ),
        ],
        "{page}"
    );
    assert_eq!(items[1]["status"], "skipped");
    assert_eq!(items[1]["reason"], "dst_gap");

    let fixed = app
        .create_schedule(crontab(
            "berlin-0230",
            json!({"kind": "crontab", "expression": "30 2 * * *", "timezone": "Europe/Berlin"}),
        ))
        .await;
    let page = timeline(
        &app,
        fixed["id"].as_str().unwrap(),
        "from=2030-03-31T00:00:00Z&to=2030-03-31T23:00:00Z",
    )
    .await;
    assert_eq!(page["items"][0]["at"], "2030-03-31T01:00:00Z", "{page}");
    assert_eq!(page["items"][0]["local_time"], "2030-03-31T03:00:00");
    assert_eq!(page["items"][0]["dst"], "gap_shifted");
}

/// Bad windows and cursors are 422s naming the parameter; another tenant's schedule is a 404.
async fn bad_timeline_queries_name_the_parameter(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let schedule = app
        .create_schedule(json!({
            "name": "asked-badly",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": "http://127.0.0.1:9/hook"}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    for (query, field) in [
        ("from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", "to"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("cursor=zzz", "cursor"),
        ("from=yesterday", "from"),
    ] {
        let answer = app
            .get(&format!("/v1/schedules/{id}/timeline?{query}"))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{query}: {}",
            answer.body
        );
        assert_eq!(
            answer.body["errors"][0]["field"], field,
            "{query}: {}",
            answer.body
        );
    }
    let other = crate::helpers::app::token_for("another-tenant", "schedules:read");
    let theirs = app
        .call_as(
            &other,
            Method::GET,
            &format!("/v1/schedules/{id}/timeline"),
            None,
        )
        .await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
}

on_both_databases!(
    the_timeline_says_what_became_of_each_fire,
    every_skip_reason_shows_in_the_timeline,
    dst_changes_are_annotated,
    bad_timeline_queries_name_the_parameter,
);
