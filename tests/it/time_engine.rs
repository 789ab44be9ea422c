//! The time engine through the API and the worker: crontab in a DST zone, solar, and the
//! validation messages that name the field and the reason.

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, Receiver};
use crate::on_both_databases;

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// Berlin springs forward on 2030-03-31 at 02:00 → 03:00. A fixed-time job at 02:30 defaults to
/// `dst_gap: shift`: it fires once, at the first instant after the gap (03:00 CEST = 01:00 UTC).
async fn crontab_fires_across_a_spring_forward_gap(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    app.clock.set(t("2030-03-30T12:00:00Z"));
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "nightly-berlin",
            "schedule": {"kind": "crontab", "expression": "30 2 * * *", "timezone": "Europe/Berlin"},
            "target": {"url": receiver.url}
        }))
        .await;
    assert_eq!(schedule["next_run_at"], "2030-03-31T01:00:00Z");
    assert_eq!(schedule["schedule"]["timezone"], "Europe/Berlin");

    app.run_worker_at(t("2030-03-31T01:00:00Z")).await;
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(
        got[0].header("hookbeat-scheduled-for"),
        "2030-03-31T01:00:00Z"
    );
    // The next night is ordinary summer time again: 02:30 CEST = 00:30 UTC.
    let id = schedule["id"].as_str().unwrap();
    let schedule = app.get(&format!("/v1/schedules/{id}")).await.body;
    assert_eq!(schedule["next_run_at"], "2030-04-01T00:30:00Z");
}

async fn preview_covers_every_kind(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let preview = |spec: Value| {
        app.post(
            "/v1/schedules/preview",
            json!({"schedule": spec, "after": "2030-10-26T22:00:00Z", "count": 3}),
        )
    };
    // Fall back in New York on 2030-11-03: a wildcard-hour job fires in both passes of 01:xx.
    let both = preview(
        json!({"kind": "crontab", "expression": "30 * 3 11 *", "timezone": "America/New_York"}),
    )
    .await;
    assert_eq!(both.status, StatusCode::OK, "{}", both.body);
    assert_eq!(
        both.body["fire_times"],
        json!([
            "2030-11-03T04:30:00Z",
            "2030-11-03T05:30:00Z",
            "2030-11-03T06:30:00Z"
        ])
    );
    // Each on New York's wall clock: 00:30 EDT, then 01:30 twice, first in EDT, then in EST.
    assert_eq!(
        both.body["fires"],
        json!([
            {"at": "2030-11-03T04:30:00Z", "local_time": "2030-11-03T00:30:00", "utc_offset": "-04:00"},
            {"at": "2030-11-03T05:30:00Z", "local_time": "2030-11-03T01:30:00", "utc_offset": "-04:00", "dst": "overlap_first"},
            {"at": "2030-11-03T06:30:00Z", "local_time": "2030-11-03T01:30:00", "utc_offset": "-05:00", "dst": "overlap_second"}
        ])
    );
    let solar = preview(
        json!({"kind": "solar", "event": "sunrise", "latitude": 52.52, "longitude": 13.405}),
    )
    .await;
    assert_eq!(solar.status, StatusCode::OK, "{}", solar.body);
    let fires = solar.body["fire_times"].as_array().unwrap();
    assert_eq!(fires.len(), 3);
    for (fire, day) in fires.iter().zip(["2030-10-27", "2030-10-28", "2030-10-29"]) {
        let fire = t(fire.as_str().unwrap());
        assert_eq!(fire.format("%Y-%m-%d").to_string(), day);
        // Berlin's late-October sunrise is around 06:00 UTC.
        assert!(
            (5..=6).contains(&fire.format("%H").to_string().parse::<u32>().unwrap()),
            "{fire}"
        );
    }
}

async fn invalid_specs_name_the_field_and_the_reason(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let cases = [
        (
            json!({"kind": "crontab", "expression": "60 * * * *"}),
            "schedule.expression",
            "minute 60 is out of range 0-59",
        ),
        (
            json!({"kind": "crontab", "expression": "0 0 30 2 *"}),
            "schedule.expression",
            "never fires",
        ),
        (
            json!({"kind": "crontab", "expression": "* * * *"}),
            "schedule.expression",
            "expected 5 fields",
        ),
        (
            json!({"kind": "crontab", "expression": "0 9 * * *", "timezone": "EST"}),
            "schedule.timezone",
            "America/New_York",
        ),
        (
            json!({"kind": "crontab", "expression": "0 9 * * *", "dst_gap": "later"}),
            "schedule.dst_gap",
            "unknown variant",
        ),
        (
            json!({"kind": "solar", "event": "sunrise", "latitude": 91, "longitude": 0}),
            "schedule.latitude",
            "91",
        ),
        (
            json!({"kind": "solar", "event": "moonrise", "latitude": 0, "longitude": 0}),
            "schedule.event",
            "unknown variant",
        ),
    ];
    for (spec, field, reason) in cases {
        let answer = app
            .post("/v1/schedules", json!({"name": "x", "schedule": spec.clone(), "target": {"url": "https://example.com/"}}))
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{spec}: {}",
            answer.body
        );
        let error = &answer.body["errors"][0];
        assert_eq!(error["field"], field, "{spec}: {}", answer.body);
        assert!(
            error["message"].as_str().unwrap().contains(reason),
            "{spec}: {}",
            answer.body
        );
    }
}

on_both_databases!(
    crontab_fires_across_a_spring_forward_gap,
    preview_covers_every_kind,
    invalid_specs_name_the_field_and_the_reason,
);
