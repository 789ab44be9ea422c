//! The index behind pruning run history: finished runs by when they finished.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Pruning: `status IN ('succeeded', 'failed') AND finished_at < $cutoff`. Unfinished runs
        // stay out of it.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX runs_finished_idx ON runs (finished_at) \
                 WHERE status IN ('succeeded', 'failed')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX runs_finished_idx")
            .await?;
        Ok(())
    }
}
