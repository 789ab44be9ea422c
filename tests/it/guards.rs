//! Tokens, admins and the small guards around them: `aud` as a string or a list, audiences
//! required with an external issuer, no admin locking itself out, failed authentications limited
//! per address, idempotency reservations that a crash cannot hold for a day, `If-Match` with a
//! foreign tag, readiness that keeps database errors to the log, and settings a command reads.

use std::process::Command;

use chrono::{Duration, Utc};
use reqwest::{Method, StatusCode};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::helpers::app::{signed_token, spawn_app_with, token_for};
use crate::helpers::{spawn_app, Backend};
use crate::on_both_databases;

#[tokio::test]
async fn aud_may_be_a_string_or_a_list() {
    let app = spawn_app_with(Backend::Sqlite, |options| {
        options.jwt_audience = Some("hookbeat".to_owned());
    })
    .await
    .unwrap();
    let token = |aud: serde_json::Value| {
        signed_token(&json!({
            "sub": "listed", "exp": Utc::now().timestamp() + 600,
            "scope": "schedules:read", "aud": aud
        }))
    };
    for (aud, expected) in [
        (json!("hookbeat"), StatusCode::OK),
        (json!(["billing", "hookbeat"]), StatusCode::OK),
        (json!(["hookbeat"]), StatusCode::OK),
        (json!(["billing", "reports"]), StatusCode::UNAUTHORIZED),
        (json!("billing"), StatusCode::UNAUTHORIZED),
        (json!([]), StatusCode::UNAUTHORIZED),
    ] {
        let answer = app
            .call_as(&token(aud.clone()), Method::GET, "/v1/schedules", None)
            .await;
        assert_eq!(answer.status, expected, "aud {aud}: {}", answer.body);
    }
}

fn hookbeat(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_hookbeat"));
    command
        .args(args)
        .env_remove("HOOKBEAT_JWT_SECRET")
        .env_remove("HOOKBEAT_JWT_PUBLIC_KEY")
        .env_remove("HOOKBEAT_JWT_AUDIENCE")
        .env_remove("HOOKBEAT_ALLOW_PRIVATE_TARGETS")
        .env(
            "DATABASE_URL",
            format!("sqlite://{}/h.db?mode=rwc", dir.path().display()),
        )
        .envs(env.iter().copied());
    command.output().expect("running hookbeat")
}

#[test]
fn an_external_issuer_needs_an_audience() {
    let key = format!(
        "{}/tests/fixtures/jwt/rsa_public.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    for command in ["api", "serve"] {
        let output = hookbeat(&[command, "--jwt-public-key", &key], &[]);
        assert!(
            !output.status.success(),
            "{command} started without --jwt-audience"
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--jwt-audience"), "{stderr}");
    }
}

#[test]
fn boolean_variables_take_the_usual_spellings() {
    let spec = r#"{"kind":"interval","every_seconds":60}"#;
    for value in [
        "true", "false", "1", "0", "yes", "no", "on", "off", "TRUE", "Yes",
    ] {
        let output = hookbeat(
            &["preview", "--count", "1", spec],
            &[("HOOKBEAT_ALLOW_PRIVATE_TARGETS", value)],
        );
        assert!(
            output.status.success(),
            "HOOKBEAT_ALLOW_PRIVATE_TARGETS={value}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = hookbeat(
        &["preview", spec],
        &[("HOOKBEAT_ALLOW_PRIVATE_TARGETS", "maybe")],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("maybe"));
}

#[test]
fn migrate_and_worker_ignore_the_token_settings_they_do_not_use() {
    let output = hookbeat(&["migrate"], &[("HOOKBEAT_JWT_SECRET", "short")]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The API still refuses it.
    let output = hookbeat(&["api"], &[("HOOKBEAT_JWT_SECRET", "short")]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("at least 32"));
}

async fn an_admin_cannot_disable_its_own_tenant(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = token_for("root", "admin");
    let own = app
        .call_as(
            &admin,
            Method::PATCH,
            "/v1/tenants/root",
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(own.status, StatusCode::CONFLICT, "{}", own.body);
    assert_eq!(own.headers["content-type"], "application/problem+json");
    let still = app
        .call_as(&admin, Method::GET, "/v1/tenants/root", None)
        .await;
    assert_eq!(still.status, StatusCode::OK);
    assert_eq!(still.body["disabled"], false);
    // Another tenant it may disable, and its own quotas it may still change.
    app.get("/v1/schedules").await;
    let other = app
        .call_as(
            &admin,
            Method::PATCH,
            &format!("/v1/tenants/{}", app.tenant),
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    let quota = app
        .call_as(
            &admin,
            Method::PATCH,
            "/v1/tenants/root",
            Some(json!({"max_schedules": 5})),
        )
        .await;
    assert_eq!(quota.status, StatusCode::OK, "{}", quota.body);
}

#[tokio::test]
async fn failed_authentications_are_limited_per_address() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let forged = signed_token(&json!({"sub": "x", "exp": 1}));
    for n in 0..20 {
        let answer = app
            .call_as(&forged, Method::GET, "/v1/schedules", None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "failure {n}");
    }
    let limited = app
        .call_as("garbage", Method::GET, "/v1/schedules", None)
        .await;
    assert_eq!(
        limited.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        limited.body
    );
    assert_eq!(limited.header("retry-after"), "1");
    assert_eq!(limited.headers["content-type"], "application/problem+json");
    // A valid token from the same address is not what is limited.
    assert_eq!(app.get("/v1/schedules").await.status, StatusCode::OK);
    // The allowance comes back with time: one failure a second.
    app.clock.advance(Duration::seconds(2));
    for _ in 0..2 {
        let answer = app
            .call_as("garbage", Method::GET, "/v1/schedules", None)
            .await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    }
    let again = app
        .call_as("garbage", Method::GET, "/v1/schedules", None)
        .await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS);
}

async fn an_abandoned_idempotency_reservation_is_taken_over_after_its_lease(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let body = json!({
        "name": "once-only",
        "schedule": {"kind": "interval", "every_seconds": 60},
        "target": {"url": "https://example.com/hook"}
    });
    let create = || {
        app.http
            .post(format!("{}/v1/schedules", app.address))
            .bearer_auth(&app.token)
            .header("idempotency-key", "crash-test")
            .json(&body)
            .send()
    };
    let first = create().await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first: serde_json::Value = first.json().await.unwrap();
    // The process died after reserving the key and before the schedule was saved.
    app.db
        .execute_unprepared(
            "UPDATE idempotency_keys SET status = NULL, body = NULL, location = NULL, etag = NULL",
        )
        .await
        .unwrap();
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/v1/schedules/{}", first["id"].as_str().unwrap()),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);

    app.clock.advance(Duration::seconds(30));
    let held = create().await.unwrap();
    assert_eq!(
        held.status(),
        StatusCode::CONFLICT,
        "the reservation still holds"
    );
    app.clock.advance(Duration::seconds(31));
    let retried = create().await.unwrap();
    assert_eq!(
        retried.status(),
        StatusCode::CREATED,
        "taken over after its lease"
    );
    let retried: serde_json::Value = retried.json().await.unwrap();
    let replayed = create().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::CREATED);
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let replayed: serde_json::Value = replayed.json().await.unwrap();
    assert_eq!(replayed["id"], retried["id"]);
    let listed = app.get("/v1/schedules").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

on_both_databases!(
    an_admin_cannot_disable_its_own_tenant,
    an_abandoned_idempotency_reservation_is_taken_over_after_its_lease,
);

#[tokio::test]
async fn if_match_with_a_tag_that_is_not_ours_fails_its_precondition() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    let made = app
        .create_schedule(json!({
            "name": "tagged",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": "https://example.com/hook"}
        }))
        .await;
    let path = format!("/v1/schedules/{}", made["id"].as_str().unwrap());
    let patch = |tag: &'static str| {
        app.http
            .patch(format!("{}{path}", app.address))
            .bearer_auth(&app.token)
            .header("if-match", tag)
            .json(&json!({"description": "changed"}))
            .send()
    };
    for tag in ["\"abc\"", "W/\"xyz\"", "\"abc\", \"7\""] {
        let answer = patch(tag).await.unwrap();
        assert_eq!(answer.status(), StatusCode::PRECONDITION_FAILED, "{tag}");
    }
    for tag in ["abc", "\"unterminated"] {
        let answer = patch(tag).await.unwrap();
        assert_eq!(answer.status(), StatusCode::BAD_REQUEST, "{tag}");
    }
    let answer = patch("\"zz\", W/\"1\"").await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK, "one of the tags matches");
}

#[tokio::test]
async fn readiness_names_the_failed_check_and_keeps_the_error_to_the_log() {
    let app = spawn_app(Backend::Sqlite).await.unwrap();
    assert_eq!(app.get("/readyz").await.status, StatusCode::OK);
    app.db.clone().close().await.unwrap();
    let answer = app
        .http
        .get(format!("{}/readyz", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(
        body["detail"], "not ready: database: not reachable",
        "{body}"
    );
}

/// Makes every write-back fail while `fail_writes` has a row, as it would while the database
/// restarts: the updates of `runs` that give a lease up (a claim takes one; the write-back is
/// where a run's only attempt is recorded, in its row).
async fn inject_write_back_failures(db: &sea_orm::DatabaseConnection, backend: Backend) {
    let statements: &[&str] = match backend {
        Backend::Sqlite => &[
            "CREATE TABLE fail_writes (x INTEGER)",
            "CREATE TRIGGER fail_write_backs BEFORE UPDATE ON runs \
             WHEN OLD.locked_by IS NOT NULL AND NEW.locked_by IS NULL \
                 AND EXISTS (SELECT 1 FROM fail_writes) \
             BEGIN SELECT RAISE(ABORT, 'injected write-back failure'); END",
        ],
        Backend::Postgres => &[
            "CREATE TABLE fail_writes (x int)",
            "CREATE FUNCTION fail_write_backs() RETURNS trigger AS $$ BEGIN \
             IF EXISTS (SELECT 1 FROM fail_writes) THEN \
             RAISE EXCEPTION 'injected write-back failure'; END IF; RETURN NEW; END $$ \
             LANGUAGE plpgsql",
            "CREATE TRIGGER fail_write_backs BEFORE UPDATE ON runs FOR EACH ROW \
             WHEN (OLD.locked_by IS NOT NULL AND NEW.locked_by IS NULL) \
             EXECUTE FUNCTION fail_write_backs()",
        ],
    };
    for statement in statements {
        db.execute_unprepared(statement).await.unwrap();
    }
    db.execute_unprepared("INSERT INTO fail_writes VALUES (1)")
        .await
        .unwrap();
}

async fn a_failed_write_back_is_tried_again_while_the_leases_hold(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = crate::helpers::Receiver::start();
    let made = app
        .create_schedule(json!({
            "name": "recorded",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": receiver.url}
        }))
        .await;
    inject_write_back_failures(&app.db, backend).await;
    app.clock.advance(Duration::seconds(60));
    let worker = app.worker.clone();
    let pass = tokio::spawn(async move { worker.run_once().await });
    let failures = || async {
        let text = app
            .http
            .get(format!("{}/metrics", app.address))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|line| line.strip_prefix("hookbeat_write_back_failures_total "))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|n| *n >= 2)
    };
    let failed = crate::helpers::eventually(std::time::Duration::from_secs(10), failures).await;
    assert!(
        failed.is_some(),
        "the write-back failed and was tried again"
    );
    assert!(
        !pass.is_finished(),
        "the pass waits for its result to be recorded"
    );
    app.db
        .execute_unprepared("DELETE FROM fail_writes")
        .await
        .unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(20), pass)
        .await
        .expect("the write-back went through once the database was back")
        .unwrap()
        .unwrap();
    assert_eq!(report.attempts, 1);
    // Recorded once; delivered once, and never again after the lease's end.
    let runs = app
        .get(&format!(
            "/v1/schedules/{}/runs",
            made["id"].as_str().unwrap()
        ))
        .await;
    let run = &runs.body["items"][0];
    assert_eq!(run["status"], "succeeded", "{}", runs.body);
    let detail = app
        .get(&format!("/v1/runs/{}", run["id"].as_str().unwrap()))
        .await;
    assert_eq!(detail.body["attempts"].as_array().unwrap().len(), 1);
    app.clock.advance(Duration::minutes(5));
    app.run_worker().await;
    let id = run["id"].as_str().unwrap();
    let deliveries = receiver
        .received()
        .iter()
        .filter(|r| r.header("webhook-id") == id)
        .count();
    assert_eq!(deliveries, 1, "delivered once, even after its lease's end");
}

on_both_databases!(a_failed_write_back_is_tried_again_while_the_leases_hold);
