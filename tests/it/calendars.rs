//! Exclusion calendars (issue 19): a tenant's calendars over the API, and schedules that skip
//! the dates they exclude, in the worker, the preview and the timeline; a change to a calendar
//! re-plans the schedules that use it at once.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::app::token_for;
use crate::helpers::{spawn_app, Backend, Receiver, TestApp};
use crate::on_both_databases;

const ICS: &str = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:1\r\n\
DTSTART;VALUE=DATE:20300111\r\nSUMMARY:Feiertag\r\nEND:VEVENT\r\nBEGIN:VEVENT\r\nUID:2\r\n\
DTSTART:20300115T100000Z\r\nSUMMARY:Meeting\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n";

/// The clock starts on Monday 2030-01-07 at 10:00 UTC. Excluded: the 8th and 9th (a range) and
/// the 11th (an imported all-day event); the timed event is left out.
fn office_closed() -> Value {
    json!({
        "name": "office-closed",
        "timezone": "Europe/Berlin",
        "ranges": [{"from": "2030-01-08", "to": "2030-01-09"}],
        "ics": ICS,
    })
}

fn nine_daily(receiver: &Receiver, exclude: Value) -> Value {
    json!({
        "name": "morning",
        "schedule": {"kind": "crontab", "expression": "0 9 * * *", "timezone": "Europe/Berlin"},
        "target": {"url": receiver.url},
        "exclude": exclude,
    })
}

async fn call(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let answer = app.call(method.clone(), path, body).await;
    assert!(
        answer.status.is_success(),
        "{method} {path}: {} {}",
        answer.status,
        answer.body
    );
    answer.body
}

async fn calendars_are_created_read_changed_and_deleted(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let created = app.post("/v1/calendars", office_closed()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["imported_dates"], json!(["2030-01-11"]));
    assert_eq!(
        (
            created.body["imported_events"].clone(),
            created.body["ignored_events"].clone()
        ),
        (json!(2), json!(1))
    );
    assert_eq!(
        app.post("/v1/calendars", office_closed()).await.status,
        StatusCode::CONFLICT
    );
    let listed = call(&app, Method::GET, "/v1/calendars", None).await;
    assert_eq!(listed["items"][0]["name"], "office-closed");

    // A merge patch: dates added, the import kept; then the import removed.
    let patched = call(
        &app,
        Method::PATCH,
        "/v1/calendars/office-closed",
        Some(json!({"dates": ["2030-02-01"], "rules": ["FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1"]})),
    )
    .await;
    assert_eq!(patched["dates"], json!(["2030-02-01"]));
    assert_eq!(patched["imported_dates"], json!(["2030-01-11"]));
    let patched = call(
        &app,
        Method::PATCH,
        "/v1/calendars/office-closed",
        Some(json!({"ics": null})),
    )
    .await;
    assert_eq!(patched["imported_dates"], json!([]));
    assert_eq!(
        call(&app, Method::GET, "/v1/calendars/office-closed", None).await["rules"],
        json!(["FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1"])
    );

    // Bad input names the member.
    let refused = [
        (json!({"name": "a b"}), "name"),
        (json!({"name": "x", "dates": ["2030-02-30"]}), "dates[0]"),
        (json!({"name": "x", "timezone": "CET"}), "timezone"),
        (
            json!({"name": "x", "rules": ["FREQ=MONTHLY;BYDAY=-6FR"]}),
            "rules[0]",
        ),
        (json!({"name": "x", "ics": "not a calendar"}), "ics"),
        (
            json!({"name": "x", "ranges": [{"from": "2030-02-02", "to": "2030-02-01"}]}),
            "ranges[0].to",
        ),
        (json!({"name": "x", "holidays": []}), "holidays"),
    ];
    for (body, field) in refused {
        let answer = app.post("/v1/calendars", body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            answer.body
        );
        assert_eq!(answer.error_fields(), [field], "{body}: {}", answer.body);
    }
    let renamed = app
        .call(
            Method::PATCH,
            "/v1/calendars/office-closed",
            Some(json!({"name": "other"})),
        )
        .await;
    assert_eq!(
        renamed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        renamed.body
    );

    // Another tenant sees none of it and cannot exclude it.
    let intruder = token_for("intruder", "schedules:read schedules:write");
    for (method, body) in [
        (Method::GET, None),
        (Method::PATCH, Some(json!({"dates": []}))),
        (Method::DELETE, None),
    ] {
        let answer = app
            .call_as(
                &intruder,
                method.clone(),
                "/v1/calendars/office-closed",
                body,
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method}: {}",
            answer.body
        );
    }
    let theirs = app
        .call_as(&intruder, Method::GET, "/v1/calendars", None)
        .await;
    assert_eq!(theirs.body["items"], json!([]));
    let receiver = Receiver::start();
    let borrowed = app
        .call_as(
            &intruder,
            Method::POST,
            "/v1/schedules",
            Some(nine_daily(&receiver, json!(["office-closed"]))),
        )
        .await;
    assert_eq!(
        borrowed.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        borrowed.body
    );
    assert_eq!(borrowed.error_fields(), ["exclude[0]"]);

    let deleted = app
        .call(Method::DELETE, "/v1/calendars/office-closed", None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let gone = app.get("/v1/calendars/office-closed").await;
    assert_eq!(gone.status, StatusCode::NOT_FOUND);
}

/// The worker, the preview and the timeline skip excluded dates (reason `calendar`); changing
/// the calendar re-plans the schedule; a calendar in use cannot be deleted.
async fn schedules_skip_the_dates_their_calendars_exclude(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    call(&app, Method::POST, "/v1/calendars", Some(office_closed())).await;
    let schedule = app
        .create_schedule(nine_daily(&receiver, json!(["office-closed"])))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    assert_eq!(schedule["exclude"], json!(["office-closed"]));
    assert_eq!(schedule["next_run_at"], "2030-01-10T08:00:00Z");

    let preview = call(
        &app,
        Method::POST,
        "/v1/schedules/preview",
        Some(json!({
            "schedule": schedule["schedule"],
            "exclude": ["office-closed"],
            "after": "2030-01-07T10:00:00Z",
            "count": 3
        })),
    )
    .await;
    assert_eq!(
        preview["fire_times"],
        json!([
            "2030-01-10T08:00:00Z",
            "2030-01-12T08:00:00Z",
            "2030-01-13T08:00:00Z"
        ])
    );
    let unknown = app
        .post(
            "/v1/schedules/preview",
            json!({"schedule": schedule["schedule"], "exclude": ["nope"]}),
        )
        .await;
    assert_eq!(unknown.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(unknown.error_fields(), ["exclude[0]"]);

    let timeline = call(
        &app,
        Method::GET,
        &format!("/v1/schedules/{id}/timeline?from=2030-01-08T00:00:00Z&to=2030-01-12T23:00:00Z"),
        None,
    )
    .await;
    let entries: Vec<(Value, Value, Value)> = timeline["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["at"].clone(), e["status"].clone(), e["reason"].clone()))
        .collect();
    let entry = |at: &str, status: &str, reason: Value| (json!(at), json!(status), reason);
    assert_eq!(
        entries,
        [
            entry("2030-01-08T08:00:00Z", "skipped", json!("calendar")),
            entry("2030-01-09T08:00:00Z", "skipped", json!("calendar")),
            entry("2030-01-10T08:00:00Z", "expected", Value::Null),
            entry("2030-01-11T08:00:00Z", "skipped", json!("calendar")),
            entry("2030-01-12T08:00:00Z", "expected", Value::Null),
        ]
    );

    // The worker delivers the 10th and records the 11th as skipped.
    app.run_worker_at("2030-01-10T08:00:01Z".parse().unwrap())
        .await;
    assert_eq!(receiver.received().len(), 1);
    let after = call(&app, Method::GET, &format!("/v1/schedules/{id}"), None).await;
    assert_eq!(after["next_run_at"], "2030-01-12T08:00:00Z");
    assert_eq!(
        app.metric("hookbeat_fires_skipped_total{reason=\"calendar\"}")
            .await,
        1.0
    );

    // A change to the calendar re-plans the schedule at once: the 11th is a working day again,
    // and a new range closes the 12th to the 14th.
    call(
        &app,
        Method::PATCH,
        "/v1/calendars/office-closed",
        Some(json!({"ics": null, "ranges": [{"from": "2030-01-12", "to": "2030-01-14"}]})),
    )
    .await;
    let replanned = call(&app, Method::GET, &format!("/v1/schedules/{id}"), None).await;
    assert_eq!(replanned["next_run_at"], "2030-01-11T08:00:00Z");
    call(
        &app,
        Method::PATCH,
        "/v1/calendars/office-closed",
        Some(json!({"dates": ["2030-01-11"]})),
    )
    .await;
    let replanned = call(&app, Method::GET, &format!("/v1/schedules/{id}"), None).await;
    assert_eq!(replanned["next_run_at"], "2030-01-15T08:00:00Z");

    // A calendar that excludes every date leaves a schedule nothing to fire on.
    call(
        &app,
        Method::POST,
        "/v1/calendars",
        Some(json!({"name": "never", "ranges": [{"from": "1970-01-01", "to": "9999-12-31"}]})),
    )
    .await;
    let mut never = nine_daily(&receiver, json!(["never"]));
    never["name"] = json!("never-fires");
    let refused = app.post("/v1/schedules", never).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.error_fields(), ["schedule"]);
    assert!(
        refused.body["detail"].as_str().unwrap().contains("exclude"),
        "{}",
        refused.body
    );

    // In use: 409 naming the schedule; free once the schedule lets go of it.
    let in_use = app
        .call(Method::DELETE, "/v1/calendars/office-closed", None)
        .await;
    assert_eq!(in_use.status, StatusCode::CONFLICT, "{}", in_use.body);
    assert!(
        in_use.body["detail"].as_str().unwrap().contains("morning"),
        "{}",
        in_use.body
    );
    let released = call(
        &app,
        Method::PATCH,
        &format!("/v1/schedules/{id}"),
        Some(json!({"exclude": []})),
    )
    .await;
    assert_eq!(released["next_run_at"], "2030-01-11T08:00:00Z");
    let deleted = app
        .call(Method::DELETE, "/v1/calendars/office-closed", None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
}

on_both_databases!(
    calendars_are_created_read_changed_and_deleted,
    schedules_skip_the_dates_their_calendars_exclude,
);
