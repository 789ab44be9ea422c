//! Signing secrets (CONTRACT §7): reading them needs `schedules:write`; a rotation keeps at most
//! two valid and can revoke the old one at once; with `--secrets-key` no secret is stored in
//! plaintext, a database whose secrets no configured key opens refuses to start, and the
//! embedded database file is readable by its owner only.

use std::process::{Command, Stdio};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hookbeat_api::auth::{resolve_secret, DEFAULT_SCOPES};
use hookbeat_entity::{setting, signing_secret};
use hookbeat_scheduler::sealing::{Sealer, SecretsKeys};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, EntityTrait, Statement};
use serde_json::{json, Value};

use crate::helpers::app::{spawn_app_with, token_for, TestApp};
use crate::helpers::db::TestDb;
use crate::helpers::process::Process;
use crate::helpers::receiver::Received;
use crate::helpers::{spawn_app, Backend, Receiver};
use crate::on_both_databases;

/// A base64 32-byte key made of `byte`.
fn key(byte: u8) -> String {
    BASE64.encode([byte; 32])
}

/// A sealer with the keys of a `--secrets-key` value.
fn sealer(keys: &str) -> Sealer {
    Sealer::new(Some(SecretsKeys::parse(keys).unwrap()))
}

/// Whether `request` carries a signature made with `secret`, as the official Standard Webhooks
/// library signs (its `verify` would also check the timestamp against the real clock).
fn signed_with(secret: &str, request: &Received) -> bool {
    let expected = standardwebhooks::Webhook::new(secret)
        .expect("a valid secret")
        .sign(
            request.header("webhook-id"),
            request.header("webhook-timestamp").parse().unwrap(),
            &request.body,
        )
        .unwrap();
    request
        .header("webhook-signature")
        .split(' ')
        .any(|signature| signature == expected)
}

/// The tenant's valid secrets, newest first, as the API shows them.
async fn secrets(app: &TestApp) -> Vec<String> {
    let answer = app.get("/v1/signing-secrets").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["secret"].as_str().unwrap().to_owned())
        .collect()
}

async fn rotate(app: &TestApp, body: Option<Value>) -> Value {
    let answer = app
        .call(Method::POST, "/v1/signing-secrets/rotate", body)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    answer.body
}

/// Triggers a new, paused schedule now and runs the worker: the request the receiver got.
async fn deliver(app: &TestApp, receiver: &Receiver) -> Received {
    let schedule = app
        .create_schedule(json!({
            "name": format!("s-{}", uuid::Uuid::now_v7().simple()),
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url, "body": {"n": 1}}
        }))
        .await;
    let id = schedule["id"].as_str().unwrap();
    let paused = app
        .call(Method::POST, &format!("/v1/schedules/{id}/pause"), None)
        .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    let before = receiver.received().len();
    let triggered = app.trigger(id).await;
    assert_eq!(triggered.status, StatusCode::ACCEPTED, "{}", triggered.body);
    app.run_worker().await;
    let received = receiver.received();
    assert_eq!(received.len(), before + 1, "one delivery");
    received[before].clone()
}

fn signatures(request: &Received) -> usize {
    request.header("webhook-signature").split(' ').count()
}

/// What the signing secrets' column holds, read with SQL.
async fn stored_secrets(app: &TestApp) -> Vec<String> {
    let rows = app
        .db
        .query_all(Statement::from_string(
            app.db.get_database_backend(),
            "SELECT secret FROM signing_secrets",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|row| row.try_get::<String>("", "secret").unwrap())
        .collect()
}

async fn reading_secrets_needs_schedules_write(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let read_only = token_for(&app.tenant, "schedules:read");
    for (method, path) in [
        (Method::GET, "/v1/signing-secrets"),
        (Method::POST, "/v1/signing-secrets/rotate"),
    ] {
        let refused = app.call_as(&read_only, method, path, None).await;
        assert_eq!(refused.status, StatusCode::FORBIDDEN, "{path}");
        assert_eq!(refused.body["type"], "urn:hookbeat:problem:forbidden");
        assert!(
            refused.body["detail"]
                .as_str()
                .unwrap()
                .contains("schedules:write"),
            "{}",
            refused.body
        );
    }
    let write_only = token_for(&app.tenant, "schedules:write");
    let allowed = app
        .call_as(&write_only, Method::GET, "/v1/signing-secrets", None)
        .await;
    assert_eq!(allowed.status, StatusCode::OK);
    assert_eq!(allowed.body["secrets"].as_array().unwrap().len(), 1);
}

async fn expire_previous_now_leaves_only_the_new_secret(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let old = secrets(&app).await;
    assert_eq!(old.len(), 1);
    let rotated = rotate(&app, Some(json!({"expire_previous": "now"}))).await;
    let listed = rotated["secrets"].as_array().unwrap();
    assert_eq!(listed.len(), 1, "{rotated}");
    let new = listed[0]["secret"].as_str().unwrap().to_owned();
    assert_ne!(new, old[0]);
    assert_eq!(listed[0]["expires_at"], Value::Null);
    assert_eq!(secrets(&app).await, vec![new.clone()]);

    let request = deliver(&app, &receiver).await;
    assert_eq!(signatures(&request), 1, "{:?}", request.headers);
    assert!(signed_with(&new, &request));
    assert!(
        !signed_with(&old[0], &request),
        "the leaked secret is revoked"
    );
}

async fn rotations_leave_at_most_two_valid_secrets(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let first = secrets(&app).await;
    let mut made = Vec::new();
    for _ in 0..10 {
        let rotated = rotate(&app, None).await;
        assert!(
            rotated["secrets"].as_array().unwrap().len() <= 2,
            "{rotated}"
        );
        made.push(rotated["secrets"][0]["secret"].as_str().unwrap().to_owned());
    }
    let valid = secrets(&app).await;
    assert_eq!(
        valid,
        vec![made[9].clone(), made[8].clone()],
        "newest first"
    );

    let request = deliver(&app, &receiver).await;
    assert_eq!(signatures(&request), 2, "{:?}", request.headers);
    assert!(signed_with(&made[9], &request));
    assert!(signed_with(&made[8], &request));
    for older in first.iter().chain(&made[..8]) {
        assert!(!signed_with(older, &request));
    }
    // A day later only the newest signs.
    app.clock.advance(chrono::Duration::hours(24));
    assert_eq!(secrets(&app).await, vec![made[9].clone()]);
    let request = deliver(&app, &receiver).await;
    assert_eq!(signatures(&request), 1);
    assert!(signed_with(&made[9], &request));
}

async fn a_rotation_body_is_validated(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for (body, field) in [
        (json!({"expire_previous": "later"}), "expire_previous"),
        (json!({"expire_previous": 0}), "expire_previous"),
        (json!({"expire_previous": null}), "expire_previous"),
        (json!({"expire": "now"}), "expire"),
        (json!([]), "body"),
    ] {
        let refused = app.post("/v1/signing-secrets/rotate", body.clone()).await;
        assert_eq!(
            refused.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            refused.body
        );
        assert_eq!(
            refused.body["errors"][0]["field"], field,
            "{}",
            refused.body
        );
    }
    let not_json = app
        .http
        .post(format!("{}/v1/signing-secrets/rotate", app.address))
        .bearer_auth(&app.token)
        .header("content-type", "text/plain")
        .body("now")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(secrets(&app).await.len(), 1, "nothing was rotated");

    // `{}`, `null` and `"24h"` keep the overlap, as a rotation without a body does.
    for body in [
        Some(json!({})),
        Some(json!(null)),
        Some(json!({"expire_previous": "24h"})),
        None,
    ] {
        let rotated = rotate(&app, body).await;
        assert_eq!(rotated["secrets"].as_array().unwrap().len(), 2);
        assert_ne!(rotated["secrets"][1]["expires_at"], Value::Null);
    }

    // The body is part of the request an idempotency key stands for.
    let with_key = |body: Value| {
        app.http
            .post(format!("{}/v1/signing-secrets/rotate", app.address))
            .bearer_auth(&app.token)
            .header("idempotency-key", "rotate-body")
            .json(&body)
            .send()
    };
    assert_eq!(
        with_key(json!({"expire_previous": "now"}))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let replayed = with_key(json!({"expire_previous": "now"})).await.unwrap();
    assert_eq!(replayed.headers()["idempotent-replayed"], "true");
    let other = with_key(json!({})).await.unwrap();
    assert_eq!(other.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let other: Value = other.json().await.unwrap();
    assert_eq!(other["errors"][0]["field"], "Idempotency-Key");
    assert_eq!(secrets(&app).await.len(), 1);
}

async fn with_a_key_no_secret_is_stored_in_plaintext(backend: Backend) {
    // The embedded install keeps its generated JWT secret in the database; PostgreSQL is given one.
    let embedded = backend == Backend::Sqlite;
    let keys = key(1);
    let Some(app) = spawn_app_with(backend, |options| {
        options.sealer = sealer(&keys);
        if embedded {
            options.jwt_secret = None;
        }
    })
    .await
    else {
        return;
    };
    let app = if embedded {
        // Tokens are signed with the secret the install generated.
        let jwt = resolve_secret(&app.db, None, &sealer(&keys)).await.unwrap();
        let token = hookbeat_api::auth::mint_token(
            &jwt,
            &app.tenant,
            DEFAULT_SCOPES,
            chrono::Duration::hours(1),
            chrono::Utc::now(),
            None,
        )
        .unwrap();
        let stored = setting::Entity::find_by_id(setting::JWT_SECRET_KEY)
            .one(&app.db)
            .await
            .unwrap()
            .expect("the generated JWT secret is kept");
        assert!(stored.value.starts_with("enc:v1:"), "{}", stored.value);
        assert!(!stored.value.contains(jwt.expose()));
        let mut app = app;
        app.token = token;
        app
    } else {
        app
    };
    let receiver = Receiver::start();
    let first = secrets(&app).await;
    rotate(&app, None).await;
    let valid = secrets(&app).await;
    assert_eq!(valid.len(), 2);
    assert_eq!(valid[1], first[0]);

    let stored = stored_secrets(&app).await;
    assert_eq!(stored.len(), 2);
    for value in &stored {
        assert!(value.starts_with("enc:v1:"), "{value}");
        assert!(!value.contains("whsec_"), "{value}");
        assert!(valid.iter().all(|secret| !value.contains(&secret[6..])));
    }
    let settings = setting::Entity::find().all(&app.db).await.unwrap();
    assert!(settings.iter().all(|s| !s.value.contains("whsec_")));

    let request = deliver(&app, &receiver).await;
    assert_eq!(signatures(&request), 2);
    assert!(signed_with(&valid[0], &request));
    assert!(signed_with(&valid[1], &request));
}

async fn plaintext_rows_are_sealed_on_start_and_a_new_key_reseals(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let secret = secrets(&app).await.remove(0);
    assert_eq!(stored_secrets(&app).await, vec![secret.clone()], "no key");

    let (old, new) = (key(1), key(2));
    let sealed = app
        .restart_with(|options| options.sealer = sealer(&old))
        .await
        .expect("starting with a key");
    let stored = stored_secrets(&sealed).await;
    let old_id = SecretsKeys::parse(&old).unwrap().current_id().to_owned();
    assert!(
        stored[0].starts_with(&format!("enc:v1:{old_id}:")),
        "{stored:?}"
    );
    assert_eq!(secrets(&sealed).await, vec![secret.clone()]);

    // Rotating the key: the new key first, the old one after it.
    let both = format!("{new},{old}");
    let resealed = sealed
        .restart_with(|options| options.sealer = sealer(&both))
        .await
        .expect("starting with a new key first");
    let new_id = SecretsKeys::parse(&new).unwrap().current_id().to_owned();
    let stored = stored_secrets(&resealed).await;
    assert!(
        stored[0].starts_with(&format!("enc:v1:{new_id}:")),
        "{stored:?}"
    );

    // Then the old key can go.
    let rotated = resealed
        .restart_with(|options| options.sealer = sealer(&new))
        .await
        .expect("starting with the new key alone");
    assert_eq!(secrets(&rotated).await, vec![secret.clone()]);
    let request = deliver(&rotated, &receiver).await;
    assert_eq!(signatures(&request), 1);
    assert!(signed_with(&secret, &request));
}

async fn sealed_secrets_without_their_key_refuse_to_start(backend: Backend) {
    let keys = key(1);
    let Some(app) = spawn_app_with(backend, |options| options.sealer = sealer(&keys)).await else {
        return;
    };
    secrets(&app).await;
    let stored = stored_secrets(&app).await;
    for (sealer, why) in [
        (Sealer::plaintext(), "no --secrets-key"),
        (sealer(&key(2)), "not among the keys"),
    ] {
        let refused = app
            .restart_with(|options| options.sealer = sealer)
            .await
            .err()
            .unwrap_or_else(|| panic!("started with {why}"));
        let message = format!("{refused:#}");
        assert!(message.contains(why), "{message}");
        assert!(
            message.contains("--secrets-key (HOOKBEAT_SECRETS_KEY)"),
            "{message}"
        );
    }
    assert_eq!(stored_secrets(&app).await, stored, "nothing was changed");

    // A sealed value moved into another tenant's row does not open there either.
    let other = format!("other-{}", uuid::Uuid::now_v7().simple());
    let other_token = token_for(&other, DEFAULT_SCOPES);
    let theirs = app
        .call_as(&other_token, Method::GET, "/v1/signing-secrets", None)
        .await;
    assert_eq!(theirs.status, StatusCode::OK);
    let their_id: uuid::Uuid = theirs.body["secrets"][0]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut row: signing_secret::ActiveModel = signing_secret::Entity::find_by_id(their_id)
        .one(&app.db)
        .await
        .unwrap()
        .unwrap()
        .into();
    row.secret = sea_orm::Set(stored[0].clone());
    sea_orm::ActiveModelTrait::update(row, &app.db)
        .await
        .unwrap();
    let refused = app
        .restart_with(|options| options.sealer = sealer(&keys))
        .await
        .err()
        .expect("a moved secret stops the start");
    let message = format!("{refused:#}");
    assert!(message.contains(&their_id.to_string()), "{message}");
    assert!(message.contains("copied from another row"), "{message}");
}

on_both_databases!(
    reading_secrets_needs_schedules_write,
    expire_previous_now_leaves_only_the_new_secret,
    rotations_leave_at_most_two_valid_secrets,
    a_rotation_body_is_validated,
    with_a_key_no_secret_is_stored_in_plaintext,
    plaintext_rows_are_sealed_on_start_and_a_new_key_reseals,
    sealed_secrets_without_their_key_refuse_to_start,
);

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `hookbeat serve` creates the embedded database and its `-wal` and `-shm` files readable by
/// their owner only, and warns about a database file that others may read.
#[cfg(unix)]
#[tokio::test]
async fn the_embedded_database_is_created_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hookbeat.db");
    let url = format!("sqlite://{}?mode=rwc", file.display());
    let serve = Process::spawn(&url, &["--listen", "127.0.0.1:0", "serve"]);
    serve.address();
    let files = ["hookbeat.db", "hookbeat.db-wal", "hookbeat.db-shm"].map(|f| dir.path().join(f));
    for path in &files {
        assert_eq!(mode(path), 0o600, "{}", path.display());
    }
    let (_, lines) = serve.terminate_with_logs();
    assert!(
        !lines
            .iter()
            .any(|l| l.contains("read or changed by other users")),
        "{lines:#?}"
    );

    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let serve = Process::spawn(&url, &["--listen", "127.0.0.1:0", "serve"]);
    serve.address();
    let (_, lines) = serve.terminate_with_logs();
    let warning = lines
        .iter()
        .find(|l| l.contains("read or changed by other users"))
        .unwrap_or_else(|| panic!("no warning in {lines:#?}"));
    let event: Value = serde_json::from_str(warning).unwrap();
    assert_eq!(event["level"], "WARN");
    assert_eq!(event["file"], file.display().to_string());
    assert_eq!(event["mode"], "0644");
}

fn hookbeat(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hookbeat"))
        .args(args)
        .env_remove("HOOKBEAT_SECRETS_KEY")
        .env_remove("DATABASE_URL")
        .env_remove("HOOKBEAT_JWT_SECRET")
        .output()
        .expect("running hookbeat")
}

/// A bad `--secrets-key` is refused at start-up with a message that names the flag and does not
/// repeat the key.
#[test]
fn a_bad_secrets_key_is_refused_without_printing_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("t.db").display());
    let short = BASE64.encode([9u8; 16]);
    for (value, reason) in [
        (short.as_str(), "16 bytes, not 32"),
        ("not-base64!", "not valid base64"),
        (&format!("{},{}", key(1), key(1)) as &str, "repeats key 1"),
    ] {
        let out = hookbeat(&[
            "--database-url",
            &url,
            "--secrets-key",
            value,
            "token",
            "--tenant",
            "demo",
        ]);
        assert!(!out.status.success(), "{value}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("--secrets-key"), "{stderr}");
        assert!(stderr.contains(reason), "{stderr}");
        assert!(!stderr.contains(value), "{stderr}");
    }
    assert!(
        !dir.path().join("t.db").exists(),
        "refused before opening anything"
    );
}

/// The real binary: a database sealed by `hookbeat token --secrets-key` (which seals the tenant's
/// first secret and the generated JWT secret) stops `hookbeat serve` without the key, and serves
/// with it.
#[tokio::test]
async fn serve_refuses_a_database_sealed_under_another_key() {
    let db = TestDb::new(Backend::Sqlite).await.unwrap();
    let keys = key(1);
    let token = hookbeat(&[
        "--database-url",
        &db.url,
        "--secrets-key",
        &keys,
        "token",
        "--tenant",
        "demo",
    ]);
    assert!(
        token.status.success(),
        "{}",
        String::from_utf8_lossy(&token.stderr)
    );
    for args in [vec![], vec!["--secrets-key".to_owned(), key(2)]] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookbeat"))
            .args(["--database-url", &db.url, "--listen", "127.0.0.1:0"])
            .args(&args)
            .arg("serve")
            .env_remove("HOOKBEAT_SECRETS_KEY")
            .env("HOOKBEAT_JWT_SECRET", crate::helpers::process::SECRET)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let exited = crate::helpers::eventually(Duration::from_secs(20), || {
            let status = child.try_wait().unwrap();
            async move { status }
        })
        .await;
        let Some(status) = exited else {
            child.kill().ok();
            panic!("serve started with {args:?}");
        };
        assert!(!status.success());
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
        assert!(stderr.contains("cannot start"), "{stderr}");
        assert!(
            stderr.contains("--secrets-key (HOOKBEAT_SECRETS_KEY)"),
            "{stderr}"
        );
    }
    let serve = Process::spawn(
        &db.url,
        &["--listen", "127.0.0.1:0", "--secrets-key", &keys, "serve"],
    );
    serve.address();
    assert!(serve.terminate().success());
}
