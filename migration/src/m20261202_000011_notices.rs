//! Failure and recovery notices: a schedule's (and a tenant's default) `notify` target and its
//! `pause_after_failures`; the open failing episode of a schedule's health (`failing_since`,
//! which makes the schedule `failing` and is what a recovery closes); and the notices issued,
//! each one row delivered and retried on its own, so that one transition is sent once.

use sea_orm_migration::prelude::*;

use crate::columns;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    Notify,
    PauseAfterFailures,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Notify,
}

#[derive(DeriveIden)]
enum ScheduleHealth {
    Table,
    FailingSince,
    Resets,
    EpisodeResets,
}

#[derive(DeriveIden)]
enum Notices {
    Table,
    Id,
    TenantId,
    ScheduleId,
    Transition,
    Target,
    Body,
    Status,
    Attempts,
    NextAttemptAt,
    LockedBy,
    LockedUntil,
    LastError,
    LastStatusCode,
    CreatedAt,
    FinishedAt,
}

/// The schedules already failing under the old fixed rule (3 runs in a row) keep that state.
const OPEN_EPISODES: &str = "UPDATE schedule_health SET failing_since = COALESCE(last_failure_at, \
     CURRENT_TIMESTAMP), episode_resets = 0 WHERE consecutive_failures >= 3";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        columns::add(
            manager,
            Schedules::Table,
            [
                ColumnDef::new(Schedules::Notify).json().null().to_owned(),
                ColumnDef::new(Schedules::PauseAfterFailures)
                    .integer()
                    .null()
                    .to_owned(),
            ],
        )
        .await?;
        columns::add(
            manager,
            Tenants::Table,
            [ColumnDef::new(Tenants::Notify).json().null().to_owned()],
        )
        .await?;
        // `resets` counts the successes that started the count of failures again; an episode
        // keeps the count it opened at, so a later reset is its recovery.
        columns::add(
            manager,
            ScheduleHealth::Table,
            [
                ColumnDef::new(ScheduleHealth::FailingSince)
                    .timestamp_with_time_zone()
                    .null()
                    .to_owned(),
                ColumnDef::new(ScheduleHealth::Resets)
                    .integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
                ColumnDef::new(ScheduleHealth::EpisodeResets)
                    .integer()
                    .null()
                    .to_owned(),
            ],
        )
        .await?;
        manager
            .get_connection()
            .execute_unprepared(OPEN_EPISODES)
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notices::Table)
                    .col(ColumnDef::new(Notices::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Notices::TenantId).string_len(64).not_null())
                    .col(ColumnDef::new(Notices::ScheduleId).uuid().not_null())
                    .col(
                        ColumnDef::new(Notices::Transition)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(ColumnDef::new(Notices::Target).json().not_null())
                    .col(ColumnDef::new(Notices::Body).text().not_null())
                    .col(ColumnDef::new(Notices::Status).string_len(16).not_null())
                    .col(ColumnDef::new(Notices::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(Notices::NextAttemptAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Notices::LockedBy).string_len(128).null())
                    .col(
                        ColumnDef::new(Notices::LockedUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Notices::LastError).text().null())
                    .col(ColumnDef::new(Notices::LastStatusCode).integer().null())
                    .col(
                        ColumnDef::new(Notices::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Notices::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Notices::Table, Notices::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // The sender's look for due notices, and the pruning of finished ones.
        columns::index(
            manager,
            Notices::Table,
            "notices_due_idx",
            [Notices::Status, Notices::NextAttemptAt],
        )
        .await?;
        columns::index(
            manager,
            Notices::Table,
            "notices_schedule_idx",
            [Notices::ScheduleId, Notices::CreatedAt],
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Notices::Table).to_owned())
            .await?;
        columns::drop(
            manager,
            ScheduleHealth::Table,
            [
                ScheduleHealth::FailingSince,
                ScheduleHealth::Resets,
                ScheduleHealth::EpisodeResets,
            ],
        )
        .await?;
        columns::drop(manager, Tenants::Table, [Tenants::Notify]).await?;
        columns::drop(
            manager,
            Schedules::Table,
            [Schedules::Notify, Schedules::PauseAfterFailures],
        )
        .await?;
        Ok(())
    }
}
