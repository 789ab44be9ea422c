//! The index behind rescuing expired leases: runs in flight, by lease expiry. It holds only the
//! runs being delivered at this moment, so it stays small however long the backlog is.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX runs_leased_idx ON runs (due_at) WHERE status = 'delivering'",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX runs_leased_idx")
            .await?;
        Ok(())
    }
}
