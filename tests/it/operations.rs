//! What operators rely on: the Grafana dashboard and the alert rules name only metrics hookbeat
//! really exports (checked against a live `/metrics`), the dashboard imports anywhere (no
//! hard-coded data source), requests carry an id that the response echoes, and the logs never
//! contain a secret.

use std::collections::BTreeSet;

use chrono::Duration;
use hookbeat_entity::ScheduleId;
use hookbeat_migration::{Migrator, MigratorTrait};

use hookbeat_scheduler::shards::SHARD_COUNT;
use hookbeat_scheduler::WorkerConfig;
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use serde_json::{json, Value};

use crate::end_to_end::signing_secrets;
use crate::helpers::app::token_for;
use crate::helpers::db::TestDb;
use crate::helpers::process::{token, Process, SECRET};
use crate::helpers::{eventually, spawn_app, Backend, Receiver, Reply, TestApp};
use crate::on_both_databases;

const DASHBOARD: &str = include_str!("../../deploy/grafana/hookbeat.json");
const ALERTS: &str = include_str!("../../deploy/prometheus/hookbeat-alerts.yml");

/// Metric families on a live `/metrics`, after a request so the HTTP series exist.
async fn exported_metrics(app: &TestApp) -> BTreeSet<String> {
    app.get("/v1/schedules").await;
    let scrape = app.get("/metrics").await.body;
    scrape
        .as_str()
        .expect("/metrics is text")
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// Every `hookbeat_…` and `process_…` identifier in a text: a metric name as PromQL uses it.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|word| word.starts_with("hookbeat_") || word.starts_with("process_"))
        .map(str::to_owned)
        .collect()
}

/// The family a series belongs to: histograms are queried through `_bucket`, `_sum`, `_count`.
fn family<'a>(name: &'a str, exported: &BTreeSet<String>) -> &'a str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .filter_map(|suffix| name.strip_suffix(suffix))
        .find(|base| exported.contains(*base))
        .unwrap_or(name)
}

fn unknown_names(text: &str, exported: &BTreeSet<String>) -> Vec<String> {
    metric_names(text)
        .into_iter()
        .filter(|name| !exported.contains(family(name, exported)))
        .collect()
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_use_only_exported_metrics() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let exported = exported_metrics(&app).await;
    for required in [
        "hookbeat_fire_lag_seconds",
        "hookbeat_deliveries_total",
        "hookbeat_http_requests_total",
        "process_resident_memory_bytes",
    ] {
        assert!(
            exported.contains(required),
            "{required} missing: {exported:?}"
        );
    }

    let dashboard: Value = serde_json::from_str(DASHBOARD).expect("the dashboard is JSON");
    let mut expressions = Vec::new();
    collect_strings(&dashboard, "expr", &mut expressions);
    assert!(expressions.len() >= 20, "panels query: {expressions:?}");
    let queried = metric_names(&expressions.join("\n"));
    assert!(
        queried.len() >= 15,
        "the dashboard covers the metrics: {queried:?}"
    );
    assert_eq!(
        unknown_names(&expressions.join("\n"), &exported),
        Vec::<String>::new(),
        "dashboard queries name metrics hookbeat does not export"
    );
    assert_eq!(
        unknown_names(ALERTS, &exported),
        Vec::<String>::new(),
        "alert rules name metrics hookbeat does not export"
    );
}

#[test]
fn the_dashboard_imports_with_any_prometheus_data_source() {
    let dashboard: Value = serde_json::from_str(DASHBOARD).unwrap();
    assert_eq!(dashboard["id"], Value::Null, "an id ties it to one Grafana");
    let variables = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        variables.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "a data-source variable: {variables:?}"
    );
    let mut uids = Vec::new();
    collect_data_source_uids(&dashboard, &mut uids);
    assert!(!uids.is_empty());
    assert!(
        uids.iter().all(|uid| uid == "${datasource}"),
        "every data source is the variable: {uids:?}"
    );
}

/// Calls `visit` with every (key, value) member of every object in `value`, depth first; the
/// walk does not descend into a member `visit` answers `true` for.
fn walk(value: &Value, visit: &mut impl FnMut(&str, &Value) -> bool) {
    match value {
        Value::Object(map) => {
            for (key, member) in map {
                if !visit(key, member) {
                    walk(member, visit);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| walk(item, visit)),
        _ => {}
    }
}

fn collect_strings(value: &Value, key: &str, into: &mut Vec<String>) {
    walk(value, &mut |k, member| match member {
        Value::String(s) if k == key => {
            into.push(s.clone());
            true
        }
        _ => false,
    });
}

fn collect_data_source_uids(value: &Value, into: &mut Vec<String>) {
    walk(value, &mut |key, member| {
        if key != "datasource" {
            return false;
        }
        match member {
            Value::Object(ds) => into.push(ds["uid"].as_str().unwrap_or("").to_owned()),
            // A bare string would be a data source named directly.
            Value::String(name) => into.push(name.clone()),
            _ => {}
        }
        true
    });
}

/// Every response carries the request's id: the caller's, when it sent a usable one.
#[tokio::test]
async fn responses_echo_the_request_id() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let sent = app
        .http
        .get(format!("{}/v1/schedules", app.address))
        .bearer_auth(&app.token)
        .header("x-request-id", "trace-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "trace-4711");

    // Made up when absent, and when the caller's would forge log lines.
    for header in [None, Some("two\twords")] {
        let mut request = app.http.get(format!("{}/v1/nowhere", app.address));
        if let Some(value) = header {
            request = request.header("x-request-id", value);
        }
        let answer = request.send().await.unwrap();
        assert_eq!(answer.status(), 404, "errors carry it too");
        let id = answer.headers()["x-request-id"].to_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "a fresh id: {id}");
    }
}

/// The real binary at its most talkative (debug for every hookbeat crate) while it is handed a
/// token, creates a schedule whose target carries credentials, fails and retries a delivery,
/// shows and rotates signing secrets, and refuses a forged token: no secret reaches the log.
#[tokio::test]
async fn logs_never_contain_secrets() {
    let db = TestDb::new(Backend::Sqlite)
        .await
        .expect("SQLite is always available");
    let serve = Process::spawn_logging(
        &db.url,
        &["--listen", "127.0.0.1:0", "serve"],
        "info,hookbeat=debug,hookbeat_api=debug,hookbeat_scheduler=debug",
    );
    let address = serve.address();
    let token = token(&db.url, "secretive");
    let http = reqwest::Client::new();
    let receiver = Receiver::start();
    receiver.script([Reply::status(500).body("try again")]);
    let target_credential = "Bearer target-credential-7f3a9c";
    let api_key = "api-key-value-51d2e8";
    let created = http
        .post(format!("{address}/v1/schedules"))
        .bearer_auth(&token)
        .json(&json!({
            "name": "with-credentials",
            "schedule": {"kind": "interval", "every_seconds": 1},
            "target": {
                "url": format!("{}/hook", receiver.url),
                "headers": {"authorization": target_credential, "x-api-key": api_key}
            }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let forged = format!("{token}x");
    let refused = http
        .get(format!("{address}/v1/schedules"))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let mut secrets = signing_secrets(&address, &token).await;
    let rotated = http
        .post(format!("{address}/v1/signing-secrets/rotate"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(rotated.status().is_success());
    secrets.extend(signing_secrets(&address, &token).await);
    assert!(secrets.len() >= 2, "{secrets:?}");
    // The failed attempt, its retry and one more fire: failures are logged in detail.
    eventually(std::time::Duration::from_secs(30), || {
        let count = receiver.received().len();
        async move { (count >= 3).then_some(()) }
    })
    .await
    .expect("three deliveries");
    assert_eq!(
        receiver.received()[0].header("authorization"),
        target_credential,
        "the credential was really sent"
    );

    let (status, lines) = serve.terminate_with_logs();
    assert!(status.success());
    let log = lines.join("\n");
    // The log is really there and detailed, so its silence about secrets means something.
    assert!(log.contains("\"request_id\""), "requests are logged");
    assert!(
        log.contains("attempt failed"),
        "the failed attempt is logged"
    );
    let mut forbidden = vec![
        token.clone(),
        SECRET.to_owned(),
        target_credential.to_owned(),
        "target-credential-7f3a9c".to_owned(),
        api_key.to_owned(),
    ];
    for secret in &secrets {
        forbidden.push(secret.clone());
        forbidden.push(secret.trim_start_matches("whsec_").to_owned());
    }
    // A JWT's signature alone is a secret too (the header and claims are not).
    forbidden.push(token.rsplit('.').next().unwrap().to_owned());
    for secret in forbidden {
        assert!(
            !log.contains(&secret),
            "the log contains a secret ({secret}):\n{log}"
        );
    }
}

/// `/readyz` names what it checked, and every check that fails.
async fn readiness_reports_each_check(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.body["checks"]["database"], "reachable");
    assert_eq!(
        ready.body["checks"]["migrations"],
        format!("all {} applied", Migrator::migrations().len())
    );

    // A schema one migration behind the binary is not ready, and says how to fix it.
    app.db
        .execute_unprepared(
            "DELETE FROM seaql_migrations WHERE version = (SELECT MAX(version) FROM seaql_migrations)",
        )
        .await
        .unwrap();
    let behind = app.get("/readyz").await;
    assert_eq!(behind.status, 503);
    assert_eq!(behind.headers["content-type"], "application/problem+json");
    let detail = behind.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("migrations: 1 pending") && detail.contains("hookbeat migrate"),
        "{detail}"
    );
}

/// The latest migration rolls back and applies again, keeping the data: an operator who must
/// step back one release can. Schedules then still fire and are delivered (migration 7 rebuilt
/// the claim indexes both ways).
async fn the_latest_migration_rolls_back_and_applies_again(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "across-the-round-trip",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": receiver.url}
        }))
        .await;
    Migrator::down(&app.db, Some(1))
        .await
        .expect("rolling back");
    assert_eq!(
        Migrator::get_pending_migrations(&app.db)
            .await
            .unwrap()
            .len(),
        1
    );
    Migrator::up(&app.db, None).await.expect("applying again");
    assert!(Migrator::get_pending_migrations(&app.db)
        .await
        .unwrap()
        .is_empty());
    let due = schedule["next_run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.run_worker_at(due).await.attempts, 1);
    assert_eq!(receiver.received().len(), 1);
}

/// Migration 8 fills each tenant's `schedule_count` from the schedules the database holds,
/// whatever the column held before: the quota holds on an upgraded database.
async fn the_schedule_count_migration_counts_existing_schedules(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let schedule = |name: &str| {
        json!({
            "name": name,
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": "https://example.com/"}
        })
    };
    let mut ids = Vec::new();
    for n in 0..3 {
        let created = app.create_schedule(schedule(&format!("mine-{n}"))).await;
        ids.push(
            created["id"]
                .as_str()
                .unwrap()
                .parse::<uuid::Uuid>()
                .unwrap(),
        );
    }
    let other = token_for("other", "schedules:read schedules:write");
    app.create_schedule_as(&other, schedule("theirs")).await;

    // Back to the schema before the count; a schedule goes while it is there.
    let from_eight = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == "m20261201_000008_schedule_count")
        .unwrap()
        + 1;
    Migrator::down(&app.db, Some(from_eight as u32))
        .await
        .expect("rolling back");
    let gone = hookbeat_entity::schedule::Entity::delete_by_id(ScheduleId(ids[0]))
        .exec(&app.db)
        .await
        .unwrap();
    assert_eq!(gone.rows_affected, 1);
    Migrator::up(&app.db, None).await.expect("applying again");

    let counts: std::collections::BTreeMap<String, i64> = hookbeat_entity::tenant::Entity::find()
        .all(&app.db)
        .await
        .unwrap()
        .into_iter()
        .map(|t| (t.id.to_string(), t.schedule_count))
        .filter(|(_, count)| *count > 0)
        .collect();
    assert_eq!(
        counts,
        [(app.tenant.to_string(), 2), ("other".to_owned(), 1)].into()
    );
}

on_both_databases!(
    the_schedule_count_migration_counts_existing_schedules,
    readiness_reports_each_check,
    the_latest_migration_rolls_back_and_applies_again
);

/// The worker's commits do not wait for the WAL flush, the API's do (`database::Pool`): every
/// worker write can be redone after a crash, a created schedule cannot.
#[tokio::test]
async fn only_the_worker_commits_without_waiting_for_the_flush() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    for (pool, db, expected) in [("API", &app.db, "on"), ("worker", &app.worker_db, "off")] {
        let row = db
            .query_one(Statement::from_string(
                DbBackend::Postgres,
                "SHOW synchronous_commit",
            ))
            .await
            .unwrap()
            .unwrap();
        let setting: String = row.try_get("", "synchronous_commit").unwrap();
        assert_eq!(setting, expected, "synchronous_commit of the {pool} pool");
    }
}

/// A worker is ready while it renews its shards (even owning none yet), and not once its
/// heartbeats stop for longer than the shard lease, or after it left.
#[tokio::test]
async fn a_worker_is_ready_while_its_heartbeats_succeed() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let worker = app.another_worker(WorkerConfig {
        worker_id: "readiness".to_owned(),
        ..WorkerConfig::default()
    });
    let not_joined = worker.readiness().unwrap_err();
    assert!(
        not_joined.contains("no successful heartbeat"),
        "{not_joined}"
    );

    worker.heartbeat().await.unwrap();
    assert_eq!(
        worker.readiness(),
        Ok(format!("owns {SHARD_COUNT} of {SHARD_COUNT} shards"))
    );

    app.clock.advance(Duration::seconds(16));
    let stale = worker.readiness().unwrap_err();
    assert!(
        stale.contains("16 s ago") && stale.contains("shard lease (15 s)"),
        "{stale}"
    );

    worker.heartbeat().await.unwrap();
    assert!(worker.readiness().is_ok());
    worker.leave().await.unwrap();
    assert!(
        worker.readiness().is_err(),
        "a worker that left is not ready"
    );
}
