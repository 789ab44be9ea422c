//! Notices: the failing episode of a schedule (opened when its last `after_failures` runs failed
//! for good, closed by its next success), the pause after `pause_after_failures`, and the notice
//! each of these transitions issues to the schedule's `notify` target (or its tenant's): a row
//! of its own, written in the write-back's transaction with the change that made it, and then
//! delivered and retried by a worker until its target answers or its attempts run out.

use std::collections::{BTreeMap, HashMap};

use anyhow::Context;
use chrono::{DateTime, Duration, Utc};
use hookbeat_entity::{RunId, ScheduleId, TenantId};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, Value};
use serde_json::json;
use uuid::Uuid;

use crate::definition::{Notify, RetryPolicy};
use crate::deliver::AttemptResult;
use crate::health::{After, Change};
use crate::retry::Verdict;
use crate::sql::{delete_before, placeholder_rows, placeholders, statement};

/// What a notice announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// The schedule's last `after_failures` runs failed for good.
    Failing,
    /// A run succeeded after the schedule was failing.
    Recovered,
    /// The schedule paused itself after `pause_after_failures` runs failed for good.
    Paused,
}

impl Transition {
    pub const ALL: [Transition; 3] = [Self::Failing, Self::Recovered, Self::Paused];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Failing => "failing",
            Self::Recovered => "recovered",
            Self::Paused => "paused",
        }
    }
}

/// Whether a notice is still being delivered.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const DELIVERED: &str = "delivered";
    pub const FAILED: &str = "failed";
}

/// What the transitions of a group need to know of each schedule that may have moved.
#[derive(Debug, FromQueryResult)]
struct Subject {
    id: ScheduleId,
    tenant_id: TenantId,
    name: String,
    enabled: bool,
    notify: Option<serde_json::Value>,
    pause_after_failures: Option<i32>,
    tenant_notify: Option<serde_json::Value>,
}

const SUBJECTS: &str = "SELECT s.id, s.tenant_id, s.name, s.enabled, s.notify, \
     s.pause_after_failures, t.notify AS tenant_notify \
     FROM schedules s JOIN tenants t ON t.id = s.tenant_id WHERE s.id IN {ids}";

/// Opens or closes failing episodes: `{rows}` is a `VALUES` list of (schedule, failures, failing
/// since, the resets it began at); the rows exist, the group's health write made them.
const EPISODES: &str = "INSERT INTO schedule_health (schedule_id, consecutive_failures, \
     failing_since, episode_resets) VALUES {rows} \
     ON CONFLICT (schedule_id) DO UPDATE SET failing_since = excluded.failing_since, \
     episode_resets = excluded.episode_resets";
const EPISODE_COLUMNS: usize = 4;

const ISSUE: &str = "INSERT INTO notices (id, tenant_id, schedule_id, transition, target, body, \
     status, attempts, next_attempt_at, created_at) VALUES {rows}";
const ISSUE_COLUMNS: usize = 10;

/// One schedule's moves in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Moves {
    /// The failing episode as it is after the group: since when, and the resets it began at.
    failing_since: Option<DateTime<Utc>>,
    episode_resets: Option<i32>,
    recovered: bool,
    failing: bool,
    /// Whether a failure of the group brought it to its `pause_after_failures` while enabled.
    pause: bool,
}

/// The moves `after` (the health a group left, with the episode as it was) makes, for a
/// schedule `failing_after` runs in a row make failing and `pause_after` pause. Only a group
/// with a failure after its last success opens an episode or pauses.
fn moves(
    change: &Change,
    after: &After,
    failing_after: i32,
    pause_after: Option<i32>,
    enabled: bool,
    now: DateTime<Utc>,
) -> Moves {
    let failures = after.consecutive_failures;
    let failed_last = change.failures > 0;
    let recovered = after.recovered();
    let failing =
        failed_last && failures >= failing_after && (after.failing_since.is_none() || recovered);
    let (failing_since, episode_resets) = if failing {
        (Some(now), Some(after.resets))
    } else if recovered {
        (None, None)
    } else {
        (after.failing_since, after.episode_resets)
    };
    Moves {
        failing_since,
        episode_resets,
        recovered,
        failing,
        pause: enabled && failed_last && pause_after.is_some_and(|n| failures >= n),
    }
}

/// A notice about to be issued.
struct Issue {
    id: Uuid,
    tenant_id: TenantId,
    schedule_id: ScheduleId,
    transition: Transition,
    target: Notify,
    body: serde_json::Value,
}

/// What a group did to one schedule that may have moved, and where its notices go.
struct Planned<'a> {
    subject: &'a Subject,
    change: &'a Change,
    after: &'a After,
    moves: Moves,
    failing_after: i32,
    target: Option<Notify>,
}

impl Planned<'_> {
    /// The notice's body: what happened to which schedule, with the run that made it happen
    /// and the API paths to look further.
    fn body(
        &self,
        id: Uuid,
        transition: Transition,
        paused_reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> serde_json::Value {
        let schedule = self.subject.id;
        let failed = self.change.last_failed.as_ref();
        let (run, last_error) = match transition {
            Transition::Recovered => (self.change.last_succeeded, None),
            Transition::Failing | Transition::Paused => (
                failed.map(|(id, _)| *id),
                failed.and_then(|(_, error)| error.clone()),
            ),
        };
        json!({
            "type": format!("schedule.{}", transition.as_str()),
            "notice_id": id,
            "transition": transition.as_str(),
            "occurred_at": now,
            "schedule": {"id": schedule, "name": self.subject.name},
            "consecutive_failures": self.after.consecutive_failures,
            "failing_after": self.failing_after,
            "failing_since": match transition {
                Transition::Recovered => self.after.failing_since,
                _ => None,
            },
            "last_error": last_error,
            "paused_reason": paused_reason,
            "run_id": run,
            "links": {
                "schedule": format!("/v1/schedules/{schedule}"),
                "run": run.map(|id: RunId| format!("/v1/runs/{id}")),
                "failed_runs": format!("/v1/runs?schedule_id={schedule}&status=failed"),
                "timeline": format!("/v1/schedules/{schedule}/timeline"),
            },
        })
    }
}

fn read_notify(value: Option<&serde_json::Value>, whose: &str) -> Option<Notify> {
    let value = value?;
    match serde_json::from_value(value.clone()) {
        Ok(notify) => Some(notify),
        Err(error) => {
            tracing::error!(%whose, %error, "unreadable notify target; no notice is sent");
            None
        }
    }
}

/// The reason a schedule paused by its failures shows.
pub fn paused_reason(after: i32) -> String {
    format!("paused by hookbeat: its last {after} runs failed for good (pause_after_failures)")
}

/// Follows a group's health through (`changes` and the `after` they left, in the write-back's
/// transaction): opens and closes failing episodes, pauses schedules at their
/// `pause_after_failures`, and issues a notice for each transition of a schedule with a
/// `notify` target. Only schedules whose health may have moved (a failure after the group's
/// last success, or a success ending an episode) cost a query. Returns the notices issued.
pub async fn follow(
    conn: &impl ConnectionTrait,
    changes: &[Change],
    after: &[After],
    now: DateTime<Utc>,
) -> anyhow::Result<Vec<Transition>> {
    let changes: HashMap<ScheduleId, &Change> =
        changes.iter().map(|c| (c.schedule_id, c)).collect();
    let mut moving: Vec<(&After, &Change)> = after
        .iter()
        .filter_map(|a| Some((a, *changes.get(&a.schedule_id)?)))
        .filter(|(a, c)| c.failures > 0 || a.recovered())
        .collect();
    if moving.is_empty() {
        return Ok(Vec::new());
    }
    moving.sort_by_key(|(a, _)| a.schedule_id);
    let backend = conn.get_database_backend();
    let ids: Vec<Value> = moving.iter().map(|(a, _)| a.schedule_id.into()).collect();
    let subjects: HashMap<ScheduleId, Subject> = Subject::find_by_statement(statement(
        backend,
        &SUBJECTS.replace("{ids}", &placeholders(1, ids.len())),
        ids,
    ))
    .all(conn)
    .await
    .context("reading the schedules whose health moved")?
    .into_iter()
    .map(|s| (s.id, s))
    .collect();

    let mut to_pause: BTreeMap<i32, Vec<ScheduleId>> = BTreeMap::new();
    let mut planned: Vec<Planned> = Vec::new();
    for (after, change) in moving {
        let Some(subject) = subjects.get(&after.schedule_id) else {
            continue;
        };
        let own = read_notify(subject.notify.as_ref(), "schedule");
        let tenant = read_notify(subject.tenant_notify.as_ref(), "tenant");
        let failing_after = Notify::failing_after(own.as_ref(), tenant.as_ref());
        let moves = moves(
            change,
            after,
            failing_after,
            subject.pause_after_failures,
            subject.enabled,
            now,
        );
        if let (true, Some(n)) = (moves.pause, subject.pause_after_failures) {
            to_pause.entry(n).or_default().push(after.schedule_id);
        }
        planned.push(Planned {
            subject,
            change,
            after,
            moves,
            failing_after,
            target: own.or(tenant),
        });
    }

    let episodes: Vec<&Planned> = planned
        .iter()
        .filter(|p| {
            (p.moves.failing_since, p.moves.episode_resets)
                != (p.after.failing_since, p.after.episode_resets)
        })
        .collect();
    if !episodes.is_empty() {
        let mut values: Vec<Value> = Vec::with_capacity(episodes.len() * EPISODE_COLUMNS);
        for p in &episodes {
            values.extend([
                p.after.schedule_id.into(),
                p.after.consecutive_failures.into(),
                p.moves.failing_since.into(),
                p.moves.episode_resets.into(),
            ]);
        }
        let sql = EPISODES.replace(
            "{rows}",
            &placeholder_rows(1, episodes.len(), EPISODE_COLUMNS),
        );
        conn.execute(statement(backend, &sql, values))
            .await
            .context("opening and closing failing episodes")?;
    }

    let mut paused: HashMap<ScheduleId, String> = HashMap::new();
    for (after_failures, ids) in to_pause {
        let reason = paused_reason(after_failures);
        for id in crate::pausing::pause(conn, &ids, &reason, now)
            .await
            .context("pausing schedules after their failures")?
        {
            paused.insert(id, reason.clone());
        }
    }

    let mut issues: Vec<Issue> = Vec::new();
    for plan in &planned {
        let Some(target) = &plan.target else { continue };
        let reason = paused.get(&plan.subject.id);
        let transitions = [
            (plan.moves.recovered, Transition::Recovered),
            (plan.moves.failing, Transition::Failing),
            (reason.is_some(), Transition::Paused),
        ];
        for (_, transition) in transitions.into_iter().filter(|(happened, _)| *happened) {
            let id = Uuid::now_v7();
            issues.push(Issue {
                id,
                tenant_id: plan.subject.tenant_id.clone(),
                schedule_id: plan.subject.id,
                transition,
                target: target.clone(),
                body: plan.body(id, transition, reason.map(String::as_str), now),
            });
        }
    }
    if issues.is_empty() {
        return Ok(Vec::new());
    }
    let mut values: Vec<Value> = Vec::with_capacity(issues.len() * ISSUE_COLUMNS);
    for issue in &issues {
        values.extend([
            issue.id.into(),
            issue.tenant_id.as_str().into(),
            issue.schedule_id.into(),
            issue.transition.as_str().into(),
            serde_json::to_value(&issue.target)
                .context("encoding a notify target")?
                .into(),
            issue.body.to_string().into(),
            status::PENDING.into(),
            0i32.into(),
            now.into(),
            now.into(),
        ]);
    }
    let sql = ISSUE.replace("{rows}", &placeholder_rows(1, issues.len(), ISSUE_COLUMNS));
    conn.execute(statement(backend, &sql, values))
        .await
        .context("issuing notices")?;
    Ok(issues.iter().map(|i| i.transition).collect())
}

/// What an attempt at `notice` means for it: delivered on a 2xx; tried again on the default
/// retry policy (`RetryPolicy::default`: 5 attempts, from 5 s apart) where a run's delivery
/// would be; given up otherwise.
pub fn decide(notice: &Notice, result: &AttemptResult, now: DateTime<Utc>) -> NoticeResult {
    let policy = RetryPolicy::default();
    let (verdict, error) = crate::outcome::judge(result);
    let status_code = result.status.map(i32::from);
    let outcome = |status, next_attempt_at| NoticeResult {
        status,
        next_attempt_at,
        status_code,
        error: error.clone(),
    };
    match verdict {
        Verdict::Success => outcome(status::DELIVERED, now),
        Verdict::Retry if notice.attempts < policy.max_attempts => {
            let delay = crate::retry::next_delay(
                &policy,
                notice.attempts,
                notice.id.as_u128() as u64,
                result.retry_after,
            );
            outcome(status::PENDING, now + delay)
        }
        _ => outcome(status::FAILED, now),
    }
}

impl NoticeResult {
    /// The outcome as `hookbeat_notice_deliveries_total` labels it.
    pub fn outcome(&self) -> &'static str {
        match self.status {
            status::DELIVERED => "delivered",
            status::PENDING => "retry",
            _ => "failed",
        }
    }
}

/// A notice a worker holds, with what its delivery needs.
#[derive(Debug, Clone, FromQueryResult)]
pub struct Notice {
    pub id: Uuid,
    pub tenant_id: TenantId,
    pub schedule_id: ScheduleId,
    pub transition: String,
    pub target: serde_json::Value,
    pub body: String,
    /// This attempt's number.
    pub attempts: i32,
    pub created_at: DateTime<Utc>,
}

/// Takes up to `$4` due notices that nobody holds, for `$1` until `$2`, at `$3`.
const CLAIM: &str = "UPDATE notices SET locked_by = $1, locked_until = $2, \
     attempts = attempts + 1 WHERE id IN (SELECT id FROM notices WHERE status = 'pending' \
     AND next_attempt_at <= $3 AND (locked_until IS NULL OR locked_until <= $3) \
     ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING id, tenant_id, schedule_id, transition, target, body, attempts, created_at";

/// How long a worker holds a notice it claimed; an attempt with a longer timeout extends it
/// first ([`extend`]).
pub const NOTICE_LEASE: Duration = Duration::seconds(60);
/// Slack the lease keeps beyond an attempt's timeout, for recording its result.
pub const LEASE_SLACK: Duration = Duration::seconds(30);

/// Holds `notice` until `until`, if this worker still holds it.
pub async fn extend(
    db: &DatabaseConnection,
    worker_id: &str,
    notice: &Notice,
    until: DateTime<Utc>,
) -> anyhow::Result<()> {
    db.execute(statement(
        db.get_database_backend(),
        "UPDATE notices SET locked_until = $1 WHERE id = $2 AND locked_by = $3 AND attempts = $4",
        vec![
            until.into(),
            notice.id.into(),
            worker_id.into(),
            notice.attempts.into(),
        ],
    ))
    .await
    .context("extending a notice's lease")?;
    Ok(())
}

pub async fn claim(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    limit: i64,
) -> anyhow::Result<Vec<Notice>> {
    let values: Vec<Value> = vec![
        worker_id.into(),
        (now + NOTICE_LEASE).into(),
        now.into(),
        limit.into(),
    ];
    Notice::find_by_statement(statement(db.get_database_backend(), CLAIM, values))
        .all(db)
        .await
        .context("claiming notices")
}

/// What became of one attempt at a notice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoticeResult {
    pub status: &'static str,
    /// When to try again, for a pending notice.
    pub next_attempt_at: DateTime<Utc>,
    pub status_code: Option<i32>,
    pub error: Option<String>,
}

/// Records an attempt's result, if this worker still holds the notice at that attempt.
const FINISH: &str = "UPDATE notices SET status = $1, next_attempt_at = $2, \
     last_status_code = $3, last_error = $4, \
     finished_at = CASE WHEN $1 = 'pending' THEN NULL ELSE $5 END, \
     locked_by = NULL, locked_until = NULL \
     WHERE id = $6 AND locked_by = $7 AND attempts = $8";

pub async fn finish(
    db: &DatabaseConnection,
    worker_id: &str,
    notice: &Notice,
    result: &NoticeResult,
    now: DateTime<Utc>,
) -> anyhow::Result<()> {
    let values: Vec<Value> = vec![
        result.status.into(),
        result.next_attempt_at.into(),
        result.status_code.into(),
        result.error.clone().into(),
        now.into(),
        notice.id.into(),
        worker_id.into(),
        notice.attempts.into(),
    ];
    db.execute(statement(db.get_database_backend(), FINISH, values))
        .await
        .context("recording a notice's attempt")?;
    Ok(())
}

/// When the earliest pending notice is due (or its holder's lease ends).
const NEXT_DUE: &str = "SELECT MIN(CASE WHEN locked_until IS NOT NULL \
     AND locked_until > next_attempt_at THEN locked_until ELSE next_attempt_at END) AS due \
     FROM notices WHERE status = 'pending'";

pub async fn next_due(db: &DatabaseConnection) -> anyhow::Result<Option<DateTime<Utc>>> {
    crate::sql::value(
        db,
        statement(db.get_database_backend(), NEXT_DUE, vec![]),
        "due",
    )
    .await
    .context("looking for the next notice")
    .map(Option::flatten)
}

/// A notice as its schedule's history shows it.
#[derive(Debug, Clone, FromQueryResult)]
pub struct Issued {
    pub id: Uuid,
    pub transition: String,
    pub status: String,
    pub attempts: i32,
    pub body: String,
    pub created_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub last_status_code: Option<i32>,
    pub last_error: Option<String>,
}

const ISSUED: &str = "SELECT id, transition, status, attempts, body, created_at, \
     next_attempt_at, finished_at, last_status_code, last_error FROM notices \
     WHERE schedule_id = $1 {before} ORDER BY id DESC LIMIT $2";

/// Up to `limit` notices of a schedule, newest first, issued before the notice `before`
/// (ids are time-ordered).
pub async fn of_schedule(
    conn: &impl ConnectionTrait,
    schedule: ScheduleId,
    before: Option<Uuid>,
    limit: u64,
) -> anyhow::Result<Vec<Issued>> {
    let mut values: Vec<Value> = vec![schedule.into(), (limit as i64).into()];
    let sql = match before {
        Some(before) => {
            values.push(before.into());
            ISSUED.replace("{before}", "AND id < $3")
        }
        None => ISSUED.replace("{before}", ""),
    };
    Issued::find_by_statement(statement(conn.get_database_backend(), &sql, values))
        .all(conn)
        .await
        .context("reading a schedule's notices")
}

/// Forgets notices delivered or given up before `before`, with the run history.
pub async fn prune(db: &DatabaseConnection, before: DateTime<Utc>) -> anyhow::Result<u64> {
    const PRUNE: &str = "DELETE FROM notices WHERE status <> 'pending' AND finished_at < $1";
    delete_before(db, PRUNE, before)
        .await
        .context("pruning notices")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    /// A group with a failure after its last success, or (`failed: false`) ending in one.
    fn change(failed: bool) -> Change {
        Change {
            schedule_id: ScheduleId::new(),
            failures: i32::from(failed),
            last_success_at: (!failed).then(|| at("2030-01-01T00:00:00Z")),
            last_failure_at: None,
            last_fire_lag_ms: None,
            last_failed: None,
            last_succeeded: None,
        }
    }

    /// The health a group left: `failures` in a row, `resets` so far, and the episode as it
    /// was (since when, the resets it began at).
    fn after(change: &Change, failures: i32, resets: i32, episode: Option<(&str, i32)>) -> After {
        After {
            schedule_id: change.schedule_id,
            consecutive_failures: failures,
            failing_since: episode.map(|(since, _)| at(since)),
            resets,
            episode_resets: episode.map(|(_, at)| at),
        }
    }

    const NOW: &str = "2030-01-01T00:01:00Z";
    const SINCE: &str = "2030-01-01T00:00:30Z";

    #[test]
    fn the_run_that_reaches_the_threshold_opens_an_episode_once() {
        let c = change(true);
        let two = moves(&c, &after(&c, 2, 0, None), 3, None, true, at(NOW));
        assert!(!two.failing && two.failing_since.is_none());
        let three = moves(&c, &after(&c, 3, 4, None), 3, None, true, at(NOW));
        assert!(three.failing && !three.recovered);
        assert_eq!(
            (three.failing_since, three.episode_resets),
            (Some(at(NOW)), Some(4))
        );
        let four = moves(
            &c,
            &after(&c, 4, 4, Some((SINCE, 4))),
            3,
            None,
            true,
            at(NOW),
        );
        assert!(!four.failing, "an open episode is announced once");
        assert_eq!(four.failing_since, Some(at(SINCE)));
    }

    #[test]
    fn only_a_reset_since_the_episode_began_is_a_recovery() {
        let c = change(false);
        let back = moves(
            &c,
            &after(&c, 0, 5, Some((SINCE, 4))),
            3,
            None,
            true,
            at(NOW),
        );
        assert!(back.recovered && !back.failing);
        assert_eq!((back.failing_since, back.episode_resets), (None, None));
        // A success older than the failures (a group that committed late) reset nothing.
        let stale = moves(
            &c,
            &after(&c, 3, 4, Some((SINCE, 4))),
            3,
            None,
            true,
            at(NOW),
        );
        assert!(!stale.recovered && !stale.failing);
        assert_eq!(stale.failing_since, Some(at(SINCE)));
        let fine = moves(&c, &after(&c, 0, 5, None), 3, None, true, at(NOW));
        assert!(!fine.recovered && !fine.failing);
        // A success, then enough failures in the same group: recovered, and failing again.
        let f = change(true);
        let again = moves(
            &f,
            &after(&f, 3, 5, Some((SINCE, 4))),
            3,
            None,
            true,
            at(NOW),
        );
        assert!(again.recovered && again.failing);
        assert_eq!(
            (again.failing_since, again.episode_resets),
            (Some(at(NOW)), Some(5))
        );
    }

    #[test]
    fn an_enabled_schedule_pauses_when_a_failure_reaches_its_threshold() {
        let c = change(true);
        assert!(!moves(&c, &after(&c, 1, 0, None), 3, Some(2), true, at(NOW)).pause);
        assert!(moves(&c, &after(&c, 2, 0, None), 3, Some(2), true, at(NOW)).pause);
        assert!(!moves(&c, &after(&c, 2, 0, None), 3, Some(2), false, at(NOW)).pause);
        assert!(!moves(&c, &after(&c, 9, 0, None), 3, None, true, at(NOW)).pause);
        // A group without a failure (a lag only) pauses nothing, whatever the count.
        let quiet = Change {
            failures: 0,
            ..change(true)
        };
        assert!(
            !moves(
                &quiet,
                &after(&quiet, 9, 0, None),
                3,
                Some(2),
                true,
                at(NOW)
            )
            .pause
        );
        assert!(!moves(&quiet, &after(&quiet, 9, 0, None), 3, None, true, at(NOW)).failing);
    }

    #[test]
    fn each_transition_is_named_as_the_metric_labels_it() {
        let names: Vec<_> = Transition::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names, ["failing", "recovered", "paused"]);
    }
}
