//! Seeding schedules with SQL, for counts the API would take minutes to create.
//!
//! Every seeded row is a copy of a *template* schedule that the bench created through the API,
//! so its JSON (`spec`, `target`, `retry`, `metadata`) and every other column have exactly the
//! shape the API writes, including columns added after this tool was written: the column list
//! comes from `information_schema`. Only identity and timing are set per row: `id` (UUIDv7, as
//! the API makes), `shard` (hookbeat's own `shard_of`, so workers divide the rows as they would
//! divide API-created ones), `tenant_id`, `name`, `enabled`, `next_run_at` and the timestamps.
//!
//! Ids are made here rather than by `generate_series` in SQL because the shard is SplitMix64 of
//! the id's low 64 bits, which PostgreSQL cannot compute without unsigned 64-bit arithmetic; they
//! go to the server as one array per chunk, expanded by `unnest … WITH ORDINALITY`.
//!
//! SQLite has no arrays: there a chunk's rows go as a `VALUES` list of bound parameters
//! ([`insert_sql_sqlite`]). Bound, never spelt out in the SQL, every value is stored as hookbeat's
//! own writes store it: ids as 16-byte blobs, instants as RFC 3339 text.
//!
//! Seeded rows bypass the API, which keeps each tenant's `schedule_count` for the quota, so the
//! counts are set afterwards from the rows themselves ([`COUNT_SCHEDULES`]).

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use hookbeat_scheduler::shards::shard_of;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement, Value};
use uuid::Uuid;

/// Rows per INSERT on PostgreSQL: big enough to amortise the statement, small enough to report
/// progress and to keep each transaction's WAL modest.
pub const CHUNK: usize = 20_000;

/// Rows per INSERT on SQLite: [`SQLITE_VALUES_PER_ROW`] parameters each, under SQLite's limit
/// of 32,766 parameters in one statement.
pub const SQLITE_CHUNK: usize = 5_000;

/// The parameters of one row in [`insert_sql_sqlite`]: id, tenant, shard, name.
const SQLITE_VALUES_PER_ROW: usize = 4;

/// Sets every tenant's `schedule_count` (what the API checks the quota against, and keeps
/// itself on every create and delete) to the schedules it holds: seeded rows went around the
/// API. One statement for both databases; it counts through `schedules_tenant_id_idx`.
const COUNT_SCHEDULES: &str = "UPDATE tenants SET schedule_count = \
     (SELECT COUNT(*) FROM schedules WHERE schedules.tenant_id = tenants.id)";

/// Rows per INSERT on `backend`.
fn chunk_rows(backend: DbBackend) -> usize {
    match backend {
        DbBackend::Sqlite => SQLITE_CHUNK,
        _ => CHUNK,
    }
}

/// Columns set per row; every other column is copied from the template.
const OVERRIDDEN: [&str; 12] = [
    "id",
    "tenant_id",
    "shard",
    "name",
    "enabled",
    "paused_reason",
    "next_run_at",
    "last_run_at",
    "total_runs",
    "created_at",
    "updated_at",
    "version",
];

#[derive(FromQueryResult)]
struct Column {
    column_name: String,
}

/// The PostgreSQL `INSERT … SELECT` that copies the template into the rows of one chunk.
/// Parameters: `$1` ids (text of a uuid[]), `$2` shards (text of an int[]), `$3` tenants (text of
/// a text[]), `$4` template id, `$5` next_run_at, `$6` now, `$7` name prefix, `$8` ordinal offset.
pub fn insert_sql_postgres(copied: &[String]) -> String {
    let (columns, values) = copy_lists(
        [
            "n.id",
            // Round-robin over the tenants, continuing across chunks.
            "($3::text::text[])[1 + ((n.ord + $8 - 1) % cardinality($3::text::text[]))]",
            "n.shard",
            "$7 || (n.ord + $8)::text",
            "true",
            "NULL",
            "$5",
            "NULL",
            "0",
            "$6",
            "$6",
            "1",
        ],
        copied,
    );
    format!(
        "INSERT INTO schedules ({columns}) SELECT {values} \
         FROM unnest($1::text::uuid[], $2::text::int[]) WITH ORDINALITY AS n(id, shard, ord) \
         CROSS JOIN (SELECT * FROM schedules WHERE id = $4) AS t"
    )
}

/// The SQLite `INSERT … SELECT` that copies the template into `rows` rows. Anonymous
/// parameters, in order: [`SQLITE_VALUES_PER_ROW`] per row (id, tenant, shard, name), then
/// next_run_at, now (created), now (updated), and the template's id.
pub fn insert_sql_sqlite(copied: &[String], rows: usize) -> String {
    let (columns, values) = copy_lists(
        [
            "n.id",
            "n.tenant_id",
            "n.shard",
            "n.name",
            "1",
            "NULL",
            "?",
            "NULL",
            "0",
            "?",
            "?",
            "1",
        ],
        copied,
    );
    let row = format!("({})", ["?"; SQLITE_VALUES_PER_ROW].join(", "));
    let rows = vec![row; rows].join(", ");
    format!(
        "WITH n(id, tenant_id, shard, name) AS (VALUES {rows}) \
         INSERT INTO schedules ({columns}) SELECT {values} \
         FROM n CROSS JOIN (SELECT * FROM schedules WHERE id = ?) AS t"
    )
}

/// The column list of a copy and the matching select list: `setting[i]` is the value of
/// `OVERRIDDEN[i]`, and every `copied` column is the template's (`t.`).
fn copy_lists(setting: [&str; OVERRIDDEN.len()], copied: &[String]) -> (String, String) {
    let columns: Vec<String> = OVERRIDDEN
        .iter()
        .map(|c| (*c).to_owned())
        .chain(copied.iter().map(|c| format!("\"{c}\"")))
        .collect();
    let values: Vec<String> = setting
        .iter()
        .map(|v| (*v).to_owned())
        .chain(copied.iter().map(|c| format!("t.\"{c}\"")))
        .collect();
    (columns.join(", "), values.join(", "))
}

/// A PostgreSQL array literal, `{a,b,c}`.
pub fn array_literal<T: ToString>(items: impl IntoIterator<Item = T>) -> String {
    let inner: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("{{{}}}", inner.join(","))
}

/// What to seed.
pub struct Seed<'a> {
    pub template: Uuid,
    pub count: usize,
    pub tenants: &'a [String],
    pub next_run_at: DateTime<Utc>,
    pub name_prefix: &'a str,
}

/// Inserts the rows and returns their ids; `progress` is told the running total after each chunk.
pub async fn seed(
    db: &DatabaseConnection,
    seed: &Seed<'_>,
    mut progress: impl FnMut(usize),
) -> anyhow::Result<Vec<Uuid>> {
    let backend = db.get_database_backend();
    let columns = match backend {
        DbBackend::Sqlite => {
            "SELECT name AS column_name FROM pragma_table_info('schedules') ORDER BY cid"
        }
        _ => {
            "SELECT column_name::text AS column_name FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'schedules' \
             ORDER BY ordinal_position"
        }
    };
    let copied: Vec<String> = Column::find_by_statement(Statement::from_string(backend, columns))
        .all(db)
        .await
        .context("reading the schedules columns")?
        .into_iter()
        .map(|c| c.column_name)
        .filter(|c| !OVERRIDDEN.contains(&c.as_str()))
        .collect();
    anyhow::ensure!(!seed.tenants.is_empty(), "seeding needs a tenant");
    // As the API writes them: to the microsecond (PostgreSQL keeps no finer; SQLite would).
    let now = Utc::now().trunc_subsecs(6);
    let postgres_sql = insert_sql_postgres(&copied);
    let tenants = array_literal(seed.tenants.iter().map(|t| format!("\"{t}\"")));
    let chunk_size = chunk_rows(backend);
    let mut ids = Vec::with_capacity(seed.count);
    while ids.len() < seed.count {
        let size = chunk_size.min(seed.count - ids.len());
        let chunk: Vec<Uuid> = (0..size).map(|_| Uuid::now_v7()).collect();
        let statement = match backend {
            DbBackend::Sqlite => {
                let mut values = Vec::with_capacity(size * SQLITE_VALUES_PER_ROW + 4);
                for (k, id) in chunk.iter().enumerate() {
                    // Continuing across chunks, as the PostgreSQL form does with its offset.
                    let n = ids.len() + k;
                    values.extend::<[Value; SQLITE_VALUES_PER_ROW]>([
                        (*id).into(),
                        seed.tenants[n % seed.tenants.len()].clone().into(),
                        shard_of((*id).into()).into(),
                        format!("{}{}", seed.name_prefix, n + 1).into(),
                    ]);
                }
                values.extend::<[Value; 4]>([
                    seed.next_run_at.into(),
                    now.into(),
                    now.into(),
                    seed.template.into(),
                ]);
                Statement::from_sql_and_values(backend, insert_sql_sqlite(&copied, size), values)
            }
            _ => {
                let shards = array_literal(chunk.iter().map(|id| shard_of((*id).into())));
                Statement::from_sql_and_values(
                    backend,
                    &postgres_sql,
                    [
                        array_literal(&chunk).into(),
                        shards.into(),
                        tenants.clone().into(),
                        seed.template.into(),
                        seed.next_run_at.into(),
                        now.into(),
                        seed.name_prefix.into(),
                        (ids.len() as i64).into(),
                    ],
                )
            }
        };
        let inserted = db
            .execute(statement)
            .await
            .with_context(|| format!("inserting schedules {}..{}", ids.len(), ids.len() + size))?
            .rows_affected();
        anyhow::ensure!(
            inserted == size as u64,
            "inserted {inserted} rows instead of {size}: is the template {} there?",
            seed.template
        );
        ids.extend(chunk);
        progress(ids.len());
    }
    db.execute_unprepared(COUNT_SCHEDULES)
        .await
        .context("counting the tenants' schedules")?;
    Ok(ids)
}

/// Runs ANALYZE so the planner knows the table's new size, as autovacuum would shortly after
/// a real install grew this big (a fresh table's statistics claim it is nearly empty).
/// PostgreSQL only: hookbeat never analyses its SQLite file, so an embedded install has no
/// statistics however big it grows, and neither does the bench's.
pub async fn analyze(db: &DatabaseConnection) -> anyhow::Result<()> {
    if db.get_database_backend() == DbBackend::Sqlite {
        return Ok(());
    }
    db.execute_unprepared("ANALYZE schedules")
        .await
        .context("analysing schedules")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_literals() {
        assert_eq!(array_literal([1, 2, 3]), "{1,2,3}");
        assert_eq!(array_literal(Vec::<i32>::new()), "{}");
        assert_eq!(
            array_literal([Uuid::from_u128(1)]),
            "{00000000-0000-0000-0000-000000000001}"
        );
    }

    #[test]
    fn copies_every_column_it_does_not_set() {
        let sql = insert_sql_postgres(&["spec".to_owned(), "target".to_owned()]);
        assert!(sql.starts_with(
            "INSERT INTO schedules (id, tenant_id, shard, name, enabled, paused_reason, \
             next_run_at, last_run_at, total_runs, created_at, updated_at, version, \"spec\", \"target\") \
             SELECT n.id, "
        ));
        assert!(sql.contains(", t.\"spec\", t.\"target\" FROM unnest("));
        assert!(sql.ends_with("WHERE id = $4) AS t"));
    }

    #[test]
    fn the_sqlite_form_binds_four_values_a_row_then_four_more() {
        let sql = insert_sql_sqlite(&["spec".to_owned()], 2);
        assert!(sql.starts_with(
            "WITH n(id, tenant_id, shard, name) AS (VALUES (?, ?, ?, ?), (?, ?, ?, ?)) \
             INSERT INTO schedules (id, tenant_id, shard, name, enabled, paused_reason, \
             next_run_at, last_run_at, total_runs, created_at, updated_at, version, \"spec\") \
             SELECT n.id, n.tenant_id, n.shard, n.name, 1, NULL, ?, NULL, 0, ?, ?, 1, t.\"spec\" "
        ));
        assert!(sql.ends_with("WHERE id = ?) AS t"));
        assert_eq!(sql.matches('?').count(), 2 * SQLITE_VALUES_PER_ROW + 4);
        // A full chunk stays under SQLite's limit on parameters in one statement.
        let full = insert_sql_sqlite(&[], SQLITE_CHUNK);
        assert!(full.matches('?').count() <= 32_766);
    }

    /// The SQLite seed, on a file migrated as hookbeat migrates it.
    #[tokio::test]
    async fn sqlite_copies_read_back_as_the_template_and_come_due_when_told() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::sqlite::url(&dir.path().join(crate::sqlite::FILE_NAME)).unwrap();
        let db = crate::database::connect(&url, 1).await.unwrap();
        copies_read_back_as_the_template_and_come_due_when_told(&db).await;
    }

    /// The PostgreSQL seed, on a database of its own.
    #[tokio::test]
    async fn postgres_copies_read_back_as_the_template_and_come_due_when_told() {
        crate::database::on_scratch_postgres("the PostgreSQL seed test", |db, _| async move {
            copies_read_back_as_the_template_and_come_due_when_told(&db).await;
            db.close().await.ok();
        })
        .await;
    }

    /// Migrates `db` (empty) as hookbeat does, writes a template with hookbeat's own codec and
    /// seeds two chunks' worth of copies over three tenants. Every copy reads back as the
    /// template (but for its name and being enabled), lands in its id's shard and its tenant in
    /// turn, numbering and tenants continuing across chunks; each tenant's `schedule_count` is
    /// what it holds; and hookbeat's own due query finds every copy at the instant it was
    /// given, and none a microsecond earlier.
    async fn copies_read_back_as_the_template_and_come_due_when_told(db: &DatabaseConnection) {
        use hookbeat_entity::{schedule, tenant, TenantId};
        use hookbeat_migration::{Migrator, MigratorTrait};
        use hookbeat_scheduler::definition::{Catchup, Overlap, RetryPolicy};
        use hookbeat_scheduler::materialise::materialise_due;
        use hookbeat_scheduler::schedule::ScheduleSpec;
        use hookbeat_scheduler::shards::Shards;
        use hookbeat_scheduler::stored::{new_row, StoredSchedule};
        use sea_orm::{
            ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
        };
        use serde_json::json;

        Migrator::up(db, None).await.unwrap();
        let now = Utc::now().trunc_subsecs(6);
        let tenants: Vec<String> = (0..3).map(|i| format!("t-{i}")).collect();
        for id in &tenants {
            tenant::ActiveModel {
                id: Set(TenantId(id.clone())),
                disabled: Set(false),
                max_schedules: Set(10),
                schedule_count: Set(0),
                min_interval_seconds: Set(1),
                api_rate_per_second: Set(100),
                notify: Set(None),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(db)
            .await
            .unwrap();
        }
        let target = |url: &str| serde_json::from_value(json!({"url": url})).unwrap();
        let template = StoredSchedule {
            name: "template".to_owned(),
            description: Some("copied".to_owned()),
            spec: ScheduleSpec::from_json(
                &json!({"kind": "crontab", "expression": "*/5 * * * *", "timezone": "Europe/Berlin"}),
                "schedule",
            )
            .unwrap(),
            target: serde_json::from_value(json!({
                "url": "http://127.0.0.1:9/hook", "headers": {"x-bench": "1"}, "body": {"k": [1, 2]}
            }))
            .unwrap(),
            retry: RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            },
            then: vec![target("http://127.0.0.1:9/then")],
            on_failure: Some(target("http://127.0.0.1:9/failed")),
            start_at: Some(now),
            end_at: None,
            max_runs: Some(1_000),
            jitter_ms: 250,
            late_after_ms: Some(30_000),
            notify: None,
            pause_after_failures: None,
            catchup: Catchup::All,
            overlap: Overlap::Skip,
            exclude: Vec::new(),
            enabled: false,
            metadata: json!({"team": "bench"}).as_object().unwrap().clone(),
        };
        let mut row = new_row(&TenantId(tenants[0].clone()), now);
        template.write(&mut row).unwrap();
        let template_id = row.insert(db).await.unwrap().id;

        // Two chunks, the second short.
        let chunk = chunk_rows(db.get_database_backend());
        let count = chunk + 7;
        let next_run_at = DateTime::parse_from_rfc3339("2030-01-01T00:05:00Z")
            .unwrap()
            .to_utc();
        let mut reported = Vec::new();
        let ids = seed(
            db,
            &Seed {
                template: template_id.0,
                count,
                tenants: &tenants,
                next_run_at,
                name_prefix: "copy-",
            },
            |n| reported.push(n),
        )
        .await
        .unwrap();
        assert_eq!(reported, vec![chunk, count]);
        assert_eq!(ids.len(), count);

        let copies: std::collections::HashMap<Uuid, schedule::Model> = schedule::Entity::find()
            .filter(schedule::Column::Name.starts_with("copy-"))
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|m| (m.id.0, m))
            .collect();
        assert_eq!(copies.len(), count);
        for (n, id) in ids.iter().enumerate() {
            let copy = &copies[id];
            let name = format!("copy-{}", n + 1);
            assert_eq!(
                StoredSchedule::from_model(copy).unwrap(),
                StoredSchedule {
                    name: name.clone(),
                    enabled: true,
                    ..template.clone()
                }
            );
            assert_eq!(copy.name, name);
            assert_eq!(copy.tenant_id.as_str(), tenants[n % tenants.len()]);
            assert_eq!(copy.shard, shard_of(copy.id));
            assert_eq!(copy.next_run_at, Some(next_run_at));
            assert_eq!(
                (copy.last_run_at, copy.total_runs, copy.version),
                (None, 0, 1)
            );
            assert_eq!(copy.updated_at, copy.created_at);
            assert!(copy.created_at >= now);
        }

        // The template and every third copy from the first; every third from the second, third.
        let counts: Vec<i64> = tenant::Entity::find()
            .order_by_asc(tenant::Column::Id)
            .all(db)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.schedule_count)
            .collect();
        let third = |first: usize| (first..count).step_by(3).count() as i64;
        assert_eq!(counts, vec![1 + third(0), third(1), third(2)]);

        let early = next_run_at - chrono::Duration::microseconds(1);
        let batch = 2 * count as u64;
        let before = materialise_due(db, early, batch, Shards::All)
            .await
            .unwrap();
        assert_eq!(before.schedules, 0);
        let due = materialise_due(db, next_run_at, batch, Shards::All)
            .await
            .unwrap();
        assert_eq!((due.schedules, due.runs_created), (count, count));
    }
}
