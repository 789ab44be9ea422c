//! `rrule` schedules (issue 19) through the API and the worker: the same `Timing` path as every
//! kind, so create, preview, the worker's fires, catch-up and the timeline all follow the rule.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, Receiver, TestApp};
use crate::on_both_databases;

const LAST_FRIDAY: &str = "FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=0";

fn last_friday(extra: Value) -> Value {
    let mut spec = json!({
        "kind": "rrule",
        "rule": LAST_FRIDAY,
        "timezone": "Europe/Berlin",
        "dtstart": "2026-01-01T00:00:00",
    });
    spec.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    spec
}

async fn scheduled_fors(app: &TestApp, id: &str) -> Vec<String> {
    let runs = app.get(&format!("/v1/runs?schedule_id={id}")).await;
    assert_eq!(runs.status, StatusCode::OK, "{}", runs.body);
    let mut fors: Vec<String> = runs.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|run| run["scheduled_for"].as_str().unwrap().to_owned())
        .collect();
    fors.sort();
    fors
}

/// The last Friday of every month at 17:00 in Berlin: created, previewed with local times,
/// fired by the worker (missed fires caught up under `catchup: all`), explained by the timeline.
async fn an_rrule_schedule_fires_on_its_rule(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    // The clock starts on 2030-01-07.
    let schedule = app
        .create_schedule(json!({
            "name": "month-end",
            "schedule": last_friday(json!({"exdate": ["2030-02-22T17:00:00"]})),
            "target": {"url": receiver.url},
            "catchup": "all",
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    assert_eq!(schedule["schedule"]["rule"], LAST_FRIDAY);
    assert_eq!(
        schedule["schedule"]["exdate"],
        json!(["2030-02-22T17:00:00"])
    );
    assert_eq!(schedule["next_run_at"], "2030-01-25T16:00:00Z");

    let preview = app
        .post(
            "/v1/schedules/preview",
            json!({"schedule": last_friday(json!({})), "count": 4, "after": "2030-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    let locals: Vec<(Value, Value, Value)> = preview.body["fires"]
        .as_array()
        .unwrap_or_else(|| panic!("{}", preview.body))
        .iter()
        .map(|f| {
            (
                f["at"].clone(),
                f["local_time"].clone(),
                f["utc_offset"].clone(),
            )
        })
        .collect();
    assert_eq!(
        locals,
        [
            (
                json!("2030-01-25T16:00:00Z"),
                json!("2030-01-25T17:00:00"),
                json!("+01:00")
            ),
            (
                json!("2030-02-22T16:00:00Z"),
                json!("2030-02-22T17:00:00"),
                json!("+01:00")
            ),
            (
                json!("2030-03-29T16:00:00Z"),
                json!("2030-03-29T17:00:00"),
                json!("+01:00")
            ),
            (
                json!("2030-04-26T15:00:00Z"),
                json!("2030-04-26T17:00:00"),
                json!("+02:00")
            ),
        ]
    );

    // The worker was away until May: January, March and April are caught up; February is an
    // EXDATE.
    app.run_worker_at("2030-05-01T00:00:00Z".parse().unwrap())
        .await;
    assert_eq!(
        scheduled_fors(&app, id).await,
        [
            "2030-01-25T16:00:00Z",
            "2030-03-29T16:00:00Z",
            "2030-04-26T15:00:00Z"
        ]
    );
    let after = app.get(&format!("/v1/schedules/{id}")).await.body;
    assert_eq!(after["next_run_at"], "2030-05-31T15:00:00Z");

    let timeline = app
        .get(&format!(
            "/v1/schedules/{id}/timeline?from=2030-04-01T00:00:00Z&to=2030-06-30T00:00:00Z"
        ))
        .await;
    assert_eq!(timeline.status, StatusCode::OK, "{}", timeline.body);
    let entries: Vec<(Value, Value, Value)> = timeline.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["at"].clone(),
                e["status"].clone(),
                e["local_time"].clone(),
            )
        })
        .collect();
    assert_eq!(entries.len(), 3, "{}", timeline.body);
    assert_eq!(entries[0].0, "2030-04-26T15:00:00Z");
    assert_ne!(entries[0].1, "expected");
    assert_eq!(
        (
            entries[1].0.clone(),
            entries[1].1.clone(),
            entries[1].2.clone()
        ),
        (
            json!("2030-05-31T15:00:00Z"),
            json!("expected"),
            json!("2030-05-31T17:00:00")
        )
    );
}

/// A rule is refused with the part named, and a schedule's other members keep their paths.
async fn a_bad_rule_is_refused_naming_the_part(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let create =
        |spec: Value| json!({"name": "bad", "schedule": spec, "target": {"url": receiver.url}});
    let cases = [
        (
            last_friday(json!({"rule": "FREQ=MONTHLY;BYDAY=-6FR"})),
            "schedule.rule",
            "BYDAY -6FR is out of range",
        ),
        (
            last_friday(json!({"rule": "FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30"})),
            "schedule.rule",
            "never fires",
        ),
        (
            last_friday(json!({"rule": "FREQ=DAILY;COUNT=0"})),
            "schedule.rule",
            "COUNT must be",
        ),
        (
            json!({"kind": "rrule", "rule": "FREQ=DAILY"}),
            "schedule.dtstart",
            "is required",
        ),
        (
            last_friday(json!({"dtstart": "2026-01-01T00:00:00+01:00"})),
            "schedule.dtstart",
            "without an offset",
        ),
        (
            last_friday(json!({"rdate": ["tomorrow"]})),
            "schedule.rdate[0]",
            "local date-time",
        ),
        (
            last_friday(json!({"timezone": "CET"})),
            "schedule.timezone",
            "Europe/Berlin",
        ),
    ];
    for (spec, field, message) in cases {
        let answer = app.post("/v1/schedules", create(spec.clone())).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{spec}: {}",
            answer.body
        );
        assert_eq!(answer.error_fields(), [field], "{spec}: {}", answer.body);
        assert!(
            answer.body.to_string().contains(message),
            "{spec}: {}",
            answer.body
        );
        let preview = app
            .post("/v1/schedules/preview", json!({"schedule": spec}))
            .await;
        assert_eq!(
            preview.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            preview.body
        );
        assert_eq!(preview.error_fields(), [field], "{}", preview.body);
    }
    // A rule whose instances all lie in the past is a schedule that never fires after now.
    let ended = app
        .post(
            "/v1/schedules",
            create(last_friday(json!({"rule": "FREQ=DAILY;COUNT=2"}))),
        )
        .await;
    assert_eq!(
        ended.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        ended.body
    );
    assert_eq!(ended.error_fields(), ["schedule"], "{}", ended.body);
}

on_both_databases!(
    an_rrule_schedule_fires_on_its_rule,
    a_bad_rule_is_refused_naming_the_part,
);
