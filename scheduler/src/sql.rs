//! Hand-written SQL for both backends. Statements are written once, in PostgreSQL's dialect;
//! for SQLite, row locks are dropped (SQLite serialises writers, one process owns the file) and
//! `$N` placeholders become anonymous `?`, with the values laid out in the order the placeholders
//! appear (see [`positional`]).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement, TryGetable, Value};

const ROW_LOCK: &str = " FOR UPDATE SKIP LOCKED";

pub fn statement(backend: DbBackend, sql: &str, values: Vec<Value>) -> Statement {
    match backend {
        DbBackend::Sqlite => {
            let (sql, values) = positional(&sql.replace(ROW_LOCK, ""), values);
            Statement::from_sql_and_values(backend, sql, values)
        }
        _ => Statement::from_sql_and_values(backend, sql, values),
    }
}

/// `sql` with each `$N` made an anonymous `?`, and the values in the order the placeholders
/// appear (a value named twice is bound twice; a number with no value binds NULL, as SQLite does
/// for an unbound parameter).
///
/// SQLite numbers `$N` by first appearance, not by N, so the numbers must go; and numbered
/// parameters (`?N`) cost the driver a look-up of each one's name, which SQLite answers by
/// walking the statement's list of names: binding n of them costs n², and a group write of
/// thousands of values spends most of its time there. Anonymous parameters have no name.
fn positional(sql: &str, values: Vec<Value>) -> (String, Vec<Value>) {
    let mut text = String::with_capacity(sql.len());
    let mut order = Vec::with_capacity(values.len());
    let mut rest = sql;
    while let Some(dollar) = rest.find('$') {
        text.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        let digits = after.len() - after.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        match after[..digits].parse::<usize>() {
            Ok(n) if n > 0 => {
                text.push('?');
                order.push(n - 1);
            }
            _ => text.push_str(&rest[dollar..dollar + 1 + digits]),
        }
        rest = &after[digits..];
    }
    text.push_str(rest);
    // Each value moves to its last place and is copied only to the places before it.
    let mut last_use = vec![usize::MAX; values.len()];
    for (place, &n) in order.iter().enumerate() {
        if let Some(last) = last_use.get_mut(n) {
            *last = place;
        }
    }
    let mut values: Vec<Option<Value>> = values.into_iter().map(Some).collect();
    let ordered = order
        .iter()
        .enumerate()
        .map(|(place, &n)| {
            let value = match values.get_mut(n) {
                Some(slot) if last_use[n] == place => slot.take(),
                Some(slot) => slot.clone(),
                None => None,
            };
            value.unwrap_or(Value::String(None))
        })
        .collect();
    (text, ordered)
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

/// Runs `sql`, a `DELETE` of history older than `$1`, with `cutoff`; the rows it deleted.
pub async fn delete_before(
    conn: &impl ConnectionTrait,
    sql: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let backend = conn.get_database_backend();
    let deleted = conn
        .execute(statement(backend, sql, vec![cutoff.into()]))
        .await?;
    Ok(deleted.rows_affected())
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
    fn sqlite_binds_in_order_of_appearance_and_drops_row_locks() {
        let sql =
            "SELECT * FROM t WHERE a = $2 AND b = $1 AND c = $2 LIMIT $3 FOR UPDATE SKIP LOCKED";
        let values: Vec<Value> = vec![1i64.into(), "two".into(), 3i64.into()];
        let sqlite = statement(DbBackend::Sqlite, sql, values.clone());
        assert_eq!(
            sqlite.sql,
            "SELECT * FROM t WHERE a = ? AND b = ? AND c = ? LIMIT ?"
        );
        let bound: Vec<Value> = sqlite.values.unwrap().0;
        assert_eq!(
            bound,
            vec!["two".into(), 1i64.into(), "two".into(), 3i64.into()]
        );
        let postgres = statement(DbBackend::Postgres, sql, values.clone());
        assert_eq!(postgres.sql, sql);
        assert_eq!(postgres.values.unwrap().0, values);
    }

    #[test]
    fn text_without_a_number_after_a_dollar_is_kept() {
        let (sql, values) = positional("SELECT '$', $1 || '$x', $3", vec!["a".into()]);
        assert_eq!(sql, "SELECT '$', ? || '$x', ?");
        // A number with no value binds NULL, as SQLite leaves an unbound parameter.
        assert_eq!(values, vec![Value::from("a"), Value::String(None)]);
    }

    #[test]
    fn placeholder_lists() {
        assert_eq!(placeholders(4, 3), "($4, $5, $6)");
        assert_eq!(placeholder_rows(3, 2, 2), "($3, $4), ($5, $6)");
    }
}
