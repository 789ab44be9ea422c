//! What operators rely on: the Grafana dashboard and the alert rules name only metrics hookbeat
//! really exports (checked against a live `/metrics`), the dashboard imports anywhere (no
//! hard-coded data source), requests carry an id that the response echoes, and the logs never
//! contain a secret.

use std::collections::BTreeSet;

use chrono::Duration;
use hookbeat_entity::ScheduleId;
use hookbeat_migration::{Migrator, MigratorTrait};

use hookbeat_scheduler::shards::SHARD_COUNT;
use hookbeat_scheduler::{Clock, WorkerConfig};
use reqwest::{Method, StatusCode};
use sea_orm::{ConnectionTrait, DbBackend, EntityTrait, Statement};
use serde_json::{json, Value};

use crate::end_to_end::signing_secrets;
use crate::helpers::app::spawn_app_with;
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

/// Rolls the schema back through the migration `name`, the later ones first.
async fn roll_back_through(db: &sea_orm::DatabaseConnection, name: &str) {
    let steps = Migrator::migrations()
        .iter()
        .rev()
        .position(|m| m.name() == name)
        .expect("a migration of that name")
        + 1;
    Migrator::down(db, Some(steps as u32))
        .await
        .expect("rolling back");
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
    roll_back_through(&app.db, "m20261201_000008_schedule_count").await;
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

/// Migration 9 keeps a run's only attempt in the run's row. Across a rollback and a fresh
/// upgrade every run shows the same attempts as before, whether they were rows (a failure) or the
/// run's sole attempt, and the runs delivered after the upgrade keep theirs in their row again.
async fn the_sole_attempt_migration_keeps_every_attempt(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let first = app
        .create_schedule(json!({
            "name": "first",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": receiver.url}
        }))
        .await;
    let due: chrono::DateTime<chrono::Utc> =
        first["next_run_at"].as_str().unwrap().parse().unwrap();
    // One of the two fires succeeds, the other is refused for good (which one does not matter).
    receiver.script([Reply::status(200).body("first"), Reply::status(400)]);
    app.create_schedule(json!({
        "name": "second",
        "schedule": {"kind": "once", "at": due},
        "target": {"url": receiver.url}
    }))
    .await;
    assert_eq!(app.run_worker_at(due).await.attempts, 2);
    /// Each run's attempts, as the API shows them.
    async fn shown(app: &TestApp) -> std::collections::BTreeMap<String, Value> {
        let runs = app.get("/v1/runs").await.body;
        let mut shown = std::collections::BTreeMap::new();
        for run in runs["items"].as_array().unwrap() {
            let id = run["id"].as_str().unwrap();
            let detail = app.get(&format!("/v1/runs/{id}")).await.body;
            shown.insert(id.to_owned(), detail["attempts"].clone());
        }
        shown
    }
    let before = shown(&app).await;
    assert_eq!(before.len(), 2);
    let outcomes: BTreeSet<String> = before
        .values()
        .map(|attempts| attempts[0]["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["failed".to_owned(), "success".to_owned()].into());
    let rows = || async {
        hookbeat_entity::attempt::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .len()
    };
    assert_eq!(
        rows().await,
        1,
        "the failure has a row, the sole attempt none"
    );

    roll_back_through(&app.db, "m20261201_000009_sole_attempt").await;
    assert_eq!(rows().await, 2, "the sole attempt became a row");
    Migrator::up(&app.db, None).await.expect("applying again");
    assert_eq!(shown(&app).await, before);

    let next = due + Duration::seconds(60);
    assert_eq!(app.run_worker_at(next).await.attempts, 1);
    assert_eq!(
        rows().await,
        2,
        "the next fire's sole attempt stays in its row"
    );
    let after = shown(&app).await;
    assert_eq!(after.len(), 3);
    assert!(before.iter().all(|(id, attempts)| &after[id] == attempts));
}

/// Migration 14: on PostgreSQL a run refers to its schedule and tenant by rule, not by foreign
/// key (SQLite keeps its keys). A database holding runs rolls back (the keys come back, checked
/// against those runs) and upgrades again with every run kept; deleting a schedule still
/// deletes its runs, and only its own.
async fn runs_refer_to_their_schedule_by_rule(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let (ids, due) = app
        .interval_schedules(&["kept", "deleted"], 60, &receiver.url)
        .await;
    assert_eq!(app.run_worker_at(due).await.attempts, 2);
    // A run still waiting, too.
    let triggered = app.trigger(&ids[1]).await;
    assert_eq!(triggered.status, StatusCode::ACCEPTED);

    let foreign_keys = || async {
        let query = match backend {
            Backend::Postgres => {
                "SELECT COUNT(*) AS n FROM pg_constraint \
                 WHERE conrelid = 'runs'::regclass AND contype = 'f'"
            }
            Backend::Sqlite => "SELECT COUNT(*) AS n FROM pragma_foreign_key_list('runs')",
        };
        let row = app
            .db
            .query_one(Statement::from_string(app.db.get_database_backend(), query))
            .await
            .unwrap()
            .unwrap();
        row.try_get::<i64>("", "n").unwrap()
    };
    let runs = || async {
        hookbeat_entity::run::Entity::find()
            .all(&app.db)
            .await
            .unwrap()
            .len()
    };
    let keys = match backend {
        Backend::Postgres => 0,
        Backend::Sqlite => 2,
    };
    assert_eq!(foreign_keys().await, keys);
    assert_eq!(runs().await, 3);

    roll_back_through(&app.db, "m20261202_000014_runs_by_rule").await;
    assert_eq!(foreign_keys().await, 2, "the keys are back");
    assert_eq!(runs().await, 3);
    Migrator::up(&app.db, None).await.expect("applying again");
    assert_eq!(foreign_keys().await, keys);
    assert_eq!(runs().await, 3);

    let deleted = app
        .call(Method::DELETE, &format!("/v1/schedules/{}", ids[1]), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let left = hookbeat_entity::run::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    assert_eq!(
        left.len(),
        1,
        "the deleted schedule's two runs went with it"
    );
    assert_eq!(left[0].schedule_id.to_string(), ids[0]);
}

/// The embedded database truncates its `-wal` file after checkpoints instead of keeping it at
/// its largest size: every connection of both pools carries the limit.
#[tokio::test]
async fn the_sqlite_wal_is_cut_back_after_checkpoints() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    for db in [&app.db, &app.worker_db] {
        let row = db
            .query_one(Statement::from_string(
                DbBackend::Sqlite,
                "PRAGMA journal_size_limit",
            ))
            .await
            .unwrap()
            .unwrap();
        let limit: i64 = row.try_get_by_index(0).unwrap();
        assert_eq!(limit as u64, hookbeat::database::SQLITE_WAL_LIMIT);
    }
}

/// A log sink for one test: everything the current thread's tasks log, as text.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Holds every write to the runs table until dropped: PostgreSQL by a table lock, SQLite by its
/// one write lock.
async fn hold_run_writes(app: &TestApp) -> sea_orm::DatabaseTransaction {
    use sea_orm::TransactionTrait;
    let lock = app.db.begin().await.unwrap();
    let statement = match app.db.get_database_backend() {
        DbBackend::Postgres => "LOCK TABLE runs IN SHARE MODE",
        _ => "DELETE FROM settings WHERE 0 = 1",
    };
    lock.execute_unprepared(statement).await.unwrap();
    lock
}

/// A worker that records nothing while fires have been due for its stall limit says so at warn
/// and in `hookbeat_worker_stalled` / `hookbeat_worker_stalls_total`, and says when it
/// progresses again: here every write to the runs table is held, so the due fires cannot even
/// become runs.
async fn a_stalled_worker_says_so(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let logs = Captured::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The test's runtime has one thread: the worker's tasks log here.
    let _logging = tracing::subscriber::set_default(subscriber);

    let receiver = Receiver::start();
    app.create_minutely_schedules("stall", 3, &receiver.url)
        .await;
    let registry = prometheus::Registry::new();
    let metrics = hookbeat_scheduler::metrics::WorkerMetrics::register(&registry).unwrap();
    let worker = hookbeat_scheduler::Worker::new(
        app.worker_db.clone(),
        std::sync::Arc::new(app.clock.clone()),
        WorkerConfig {
            allow_private_targets: true,
            stall_after: Duration::seconds(20),
            ..WorkerConfig::default()
        },
        metrics.clone(),
        hookbeat_scheduler::notify::Wakeup::new(),
    )
    .unwrap();

    let lock = hold_run_writes(&app).await;
    // The fires are due at +60 s. The worker's clock then moves a second per look (20 ms of
    // real time), so the watch, which looks once a real second, sees the fires wait ever longer
    // while nothing is recorded.
    app.clock.advance(Duration::seconds(60));
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(cancel.clone()));
    let wait = std::time::Duration::from_secs(20);
    let stalled = eventually(wait, || async {
        app.clock.advance(Duration::seconds(1));
        (metrics.worker_stalled.get() == 1).then_some(())
    })
    .await;
    let sent_meanwhile = receiver.received().len();
    drop(lock);
    assert!(stalled.is_some(), "no stall reported:\n{}", logs.text());
    assert_eq!(sent_meanwhile, 0, "a fire was delivered past the lock");
    assert_eq!(metrics.worker_stalls.get(), 1);
    let warned = logs.text();
    assert!(
        warned.contains("WARN") && warned.contains("worker stalled"),
        "{warned}"
    );

    let recovered = eventually(wait, || async {
        (metrics.worker_stalled.get() == 0 && receiver.received().len() == 3).then_some(())
    })
    .await;
    cancel.cancel();
    running.await.unwrap().unwrap();
    assert!(recovered.is_some(), "{}", logs.text());
    assert_eq!(metrics.worker_stalls.get(), 1, "one stall, told once");
    assert!(logs.text().contains("worker progressing again"));
}

/// A worker whose pass waits on the database (every write to the runs table held) still stops
/// when asked, and says so: a SIGTERM never hangs on a stuck statement.
async fn a_worker_waiting_on_the_database_stops_when_asked(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    app.create_minutely_schedules("stuck", 2, &receiver.url)
        .await;
    let lock = hold_run_writes(&app).await;
    app.clock.advance(Duration::seconds(60));
    let worker = app.another_worker(WorkerConfig {
        allow_private_targets: true,
        ..WorkerConfig::default()
    });
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(worker.run(cancel.clone()));
    // Until the worker waits on the held lock: PostgreSQL shows the waiting statement; SQLite's
    // waiting statement holds a pooled connection of the worker's (nothing else of it runs).
    let wait = std::time::Duration::from_secs(10);
    let waiting = eventually(wait, || async {
        let waiting = match app.db.get_database_backend() {
            DbBackend::Postgres => {
                let count = Statement::from_string(
                    DbBackend::Postgres,
                    "SELECT COUNT(*) AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                );
                let row = app.db.query_one(count).await.unwrap().unwrap();
                row.try_get::<i64>("", "n").unwrap() > 0
            }
            _ => {
                let pool = app.worker_db.get_sqlite_connection_pool();
                pool.size() as usize > pool.num_idle()
            }
        };
        waiting.then_some(())
    })
    .await;
    assert!(waiting.is_some(), "the worker never reached the lock");
    cancel.cancel();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), running).await;
    drop(lock);
    assert!(
        matches!(stopped, Ok(Ok(Ok(())))),
        "the worker did not stop within 10 s of being asked: {stopped:?}"
    );
    assert_eq!(receiver.received().len(), 0);
}

/// `hookbeat_wakeups_total{source}` as `/metrics` shows it.
async fn wakeups(app: &TestApp, source: &str) -> f64 {
    let scrape = app.get("/metrics").await.body;
    let text = scrape.as_str().expect("/metrics is text");
    let series = format!("hookbeat_wakeups_total{{source=\"{source}\"}} ");
    text.lines()
        .find_map(|line| line.strip_prefix(series.as_str()))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics"))
}

/// An idle worker stays asleep while schedules that fire after it looks again are created: no
/// pass per create. Something due sooner (a trigger) still wakes it at once.
async fn creating_later_schedules_leaves_an_idle_worker_asleep(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |options| {
        options.worker.max_idle = Duration::hours(1);
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start();
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(app.worker.clone().run(cancel.clone()));
    let wait = std::time::Duration::from_secs(10);
    // Asleep once it holds its shards. Taking them on PostgreSQL wakes it once; a wake-up of
    // our own, seen through, leaves no other pending.
    let ready = eventually(wait, || async { app.worker.readiness().ok() }).await;
    assert!(ready.is_some(), "the worker never took its shards");
    let before = wakeups(&app, "early").await;
    app.wakeup.wake();
    let asleep = eventually(wait, || async {
        let woken = wakeups(&app, "early").await;
        (woken > before)
            .then(|| app.wakeup.asleep_until())
            .flatten()
    })
    .await;
    let looks_again = asleep.expect("the worker never fell asleep");
    assert_eq!(looks_again, app.clock.now() + Duration::hours(1));
    let woken_before = wakeups(&app, "early").await;

    let mut ids = Vec::new();
    for n in 0..20 {
        let made = app
            .create_schedule(json!({
                "name": format!("later-{n}"),
                "schedule": {"kind": "interval", "every_seconds": 7200},
                "target": {"url": receiver.url}
            }))
            .await;
        ids.push(made["id"].as_str().unwrap().to_owned());
    }
    assert_eq!(
        wakeups(&app, "early").await,
        woken_before,
        "a create woke the worker"
    );
    assert_eq!(app.wakeup.asleep_until(), Some(looks_again));

    let triggered = app.trigger(&ids[0]).await;
    assert_eq!(triggered.status, StatusCode::ACCEPTED, "{}", triggered.body);
    let delivered = eventually(wait, || async {
        (receiver.received().len() == 1).then_some(())
    })
    .await;
    cancel.cancel();
    running.await.unwrap().unwrap();
    assert!(delivered.is_some(), "the trigger was not delivered");
    assert!(wakeups(&app, "early").await > woken_before);
}

/// Processes that start together on a fresh database all migrate it: the migrations run one
/// process at a time (an advisory lock on PostgreSQL, a lock file beside SQLite's database),
/// so none fails on a table another has just created.
async fn processes_migrating_a_fresh_database_at_once_all_succeed(backend: Backend) {
    let Some(db) = crate::helpers::db::TestDb::unmigrated(backend).await else {
        return;
    };
    let migrations: Vec<_> = (0..4)
        .map(|_| {
            std::process::Command::new(env!("CARGO_BIN_EXE_hookbeat"))
                .args(["--database-url", &db.url, "migrate"])
                .env_remove("DATABASE_URL")
                .stderr(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("starting hookbeat migrate")
        })
        .collect();
    for migration in migrations {
        let out = migration.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "a concurrent migrate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let conn = sea_orm::Database::connect(&db.url).await.unwrap();
    let pending = Migrator::get_pending_migrations(&conn).await.unwrap();
    assert!(pending.is_empty());
    conn.close().await.ok();
}

on_both_databases!(
    processes_migrating_a_fresh_database_at_once_all_succeed,
    creating_later_schedules_leaves_an_idle_worker_asleep,
    a_worker_waiting_on_the_database_stops_when_asked,
    a_stalled_worker_says_so,
    the_schedule_count_migration_counts_existing_schedules,
    the_sole_attempt_migration_keeps_every_attempt,
    readiness_reports_each_check,
    the_latest_migration_rolls_back_and_applies_again,
    runs_refer_to_their_schedule_by_rule
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
