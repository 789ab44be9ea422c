//! Instants a client gives: RFC 3339 read strictly, within 1970 … 9999, in every time field of
//! every endpoint; and rows the worker cannot plan never hold up another tenant's fires.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, start_time, token_for, Answer};
use crate::helpers::{spawn_app, Backend, Receiver};
use crate::on_both_databases;

/// The `hookbeat-scheduled-for` of every delivery `receiver` got, in order.
fn scheduled_for(receiver: &Receiver) -> Vec<String> {
    receiver
        .received()
        .iter()
        .map(|r| r.header("hookbeat-scheduled-for").to_owned())
        .collect()
}

/// Values no time field may take: out of range, or not RFC 3339 as its grammar spells it.
const REFUSED: &[&str] = &[
    "+10000-01-01T00:00:00Z",
    "-262143-01-01T00:00:00Z",
    "+262142-12-31T23:59:59Z",
    "0000-01-01T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "9999-12-31T23:59:59-01:00",
    "2026-1-1T00:00:00Z",
    "2026-01-01 00:00:00Z",
    "2026-01-01T00:00:00",
    "2026-02-30T00:00:00Z",
];

fn assert_names(answer: &Answer, field: &str, what: &str) {
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{what}: {}",
        answer.body
    );
    let fields: Vec<&str> = answer.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors in {}", answer.body))
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&field),
        "{what}: expected {field}, got {}",
        answer.body
    );
}

fn schedule(name: &str, spec: Value) -> Value {
    json!({"name": name, "schedule": spec, "target": {"url": "https://example.com/hook"}})
}

async fn every_time_field_of_every_endpoint_refuses_extreme_instants(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let every_minute = json!({"kind": "interval", "every_seconds": 60});
    let existing = app
        .create_schedule(schedule("existing", every_minute.clone()))
        .await;
    let id = existing["id"].as_str().unwrap();
    let past = "2030-01-07T09:00:00Z";

    for value in REFUSED {
        let v = json!(value);
        let what = |place: &str| format!("{place} = {value}");
        let create = |body: Value, field: &'static str, place: &'static str| {
            let app = &app;
            let what = what(place);
            async move {
                let answer = app.post("/v1/schedules", body).await;
                assert_names(&answer, field, &what);
            }
        };
        create(
            schedule("a", json!({"kind": "once", "at": v})),
            "schedule.at",
            "create once.at",
        )
        .await;
        create(
            schedule(
                "b",
                json!({"kind": "interval", "every_seconds": 60, "anchor": v}),
            ),
            "schedule.anchor",
            "create interval.anchor",
        )
        .await;
        let mut with_start = schedule("c", every_minute.clone());
        with_start["start_at"] = v.clone();
        create(with_start, "start_at", "create start_at").await;
        let mut with_end = schedule("d", every_minute.clone());
        with_end["end_at"] = v.clone();
        create(with_end, "end_at", "create end_at").await;

        for (patch, field) in [
            (json!({"start_at": v}), "start_at"),
            (json!({"end_at": v}), "end_at"),
            (json!({"schedule": {"anchor": v}}), "schedule.anchor"),
        ] {
            let answer = app
                .call(Method::PATCH, &format!("/v1/schedules/{id}"), Some(patch))
                .await;
            assert_names(&answer, field, &what("patch"));
        }
        let mut put = schedule("by-name", every_minute.clone());
        put["start_at"] = v.clone();
        let answer = app
            .call(Method::PUT, "/v1/schedules/by-name/by-name", Some(put))
            .await;
        assert_names(&answer, "start_at", &what("put start_at"));

        for (body, field) in [
            (json!({"schedule": every_minute, "after": v}), "after"),
            (
                json!({"schedule": {"kind": "once", "at": v}}),
                "schedule.at",
            ),
            (
                json!({"schedule": {"kind": "interval", "every_seconds": 1, "anchor": v}}),
                "schedule.anchor",
            ),
        ] {
            let answer = app.post("/v1/schedules/preview", body).await;
            assert_names(&answer, field, &what("preview"));
        }
        for (body, field) in [
            (json!({"from": v, "to": past}), "from"),
            (json!({"from": past, "to": v}), "to"),
        ] {
            let answer = app
                .post(&format!("/v1/schedules/{id}/backfill"), body)
                .await;
            assert_names(&answer, field, &what("backfill"));
        }
    }
    // Nothing was made by any of it.
    let runs = app.get("/v1/runs").await;
    assert_eq!(runs.body["items"], json!([]));
    let schedules = app.get("/v1/schedules").await;
    assert_eq!(schedules.body["items"].as_array().unwrap().len(), 1);
}

async fn fire_instants_finer_than_a_microsecond_are_refused_and_others_honoured(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let nano = json!("2030-02-01T00:00:00.000000001Z");
    for (spec, field) in [
        (json!({"kind": "once", "at": nano}), "schedule.at"),
        (
            json!({"kind": "interval", "every_seconds": 3600, "anchor": nano}),
            "schedule.anchor",
        ),
    ] {
        let answer = app.post("/v1/schedules", schedule("f", spec)).await;
        assert_names(&answer, field, "a nanosecond");
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("microsecond"),
            "{}",
            answer.body
        );
    }
    // Bounds with a finer fraction keep their meaning on microsecond fires (a client's
    // nanosecond clock, as chrono's `to_rfc3339` prints it, is fine there).
    let mut bounded = schedule("bounded", json!({"kind": "interval", "every_seconds": 1}));
    bounded["start_at"] = nano.clone();
    bounded["end_at"] = json!("2030-02-01T00:00:09.999999999Z");
    let made = app.create_schedule(bounded).await;
    assert_eq!(made["start_at"], "2030-02-01T00:00:00.000001Z");
    assert_eq!(made["end_at"], "2030-02-01T00:00:09.999999Z");
    assert_eq!(made["next_run_at"], "2030-02-01T00:00:01Z");
    let answer = app
        .post(
            "/v1/schedules/preview",
            json!({"schedule": {"kind": "interval", "every_seconds": 1}, "after": "2030-01-01T00:00:00.999999999Z", "count": 1}),
        )
        .await;
    assert_eq!(answer.body["fire_times"], json!(["2030-01-01T00:00:01Z"]));

    // To the microsecond, instants are kept and honoured exactly: fires at .25 past each second.
    let receiver = Receiver::start();
    let mut spread = json!({
        "name": "quarter-past",
        "schedule": {"kind": "interval", "every_seconds": 1, "anchor": "2030-01-01T00:00:00.25Z"},
        "target": {"url": receiver.url},
        "start_at": "2030-01-07T10:00:01.000001Z",
        "end_at": "2030-01-07T10:00:03.25Z"
    });
    let made = app.create_schedule(spread.take()).await;
    assert_eq!(made["schedule"]["anchor"], "2030-01-01T00:00:00.250Z");
    assert_eq!(made["start_at"], "2030-01-07T10:00:01.000001Z");
    assert_eq!(made["next_run_at"], "2030-01-07T10:00:01.250Z");
    let preview = app
        .post(
            "/v1/schedules/preview",
            json!({"schedule": {"kind": "interval", "every_seconds": 1, "anchor": "2030-01-01T00:00:00.25Z"},
                   "after": "2030-01-07T10:00:01.249999Z", "count": 2}),
        )
        .await;
    assert_eq!(
        preview.body["fire_times"],
        json!(["2030-01-07T10:00:01.250Z", "2030-01-07T10:00:02.250Z"])
    );
    for seconds in 1..=4 {
        app.run_worker_at(start_time() + Duration::seconds(seconds))
            .await;
    }
    let fired = scheduled_for(&receiver);
    assert_eq!(
        fired,
        vec![
            "2030-01-07T10:00:01.250Z",
            "2030-01-07T10:00:02.250Z",
            "2030-01-07T10:00:03.250Z"
        ],
        "each fire at its quarter past, the last one at end_at itself"
    );
}

async fn intervals_are_not_capped_at_ten_years(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let century = 100 * 365 * 86_400i64;
    let made = app
        .create_schedule(schedule(
            "century",
            json!({"kind": "interval", "every_seconds": century, "anchor": "2000-01-01T00:00:00Z"}),
        ))
        .await;
    let expected =
        "2000-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap() + Duration::seconds(century);
    assert_eq!(
        made["next_run_at"],
        json!(expected.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    );
    // A fire past 9999 does not happen: the schedule has nothing left, as after end_at.
    let preview = app
        .post(
            "/v1/schedules/preview",
            json!({"schedule": {"kind": "interval", "every_seconds": century}, "after": "9950-01-01T00:00:00Z"}),
        )
        .await;
    assert_eq!(preview.status, StatusCode::OK, "{}", preview.body);
    assert!(preview.body["fire_times"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t.as_str().unwrap() <= "9999-12-31T23:59:59Z"));
    let last_second = app
        .post(
            "/v1/schedules/preview",
            json!({"schedule": {"kind": "interval", "every_seconds": 1}, "after": "9999-12-31T23:59:58Z", "count": 5}),
        )
        .await;
    assert_eq!(
        last_second.body["fire_times"],
        json!(["9999-12-31T23:59:59Z"])
    );
    for huge in [i64::MAX, 300_000_000_000] {
        let answer = app
            .post(
                "/v1/schedules",
                schedule("huge", json!({"kind": "interval", "every_seconds": huge})),
            )
            .await;
        assert_names(
            &answer,
            "schedule.every_seconds",
            "a period longer than 1970 … 9999",
        );
    }
}

/// An instant no version of hookbeat should have stored, as SQL would write it on each backend.
fn out_of_range(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "+10000-01-01 00:00:00+00:00",
        Backend::Postgres => "10000-01-01 00:00:00+00",
    }
}

/// One worker pass at `at`, failing the test rather than hanging it if the pass never ends (as
/// it did when such rows filled every batch).
async fn pass_at(app: &crate::helpers::TestApp, at: DateTime<Utc>) {
    tokio::time::timeout(std::time::Duration::from_secs(60), app.run_worker_at(at))
        .await
        .expect("a worker pass ends");
}

async fn rows_the_worker_cannot_plan_never_hold_up_another_tenant(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |options| {
        options.worker.materialise_batch = 100;
    })
    .await
    else {
        return;
    };
    // One tenant: 300 schedules whose next fire is decades away, then, as rows an older version
    // accepted, their next fire moved past year 9999.
    let crowd = token_for("crowd", "schedules:read schedules:write");
    for n in 0..300 {
        // Within the tenant's API rate: the clock moves 10 ms a request.
        app.clock.set(start_time() + Duration::milliseconds(10 * n));
        app.create_schedule_as(
            &crowd,
            schedule(
                &format!("far-{n}"),
                json!({"kind": "once", "at": "2070-01-01T00:00:00Z"}),
            ),
        )
        .await;
    }
    // From 10:00:10 on, another tenant's schedule fires every second.
    let t0 = start_time() + Duration::seconds(10);
    app.clock.set(t0);
    let receiver = Receiver::start();
    let on_time = app
        .create_schedule(json!({
            "name": "every-second",
            "schedule": {"kind": "interval", "every_seconds": 1},
            "target": {"url": receiver.url}
        }))
        .await;
    assert_eq!(on_time["next_run_at"], "2030-01-07T10:00:11Z");
    for seconds in 1..=3 {
        pass_at(&app, t0 + Duration::seconds(seconds)).await;
    }
    assert_eq!(receiver.received().len(), 3, "decades away holds nobody up");

    app.db
        .execute_unprepared(&format!(
            "UPDATE schedules SET next_run_at = '{}' WHERE tenant_id = 'crowd'",
            out_of_range(backend)
        ))
        .await
        .expect("storing out-of-range instants");
    for seconds in 4..=8 {
        pass_at(&app, t0 + Duration::seconds(seconds)).await;
    }
    let fired = scheduled_for(&receiver);
    assert_eq!(
        fired,
        (11..=18)
            .map(|s| format!("2030-01-07T10:00:{s:02}Z"))
            .collect::<Vec<_>>(),
        "every second fired, in its second"
    );
    // Nor does such a row make an idle worker sleep past the next real fire.
    let due = app
        .worker
        .next_due()
        .await
        .expect("reading the next due time");
    assert_eq!(
        due,
        Some("2030-01-07T10:00:19Z".parse().unwrap()),
        "the next due instant is the real one"
    );
}

on_both_databases!(
    every_time_field_of_every_endpoint_refuses_extreme_instants,
    fire_instants_finer_than_a_microsecond_are_refused_and_others_honoured,
    intervals_are_not_capped_at_ten_years,
    rows_the_worker_cannot_plan_never_hold_up_another_tenant,
);

#[test]
fn the_cli_preview_refuses_extreme_instants() {
    for value in REFUSED {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookbeat"))
            .args([
                "preview",
                &format!("--after={value}"),
                r#"{"kind":"interval","every_seconds":60}"#,
            ])
            .output()
            .expect("running hookbeat preview");
        assert!(!output.status.success(), "--after {value} was accepted");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--after"), "{value}: {stderr}");
    }
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_hookbeat"))
        .args([
            "preview",
            r#"{"kind":"once","at":"+10000-01-01T00:00:00Z"}"#,
        ])
        .output()
        .expect("running hookbeat preview");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("schedule.at"));
}
