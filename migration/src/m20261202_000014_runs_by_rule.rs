//! On PostgreSQL, a run refers to its schedule and its tenant by rule instead of by foreign key:
//! the two checks were a third of the cost of inserting a run (a lookup of each parent row and a
//! row lock on it, per run), and every fire inserts one. The rule they enforced holds without
//! them: a run is inserted only while its schedule's row is locked (materialise, a trigger, a
//! backfill), deleting a schedule takes that lock and deletes its runs in the same transaction,
//! and tenants are disabled, never deleted. SQLite keeps its foreign keys: there a check is a
//! lookup in the same process, and dropping one means rebuilding the table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const DROP: &str = "ALTER TABLE runs DROP CONSTRAINT IF EXISTS runs_schedule_id_fkey, \
     DROP CONSTRAINT IF EXISTS runs_tenant_id_fkey";

/// Rolling back adds the constraints again, checked against the runs already stored.
const ADD: &str = "ALTER TABLE runs \
     ADD CONSTRAINT runs_schedule_id_fkey FOREIGN KEY (schedule_id) REFERENCES schedules (id) \
         ON DELETE CASCADE, \
     ADD CONSTRAINT runs_tenant_id_fkey FOREIGN KEY (tenant_id) REFERENCES tenants (id) \
         ON DELETE CASCADE";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager.get_connection().execute_unprepared(DROP).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
            manager.get_connection().execute_unprepared(ADD).await?;
        }
        Ok(())
    }
}
