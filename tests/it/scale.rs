//! Real worker processes against one PostgreSQL: four workers and the API deliver 2,000
//! schedules firing every 1–5 s for a minute, while one worker is killed with SIGKILL midway.
//! Every expected fire is delivered; the only duplicates are deliveries that were in flight at
//! the kill, and they carry the same webhook-id. Shards are shared within ±1 before and after.
//! Schedule health survives the kill: each schedule's recorded health is what its runs say, and
//! each schedule whose receiver always fails was announced failing once (one `webhook-id`).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use sea_orm::{ConnectionTrait, Database, FromQueryResult, Statement};
use serde_json::json;

use crate::helpers::db::{Backend, TestDb};
use crate::helpers::process::{token, Process};
use crate::helpers::receiver::Received;
use crate::helpers::{eventually, Receiver, Reply};

const SCHEDULES: usize = 2_000;
const WORKERS: usize = 4;
/// How long the schedules fire before the expected set is cut off.
const RUN_FOR: Duration = Duration::from_secs(60);
const KILL_AFTER: Duration = Duration::from_secs(25);
/// Schedules whose receiver answers 500 to everything, each run tried once.
const FAILING: usize = 40;

/// A fire: (schedule id, scheduled-for as the `hookbeat-scheduled-for` header writes it).
type Fire = (String, String);

fn fire_of(request: &Received) -> Fire {
    (
        request.header("hookbeat-schedule-id").to_owned(),
        request.header("hookbeat-scheduled-for").to_owned(),
    )
}

/// Every fire of interval schedules `(id, every_seconds, first fire)` up to `cutoff`.
fn fires_until(schedules: &[(String, i64, DateTime<Utc>)], cutoff: DateTime<Utc>) -> HashSet<Fire> {
    let mut fires = HashSet::new();
    for (id, every, first) in schedules {
        let mut fire = *first;
        while fire <= cutoff {
            fires.insert((
                id.clone(),
                fire.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ));
            fire += chrono::Duration::seconds(*every);
        }
    }
    fires
}

/// Waits until the receiver got every expected fire; whether it did within `timeout`. Only the
/// requests that arrived since the last look are read, so waiting costs the receiver nothing.
async fn all_delivered(receiver: &Receiver, expected: &HashSet<Fire>, timeout: Duration) -> bool {
    let missing = std::sync::Mutex::new(expected.clone());
    let seen = std::sync::atomic::AtomicUsize::new(0);
    eventually(timeout, || async {
        let from = seen.load(std::sync::atomic::Ordering::SeqCst);
        let fires: Vec<Fire> = receiver.inspect_from(from, |new| new.iter().map(fire_of).collect());
        seen.store(from + fires.len(), std::sync::atomic::Ordering::SeqCst);
        let mut missing = missing.lock().unwrap();
        for fire in &fires {
            missing.remove(fire);
        }
        missing.is_empty().then_some(())
    })
    .await
    .is_some()
}

#[derive(FromQueryResult)]
struct StatusCount {
    status: String,
    runs: i64,
}

/// Runs by status, to tell a fire never made from one made but not delivered.
async fn run_statuses(url: &str) -> Vec<String> {
    let db = Database::connect(url).await.unwrap();
    let rows = StatusCount::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT status, COUNT(*) AS runs FROM runs GROUP BY status ORDER BY status",
    ))
    .all(&db)
    .await
    .unwrap();
    db.close().await.ok();
    rows.into_iter()
        .map(|r| format!("{}: {}", r.status, r.runs))
        .collect()
}

#[derive(Debug, FromQueryResult)]
struct HealthAndRuns {
    name: String,
    failures: i32,
    last_success_at: Option<DateTime<Utc>>,
    failing_since: Option<DateTime<Utc>>,
    failed_runs: i64,
    last_succeeded: Option<DateTime<Utc>>,
    unfinished: i64,
}

/// Each schedule's recorded health beside what its runs say.
async fn health_and_runs(url: &str) -> Vec<HealthAndRuns> {
    let db = Database::connect(url).await.unwrap();
    let rows = HealthAndRuns::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT s.name, COALESCE(h.consecutive_failures, 0) AS failures, h.last_success_at, \
         h.failing_since, \
         (SELECT COUNT(*) FROM runs r WHERE r.schedule_id = s.id AND r.status = 'failed') \
           AS failed_runs, \
         (SELECT MAX(r.finished_at) FROM runs r WHERE r.schedule_id = s.id \
           AND r.status = 'succeeded') AS last_succeeded, \
         (SELECT COUNT(*) FROM runs r WHERE r.schedule_id = s.id \
           AND r.status NOT IN ('succeeded', 'failed')) AS unfinished \
         FROM schedules s LEFT JOIN schedule_health h ON h.schedule_id = s.id",
    ))
    .all(&db)
    .await
    .unwrap();
    db.close().await.ok();
    rows
}

#[derive(FromQueryResult)]
struct NoticeCount {
    notices: i64,
}

/// How many notices each schedule with any was issued.
async fn notices_per_schedule(url: &str) -> Vec<i64> {
    let db = Database::connect(url).await.unwrap();
    let rows = NoticeCount::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT COUNT(*) AS notices FROM notices GROUP BY schedule_id",
    ))
    .all(&db)
    .await
    .unwrap();
    db.close().await.ok();
    rows.into_iter().map(|r| r.notices).collect()
}

#[derive(FromQueryResult)]
struct Owned {
    owner: Option<String>,
    shards: i64,
}

/// Shards owned per live worker, once every shard is owned.
async fn shard_shares(url: &str) -> Option<Vec<i64>> {
    let db = Database::connect(url).await.ok()?;
    let rows = Owned::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        "SELECT owner, COUNT(*) AS shards FROM shard_leases GROUP BY owner",
    ))
    .all(&db)
    .await
    .ok()?;
    db.close().await.ok();
    if rows.iter().any(|r| r.owner.is_none()) {
        return None;
    }
    let mut shares: Vec<i64> = rows.into_iter().map(|r| r.shards).collect();
    shares.sort_unstable();
    Some(shares)
}

async fn fair_within_one(url: &str, workers: usize) -> Vec<i64> {
    eventually(Duration::from_secs(40), || async {
        shard_shares(url).await.filter(|shares| {
            shares.len() == workers
                && shares.iter().max().unwrap() - shares.iter().min().unwrap() <= 1
        })
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "shards not shared fairly among {workers} workers: {:?}",
            futures::executor::block_on(shard_shares(url))
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_workers_deliver_every_fire_once_through_a_kill() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let api = Process::spawn(&db.url, &["--listen", "127.0.0.1:0", "api"]);
    let mut workers: Vec<Option<Process>> = (0..WORKERS)
        .map(|_| Some(Process::spawn(&db.url, &["worker"])))
        .collect();
    let address = api.address();
    let token = token(&db.url, "scale");
    // The default quotas (100 requests a second) would throttle creating 2,000 schedules at once.
    let admin = crate::helpers::process::token_with_scope(&db.url, "operator", "admin");
    let raised = reqwest::Client::new()
        .patch(format!("{address}/v1/tenants/scale"))
        .bearer_auth(&admin)
        .json(&json!({"api_rate_per_second": 100_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(raised.status(), reqwest::StatusCode::OK);
    let receiver = Receiver::start();
    assert_eq!(
        fair_within_one(&db.url, WORKERS).await,
        vec![16, 16, 16, 16]
    );

    // Create the schedules, 16 requests at a time. They stop firing at `end_at`, so that what
    // is due when the run ends is the backlog alone.
    let client = reqwest::Client::new();
    let end_at = Utc::now() + chrono::Duration::from_std(RUN_FOR).unwrap();
    let created: Vec<(String, i64, DateTime<Utc>)> = futures::stream::iter(0..SCHEDULES)
        .map(|n| {
            let client = client.clone();
            let (address, token, url) = (address.clone(), token.clone(), receiver.url.clone());
            async move {
                let every = 1 + (n % 5) as i64;
                let response = client
                    .post(format!("{address}/v1/schedules"))
                    .bearer_auth(&token)
                    .json(&json!({
                        "name": format!("scale-{n}"),
                        "schedule": {"kind": "interval", "every_seconds": every},
                        "target": {"url": url},
                        "catchup": "all",
                        "end_at": end_at.to_rfc3339()
                    }))
                    .send()
                    .await
                    .expect("creating a schedule");
                assert_eq!(response.status(), reqwest::StatusCode::CREATED);
                let body: serde_json::Value = response.json().await.unwrap();
                let first: DateTime<Utc> = body["next_run_at"].as_str().unwrap().parse().unwrap();
                (body["id"].as_str().unwrap().to_owned(), every, first)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    // Schedules that only ever fail, announced to a notice receiver after 3 in a row.
    let failing_receiver = Receiver::start();
    failing_receiver.script((0..FAILING * 40).map(|_| Reply::status(500)));
    let notices = Receiver::start();
    for n in 0..FAILING {
        let response = client
            .post(format!("{address}/v1/schedules"))
            .bearer_auth(&token)
            .json(&json!({
                "name": format!("failing-{n}"),
                "schedule": {"kind": "interval", "every_seconds": 2},
                "target": {"url": failing_receiver.url},
                "retry": {"max_attempts": 1},
                "notify": {"url": notices.url, "after_failures": 3},
                "end_at": end_at.to_rfc3339()
            }))
            .send()
            .await
            .expect("creating a failing schedule");
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    }
    let started = Instant::now();

    tokio::time::sleep(KILL_AFTER).await;
    workers[1].take().unwrap().kill();
    // The dead worker's shards move once its lease (15 s) expires, at the next heartbeat.
    assert_eq!(
        fair_within_one(&db.url, WORKERS - 1).await,
        vec![21, 21, 22]
    );

    let expected = fires_until(&created, end_at);
    tokio::time::sleep(RUN_FOR.saturating_sub(started.elapsed())).await;
    // Runs the killed worker held come back when their 60 s lease expires.
    let complete = all_delivered(&receiver, &expected, Duration::from_secs(120)).await;
    let got = receiver.received();
    let mut deliveries: HashMap<Fire, Vec<String>> = HashMap::new();
    for r in &got {
        deliveries
            .entry(fire_of(r))
            .or_default()
            .push(r.header("webhook-id").to_owned());
    }
    let lost: Vec<_> = expected
        .iter()
        .filter(|fire| !deliveries.contains_key(*fire))
        .take(5)
        .collect();
    let statuses = if complete {
        Vec::new()
    } else {
        run_statuses(&db.url).await
    };
    assert!(
        complete,
        "{} expected fires, lost e.g. {lost:?}; runs by status: {statuses:?}",
        expected.len()
    );
    let duplicated: Vec<_> = deliveries.iter().filter(|(_, ids)| ids.len() > 1).collect();
    for (fire, ids) in &duplicated {
        assert!(
            ids.iter().all(|id| id == &ids[0]),
            "{fire:?} delivered as different runs: {ids:?}"
        );
    }
    // At most what one worker can have in flight (its 256 delivery slots).
    assert!(
        duplicated.len() <= 256,
        "{} duplicated fires",
        duplicated.len()
    );
    eprintln!(
        "scale: {} expected fires, {} deliveries, {} fires repeated after the kill",
        expected.len(),
        got.len(),
        duplicated.len()
    );

    // Health through the kill: once every run is finished, each schedule's health is what its
    // runs say, and every failing schedule was announced once.
    let settled = eventually(Duration::from_secs(120), || async {
        let rows = health_and_runs(&db.url).await;
        rows.iter().all(|r| r.unfinished == 0).then_some(rows)
    })
    .await
    .expect("every run finished");
    for row in &settled {
        if row.name.starts_with("failing-") {
            assert!(row.failed_runs >= 3, "{row:?}");
            assert_eq!(i64::from(row.failures), row.failed_runs, "{row:?}");
            assert!(row.failing_since.is_some(), "{row:?}");
            assert_eq!(row.last_success_at, None, "{row:?}");
        } else {
            assert_eq!(row.failures, 0, "{row:?}");
            assert_eq!(row.failing_since, None, "{row:?}");
            assert_eq!(row.last_success_at, row.last_succeeded, "{row:?}");
        }
    }
    let announced = eventually(Duration::from_secs(150), || async {
        let mut ids: HashMap<String, HashSet<String>> = HashMap::new();
        for notice in notices.received() {
            let body: serde_json::Value = serde_json::from_slice(&notice.body).unwrap();
            assert_eq!(body["transition"], "failing", "{body}");
            ids.entry(body["schedule"]["name"].as_str().unwrap().to_owned())
                .or_default()
                .insert(notice.header("webhook-id").to_owned());
        }
        (ids.len() == FAILING).then_some(ids)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "{} notices for {FAILING} failing schedules",
            notices.received().len()
        )
    });
    for (name, ids) in &announced {
        assert_eq!(
            ids.len(),
            1,
            "{name} announced as different notices: {ids:?}"
        );
    }
    // The notices issued are rows: one per failing schedule, whatever is still on its way.
    assert_eq!(notices_per_schedule(&db.url).await, vec![1; FAILING]);
    eprintln!(
        "scale: {FAILING} failing schedules, {} notices received, {} distinct",
        notices.received().len(),
        announced.len()
    );

    for worker in workers.into_iter().flatten() {
        assert!(worker.terminate().success());
    }
    assert!(api.terminate().success());
}

/// A worker whose database connections drop and stay refused for a while backs off, reconnects
/// and catches up: with `catchup: all`, no fire is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_survives_losing_its_database() {
    let Some(db) = TestDb::new(Backend::Postgres).await else {
        return;
    };
    let postgres: std::net::SocketAddr = "127.0.0.1:5432".parse().unwrap();
    let proxy = crate::helpers::proxy::Proxy::start(postgres).await;
    let mut through_proxy = url::Url::parse(&db.url).unwrap();
    through_proxy.set_port(Some(proxy.address.port())).unwrap();
    let api = Process::spawn(&db.url, &["--listen", "127.0.0.1:0", "api"]);
    let worker = Process::spawn(through_proxy.as_str(), &["worker"]);
    let address = api.address();
    let token = token(&db.url, "faults");
    let receiver = Receiver::start();
    let client = reqwest::Client::new();
    let mut created = Vec::new();
    for n in 0..20 {
        let body: serde_json::Value = client
            .post(format!("{address}/v1/schedules"))
            .bearer_auth(&token)
            .json(&json!({
                "name": format!("fault-{n}"),
                "schedule": {"kind": "interval", "every_seconds": 1},
                "target": {"url": receiver.url},
                "catchup": "all"
            }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let first: DateTime<Utc> = body["next_run_at"].as_str().unwrap().parse().unwrap();
        created.push((body["id"].as_str().unwrap().to_owned(), 1, first));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = receiver.received().len();
    proxy.cut();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = receiver.received().len();
    proxy.restore();
    let cutoff = Utc::now() + chrono::Duration::seconds(3);

    let expected = fires_until(&created, cutoff);
    let caught_up = all_delivered(&receiver, &expected, Duration::from_secs(60)).await;
    eprintln!(
        "faults: {before} deliveries before the cut, {} during it, {} fires expected",
        during - before,
        expected.len()
    );
    assert!(before > 0, "deliveries before the cut");
    // A few deliveries already claimed may finish during the cut; nothing new is materialised.
    assert!(
        during - before <= 40,
        "{} deliveries while the database was unreachable",
        during - before
    );
    assert!(
        caught_up,
        "every fire up to the cut-off delivered after the database came back"
    );
    assert!(worker.terminate().success());
    assert!(api.terminate().success());
}
