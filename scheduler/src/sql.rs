//! Hand-written SQL for both backends. Statements are written once, in PostgreSQL's dialect;
//! for SQLite, `$N` placeholders become `?N` (SQLite numbers `$N` by first appearance, not by N)
//! and row locks are dropped (SQLite serialises writers, one process owns the file).

use std::borrow::Cow;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TryGetable, Value};

const ROW_LOCK: &str = " FOR UPDATE SKIP LOCKED";

pub fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(backend, dialect(backend, sql), values)
}

fn dialect(backend: DbBackend, sql: &str) -> Cow<'_, str> {
    match backend {
        DbBackend::Sqlite => Cow::Owned(sql.replace(ROW_LOCK, "").replace('$', "?")),
        _ => Cow::Borrowed(sql),
    }
}

/// `$first, $first+1, …` for `count` placeholders: a row of a multi-row `VALUES` list.
pub fn placeholders(first: usize, count: usize) -> String {
    let list: Vec<String> = (first..first + count).map(|n| format!("${n}")).collect();
    format!("({})", list.join(", "))
}

/// `rows` rows of `columns` placeholders each, numbered from `$first`: the body of a multi-row
/// `VALUES` list.
pub fn placeholder_rows(first: usize, rows: usize, columns: usize) -> String {
    let rows: Vec<String> = (0..rows)
        .map(|row| placeholders(first + row * columns, columns))
        .collect();
    rows.join(", ")
}

/// The column `name` of every row `statement` returns.
pub async fn column<T: TryGetable>(
    conn: &impl ConnectionTrait,
    statement: Statement,
    name: &str,
) -> Result<Vec<T>, DbErr> {
    let rows = conn.query_all(statement).await?;
    rows.iter().map(|row| row.try_get("", name)).collect()
}

/// The column `name` of the one row `statement` returns; `None` when it returns none.
pub async fn value<T: TryGetable>(
    conn: &impl ConnectionTrait,
    statement: Statement,
    name: &str,
) -> Result<Option<T>, DbErr> {
    match conn.query_one(statement).await? {
        Some(row) => Ok(Some(row.try_get("", name)?)),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_dialect_numbers_placeholders_and_drops_row_locks() {
        let sql = "SELECT * FROM t WHERE a = $2 AND b = $1 LIMIT $3 FOR UPDATE SKIP LOCKED";
        assert_eq!(
            dialect(DbBackend::Sqlite, sql),
            "SELECT * FROM t WHERE a = ?2 AND b = ?1 LIMIT ?3"
        );
        assert_eq!(dialect(DbBackend::Postgres, sql), sql);
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(4, 3), "($4, $5, $6)");
        assert_eq!(placeholder_rows(3, 2, 2), "($3, $4), ($5, $6)");
    }
}
