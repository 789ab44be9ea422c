//! A tenant sees only its own schedules and runs: another tenant's id answers 404, exactly like
//! an id that does not exist, on every endpoint that takes an id.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

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

/// Which resource a path parameter names, told by the segment before it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Resource {
    Schedule,
    ScheduleName,
    Run,
    Tenant,
    Calendar,
}

/// The one parameter of `path` and the resource it names. Panics on a path this test does not
/// know how to fill, so a new endpoint cannot slip past it untested.
fn resource_of(path: &str) -> (String, Resource) {
    let segments: Vec<&str> = path.split('/').collect();
    let parameters: Vec<usize> = (0..segments.len())
        .filter(|&i| segments[i].starts_with('{'))
        .collect();
    let [at] = parameters[..] else {
        panic!("{path}: the cross-tenant test fills exactly one path parameter; teach it more");
    };
    let resource = match (&segments[..at], segments[at]) {
        (["", "v1", "schedules"], "{id}") => Resource::Schedule,
        (["", "v1", "schedules", "by-name"], "{name}") => Resource::ScheduleName,
        (["", "v1", "runs"], "{id}") => Resource::Run,
        (["", "v1", "tenants"], "{id}") => Resource::Tenant,
        (["", "v1", "calendars"], "{name}") => Resource::Calendar,
        _ => panic!(
            "{path}: the cross-tenant test does not know which of the first tenant's resources \
             fills this parameter; add it to `resource_of`"
        ),
    };
    (segments[at].to_owned(), resource)
}

/// The documented example of an operation's request body (its own, or its schema's).
fn request_example(spec: &Value, method: &str, path: &str) -> Option<Value> {
    let body = spec["paths"][path][method].get("requestBody")?;
    let (_, media) = body["content"].as_object()?.iter().next()?;
    if let Some(example) = media.get("example") {
        return Some(example.clone());
    }
    let name = media["schema"]["$ref"]
        .as_str()?
        .strip_prefix("#/components/schemas/")?;
    let schema = &spec["components"]["schemas"][name];
    schema
        .get("example")
        .or_else(|| schema.get("examples").and_then(|e| e.get(0)))
        .cloned()
}

/// The scopes an operation's security requirement names, space-separated.
fn scopes_of(operation: &Value) -> String {
    operation["security"][0]["bearer"]
        .as_array()
        .unwrap_or_else(|| panic!("no bearer scopes in {operation}"))
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Driven by the spec: every operation whose path names one resource (`{id}`, `{name}`) is called
/// by a second tenant, holding exactly the scopes the operation documents, on the first tenant's
/// schedule or run, with the documented example as its body. Each answers 404 with the very body
/// an id that does not exist gets, and the first tenant's data is untouched; then the first
/// tenant makes the same calls and they succeed, so the 404s came from the tenant boundary, not
/// from a bad request.
async fn every_id_endpoint_in_the_spec_hides_another_tenants_resources(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let spec = serde_json::to_value(<hookbeat_api::openapi::ApiDoc as utoipa::OpenApi>::openapi())
        .unwrap();
    let receiver = Receiver::start();
    let mut input = request_example(&spec, "post", "/v1/schedules").expect("a schedule example");
    input["target"]["url"] = json!(receiver.url);
    let schedule = app.create_schedule(input).await;
    let schedule_id = schedule["id"].as_str().unwrap().to_owned();
    let name = schedule["name"].as_str().unwrap().to_owned();
    receiver.script([crate::helpers::Reply::status(400)]);
    app.run_worker_at(schedule["next_run_at"].as_str().unwrap().parse().unwrap())
        .await;
    let runs = app.get("/v1/runs").await.body;
    let run_id = runs["items"][0]["id"].as_str().unwrap().to_owned();
    let schedule_path = format!("/v1/schedules/{schedule_id}");
    let run_path = format!("/v1/runs/{run_id}");
    let (schedule_before, run_before) = (app.get(&schedule_path).await, app.get(&run_path).await);
    assert_eq!(run_before.body["status"], "failed");
    let calendar = request_example(&spec, "post", "/v1/calendars").expect("a calendar example");
    let created = app.post("/v1/calendars", calendar).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let calendar_name = created.body["name"].as_str().unwrap().to_owned();
    let calendar_path = format!("/v1/calendars/{calendar_name}");

    let intruder = format!("intruder-{}", uuid::Uuid::now_v7().simple());
    let mut calls = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        if !path.contains('{') {
            continue;
        }
        // A revision's version is the first tenant's first: the schedule's id is what is hidden.
        let concrete = path.replace("{version}", "1");
        let (parameter, resource) = resource_of(&concrete);
        for (method_name, operation) in item.as_object().unwrap() {
            let method = Method::from_bytes(method_name.to_ascii_uppercase().as_bytes()).unwrap();
            let body = operation.get("requestBody").map(|_| {
                request_example(&spec, method_name, path)
                    .unwrap_or_else(|| panic!("{method} {path}: no example body to send"))
            });
            let scopes = scopes_of(operation);
            let fill = |value: &str| concrete.replace(&parameter, value);
            match resource {
                Resource::Schedule | Resource::Run | Resource::Calendar => {
                    let theirs = match resource {
                        Resource::Schedule => &schedule_id,
                        Resource::Run => &run_id,
                        _ => &calendar_name,
                    };
                    let token = token_for(&intruder, &scopes);
                    let foreign = app
                        .call_as(&token, method.clone(), &fill(theirs), body.clone())
                        .await;
                    assert_eq!(
                        foreign.status,
                        StatusCode::NOT_FOUND,
                        "{method} {path} with another tenant's id, scopes {scopes:?}: {}",
                        foreign.body
                    );
                    let unknown = uuid::Uuid::now_v7().to_string();
                    let missing = app
                        .call_as(&token, method.clone(), &fill(&unknown), body.clone())
                        .await;
                    assert_eq!(
                        (missing.status, &missing.body),
                        (foreign.status, &foreign.body),
                        "{method} {path}: another tenant's id must answer like an unknown one"
                    );
                }
                Resource::ScheduleName => {
                    // Names are per tenant: to the intruder, the first tenant's name is one it has
                    // not used, so the upsert creates the intruder's own schedule, which must not
                    // be (or touch) the first tenant's.
                    let token = token_for(&intruder, &scopes);
                    let answer = app
                        .call_as(&token, method.clone(), &fill(&name), body.clone())
                        .await;
                    assert_eq!(
                        answer.status,
                        StatusCode::CREATED,
                        "{method} {path}: {}",
                        answer.body
                    );
                    assert_ne!(answer.body["id"].as_str(), Some(schedule_id.as_str()));
                }
                Resource::Tenant => {
                    // The exception: tenants are the admins' to see and change, whoever they
                    // belong to (an admin is cross-tenant by definition), so what keeps a tenant
                    // out is the scope: with every other scope it is refused.
                    assert_eq!(scopes, "admin", "{method} {path}");
                    let token = token_for(&intruder, "schedules:read schedules:write");
                    let answer = app
                        .call_as(&token, method.clone(), &fill(&app.tenant), body.clone())
                        .await;
                    assert_eq!(
                        answer.status,
                        StatusCode::FORBIDDEN,
                        "{method} {path}: {}",
                        answer.body
                    );
                    assert!(answer.body["detail"].as_str().unwrap().contains("admin"));
                }
            }
            calls.push((method, resource, concrete.clone(), parameter.clone(), body));
        }
    }
    for resource in [
        Resource::Schedule,
        Resource::ScheduleName,
        Resource::Run,
        Resource::Tenant,
        Resource::Calendar,
    ] {
        assert!(
            calls.iter().any(|call| call.1 == resource),
            "no operation on a {resource:?} was walked"
        );
    }

    // Nothing of the first tenant's changed, and nothing was queued for it.
    assert_eq!(app.get(&schedule_path).await.body, schedule_before.body);
    assert_eq!(app.get(&run_path).await.body, run_before.body);
    assert_eq!(app.get(&calendar_path).await.body, created.body);
    assert_eq!(app.get("/v1/runs").await.body, runs);
    assert_eq!(app.run_worker().await.attempts, 0);
    assert_eq!(receiver.received().len(), 1);

    // The control: the owner's (an admin's, for tenants) same calls succeed. Deletes go last.
    let admin = token_for("operator", "admin");
    calls.sort_by_key(|(method, ..)| *method == Method::DELETE);
    for (method, resource, template, parameter, body) in calls {
        let (token, value) = match resource {
            Resource::Schedule => (&app.token, schedule_id.as_str()),
            Resource::ScheduleName => (&app.token, name.as_str()),
            Resource::Run => (&app.token, run_id.as_str()),
            Resource::Tenant => (&admin, app.tenant.as_str()),
            Resource::Calendar => (&app.token, calendar_name.as_str()),
        };
        let path = template.replace(&parameter, value);
        let answer = app.call_as(token, method.clone(), &path, body).await;
        assert!(
            answer.status.is_success(),
            "the owner's {method} {path}: {} {}",
            answer.status,
            answer.body
        );
    }
}

on_both_databases!(every_id_endpoint_in_the_spec_hides_another_tenants_resources);

/// A new endpoint on a resource the walk cannot fill stops it rather than being skipped.
#[test]
#[should_panic(expected = "does not know which of the first tenant's resources")]
fn an_unknown_id_endpoint_stops_the_walk() {
    resource_of("/v1/webhooks/{id}/replay");
}

#[test]
fn path_parameters_name_their_resource() {
    assert_eq!(
        resource_of("/v1/schedules/{id}/trigger"),
        ("{id}".to_owned(), Resource::Schedule)
    );
    assert_eq!(
        resource_of("/v1/schedules/by-name/{name}"),
        ("{name}".to_owned(), Resource::ScheduleName)
    );
    assert_eq!(
        resource_of("/v1/runs/{id}/redeliver"),
        ("{id}".to_owned(), Resource::Run)
    );
}
