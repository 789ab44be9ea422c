//! A run's only attempt, when it succeeded at once, kept in the run's own row instead of as a
//! row of `attempts`: most runs are delivered at the first try, and their attempt row (a heap
//! tuple and two index entries) was a quarter of a fire's writes. The status code is the run's
//! `last_status_code`; the outcome (`success`), attempt number (1) and step (the target) follow
//! from the column being set. Runs made before this migration keep their attempt rows; rolling
//! it back turns the sole attempts into rows.

use sea_orm_migration::prelude::*;

use crate::columns;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Runs {
    Table,
    SoleAttemptStartedAt,
    SoleAttemptDurationMs,
    SoleAttemptExcerpt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        columns::add(
            manager,
            Runs::Table,
            [
                ColumnDef::new(Runs::SoleAttemptStartedAt)
                    .timestamp_with_time_zone()
                    .null()
                    .to_owned(),
                ColumnDef::new(Runs::SoleAttemptDurationMs)
                    .big_integer()
                    .null()
                    .to_owned(),
                ColumnDef::new(Runs::SoleAttemptExcerpt)
                    .text()
                    .null()
                    .to_owned(),
            ],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The sole attempts become rows again (with their run's id, which no attempt has), so
        // rolling back loses no history.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO attempts (id, run_id, attempt, started_at, duration_ms, outcome, \
                     status_code, error, response_excerpt, step) \
                 SELECT id, id, 1, sole_attempt_started_at, COALESCE(sole_attempt_duration_ms, 0), \
                     'success', last_status_code, NULL, sole_attempt_excerpt, 0 \
                 FROM runs WHERE sole_attempt_started_at IS NOT NULL",
            )
            .await?;
        columns::drop(
            manager,
            Runs::Table,
            [
                Runs::SoleAttemptStartedAt,
                Runs::SoleAttemptDurationMs,
                Runs::SoleAttemptExcerpt,
            ],
        )
        .await?;
        Ok(())
    }
}
