//! Real responses validate against the schemas of the OpenAPI description the server serves, so
//! a client generated from `openapi.yaml` can read what the server sends.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::app::token_for;
use crate::helpers::{spawn_app, Backend, Receiver, Reply};

/// Checks `instance` against `components/schemas/{name}` of the spec. The schema is the spec's
/// components with a `$ref` at the root, so the spec's own `#/components/schemas/…` refs resolve.
fn assert_matches(spec: &Value, name: &str, instance: &Value) {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "components": {"schemas": spec["components"]["schemas"].clone()},
        "$ref": format!("#/components/schemas/{name}"),
    });
    let validator = jsonschema::options()
        .with_draft(jsonschema::Draft::Draft202012)
        .build(&schema)
        .unwrap_or_else(|e| panic!("schema {name}: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{name} does not match the spec: {errors:?}\n{instance}"
    );
}

#[tokio::test]
async fn responses_match_the_published_schemas() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let spec = serde_json::to_value(<hookbeat_api::openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .unwrap();
    let receiver = Receiver::start();
    receiver.script([Reply::status(500).body("nope")]);

    let schedule = app
        .create_schedule(json!({
            "name": "spec-check",
            "description": "checked against the spec",
            "schedule": {"kind": "crontab", "expression": "*/5 * * * *", "timezone": "Europe/Berlin"},
            "target": {"url": receiver.url, "headers": {"x-a": "b"}, "body": {"k": [1, 2]}},
            "then": [{"url": receiver.url}],
            "on_failure": {"url": receiver.url},
            "metadata": {"team": "ops"}
        }))
        .await;
    assert_matches(&spec, "Schedule", &schedule);
    assert_matches(&spec, "SchedulePage", &app.get("/v1/schedules").await.body);
    let id = schedule["id"].as_str().unwrap();
    let fire: chrono::DateTime<chrono::Utc> =
        schedule["next_run_at"].as_str().unwrap().parse().unwrap();
    app.run_worker_at(fire).await;
    let runs = app.get("/v1/runs").await.body;
    assert_matches(&spec, "RunPage", &runs);
    let run_id = runs["items"][0]["id"].as_str().unwrap();
    assert_matches(
        &spec,
        "RunDetail",
        &app.get(&format!("/v1/runs/{run_id}")).await.body,
    );
    let triggered = app.trigger(id).await;
    assert_matches(&spec, "Run", &triggered.body);
    assert_matches(
        &spec,
        "SigningSecrets",
        &app.get("/v1/signing-secrets").await.body,
    );
    let preview = app
        .post("/v1/schedules/preview", json!({"schedule": {"kind": "solar", "event": "sunset", "latitude": 48.1, "longitude": 11.6}}))
        .await;
    assert_matches(&spec, "FireTimes", &preview.body);

    let admin = token_for("operator", "admin");
    let tenant = app
        .call_as(
            &admin,
            Method::GET,
            &format!("/v1/tenants/{}", app.tenant),
            None,
        )
        .await;
    assert_matches(&spec, "Tenant", &tenant.body);
    assert_matches(
        &spec,
        "TenantPage",
        &app.call_as(&admin, Method::GET, "/v1/tenants", None)
            .await
            .body,
    );

    let invalid = app.post("/v1/schedules", json!({"name": "x"})).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_matches(&spec, "Problem", &invalid.body);
    assert_matches(
        &spec,
        "Problem",
        &app.get("/v1/schedules/not-an-id").await.body,
    );
}
