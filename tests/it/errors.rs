//! Bad input gets a clear 4xx problem+json naming the field: never a panic, never a 5xx.

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend};
use crate::on_both_databases;

fn valid() -> Value {
    json!({
        "name": "ok",
        "schedule": {"kind": "interval", "every_seconds": 10},
        "target": {"url": "https://example.com/hook"}
    })
}

fn with(path: &[&str], value: Value) -> Value {
    let mut body = valid();
    let mut node = &mut body;
    for key in &path[..path.len() - 1] {
        node = &mut node[*key];
    }
    node[path[path.len() - 1]] = value;
    body
}

async fn invalid_schedules_are_refused_with_the_field(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            with(&["schedule", "every_seconds"], json!(0)),
            "schedule.every_seconds",
            "at least 1",
        ),
        (
            with(&["schedule", "every_seconds"], json!("10")),
            "schedule.every_seconds",
            "invalid type",
        ),
        (
            with(&["schedule", "kind"], json!("fortnightly")),
            "schedule.kind",
            "unknown kind",
        ),
        (
            with(&["schedule", "every_second"], json!(10)),
            "schedule.every_second",
            "unknown field `every_second`",
        ),
        (
            with(&["target", "url"], json!("ftp://example.com/x")),
            "target.url",
            "http or https",
        ),
        (
            with(&["target", "url"], json!("not a url")),
            "target.url",
            "not a valid URL",
        ),
        (
            with(&["target", "method"], json!("TRACE")),
            "target.method",
            "unknown variant",
        ),
        (
            with(&["target", "timeout_ms"], json!(0)),
            "target.timeout_ms",
            "between 1 and",
        ),
        (with(&["name"], json!("")), "name", "1 to 200"),
        (
            with(&["retry", "max_attempts"], json!(0)),
            "retry.max_attempts",
            "between 1 and 50",
        ),
        (with(&["jitter_ms"], json!(-1)), "jitter_ms", "between 0"),
        (
            with(&["catchup"], json!("sometimes")),
            "catchup",
            "unknown variant",
        ),
        (
            with(&["unexpected"], json!(1)),
            "unexpected",
            "unknown field",
        ),
        (
            with(
                &["schedule"],
                json!({"kind": "once", "at": "2000-01-01T00:00:00Z"}),
            ),
            "schedule.at",
            "not in the future",
        ),
        (
            with(&["schedule"], json!({"kind": "once", "at": "yesterday"})),
            "schedule.at",
            "input",
        ),
    ];
    for (body, field, message) in cases {
        let answer = app.post("/v1/schedules", body.clone()).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} -> {}",
            answer.body
        );
        assert_eq!(answer.header("content-type"), "application/problem+json");
        let error = &answer.body["errors"][0];
        assert_eq!(error["field"], field, "{body} -> {}", answer.body);
        assert!(
            error["message"].as_str().unwrap().contains(message),
            "{body} -> {}",
            answer.body
        );
        assert_eq!(answer.body["status"], 422);
        assert_eq!(answer.body["type"], "urn:hookbeat:problem:validation");
    }
    // Private targets are refused unless the server allows them (the test server does).
    assert_eq!(app.get("/v1/schedules").await.body["items"], json!([]));
}

async fn malformed_oversized_and_non_json_bodies(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let url = format!("{}/v1/schedules", app.address);
    let send = |content_type: &'static str, body: Vec<u8>| {
        app.http
            .post(&url)
            .bearer_auth(&app.token)
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let malformed = send("application/json", b"{\"name\": ".to_vec())
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        malformed.headers()["content-type"],
        "application/problem+json"
    );
    assert!(malformed.text().await.unwrap().contains("not valid JSON"));

    let oversized = send("application/json", vec![b' '; 300 * 1024])
        .await
        .unwrap();
    assert_eq!(oversized.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        oversized.headers()["content-type"],
        "application/problem+json"
    );

    let form = send("application/x-www-form-urlencoded", b"name=x".to_vec())
        .await
        .unwrap();
    assert_eq!(form.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(form.headers()["content-type"], "application/problem+json");
}

async fn bad_paths_queries_and_methods(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for (path, status) in [
        ("/v1/schedules/not-a-uuid", StatusCode::NOT_FOUND),
        (
            "/v1/runs/01900000-0000-7000-8000-000000000000",
            StatusCode::NOT_FOUND,
        ),
        ("/v1/nothing-here", StatusCode::NOT_FOUND),
        ("/v1/schedules?limit=0", StatusCode::UNPROCESSABLE_ENTITY),
        ("/v1/schedules?limit=many", StatusCode::UNPROCESSABLE_ENTITY),
        (
            "/v1/schedules?enabled=maybe",
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        ("/v1/schedules?cursor=zzz", StatusCode::UNPROCESSABLE_ENTITY),
        ("/v1/runs?status=lost", StatusCode::UNPROCESSABLE_ENTITY),
    ] {
        let answer = app.get(path).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.body);
        assert_eq!(
            answer.header("content-type"),
            "application/problem+json",
            "{path}"
        );
    }
    let limit = app.get("/v1/schedules?limit=many").await;
    assert_eq!(limit.body["errors"][0]["field"], "limit");
    let wrong_method = app.call(reqwest::Method::PUT, "/v1/schedules", None).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.header("allow"), "POST, GET");
    assert_eq!(
        wrong_method.header("content-type"),
        "application/problem+json"
    );
}

on_both_databases!(
    invalid_schedules_are_refused_with_the_field,
    malformed_oversized_and_non_json_bodies,
    bad_paths_queries_and_methods,
);
