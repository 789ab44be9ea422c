//! Schedules over REST: create, read, list with cursors, merge-patch with ETags, delete.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use hookbeat_scheduler::Clock;

use crate::helpers::{spawn_app, Backend};
use crate::on_both_databases;

fn interval(name: &str, every: i64) -> Value {
    json!({
        "name": name,
        "schedule": {"kind": "interval", "every_seconds": every},
        "target": {"url": "https://example.com/hook"}
    })
}

async fn create_read_patch_delete(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let created = app.post("/v1/schedules", interval("nightly", 86400)).await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(created.header("location"), format!("/v1/schedules/{id}"));
    assert_eq!(created.header("etag"), "\"1\"");
    // Defaults are filled in and shown.
    let body = &created.body;
    assert_eq!(body["target"]["method"], "POST");
    assert_eq!(body["target"]["timeout_ms"], 15000);
    assert_eq!(body["retry"]["max_attempts"], 5);
    assert_eq!(
        (body["catchup"].as_str(), body["overlap"].as_str()),
        (Some("latest"), Some("allow"))
    );
    assert_eq!(
        (body["enabled"].as_bool(), body["version"].as_i64()),
        (Some(true), Some(1))
    );
    assert_eq!(body["total_runs"], 0);

    let read = app.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(read.status, StatusCode::OK);
    assert_eq!(read.body, created.body);

    let duplicate = app.post("/v1/schedules", interval("nightly", 60)).await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);
    assert_eq!(duplicate.header("content-type"), "application/problem+json");

    // Merge patch: change one member, remove an optional one, keep the rest.
    let patched = app
        .call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"description": "every night", "metadata": {"team": "ops"}})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["description"], "every night");
    assert_eq!(patched.body["metadata"], json!({"team": "ops"}));
    assert_eq!(patched.body["version"], 2);
    assert_eq!(patched.header("etag"), "\"2\"");
    assert_eq!(
        patched.body["next_run_at"], created.body["next_run_at"],
        "timing unchanged"
    );
    let removed = app
        .call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"description": null})),
        )
        .await;
    assert_eq!(removed.body.get("description"), None);

    // A stale If-Match is refused; a current one is honoured.
    let stale = app
        .http
        .patch(format!("{}/v1/schedules/{id}", app.address))
        .bearer_auth(&app.token)
        .header("if-match", "\"1\"")
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    let current = app
        .http
        .patch(format!("{}/v1/schedules/{id}", app.address))
        .bearer_auth(&app.token)
        .header("if-match", "\"3\"")
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"enabled": false}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(current.status(), StatusCode::OK);

    // Read-only members are refused, not ignored.
    let read_only = app
        .call(
            Method::PATCH,
            &format!("/v1/schedules/{id}"),
            Some(json!({"total_runs": 7})),
        )
        .await;
    assert_eq!(read_only.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(read_only.body["errors"][0]["field"], "total_runs");

    let stale_delete = app
        .http
        .delete(format!("{}/v1/schedules/{id}", app.address))
        .bearer_auth(&app.token)
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale_delete.status(), StatusCode::PRECONDITION_FAILED);
    let deleted = app
        .call(Method::DELETE, &format!("/v1/schedules/{id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get(&format!("/v1/schedules/{id}")).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.call(Method::DELETE, &format!("/v1/schedules/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

async fn listing_is_cursor_paginated_and_filtered(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        let name = if n % 2 == 0 {
            format!("even-{n}")
        } else {
            format!("odd_{n}")
        };
        ids.push(
            app.create_schedule(interval(&name, 60)).await["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/schedules?limit=2&cursor={c}"),
            None => "/v1/schedules?limit=2".to_owned(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, StatusCode::OK);
        pages += 1;
        for item in page.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_str().unwrap().to_owned());
        }
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ids, "every schedule once, in creation order");

    let evens = app.get("/v1/schedules?name_prefix=even-").await.body;
    assert_eq!(evens["items"].as_array().unwrap().len(), 3);
    // `_` is matched literally, not as a LIKE wildcard.
    let literal = app.get("/v1/schedules?name_prefix=odd_").await.body;
    assert_eq!(literal["items"].as_array().unwrap().len(), 2);
    let wildcard = app.get("/v1/schedules?name_prefix=od%25").await.body;
    assert_eq!(wildcard["items"].as_array().unwrap().len(), 0);

    app.call(
        Method::POST,
        &format!("/v1/schedules/{}/pause", ids[0]),
        None,
    )
    .await;
    let paused = app.get("/v1/schedules?enabled=false").await.body;
    assert_eq!(paused["items"].as_array().unwrap().len(), 1);
    assert_eq!(paused["items"][0]["id"], ids[0].as_str());
}

async fn preview_lists_the_next_fires(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let answer = app
        .post(
            "/v1/schedules/preview",
            json!({
                "schedule": {"kind": "interval", "every_seconds": 90, "anchor": "2030-01-01T00:00:30Z"},
                "after": "2030-01-01T00:00:00Z",
                "count": 3
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let fire_times = json!([
        "2030-01-01T00:00:30Z",
        "2030-01-01T00:02:00Z",
        "2030-01-01T00:03:30Z"
    ]);
    assert_eq!(answer.body["fire_times"], fire_times);
    // Beside it, the same fires on the wall clock (UTC for an interval).
    let instants: Vec<&Value> = answer.body["fires"]
        .as_array()
        .unwrap()
        .iter()
        .map(|fire| &fire["at"])
        .collect();
    assert_eq!(json!(instants), fire_times);
    let too_many = app
        .post(
            "/v1/schedules/preview",
            json!({"schedule": {"kind": "interval", "every_seconds": 1}, "count": 1001}),
        )
        .await;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(too_many.body["errors"][0]["field"], "count");
}

on_both_databases!(
    create_read_patch_delete,
    listing_is_cursor_paginated_and_filtered,
    preview_lists_the_next_fires,
);

/// A retried create with the same Idempotency-Key returns the first result; the same key with
/// another body is refused; a failed request leaves the key free.
async fn idempotency_keys_make_retries_safe(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let post = |key: &'static str, body: Value| {
        app.http
            .post(format!("{}/v1/schedules", app.address))
            .bearer_auth(&app.token)
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = post("key-1", interval("once-only", 60)).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    let first: Value = first.json().await.unwrap();
    let again = post("key-1", interval("once-only", 60)).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"].to_str().unwrap(), location);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        app.get("/v1/schedules").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let other = post("key-1", interval("something-else", 60)).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let invalid = post("key-2", interval("bad", 0)).await.unwrap();
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let fixed = post("key-2", interval("good", 60)).await.unwrap();
    assert_eq!(
        fixed.status(),
        StatusCode::CREATED,
        "a failed request does not keep its key"
    );
}

on_both_databases!(idempotency_keys_make_retries_safe);

/// PUT by name creates, then replaces, the schedule of that name: configuration kept in step.
async fn put_by_name_upserts(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let put = |body: Value| {
        app.call(
            Method::PUT,
            "/v1/schedules/by-name/nightly-sync",
            Some(body),
        )
    };
    let mut body = interval("nightly-sync", 3600);
    body.as_object_mut().unwrap().remove("name");
    let created = put(body.clone()).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["name"], "nightly-sync");
    body["schedule"]["every_seconds"] = json!(7200);
    let replaced = put(body.clone()).await;
    assert_eq!(replaced.status, StatusCode::OK);
    assert_eq!(replaced.body["id"], created.body["id"]);
    assert_eq!(replaced.body["schedule"]["every_seconds"], 7200);
    assert_eq!(replaced.body["version"], 2);
    let same_again = put(body.clone()).await;
    assert_eq!(same_again.status, StatusCode::OK);
    assert_eq!(same_again.body["id"], created.body["id"]);
    assert_eq!(
        same_again.body["version"], 2,
        "the same content again changes nothing"
    );
    assert_eq!(
        app.get("/v1/schedules").await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let renamed = put(interval("another-name", 60)).await;
    assert_eq!(renamed.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(renamed.body["errors"][0]["field"], "name");
}

on_both_databases!(put_by_name_upserts);

/// Backfill makes the runs of a past window, delivered like any other, within bounds.
async fn backfill_makes_the_runs_of_a_past_window(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = crate::helpers::Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "late-joiner",
            "schedule": {"kind": "interval", "every_seconds": 10},
            "target": {"url": receiver.url}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    let now = app.clock.now();
    let window =
        json!({"from": (now - chrono::Duration::seconds(60)).to_rfc3339(), "to": now.to_rfc3339()});
    let made = app
        .post(&format!("/v1/schedules/{id}/backfill"), window)
        .await;
    assert_eq!(made.status, StatusCode::ACCEPTED, "{}", made.body);
    assert_eq!(made.body["created"], 7, "-60 s … 0 s, both ends included");
    assert_eq!(app.run_worker().await.attempts, 7);
    assert_eq!(receiver.received().len(), 7);
    let runs = app.get(&format!("/v1/schedules/{id}/runs")).await.body;
    assert!(runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["trigger"] == "backfill" && r["status"] == "succeeded"));

    let future =
        json!({"from": now.to_rfc3339(), "to": (now + chrono::Duration::hours(1)).to_rfc3339()});
    let refused = app
        .post(&format!("/v1/schedules/{id}/backfill"), future)
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(refused.body["errors"][0]["field"], "to");
    let huge =
        json!({"from": (now - chrono::Duration::days(2)).to_rfc3339(), "to": now.to_rfc3339()});
    let too_many = app
        .post(&format!("/v1/schedules/{id}/backfill"), huge)
        .await;
    assert_eq!(too_many.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(too_many.body["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("1000"));
}

on_both_databases!(backfill_makes_the_runs_of_a_past_window);

/// `POST path` as the app's tenant, with an `Idempotency-Key`.
async fn post_with_key(
    app: &crate::helpers::TestApp,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> crate::helpers::app::Answer {
    let mut request = app
        .http
        .post(format!("{}{path}", app.address))
        .bearer_auth(&app.token)
        .header("idempotency-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.json().await.unwrap();
    crate::helpers::app::Answer {
        status,
        headers,
        body,
    }
}

/// Asserts `retried` is `first` replayed: same status and body, marked as a replay.
fn assert_replayed(first: &crate::helpers::app::Answer, retried: &crate::helpers::app::Answer) {
    assert_eq!(retried.status, first.status, "{}", retried.body);
    assert_eq!(retried.body, first.body);
    assert_eq!(retried.header("idempotent-replayed"), "true");
    assert!(first.headers.get("idempotent-replayed").is_none());
}

/// A backfill retried with the same key returns the first result and makes its runs once.
async fn a_retried_backfill_makes_the_runs_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = crate::helpers::Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "late-joiner",
            "schedule": {"kind": "interval", "every_seconds": 10},
            "target": {"url": receiver.url}
        }))
        .await;
    let path = format!(
        "/v1/schedules/{}/backfill",
        schedule["id"].as_str().unwrap()
    );
    let now = app.clock.now();
    let window =
        json!({"from": (now - chrono::Duration::seconds(60)).to_rfc3339(), "to": now.to_rfc3339()});
    let first = post_with_key(&app, &path, "fill-once", Some(window.clone())).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.body["created"], 7);
    let retried = post_with_key(&app, &path, "fill-once", Some(window)).await;
    assert_replayed(&first, &retried);

    let other_window =
        json!({"from": (now - chrono::Duration::seconds(30)).to_rfc3339(), "to": now.to_rfc3339()});
    let reused = post_with_key(&app, &path, "fill-once", Some(other_window)).await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.body["errors"][0]["field"], "Idempotency-Key");

    let runs_path = format!("/v1/schedules/{}/runs", schedule["id"].as_str().unwrap());
    assert_eq!(
        app.get(&runs_path).await.body["items"]
            .as_array()
            .unwrap()
            .len(),
        7
    );
    assert_eq!(app.run_worker().await.attempts, 7);
    assert_eq!(receiver.received().len(), 7);
}

/// A redelivery retried with the same key returns the first response (not a 409, and not a
/// second redelivery of a run that failed again meanwhile); the key on another run is refused.
async fn a_retried_redelivery_delivers_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = crate::helpers::Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "flaky",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url}
        }))
        .await;
    let fire: chrono::DateTime<chrono::Utc> =
        schedule["next_run_at"].as_str().unwrap().parse().unwrap();
    // 400 fails a run at once: the first fire, its redelivery, and the next fire all fail.
    receiver.script([400, 400, 400].map(crate::helpers::Reply::status));
    app.run_worker_at(fire).await;
    let run_id = app.get("/v1/runs").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/v1/runs/{run_id}/redeliver");

    let first = post_with_key(&app, &path, "again-once", None).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.body["status"], "pending");
    assert_eq!(app.run_worker().await.attempts, 1);
    let run = format!("/v1/runs/{run_id}");
    assert_eq!(app.get(&run).await.body["status"], "failed");
    let retried = post_with_key(&app, &path, "again-once", None).await;
    assert_replayed(&first, &retried);
    assert_eq!(app.run_worker().await.attempts, 0, "no second redelivery");
    let detail = app.get(&run).await.body;
    assert_eq!(detail["status"], "failed");
    assert_eq!(detail["attempts"].as_array().unwrap().len(), 2);

    app.run_worker_at(fire + chrono::Duration::hours(1)).await;
    let other_run = app.get("/v1/runs").await.body["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(other_run, run_id);
    let reused = post_with_key(
        &app,
        &format!("/v1/runs/{other_run}/redeliver"),
        "again-once",
        None,
    )
    .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(
        app.get(&format!("/v1/runs/{other_run}")).await.body["status"],
        "failed"
    );
    assert_eq!(receiver.received().len(), 3);
}

/// A rotation retried with the same key returns the first result and makes one new secret; the
/// key used for another request is refused.
async fn a_retried_rotation_rotates_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let original = app.signing_secret().await;
    app.clock.advance(chrono::Duration::seconds(1));
    let first = post_with_key(&app, "/v1/signing-secrets/rotate", "rotate-once", None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let secrets = first.body["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2);
    assert_eq!(secrets[1]["secret"], original.as_str());
    let retried = post_with_key(&app, "/v1/signing-secrets/rotate", "rotate-once", None).await;
    assert_replayed(&first, &retried);
    assert_eq!(app.get("/v1/signing-secrets").await.body, first.body);

    let reused = post_with_key(
        &app,
        "/v1/schedules",
        "rotate-once",
        Some(interval("not-made", 60)),
    )
    .await;
    assert_eq!(reused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(reused.body["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(app.get("/v1/schedules").await.body["items"], json!([]));
}

on_both_databases!(
    a_retried_backfill_makes_the_runs_once,
    a_retried_redelivery_delivers_once,
    a_retried_rotation_rotates_once,
);
