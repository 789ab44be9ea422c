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

use anyhow::Context;
use chrono::{DateTime, Utc};
use hookbeat_scheduler::shards::shard_of;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, FromQueryResult, Statement};
use uuid::Uuid;

/// Rows per INSERT: big enough to amortise the statement, small enough to report progress
/// and to keep each transaction's WAL modest.
pub const CHUNK: usize = 20_000;

/// Columns set per row; every other column is copied from the template.
const OVERRIDDEN: &[&str] = &[
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

/// The `INSERT … SELECT` that copies the template into the rows of one chunk. Parameters:
/// `$1` ids (text of a uuid[]), `$2` shards (text of an int[]), `$3` tenants (text of a text[]),
/// `$4` template id, `$5` next_run_at, `$6` now, `$7` name prefix, `$8` ordinal offset.
pub fn insert_sql(copied: &[String]) -> String {
    let mut columns: Vec<String> = OVERRIDDEN.iter().map(|c| (*c).to_owned()).collect();
    let mut values: Vec<String> = [
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
    ]
    .map(str::to_owned)
    .to_vec();
    for column in copied {
        columns.push(format!("\"{column}\""));
        values.push(format!("t.\"{column}\""));
    }
    format!(
        "INSERT INTO schedules ({}) SELECT {} \
         FROM unnest($1::text::uuid[], $2::text::int[]) WITH ORDINALITY AS n(id, shard, ord) \
         CROSS JOIN (SELECT * FROM schedules WHERE id = $4) AS t",
        columns.join(", "),
        values.join(", ")
    )
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
    let copied: Vec<String> = Column::find_by_statement(Statement::from_string(
        DbBackend::Postgres,
        "SELECT column_name::text AS column_name FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'schedules' ORDER BY ordinal_position",
    ))
    .all(db)
    .await
    .context("reading the schedules columns")?
    .into_iter()
    .map(|c| c.column_name)
    .filter(|c| !OVERRIDDEN.contains(&c.as_str()))
    .collect();
    let sql = insert_sql(&copied);
    let tenants = array_literal(seed.tenants.iter().map(|t| format!("\"{t}\"")));
    let mut ids = Vec::with_capacity(seed.count);
    while ids.len() < seed.count {
        let size = CHUNK.min(seed.count - ids.len());
        let chunk: Vec<Uuid> = (0..size).map(|_| Uuid::now_v7()).collect();
        let shards = array_literal(chunk.iter().map(|id| shard_of((*id).into())));
        let statement = Statement::from_sql_and_values(
            DbBackend::Postgres,
            &sql,
            [
                array_literal(&chunk).into(),
                shards.into(),
                tenants.clone().into(),
                seed.template.into(),
                seed.next_run_at.into(),
                Utc::now().into(),
                seed.name_prefix.into(),
                (ids.len() as i64).into(),
            ],
        );
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
    Ok(ids)
}

/// Runs ANALYZE so the planner knows the table's new size, as autovacuum would shortly after
/// a real install grew this big (a fresh table's statistics claim it is nearly empty).
pub async fn analyze(db: &DatabaseConnection) -> anyhow::Result<()> {
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
        let sql = insert_sql(&["spec".to_owned(), "target".to_owned()]);
        assert!(sql.starts_with(
            "INSERT INTO schedules (id, tenant_id, shard, name, enabled, paused_reason, \
             next_run_at, last_run_at, total_runs, created_at, updated_at, version, \"spec\", \"target\") \
             SELECT n.id, "
        ));
        assert!(sql.contains(", t.\"spec\", t.\"target\" FROM unnest("));
        assert!(sql.ends_with("WHERE id = $4) AS t"));
    }
}
