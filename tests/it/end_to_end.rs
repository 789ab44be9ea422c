//! The real binary, as the README runs it: `hookbeat serve` on SQLite, and `hookbeat migrate` +
//! `hookbeat api` + `hookbeat worker` as separate processes on PostgreSQL. These run the real
//! worker loop on the real clock, so they wait with the one polling helper.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::helpers::db::{Backend, TestDb};
use crate::helpers::process::{token, Process};
use crate::helpers::{eventually, Receiver};

/// Verifies a received request with the official Standard Webhooks library.
fn verify_with(secret: &str, request: &crate::helpers::receiver::Received) -> bool {
    let mut headers = reqwest::header::HeaderMap::new();
    for name in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
        headers.insert(name, request.header(name).parse().unwrap());
    }
    standardwebhooks::Webhook::new(secret)
        .expect("a valid secret")
        .verify(&request.body, &headers)
        .is_ok()
}

pub(crate) async fn signing_secrets(address: &str, token: &str) -> Vec<String> {
    let body: serde_json::Value = reqwest::Client::new()
        .get(format!("{address}/v1/signing-secrets"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    body["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["secret"].as_str().unwrap().to_owned())
        .collect()
}

/// Creates a 1-second schedule through the API, waits for two deliveries and checks their
/// signatures with the official Standard Webhooks library; then rotates the secret and checks
/// that the next delivery verifies with the old secret and with the new one.
async fn one_second_schedule_is_delivered(address: &str, token: &str) {
    let receiver = Receiver::start();
    let created = reqwest::Client::new()
        .post(format!("{address}/v1/schedules"))
        .bearer_auth(token)
        .json(&json!({
            "name": "every-second",
            "schedule": {"kind": "interval", "every_seconds": 1},
            "target": {"url": format!("{}/tick", receiver.url), "body": {"tick": true}}
        }))
        .send()
        .await
        .expect("creating the schedule");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let delivered = |count: usize| {
        let receiver = receiver.clone();
        eventually(Duration::from_secs(15), move || {
            let receiver = receiver.clone();
            async move { (receiver.received().len() >= count).then_some(()) }
        })
    };
    assert!(
        delivered(2).await.is_some(),
        "two deliveries within 15 s; got {}",
        receiver.received().len()
    );
    let got = receiver.received();
    assert_ne!(
        got[0].header("webhook-id"),
        got[1].header("webhook-id"),
        "one run per fire"
    );
    assert!(got.iter().all(|r| r.path == "/tick"));
    let old = signing_secrets(address, token).await;
    assert_eq!(old.len(), 1);
    assert!(
        got.iter().all(|r| verify_with(&old[0], r)),
        "signed with the tenant's secret"
    );

    let rotated = reqwest::Client::new()
        .post(format!("{address}/v1/signing-secrets/rotate"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(rotated.status(), reqwest::StatusCode::OK);
    let secrets = signing_secrets(address, token).await;
    assert_eq!(
        secrets.len(),
        2,
        "the old secret keeps signing beside the new one"
    );
    assert_eq!(secrets[1], old[0]);
    let seen = receiver.received().len();
    assert!(delivered(seen + 2).await.is_some());
    let after = receiver.received()[seen + 1].clone();
    assert_eq!(after.header("webhook-signature").split(' ').count(), 2);
    assert!(
        verify_with(&secrets[0], &after),
        "verifies with the new secret"
    );
    assert!(verify_with(&old[0], &after), "verifies with the old secret");
}

#[tokio::test]
async fn serve_on_sqlite_delivers_and_stops_gracefully() {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("SQLite is always there");
    let serve = Process::spawn(&db.url, &["--listen", "127.0.0.1:0", "serve"]);
    let address = serve.address();
    let token = token(&db.url, "demo");
    one_second_schedule_is_delivered(&address, &token).await;
    assert!(serve.terminate().success(), "exit 0 after SIGTERM");
}

#[tokio::test]
async fn api_and_worker_processes_on_postgres() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let migrate = Command::new(env!("CARGO_BIN_EXE_hookbeat"))
        .args(["--database-url", &db.url, "migrate"])
        .output()
        .unwrap();
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let api = Process::spawn(&db.url, &["--listen", "127.0.0.1:0", "api"]);
    let worker = Process::spawn(&db.url, &["--metrics-listen", "127.0.0.1:0", "worker"]);
    let address = api.address();
    let worker_address = worker.address();
    let token = token(&db.url, "split");
    one_second_schedule_is_delivered(&address, &token).await;
    // The worker-only process serves its own health and metrics.
    let http = reqwest::Client::new();
    let health = http
        .get(format!("{worker_address}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);
    let ready: serde_json::Value = http
        .get(format!("{worker_address}/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        ready["checks"]["worker"], "owns 64 of 64 shards",
        "the only worker holds every shard: {ready}"
    );
    let metrics = http
        .get(format!("{worker_address}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let delivered: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("hookbeat_deliveries_total{outcome=\"success\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no success counter in {metrics}"));
    assert!(delivered >= 4, "the worker counted {delivered} deliveries");
    // Creating the schedule in the API process reached the worker as a NOTIFY.
    let notified: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("hookbeat_wakeups_total{source=\"notify\"} "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no notify counter in {metrics}"));
    assert!(notified >= 1, "the worker received no NOTIFY: {metrics}");
    assert!(
        metrics.contains("hookbeat_db_connections{state=\"idle\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hookbeat_shards_owned 64"),
        "one worker owns every shard"
    );
    assert!(worker.terminate().success());
    assert!(api.terminate().success());
}
