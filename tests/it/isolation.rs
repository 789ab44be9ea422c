//! A tenant sees only its own schedules and runs: another tenant's id answers 404, exactly like
//! an id that does not exist, on every endpoint that takes an id.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::app::token_for;
use crate::helpers::{spawn_app, Backend, Receiver};
use crate::on_both_databases;

async fn another_tenants_ids_are_not_found(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "private",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": receiver.url}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    receiver.script([crate::helpers::Reply::status(400)]);
    app.run_worker_at(schedule["next_run_at"].as_str().unwrap().parse().unwrap())
        .await;
    let run_id = app.get("/v1/runs").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();

    let intruder = token_for("intruder", "schedules:read schedules:write");
    let calls = [
        (Method::GET, format!("/v1/schedules/{id}"), None),
        (
            Method::PATCH,
            format!("/v1/schedules/{id}"),
            Some(json!({"name": "mine"})),
        ),
        (Method::POST, format!("/v1/schedules/{id}/pause"), None),
        (Method::POST, format!("/v1/schedules/{id}/resume"), None),
        (Method::POST, format!("/v1/schedules/{id}/trigger"), None),
        (
            Method::POST,
            format!("/v1/schedules/{id}/backfill"),
            Some(json!({"from": "2030-01-01T00:00:00Z", "to": "2030-01-01T00:01:00Z"})),
        ),
        (Method::GET, format!("/v1/schedules/{id}/runs"), None),
        (Method::GET, format!("/v1/runs/{run_id}"), None),
        (Method::POST, format!("/v1/runs/{run_id}/redeliver"), None),
        (Method::DELETE, format!("/v1/schedules/{id}"), None),
    ];
    for (method, path, body) in calls {
        let answer = app.call_as(&intruder, method.clone(), &path, body).await;
        assert_eq!(
            answer.status,
            StatusCode::NOT_FOUND,
            "{method} {path}: {}",
            answer.body
        );
    }
    for path in ["/v1/schedules", "/v1/runs"] {
        let answer = app.call_as(&intruder, Method::GET, path, None).await;
        assert_eq!(answer.body["items"], json!([]), "{path}");
    }
    // The owner still has everything, untouched.
    let mine = app.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.body["name"], "private");
    assert_eq!(
        app.get(&format!("/v1/runs/{run_id}")).await.body["status"],
        "failed"
    );
    // Secrets are per tenant.
    let theirs = app
        .call_as(&intruder, Method::GET, "/v1/signing-secrets", None)
        .await;
    assert_ne!(
        theirs.body["secrets"][0]["secret"],
        app.signing_secret().await.as_str()
    );
}

on_both_databases!(another_tenants_ids_are_not_found);
