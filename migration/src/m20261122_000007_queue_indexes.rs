//! The claim indexes hold only runs waiting to be claimed (`pending`, `retrying`), no longer the
//! runs in flight: those have their own index (`runs_leased_idx`, migration 6). A claim then adds
//! no entries to them, and the entries of a claimed run die once and for all: two fewer index
//! insertions per delivery, and claims walk half as many dead entries.
//!
//! The new indexes get new names (`runs_claim_idx` → `runs_waiting_idx`, `runs_tenant_due_idx`
//! → `runs_tenant_waiting_idx`) and are built before the old ones are dropped, so claims have
//! an index at every moment.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// (old name, new name, columns): only the `WHERE` differs between old and new.
const INDEXES: &[(&str, &str, &str)] = &[
    ("runs_claim_idx", "runs_waiting_idx", "(due_at)"),
    (
        "runs_tenant_due_idx",
        "runs_tenant_waiting_idx",
        "(tenant_id, due_at)",
    ),
];

const WAITING: &str = "'pending', 'retrying'";
const WAITING_OR_IN_FLIGHT: &str = "'pending', 'retrying', 'delivering'";

/// Builds `create` over `statuses`, then drops `drop`.
async fn replace(
    manager: &SchemaManager<'_>,
    create: &str,
    drop: &str,
    columns: &str,
    statuses: &str,
) -> Result<(), DbErr> {
    let db = manager.get_connection();
    db.execute_unprepared(&format!(
        "CREATE INDEX {create} ON runs {columns} WHERE status IN ({statuses})"
    ))
    .await?;
    db.execute_unprepared(&format!("DROP INDEX {drop}")).await?;
    Ok(())
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (old, new, columns) in INDEXES {
            replace(manager, new, old, columns, WAITING).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (old, new, columns) in INDEXES {
            replace(manager, old, new, columns, WAITING_OR_IN_FLIGHT).await?;
        }
        Ok(())
    }
}
