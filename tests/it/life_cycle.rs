//! The run life cycle, one transition at a time, as `hookbeat_scheduler::runs` offers them:
//! every state a run can be in and every way it leaves it, checked in the database itself.

use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::run::{self, RunStatus};
use hookbeat_entity::{RunId, ScheduleId};
use hookbeat_scheduler::runs::{self, AttemptRecord, Finished, Lease, NewRun, RunUpdate};
use hookbeat_scheduler::Clock;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde_json::json;

use crate::helpers::{spawn_app, Backend, TestApp};
use crate::on_both_databases;

async fn row(app: &TestApp, id: RunId) -> run::Model {
    run::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .expect("the run exists")
}

/// The run's history of attempts, as the API shows it.
async fn attempts_of(app: &TestApp, id: RunId) -> Vec<hookbeat_entity::attempt::Model> {
    runs::attempts_of(&app.db, &row(app, id).await)
        .await
        .unwrap()
}

/// The run's rows of `attempts`.
async fn attempt_rows(app: &TestApp, id: RunId) -> Vec<hookbeat_entity::attempt::Model> {
    hookbeat_entity::attempt::Entity::find()
        .filter(hookbeat_entity::attempt::Column::RunId.eq(id))
        .all(&app.db)
        .await
        .unwrap()
}

fn fire(app: &TestApp, schedule: ScheduleId, at: DateTime<Utc>) -> NewRun {
    NewRun {
        tenant_id: app.tenant.as_str().into(),
        schedule_id: schedule,
        scheduled_for: at,
        trigger: run::trigger::SCHEDULE,
        due_at: at,
    }
}

fn result(run: &run::Model, at: DateTime<Utc>, update: RunUpdate) -> Finished {
    Finished::new(
        run,
        AttemptRecord {
            started_at: at,
            duration_ms: 3,
            outcome: "test",
            status_code: update.status_code,
            error: update.error.clone(),
            response_excerpt: None,
        },
        update,
    )
}

fn update(status: RunStatus, due_at: Option<DateTime<Utc>>, at: DateTime<Utc>) -> RunUpdate {
    let finished = matches!(status, RunStatus::Succeeded | RunStatus::Failed);
    RunUpdate {
        status,
        due_at,
        status_code: Some(if status == RunStatus::Succeeded {
            200
        } else {
            503
        }),
        error: (status != RunStatus::Succeeded).then(|| "receiver answered 503".to_owned()),
        finished_at: finished.then_some(at),
        next_step: None,
        failure: (status == RunStatus::Failed)
            .then(|| json!({"step": 0, "attempts": 2, "failed_step": "target"})),
    }
}

/// insert → claim → hand back → claim → finish (retrying) → claim → lease lost, taken back →
/// claim → worker left, taken back → claim → finish (failed) → redeliver → claim → finish
/// (succeeded) → pruned; and a fire made leased to the worker that offered slots, its lease
/// extended.
async fn every_transition_of_a_run(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let schedule = app
        .create_schedule(json!({
            "name": "life",
            "schedule": {"kind": "interval", "every_seconds": 3600},
            "target": {"url": "http://127.0.0.1:9/"},
        }))
        .await;
    let schedule = ScheduleId(schedule["id"].as_str().unwrap().parse().unwrap());
    let t0 = app.clock.now();
    let lease = Duration::seconds(60);

    // insert: pending, due at its fire; a second insert of the same fire makes nothing.
    let made = runs::insert(&app.db, &[fire(&app, schedule, t0)], t0, None)
        .await
        .unwrap();
    assert_eq!(made.len(), 1);
    let id = made[0].id;
    assert_eq!((made[0].status, made[0].attempts), (RunStatus::Pending, 0));
    assert!(runs::insert(&app.db, &[fire(&app, schedule, t0)], t0, None)
        .await
        .unwrap()
        .is_empty());

    // claim: delivering, leased until the lease's end, the attempt counted.
    let claimed = runs::claim(&app.db, "w1", t0, t0 + lease, 10, &[])
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let r = row(&app, id).await;
    assert_eq!(
        (r.status, r.attempts, r.due_at, r.locked_by.as_deref()),
        (RunStatus::Delivering, 1, Some(t0 + lease), Some("w1"))
    );

    // hand back: pending again, the attempt given back, due when told.
    let again = t0 + Duration::milliseconds(500);
    runs::hand_back(&app.db, "w1", &[id], again, t0)
        .await
        .unwrap();
    let r = row(&app, id).await;
    assert_eq!(
        (r.status, r.attempts, r.due_at, r.locked_by.clone()),
        (RunStatus::Pending, 0, Some(again), None)
    );

    // claim, then finish as retryable: retrying, due at the next attempt.
    let t1 = t0 + Duration::seconds(1);
    let claimed = runs::claim(&app.db, "w1", t1, t1 + lease, 10, &[])
        .await
        .unwrap();
    let next = t1 + Duration::seconds(30);
    let held = runs::finish(
        &app.db,
        "w1",
        &[result(
            &claimed[0],
            t1,
            update(RunStatus::Retrying, Some(next), t1),
        )],
        t1,
    )
    .await
    .unwrap()
    .held;
    assert_eq!(held, vec![true]);
    let r = row(&app, id).await;
    assert_eq!(
        (r.status, r.attempts, r.due_at),
        (RunStatus::Retrying, 1, Some(next))
    );

    // claim at the retry; the lease expires: taken back, retrying, the lost attempt recorded.
    let claimed = runs::claim(&app.db, "w2", next, next + lease, 10, &[])
        .await
        .unwrap();
    assert_eq!(claimed[0].attempts, 2);
    // A lease extended for a long timeout moves its expiry; another worker cannot extend it.
    assert!(
        runs::extend_lease(&app.db, "w2", &claimed[0], next + lease * 2)
            .await
            .unwrap()
    );
    assert!(
        !runs::extend_lease(&app.db, "w9", &claimed[0], next + lease * 3)
            .await
            .unwrap()
    );
    assert_eq!(row(&app, id).await.due_at, Some(next + lease * 2));
    let expired = next + lease * 2;
    assert_eq!(runs::rescue_expired(&app.db, expired, 10).await.unwrap(), 1);
    let r = row(&app, id).await;
    assert_eq!(
        (r.status, r.attempts, r.locked_by.clone()),
        (RunStatus::Retrying, 2, None)
    );
    assert!(r.due_at.unwrap() <= expired);
    assert_eq!(
        r.last_error.as_deref(),
        Some("attempt 2 was lost: the lease of worker w2 expired before it recorded a result")
    );

    // claim; the worker leaves: taken back at once, its lease not yet expired.
    let t2 = expired + Duration::seconds(1);
    runs::claim(&app.db, "w3", t2, t2 + lease, 10, &[])
        .await
        .unwrap();
    assert_eq!(runs::release_owned(&app.db, "w3", t2).await.unwrap(), 1);
    let r = row(&app, id).await;
    assert_eq!(
        (r.status, r.attempts, r.due_at),
        (RunStatus::Retrying, 3, Some(t2))
    );
    assert_eq!(
        r.last_error.as_deref(),
        Some("attempt 3 was abandoned: worker w3 shut down before it recorded a result")
    );

    // claim, then finish for good: failed, with no due time.
    let claimed = runs::claim(&app.db, "w1", t2, t2 + lease, 10, &[])
        .await
        .unwrap();
    // A result from a worker that lost the lease is not applied.
    let stale = runs::finish(
        &app.db,
        "w2",
        &[result(
            &claimed[0],
            t2,
            update(RunStatus::Succeeded, None, t2),
        )],
        t2,
    )
    .await
    .unwrap()
    .held;
    assert_eq!(stale, vec![false]);
    runs::finish(
        &app.db,
        "w1",
        &[result(&claimed[0], t2, update(RunStatus::Failed, None, t2))],
        t2,
    )
    .await
    .unwrap();
    let failed = row(&app, id).await;
    assert_eq!(
        (failed.status, failed.due_at, failed.finished_at),
        (RunStatus::Failed, None, Some(t2))
    );

    // redeliver: pending now, a fresh retry budget from the failure's attempts; only once.
    let t3 = t2 + Duration::seconds(5);
    let queued = runs::redeliver(&app.db, &failed, t3)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            queued.status,
            queued.attempts,
            queued.retry_base,
            queued.due_at,
            queued.finished_at
        ),
        (RunStatus::Pending, 2, 2, Some(t3), None)
    );
    assert!(runs::redeliver(&app.db, &failed, t3)
        .await
        .unwrap()
        .is_none());

    // claim, then finish with a 2xx: succeeded.
    let claimed = runs::claim(&app.db, "w1", t3, t3 + lease, 10, &[])
        .await
        .unwrap();
    runs::finish(
        &app.db,
        "w1",
        &[result(
            &claimed[0],
            t3,
            update(RunStatus::Succeeded, None, t3),
        )],
        t3,
    )
    .await
    .unwrap();
    assert_eq!(row(&app, id).await.status, RunStatus::Succeeded);
    // Every attempt has its record: the retry, the lost and the abandoned attempts, the late
    // result of the worker that had lost its lease, the failure for good, the success.
    assert_eq!(attempts_of(&app, id).await.len(), 6);

    // prune: a finished run older than the cut-off goes, with its attempts.
    assert_eq!(runs::prune_finished(&app.db, t3, 10).await.unwrap(), 0);
    assert_eq!(
        runs::prune_finished(&app.db, t3 + Duration::seconds(1), 10)
            .await
            .unwrap(),
        1
    );
    assert!(run::Entity::find_by_id(id)
        .one(&app.db)
        .await
        .unwrap()
        .is_none());
    assert!(attempt_rows(&app, id).await.is_empty());

    // insert with a lease: due fires go straight to the offering worker, as many as offered.
    let t4 = t3 + Duration::hours(1);
    let offered = Lease {
        worker_id: "w4",
        until: t4 + lease,
        max: 1,
        room: 0,
    };
    let both = [
        fire(&app, schedule, t4),
        fire(&app, schedule, t4 + Duration::hours(1)),
    ];
    let made = runs::insert(&app.db, &both, t4, Some(offered))
        .await
        .unwrap();
    let states: Vec<(RunStatus, i32, Option<&str>)> = made
        .iter()
        .map(|r| (r.status, r.attempts, r.locked_by.as_deref()))
        .collect();
    assert_eq!(
        states,
        vec![
            (RunStatus::Delivering, 1, Some("w4")),
            (RunStatus::Pending, 0, None)
        ],
        "only the fire already due is leased"
    );

    // finish at the first attempt with a 2xx: the run keeps that attempt in its own row, and a
    // result the fence refuses (another worker's) is still kept, as a row.
    let leased = &made[0];
    let success = |worker_at: DateTime<Utc>| {
        let mut done = result(leased, worker_at, update(RunStatus::Succeeded, None, t4));
        done.record.outcome = "success";
        done.record.response_excerpt = Some("ok".to_owned());
        done
    };
    assert_eq!(
        runs::finish(&app.db, "w5", &[success(t4)], t4)
            .await
            .unwrap()
            .held,
        vec![false]
    );
    assert_eq!(attempt_rows(&app, leased.id).await.len(), 1);
    let first_try = t4 + Duration::milliseconds(5);
    assert_eq!(
        runs::finish(&app.db, "w4", &[success(first_try)], first_try)
            .await
            .unwrap()
            .held,
        vec![true]
    );
    assert_eq!(
        attempt_rows(&app, leased.id).await.len(),
        1,
        "the sole attempt has no row of its own"
    );
    let history: Vec<_> = attempts_of(&app, leased.id)
        .await
        .into_iter()
        .map(|a| {
            (
                a.attempt,
                a.started_at,
                a.outcome,
                a.status_code,
                a.response_excerpt,
                a.duration_ms,
            )
        })
        .collect();
    let sole = (
        1,
        first_try,
        "success".to_owned(),
        Some(200),
        Some("ok".to_owned()),
        3,
    );
    let refused = (
        1,
        t4,
        "success".to_owned(),
        Some(200),
        Some("ok".to_owned()),
        3,
    );
    assert_eq!(history, vec![refused, sole]);
}

on_both_databases!(every_transition_of_a_run);
