//! Every schedule accounts for itself: its health kept by the worker as runs finish (the run of
//! failures, the last success and failure, the lag of the latest fire) in a narrow table of its
//! own, so the write-back never waits on a schedule row the materialiser holds; its
//! `late_after_ms`; when it was paused (to record the fires of the pause on resume); each run's
//! fire lag; and the fires the engine decided not to deliver, with the reason, as ranges (a
//! catch-up that drops a day of per-second fires is one row).

use sea_orm_migration::prelude::*;

use crate::columns;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    LateAfterMs,
    PausedAt,
}

#[derive(DeriveIden)]
enum ScheduleHealth {
    Table,
    ScheduleId,
    ConsecutiveFailures,
    LastSuccessAt,
    LastFailureAt,
    LastFireLagMs,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    FireLagMs,
}

#[derive(DeriveIden)]
enum SkippedFires {
    Table,
    ScheduleId,
    FirstAt,
    LastAt,
    Fires,
    Reason,
    RecordedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        columns::add(
            manager,
            Schedules::Table,
            [
                ColumnDef::new(Schedules::LateAfterMs)
                    .big_integer()
                    .null()
                    .to_owned(),
                ColumnDef::new(Schedules::PausedAt)
                    .timestamp_with_time_zone()
                    .null()
                    .to_owned(),
            ],
        )
        .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(ColumnDef::new(Runs::FireLagMs).big_integer().null())
                    .to_owned(),
            )
            .await?;
        // A schedule without a row has a fresh health: the first result makes it.
        manager
            .create_table(
                Table::create()
                    .table(ScheduleHealth::Table)
                    .col(
                        ColumnDef::new(ScheduleHealth::ScheduleId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(ScheduleHealth::ConsecutiveFailures)
                            .integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ScheduleHealth::LastSuccessAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ScheduleHealth::LastFailureAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(ScheduleHealth::LastFireLagMs)
                            .big_integer()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ScheduleHealth::Table, ScheduleHealth::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(SkippedFires::Table)
                    .col(ColumnDef::new(SkippedFires::ScheduleId).uuid().not_null())
                    .col(
                        ColumnDef::new(SkippedFires::FirstAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SkippedFires::LastAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(SkippedFires::Fires).big_integer().not_null())
                    .col(
                        ColumnDef::new(SkippedFires::Reason)
                            .string_len(16)
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(SkippedFires::RecordedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(SkippedFires::ScheduleId)
                            .col(SkippedFires::FirstAt),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SkippedFires::Table, SkippedFires::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Pruned with the run history, by the last fire of each range.
        manager
            .create_index(
                Index::create()
                    .name("skipped_fires_last_at_idx")
                    .table(SkippedFires::Table)
                    .col(SkippedFires::LastAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SkippedFires::Table.into_iden(),
            ScheduleHealth::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .drop_column(Runs::FireLagMs)
                    .to_owned(),
            )
            .await?;
        columns::drop(
            manager,
            Schedules::Table,
            [Schedules::LateAfterMs, Schedules::PausedAt],
        )
        .await?;
        Ok(())
    }
}
