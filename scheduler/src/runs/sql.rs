//! The statements of the run life cycle: every one that writes `runs`, and the reads of the
//! worker's hot path, each with the index that serves it. Written in PostgreSQL's dialect; see
//! `crate::sql` for SQLite.

/// New runs, a `VALUES` list of [`RUN_COLUMNS`] per row. A fire that already has a run (another
/// worker made it while a shard changed hands) is skipped and not returned, so a run leased at
/// creation is delivered only by the worker that made it. Manual runs never conflict: the unique
/// key covers `trigger = 'schedule'` only.
pub const INSERT: &str = "INSERT INTO runs \
     (id, tenant_id, schedule_id, scheduled_for, \"trigger\", status, attempts, due_at, locked_by, \
      created_at, updated_at) VALUES {rows} \
     ON CONFLICT (schedule_id, scheduled_for) WHERE \"trigger\" = 'schedule' \
     DO NOTHING RETURNING *";
pub const RUN_COLUMNS: usize = 11;
/// Rows per INSERT: well under both backends' parameter limits.
pub const INSERT_CHUNK: usize = 500;

/// Takes up to `$4` due runs, oldest `due_at` first, skipping rows another worker is claiming,
/// the runs of disabled tenants (they wait until the tenant is enabled again) and those of the
/// tenants listed in `{skip}` (at their share of this worker's slots: claiming their runs would
/// only hand them back, and fill the claim ahead of everyone else's). Served by
/// `runs_waiting_idx`.
pub const CLAIM: &str =
    "UPDATE runs SET status = 'delivering', locked_by = $1, attempts = attempts + 1, \
     due_at = $2, updated_at = $3 \
     WHERE id IN (SELECT id FROM runs \
         WHERE status IN ('pending', 'retrying') AND due_at <= $3 \
           AND tenant_id NOT IN (SELECT id FROM tenants WHERE disabled){skip} \
         ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
     RETURNING *";

/// Claims up to `$4` due runs of *each* listed tenant (`{tenants}` is a `VALUES` list of
/// placeholders from `$5`), so one tenant's backlog cannot fill the batch. Served by
/// `runs_tenant_waiting_idx`.
pub const CLAIM_PER_TENANT: &str = "UPDATE runs SET status = 'delivering', locked_by = $1, \
     attempts = attempts + 1, due_at = $2, updated_at = $3 \
     WHERE id IN (SELECT c.id FROM (VALUES {tenants}) AS t(tenant_id) \
         CROSS JOIN LATERAL (SELECT id FROM runs \
             WHERE tenant_id = t.tenant_id AND status IN ('pending', 'retrying') \
               AND due_at <= $3 \
             ORDER BY due_at LIMIT $4 FOR UPDATE SKIP LOCKED) c) \
     RETURNING *";

/// [`CLAIM_PER_TENANT`] for one tenant (`$5`), for SQLite, which has no `LATERAL`: a statement
/// per tenant costs an in-process call, not a round trip.
pub const CLAIM_ONE_TENANT: &str = "UPDATE runs SET status = 'delivering', locked_by = $1, \
     attempts = attempts + 1, due_at = $2, updated_at = $3 \
     WHERE id IN (SELECT id FROM runs \
         WHERE tenant_id = $5 AND status IN ('pending', 'retrying') AND due_at <= $3 \
         ORDER BY due_at LIMIT $4) \
     RETURNING *";

/// Tenants with claimable runs, in tenant order after `$2`, at most `$3`: a loose index scan over
/// `runs_tenant_waiting_idx`, one probe per tenant, however many runs each has.
pub const DUE_TENANTS: &str = "WITH RECURSIVE due AS ( \
         (SELECT tenant_id FROM runs \
          WHERE status IN ('pending', 'retrying') AND due_at <= $1 AND tenant_id > $2 \
          ORDER BY tenant_id LIMIT 1) \
         UNION ALL \
         SELECT (SELECT r.tenant_id FROM runs r \
                 WHERE r.status IN ('pending', 'retrying') AND r.due_at <= $1 \
                   AND r.tenant_id > due.tenant_id \
                 ORDER BY r.tenant_id LIMIT 1) \
         FROM due WHERE due.tenant_id IS NOT NULL) \
     SELECT tenant_id FROM due WHERE tenant_id IS NOT NULL \
       AND tenant_id NOT IN (SELECT id FROM tenants WHERE disabled) LIMIT $3";

/// [`DUE_TENANTS`] for SQLite, which has no parenthesised members in a compound query: the due
/// runs' tenants in order, from `runs_tenant_waiting_idx`. One process owns an SQLite file, so a
/// plain scan of the waiting runs' index is what the loose scan saves PostgreSQL's many workers.
pub const DUE_TENANTS_SQLITE: &str = "SELECT DISTINCT tenant_id FROM runs \
     WHERE status IN ('pending', 'retrying') AND due_at <= $1 AND tenant_id > $2 \
       AND tenant_id NOT IN (SELECT id FROM tenants WHERE disabled) \
     ORDER BY tenant_id LIMIT $3";

/// Hands claimed runs back unattempted (a politeness limit was reached): the claim's attempt is
/// taken back and the runs are due again at `$2`. Fenced by the owner alone: `locked_by` is set
/// only while a run is `delivering`.
pub const HAND_BACK: &str = "UPDATE runs SET attempts = attempts - 1, \
     status = CASE WHEN attempts - 1 > retry_base THEN 'retrying' ELSE 'pending' END, \
     locked_by = NULL, due_at = $2, updated_at = $3 \
     WHERE locked_by = $1 AND id IN ";

/// Moves a lease's expiry, for attempts whose timeout outlasts the default lease.
pub const EXTEND_LEASE: &str = "UPDATE runs SET due_at = $1 \
     WHERE id = $2 AND locked_by = $3 AND attempts = $4 AND status = 'delivering'";

/// Runs in flight whose lease expired (`due_at`, the expiry, at or before `$1`), at most `$2`,
/// locked for taking back: their worker crashed or hung before recording the attempt's result.
/// `updated_at` is when the lease was taken, so when the lost attempt started. Served by
/// `runs_leased_idx`.
pub const SELECT_EXPIRED: &str = "SELECT id, attempts, step, locked_by, updated_at FROM runs \
     WHERE status = 'delivering' AND due_at <= $1 \
     ORDER BY due_at LIMIT $2 FOR UPDATE SKIP LOCKED";

/// The runs in flight of worker `$1` (it is leaving), locked for taking back.
pub const SELECT_OWNED: &str = "SELECT id, attempts, step, locked_by, updated_at FROM runs \
     WHERE locked_by = $1 AND status = 'delivering' FOR UPDATE SKIP LOCKED";

/// Takes the runs in `{ids}` back from their worker, whether its lease expired or it left: the
/// attempt counts, as the request may have reached the receiver, and the run is due again no
/// later than `$1`, with the same id and so the same `webhook-id`. `$2` and `$3` frame the worker's
/// name in `last_error` (`attempt N` `$2` `worker` `$3`).
pub const TAKE_BACK: &str = "UPDATE runs SET status = 'retrying', locked_by = NULL, \
     due_at = CASE WHEN due_at > $1 THEN $1 ELSE due_at END, updated_at = $1, \
     last_error = 'attempt ' || attempts || $2 || locked_by || $3 \
     WHERE status = 'delivering' AND id IN ";

/// Applies attempts' results to their runs, only where this worker (`$1`) still holds the lease
/// at the attempt it made. `{rows}` is a `VALUES` list, one row per result, of (id, attempts,
/// status, due_at, status_code, error, finished_at, next_step, failure, the sole attempt's
/// started_at, duration_ms and excerpt, and the fire's lag, of which the run keeps the first):
/// `column1`… in both PostgreSQL and SQLite. A run moving
/// to another step (`next_step`) starts that step's attempts afresh; `failure` is kept once the
/// run failed for good; the sole attempt is set only for a run's only attempt that finished it
/// (`Finished::is_sole_attempt`), and is then its whole record. Returns the ids it applied to.
///
/// The fence is (owner, attempt) without `status = 'delivering'`: `locked_by` is set only while a
/// run is delivering, so the status adds nothing, and leaving it out keeps the planner on the
/// primary key. With it, PostgreSQL scans every in-flight run through `runs_leased_idx`, whose
/// dead entries (one per finished delivery until vacuum) make it the costliest statement of all.
pub const FINISH: &str = "UPDATE runs SET status = v.column3, due_at = v.column4, \
     locked_by = NULL, last_status_code = v.column5, last_error = v.column6, updated_at = $2, \
     finished_at = v.column7, step = COALESCE(v.column8, runs.step), \
     attempts = CASE WHEN v.column8 IS NULL THEN runs.attempts ELSE 0 END, \
     retry_base = CASE WHEN v.column8 IS NULL THEN runs.retry_base ELSE 0 END, \
     failure = COALESCE(v.column9, runs.failure), sole_attempt_started_at = v.column10, \
     sole_attempt_duration_ms = v.column11, sole_attempt_excerpt = v.column12, \
     fire_lag_ms = COALESCE(runs.fire_lag_ms, v.column13) \
     FROM (VALUES {rows}) AS v \
     WHERE runs.id = v.column1 AND runs.locked_by = $1 AND runs.attempts = v.column2 \
     RETURNING runs.id";
/// Columns per row of [`FINISH`]' `VALUES` list.
pub const FINISH_COLUMNS: usize = 13;

/// Keeps attempts as history, one row per result in `{rows}` (id, run_id, attempt, started_at,
/// duration_ms, outcome, status_code, error, response_excerpt, step) that its run does not keep
/// as its sole attempt (or that was not applied to its run), except for runs that are
/// gone: a schedule deleted while its run was in flight takes the run with it, and the result
/// has nothing left to belong to. Without that condition the foreign key to `runs` would fail
/// the whole group, and every other run in it would be delivered again once its lease expired.
pub const RECORD_ATTEMPTS: &str = "INSERT INTO attempts (id, run_id, attempt, started_at, \
     duration_ms, outcome, status_code, error, response_excerpt, step) \
     SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, \
         v.column8, v.column9, v.column10 \
     FROM (VALUES {rows}) AS v \
     WHERE EXISTS (SELECT 1 FROM runs WHERE runs.id = v.column2)";
/// Columns per row of [`RECORD_ATTEMPTS`]' `VALUES` list.
pub const ATTEMPT_COLUMNS: usize = 10;

/// Queues failed run `$1` of tenant `$2` again at `$3`, resuming step `$4` with its attempt
/// count `$5` as the base of a fresh retry budget; only while it is still failed, so of two
/// redeliveries at once one queues the run.
pub const REDELIVER: &str = "UPDATE runs SET status = 'pending', step = $4, attempts = $5, \
     retry_base = $5, failure = NULL, due_at = $3, finished_at = NULL, updated_at = $3 \
     WHERE id = $1 AND tenant_id = $2 AND status = 'failed' \
     RETURNING *";

/// Finished runs older than the cut-off, a batch at a time (their attempts go with them).
/// Served by `runs_finished_idx`.
pub const PRUNE: &str = "DELETE FROM runs WHERE id IN (SELECT id FROM runs \
     WHERE status IN ('succeeded', 'failed') AND finished_at < $1 \
     LIMIT $2 FOR UPDATE SKIP LOCKED)";

/// The runs of schedule `$1` of tenant `$2` (their attempts go with them). Served by
/// `runs_schedule_id_idx`.
pub const DELETE_OF_SCHEDULE: &str = "DELETE FROM runs WHERE schedule_id = $1 AND tenant_id = $2";

/// The runs of schedule `$1`'s fires from `$2` to `$3` (both inclusive). Served by the unique
/// (schedule, scheduled_for) index of fires.
pub const FIRES_BETWEEN: &str = "SELECT * FROM runs WHERE schedule_id = $1 \
     AND \"trigger\" = 'schedule' AND scheduled_for >= $2 AND scheduled_for <= $3";

/// Which of the schedules in `{ids}` still have an unfinished run. Served by
/// `runs_active_schedule_idx`.
pub const UNFINISHED_SCHEDULES: &str = "SELECT DISTINCT schedule_id FROM runs \
     WHERE status IN ('pending', 'retrying', 'delivering') AND schedule_id IN ";

/// The earliest instant a run needs a worker: a waiting run falling due (a `MIN` over
/// `runs_waiting_idx`) or a lease expiring, after which a run in flight is taken back (a `MIN`
/// over `runs_leased_idx`). One round trip; each half keeps to its own partial index.
pub const NEXT_DUE: &str = "SELECT MIN(due) AS due FROM ( \
     SELECT MIN(due_at) AS due FROM runs WHERE status IN ('pending', 'retrying') \
     UNION ALL SELECT MIN(due_at) AS due FROM runs WHERE status = 'delivering') AS next";

/// Whether a run waits to be claimed that is due at `$1`: a probe of `runs_waiting_idx` that
/// stops at the first entry.
pub const OLDER_WAITING: &str = "SELECT EXISTS (SELECT 1 FROM runs \
     WHERE status IN ('pending', 'retrying') AND due_at <= $1) AS waiting";

/// Unfinished runs due at `$1` (the pending-runs gauge).
pub const COUNT_DUE: &str = "SELECT COUNT(*) AS n FROM runs \
     WHERE status IN ('pending', 'retrying', 'delivering') AND due_at <= $1";
