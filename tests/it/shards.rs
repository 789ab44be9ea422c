//! Many workers, one database: shards are shared fairly and move when workers join, leave or
//! die; a fire becomes exactly one run and one delivery however many workers race for it; an
//! expired lease hands a run to another worker with the same webhook-id. Workers are driven by
//! `heartbeat` and `run_once` at instants the test sets, so ownership changes are deterministic.

use std::collections::{HashMap, HashSet};

use chrono::Duration;
use hookbeat_entity::run::RunStatus;
use hookbeat_scheduler::materialise::{materialise_and_lease, materialise_due};
use hookbeat_scheduler::runs::{self, Lease};
use hookbeat_scheduler::shards::{Shards, SHARD_COUNT};
use hookbeat_scheduler::{fairness, Clock, Worker, WorkerConfig};
use sea_orm::ConnectionTrait;
use serde_json::json;

use crate::helpers::app::spawn_app_with;
use crate::helpers::{spawn_app, Backend, Receiver, TestApp};
use crate::on_both_databases;

fn worker(app: &TestApp, id: &str) -> Worker {
    app.another_worker(WorkerConfig {
        worker_id: id.to_owned(),
        allow_private_targets: true,
        // Every test schedule targets one receiver; politeness is tested elsewhere.
        max_in_flight_per_host: 10_000,
        max_in_flight_per_tenant: 10_000,
        ..WorkerConfig::default()
    })
}

/// Creates hourly schedules named `names` and sets the clock to the first instant when all are
/// due; returns it.
async fn hourly_schedules_due(
    app: &TestApp,
    receiver: &Receiver,
    names: &[&str],
) -> chrono::DateTime<chrono::Utc> {
    let (_, due) = app.interval_schedules(names, 3600, &receiver.url).await;
    app.clock.set(due);
    app.clock.now()
}

#[test]
fn the_schema_and_the_scheduler_agree_on_the_shard_count() {
    assert_eq!(hookbeat_migration::SHARDS as u64, SHARD_COUNT);
}

async fn counts(workers: &[&Worker]) -> Vec<usize> {
    let mut counts = Vec::new();
    for w in workers {
        counts.push(w.heartbeat().await.unwrap().len());
    }
    counts
}

#[tokio::test]
async fn shards_are_shared_fairly_and_move_on_join_leave_and_death() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let a = worker(&app, "worker-a");
    let b = worker(&app, "worker-b");
    let c = worker(&app, "worker-c");
    assert_eq!(counts(&[&a]).await, vec![64]);

    // b joins: a gives back b's share at its next heartbeat, b takes it at its own.
    assert_eq!(counts(&[&b]).await, vec![0], "a still holds every shard");
    assert_eq!(counts(&[&a, &b]).await, vec![32, 32]);

    // c joins.
    counts(&[&c, &a, &b]).await;
    let shares = counts(&[&c, &a, &b]).await;
    assert_eq!(shares.iter().sum::<usize>(), 64);
    assert!(shares.iter().all(|n| (21..=22).contains(n)), "{shares:?}");

    // b leaves gracefully: its shards are free at once.
    b.leave().await.unwrap();
    counts(&[&a, &c]).await;
    assert_eq!(counts(&[&a, &c]).await, vec![32, 32]);

    // c dies (stops heartbeating). Within the lease TTL its shards stay put…
    app.clock.advance(Duration::seconds(10));
    assert_eq!(counts(&[&a]).await, vec![32]);
    // …and once the lease expired, a takes them over.
    app.clock.advance(Duration::seconds(6));
    assert_eq!(counts(&[&a]).await, vec![64]);
}

/// 200 schedules due six times each; four workers materialise and deliver at once.
async fn racing_workers_make_and_deliver_each_fire_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    for n in 0..200 {
        app.create_schedule(json!({
            "name": format!("s{n}"),
            "schedule": {"kind": "interval", "every_seconds": 10},
            "target": {"url": receiver.url},
            "catchup": "all"
        }))
        .await;
    }
    // Fires at +10 s … +60 s, all within the misfire grace at +60 s.
    app.clock.advance(Duration::seconds(60));
    let now = app.clock.now();
    // Every worker materialises every shard, racing on the same rows.
    let races = (0..4).map(|_| materialise_due(&app.db, now, 50, Shards::All));
    let reports = futures::future::join_all(races).await;
    let created: usize = reports.into_iter().map(|r| r.unwrap().runs_created).sum();
    assert_eq!(created, 1200, "each fire made exactly one run");

    let workers: Vec<Worker> = (0..4)
        .map(|n| worker(&app, &format!("racer-{n}")))
        .collect();
    let passes = workers.iter().map(|w| w.run_once());
    for report in futures::future::join_all(passes).await {
        report.unwrap();
    }
    let got = receiver.received();
    assert_eq!(got.len(), 1200);
    let ids: HashSet<&str> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1200, "no run delivered twice");
    let mut per_schedule: HashMap<&str, usize> = HashMap::new();
    for r in &got {
        *per_schedule
            .entry(r.header("hookbeat-schedule-id"))
            .or_default() += 1;
    }
    assert_eq!(per_schedule.len(), 200);
    assert!(per_schedule.values().all(|n| *n == 6));
}

/// A worker claims a run and dies: after the lease, another worker delivers the same run.
async fn an_expired_lease_hands_the_run_to_another_worker(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "orphan",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url}
        }))
        .await;
    app.clock
        .set(schedule["next_run_at"].as_str().unwrap().parse().unwrap());
    let now = app.clock.now();
    materialise_due(&app.db, now, 10, Shards::All)
        .await
        .unwrap();
    let lease = Duration::seconds(60);
    let claimed = runs::claim(&app.db, "crashed-worker", now, now + lease, 10, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);

    // While the lease holds, nobody else takes it.
    assert_eq!(
        app.run_worker_at(now + lease - Duration::seconds(1))
            .await
            .attempts,
        0
    );
    assert_eq!(app.run_worker_at(now + lease).await.attempts, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].header("webhook-id"), claimed[0].id.to_string());
    assert_eq!(
        got[0].header("hookbeat-attempt"),
        "2",
        "the lost attempt counts"
    );
    let run = app.get(&format!("/v1/runs/{}", claimed[0].id)).await.body;
    assert_eq!(run["status"], "succeeded");
    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("hookbeat_leases_expired_total 1\n"),
        "{metrics}"
    );
}

/// Results are written back in groups, and the fence still holds row by row: in one group, the
/// run another worker rescued after the lease expired is left alone (its attempt is kept only as
/// history), while the run still held is finished.
async fn a_grouped_write_back_applies_only_where_the_lease_is_still_held(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let now = hourly_schedules_due(&app, &receiver, &["slow-a", "slow-b"]).await;
    materialise_due(&app.db, now, 10, Shards::All)
        .await
        .unwrap();
    // The slow worker holds one run on a short lease, the other on a long one.
    let lease = Duration::seconds(60);
    let mut slow = runs::claim(&app.db, "slow-worker", now, now + lease, 1, &[])
        .await
        .unwrap();
    slow.extend(
        runs::claim(&app.db, "slow-worker", now, now + lease * 10, 1, &[])
            .await
            .unwrap(),
    );
    assert_eq!(slow.len(), 2);
    let later = now + lease;
    assert_eq!(runs::rescue_expired(&app.db, later, 10).await.unwrap(), 1);
    let rescued = runs::claim(&app.db, "rescuer", later, later + lease, 10, &[])
        .await
        .unwrap();
    assert_eq!(rescued.len(), 1);
    let rescued = rescued[0].id;
    assert_eq!(rescued, slow[0].id, "the short lease expired");

    let finished: Vec<runs::Finished> = slow.iter().map(|run| answered(run, later)).collect();
    let held = runs::finish(&app.db, "slow-worker", &finished, later)
        .await
        .unwrap()
        .held;
    let expected: Vec<bool> = slow.iter().map(|run| run.id != rescued).collect();
    assert_eq!(held, expected);

    for run in &slow {
        let detail = app.get(&format!("/v1/runs/{}", run.id)).await.body;
        let attempts = detail["attempts"].as_array().unwrap();
        // The rescue recorded the attempt it took back as lost; the late answer is history too.
        let lost: Vec<_> = attempts
            .iter()
            .filter(|a| a["error"].as_str().is_some_and(|e| e.contains("was lost")))
            .collect();
        let expected_lost = usize::from(run.id == rescued);
        assert_eq!(lost.len(), expected_lost, "{detail}");
        assert_eq!(
            attempts.len(),
            1 + expected_lost,
            "every attempt is history: {detail}"
        );
        assert!(attempts.iter().any(|a| a["outcome"] == "success"));
        let status = if run.id == rescued {
            "delivering"
        } else {
            "succeeded"
        };
        assert_eq!(detail["status"], status, "{detail}");
    }
}

/// The result of an attempt the receiver answered with 200 at `at`.
fn answered(
    run: &hookbeat_entity::run::Model,
    at: chrono::DateTime<chrono::Utc>,
) -> runs::Finished {
    runs::Finished::new(
        run,
        runs::AttemptRecord {
            started_at: at,
            duration_ms: 5,
            outcome: "success",
            status_code: Some(200),
            error: None,
            response_excerpt: None,
        },
        runs::RunUpdate {
            status: RunStatus::Succeeded,
            due_at: None,
            status_code: Some(200),
            error: None,
            finished_at: Some(at),
            next_step: None,
            failure: None,
        },
    )
}

/// A schedule deleted while one of its runs is being delivered takes the run and its history
/// with it; the result that comes back for that run is dropped, and the other results of the
/// same write-back group are still recorded.
async fn a_result_for_a_deleted_schedule_leaves_its_group_recorded(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let now = hourly_schedules_due(&app, &receiver, &["kept", "deleted"]).await;
    materialise_due(&app.db, now, 10, Shards::All)
        .await
        .unwrap();
    let lease = Duration::seconds(60);
    let in_flight = runs::claim(&app.db, "worker", now, now + lease, 10, &[])
        .await
        .unwrap();
    assert_eq!(in_flight.len(), 2);
    let schedules = app.get("/v1/schedules").await.body;
    let deleted_schedule = schedules["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "deleted")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = app
        .call(
            reqwest::Method::DELETE,
            &format!("/v1/schedules/{deleted_schedule}"),
            None,
        )
        .await;
    assert_eq!(answer.status, reqwest::StatusCode::NO_CONTENT);

    let finished: Vec<runs::Finished> = in_flight.iter().map(|run| answered(run, now)).collect();
    let held = runs::finish(&app.db, "worker", &finished, now)
        .await
        .expect("the group is recorded although one of its runs is gone")
        .held;
    let kept: Vec<bool> = in_flight
        .iter()
        .map(|run| run.schedule_id.to_string() != deleted_schedule)
        .collect();
    assert_eq!(held, kept);
    for (run, kept) in in_flight.iter().zip(kept) {
        let detail = app.get(&format!("/v1/runs/{}", run.id)).await;
        if kept {
            assert_eq!(detail.body["status"], "succeeded", "{:?}", detail.body);
            assert_eq!(detail.body["attempts"].as_array().unwrap().len(), 1);
        } else {
            assert_eq!(
                detail.status,
                reqwest::StatusCode::NOT_FOUND,
                "{:?}",
                detail.body
            );
        }
    }
    let orphans = app
        .db
        .query_one(sea_orm::Statement::from_string(
            app.db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM attempts WHERE run_id NOT IN (SELECT id FROM runs)",
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get::<i64>("", "n")
        .unwrap();
    assert_eq!(orphans, 0, "no attempt outlives its run");
}

/// A worker that stops gracefully hands its unfinished runs back at once.
#[tokio::test]
async fn leaving_releases_run_leases_at_once() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "handover",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url}
        }))
        .await;
    app.clock
        .set(schedule["next_run_at"].as_str().unwrap().parse().unwrap());
    let now = app.clock.now();
    let leaving = worker(&app, "leaving-worker");
    leaving.heartbeat().await.unwrap();
    materialise_due(&app.db, now, 10, Shards::All)
        .await
        .unwrap();
    runs::claim(
        &app.db,
        "leaving-worker",
        now,
        now + Duration::seconds(60),
        10,
        &[],
    )
    .await
    .unwrap();
    leaving.leave().await.unwrap();
    assert_eq!(
        app.run_worker().await.attempts,
        1,
        "claimable without waiting for the lease"
    );
    assert_eq!(receiver.received().len(), 1);
}

/// Fires due when they are made go straight to the worker that offered slots, `delivering`,
/// as many as it offered; the rest wait `pending` for any worker's claim. A run leased this way
/// is like a claimed one: if its worker dies, another delivers it after the lease, same id.
async fn fires_due_at_once_are_leased_to_the_worker_that_makes_them(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let now = hourly_schedules_due(&app, &receiver, &["born-a", "born-b"]).await;
    let lease_until = now + Duration::seconds(60);
    let made = materialise_and_lease(
        &app.db,
        now,
        10,
        Shards::All,
        Some(Lease {
            worker_id: "birth-worker",
            until: lease_until,
            max: 1,
            room: 0,
        }),
    )
    .await
    .unwrap();
    assert_eq!(made.report.runs_created, 2);
    assert_eq!(made.leased.len(), 1, "one slot offered, one run leased");
    let born = &made.leased[0];
    assert_eq!(born.status, RunStatus::Delivering);
    assert_eq!(born.locked_by.as_deref(), Some("birth-worker"));
    assert_eq!(born.attempts, 1);
    assert_eq!(born.due_at, Some(lease_until));
    assert!(made.schedules.contains_key(&born.schedule_id));

    // The other fire waits for a claim, and a claim cannot take the leased one.
    let claimed = runs::claim(&app.db, "other-worker", now, lease_until, 10, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_ne!(claimed[0].id, born.id);

    // Both workers die; after the leases, both runs are delivered once, with their ids.
    assert_eq!(app.run_worker_at(lease_until).await.attempts, 2);
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let born_delivery = got
        .iter()
        .find(|r| r.header("webhook-id") == born.id.to_string())
        .expect("the run leased at creation was delivered");
    assert_eq!(born_delivery.header("hookbeat-attempt"), "2");
}

/// A fire due when a pass runs is delivered without a claim: the claims of that pass took
/// nothing, and yet the fire arrived.
async fn a_pass_delivers_a_fresh_fire_without_claiming_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = app
        .create_schedule(json!({
            "name": "fresh",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": receiver.url}
        }))
        .await;
    let report = app
        .run_worker_at(schedule["next_run_at"].as_str().unwrap().parse().unwrap())
        .await;
    assert_eq!((report.runs_created, report.attempts), (1, 1));
    assert_eq!(receiver.received().len(), 1);
    let metrics = app.get("/metrics").await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("hookbeat_claim_batch_size_sum 0\n"),
        "no run was claimed: {metrics}"
    );
    assert!(
        !metrics.contains("hookbeat_claim_batch_size_count 0\n"),
        "the pass did claim (and found nothing): {metrics}"
    );
}

/// Fires beyond the free delivery slots wait in the worker that made them when nothing older
/// waits in the database: one slot, three fires due at once, all delivered and not one claimed
/// (before, the two beyond the slot were made `pending`, a write more each, and claimed).
async fn fires_beyond_the_free_slots_wait_in_the_worker_when_nothing_older_waits(backend: Backend) {
    let Some(app) = spawn_app_with(backend, |options| {
        options.worker.concurrency = 1;
        options.worker.claim_batch = 1;
    })
    .await
    else {
        return;
    };
    let receiver = Receiver::start();
    hourly_schedules_due(&app, &receiver, &["room-a", "room-b", "room-c"]).await;
    let report = app.run_worker().await;
    assert_eq!((report.runs_created, report.attempts), (3, 3));
    assert_eq!(receiver.received().len(), 3);
    assert_eq!(app.metric("hookbeat_claim_batch_size_sum").await, 0.0);
}

/// A fire never overtakes a run already waiting in the database: with one of those due, the
/// fires beyond the free slots are made `pending` and claimed after it, oldest first.
async fn fires_beyond_the_free_slots_queue_behind_an_older_run(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    waiting_runs_and_fresh_fires(&app, &receiver, 1, 3).await;
    /// Materialises at `now`, offering one free slot and room for eight.
    async fn offer_one_slot(app: &TestApp, now: chrono::DateTime<chrono::Utc>) -> (usize, usize) {
        let lease = Lease {
            worker_id: "room-worker",
            until: now + Duration::seconds(60),
            max: 1,
            room: 8,
        };
        let made = materialise_and_lease(&app.db, now, 10, Shards::All, Some(lease))
            .await
            .unwrap();
        (made.report.runs_created, made.leased.len())
    }
    let now = app.clock.now();
    assert_eq!(
        offer_one_slot(&app, now).await,
        (3, 1),
        "only the free slot"
    );

    // With the older run delivered, the same offer leases every fire into the room.
    assert_eq!(app.run_worker().await.attempts, 3);
    let later = now + Duration::hours(1);
    app.clock.set(later);
    assert_eq!(offer_one_slot(&app, later).await, (3, 3), "all leased");
}

/// `waiting` manual runs of a daily schedule (target `/waiting`), due now, and `fresh` hourly
/// schedules (target `/fresh`); the clock is then set to when the fresh ones are all due, after
/// the manual runs.
async fn waiting_runs_and_fresh_fires(
    app: &TestApp,
    receiver: &Receiver,
    waiting: usize,
    fresh: usize,
) {
    let daily = app
        .create_schedule(json!({
            "name": "waiting",
            "schedule": {"kind": "interval", "every_seconds": 86400},
            "target": {"url": format!("{}/waiting", receiver.url)}
        }))
        .await;
    let mut due = Vec::new();
    for n in 0..fresh {
        let hourly = app
            .create_schedule(json!({
                "name": format!("fresh-{n}"),
                "schedule": {"kind": "interval", "every_seconds": 3600},
                "target": {"url": format!("{}/fresh", receiver.url)}
            }))
            .await;
        due.push(hourly["next_run_at"].as_str().unwrap().parse().unwrap());
    }
    let id = daily["id"].as_str().unwrap();
    for _ in 0..waiting {
        let triggered = app.trigger(id).await;
        assert_eq!(triggered.status, reqwest::StatusCode::ACCEPTED);
    }
    app.clock.set(due.into_iter().max().unwrap());
}

fn paths(receiver: &Receiver) -> Vec<String> {
    receiver.received().iter().map(|r| r.path.clone()).collect()
}

/// Runs already waiting go before fresh fires when there is no slot to share: with one slot per
/// pass, two waiting runs and a fresh fire are delivered one at a time, and the fire last.
/// (Leasing the fire as it was made while a run waited would have sent it with the first.)
async fn runs_waiting_are_served_before_fresh_fires_are_leased(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    waiting_runs_and_fresh_fires(&app, &receiver, 2, 1).await;
    let one_at_a_time = app.another_worker(WorkerConfig {
        worker_id: "one-slot".to_owned(),
        allow_private_targets: true,
        claim_batch: 1,
        ..WorkerConfig::default()
    });
    assert_eq!(one_at_a_time.run_once().await.unwrap().attempts, 3);
    assert_eq!(paths(&receiver), ["/waiting", "/waiting", "/fresh"]);
}

/// While fires keep coming due, they get half the slots even though runs wait, so a backlog
/// does not make every fire queue behind it. Two slots, one schedule materialised per pass, four
/// waiting runs and two fresh fires: the second fire goes out alongside the third waiting run,
/// before the fourth. (Were every fire queued behind the backlog, all four waiting runs would go
/// first.)
async fn fires_coming_due_share_the_slots_with_a_backlog(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    waiting_runs_and_fresh_fires(&app, &receiver, 4, 2).await;
    let two_slots = app.another_worker(WorkerConfig {
        worker_id: "two-slots".to_owned(),
        allow_private_targets: true,
        claim_batch: 2,
        materialise_batch: 1,
        ..WorkerConfig::default()
    });
    assert_eq!(two_slots.run_once().await.unwrap().attempts, 6);
    let paths = paths(&receiver);
    let first_fresh = paths.iter().position(|p| p == "/fresh").unwrap();
    let last_waiting = paths.iter().rposition(|p| p == "/waiting").unwrap();
    assert!(
        first_fresh < last_waiting,
        "expected a fresh fire to go out while runs still waited: {paths:?}"
    );
    assert_eq!(
        &paths[..2],
        ["/waiting", "/waiting"],
        "the first pass serves the backlog"
    );
}

on_both_databases!(
    racing_workers_make_and_deliver_each_fire_once,
    an_expired_lease_hands_the_run_to_another_worker,
    a_grouped_write_back_applies_only_where_the_lease_is_still_held,
    a_result_for_a_deleted_schedule_leaves_its_group_recorded,
    fires_due_at_once_are_leased_to_the_worker_that_makes_them,
    a_pass_delivers_a_fresh_fire_without_claiming_it,
    runs_waiting_are_served_before_fresh_fires_are_leased,
    fires_coming_due_share_the_slots_with_a_backlog,
    fires_beyond_the_free_slots_wait_in_the_worker_when_nothing_older_waits,
    fires_beyond_the_free_slots_queue_behind_an_older_run,
);

/// One tenant with 300 due runs, another with one: the small tenant's run is in the first batch.
#[tokio::test]
async fn a_tenant_backlog_does_not_starve_other_tenants() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let receiver = Receiver::start();
    for n in 0..50 {
        app.create_schedule(json!({
            "name": format!("busy-{n}"),
            "schedule": {"kind": "interval", "every_seconds": 10},
            "target": {"url": format!("{}/busy", receiver.url)},
            "catchup": "all"
        }))
        .await;
    }
    let quiet_token =
        crate::helpers::app::token_for("quiet-tenant", "schedules:read schedules:write");
    app.create_schedule_as(
        &quiet_token,
        json!({
            "name": "quiet",
            "schedule": {"kind": "interval", "every_seconds": 60},
            "target": {"url": format!("{}/quiet", receiver.url)}
        }),
    )
    .await;
    app.clock.advance(Duration::seconds(60));
    let now = app.clock.now();
    let made = materialise_due(&app.db, now, 100, Shards::All)
        .await
        .unwrap();
    assert_eq!(made.runs_created, 301);

    let mut rotation = fairness::Rotation::default();
    let lease = now + Duration::seconds(60);
    let batch = fairness::claim_fair(&app.db, "fair-worker", now, lease, 10, &mut rotation, &[])
        .await
        .unwrap();
    assert_eq!(batch.len(), 10, "the batch is filled");
    assert_eq!(
        batch
            .iter()
            .filter(|r| r.tenant_id.as_str() == "quiet-tenant")
            .count(),
        1,
        "the quiet tenant's run is in the first batch"
    );
    // Within the busy tenant, the oldest runs go first.
    let earliest = now - Duration::seconds(50);
    assert!(batch
        .iter()
        .filter(|r| r.tenant_id.as_str() == app.tenant)
        .all(|r| r.scheduled_for == earliest));
}

/// With more tenants due than free slots, a fair claim still takes no more than the slots (one
/// run each for as many tenants as fit), and the next claim serves the tenant left out.
#[tokio::test]
async fn a_fair_claim_never_exceeds_its_limit() {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let receiver = Receiver::start();
    for tenant in ["tenant-a", "tenant-b", "tenant-c"] {
        let token = crate::helpers::app::token_for(tenant, "schedules:read schedules:write");
        app.create_schedule_as(
            &token,
            json!({
                "name": "minutely",
                "schedule": {"kind": "interval", "every_seconds": 60},
                "target": {"url": format!("{}/{tenant}", receiver.url)}
            }),
        )
        .await;
    }
    app.clock.advance(Duration::seconds(60));
    let now = app.clock.now();
    let made = materialise_due(&app.db, now, 100, Shards::All)
        .await
        .unwrap();
    assert_eq!(made.runs_created, 3);

    let mut rotation = fairness::Rotation::default();
    let lease = now + Duration::seconds(60);
    let first = fairness::claim_fair(&app.db, "fair-worker", now, lease, 2, &mut rotation, &[])
        .await
        .unwrap();
    let second = fairness::claim_fair(&app.db, "fair-worker", now, lease, 2, &mut rotation, &[])
        .await
        .unwrap();
    assert_eq!(first.len(), 2, "two slots, two runs");
    assert_eq!(second.len(), 1);
    let tenants: HashSet<_> = first.iter().chain(&second).map(|r| &r.tenant_id).collect();
    assert_eq!(tenants.len(), 3, "every tenant served: {tenants:?}");
}
