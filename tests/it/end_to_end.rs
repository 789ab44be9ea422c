//! The real binary, as the README runs it: `hookbeat serve` on SQLite, and `hookbeat migrate` +
//! `hookbeat api` + `hookbeat worker` as separate processes on PostgreSQL. These run the real
//! worker loop on the real clock, so they wait with the one polling helper.

use std::process::Command;
use std::time::Duration;

use serde_json::json;

use crate::helpers::db::{Backend, TestDb};
use crate::helpers::process::{token, Process};
use crate::helpers::{eventually, Receiver};

/// Creates a 1-second schedule through the API and waits for two deliveries.
async fn one_second_schedule_is_delivered(address: &str, token: &str) {
    let receiver = Receiver::start();
    let created = reqwest::Client::new()
        .post(format!("{address}/v1/schedules"))
        .bearer_auth(token)
        .json(&json!({
            "name": "every-second",
            "schedule": {"kind": "interval", "every_seconds": 1},
            "target": {"url": format!("{}/tick", receiver.url)}
        }))
        .send()
        .await
        .expect("creating the schedule");
    assert_eq!(created.status(), reqwest::StatusCode::CREATED);
    let delivered = eventually(Duration::from_secs(15), || {
        let receiver = receiver.clone();
        async move { (receiver.received().len() >= 2).then_some(()) }
    })
    .await;
    assert!(
        delivered.is_some(),
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
    let worker = Process::spawn(&db.url, &["worker"]);
    let address = api.address();
    let token = token(&db.url, "split");
    one_second_schedule_is_delivered(&address, &token).await;
    assert!(worker.terminate().success());
    assert!(api.terminate().success());
}
