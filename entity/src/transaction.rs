//! Write transactions that behave alike on SQLite and PostgreSQL.

use sea_orm::TransactionTrait;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr};

/// Begins a transaction that holds the database's write lock from its first statement.
///
/// SQLite starts transactions as readers; a reader that later writes after another connection
/// committed fails with `SQLITE_BUSY_SNAPSHOT`, which the busy timeout does not retry. A write
/// that matches no row takes the lock up front (like `BEGIN IMMEDIATE`), so the transaction waits
/// its turn instead of failing. PostgreSQL needs nothing: its row locks do the job.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
    let txn = db.begin().await?;
    if db.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("DELETE FROM settings WHERE 0 = 1")
            .await?;
    }
    Ok(txn)
}
