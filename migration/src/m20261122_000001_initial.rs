//! Tenants, schedules, runs, attempts, signing secrets and settings.

use sea_orm_migration::prelude::*;

use crate::columns::cascade_to_tenant;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Indexes whose `WHERE` clause sea-query cannot express. Each names the query it serves.
const PARTIAL_INDEXES: &[&str] = &[
    // Materialise: `enabled AND next_run_at <= $now ORDER BY next_run_at`. Disabled and finished
    // schedules stay out of the index, so its size tracks the schedules that can still fire.
    "CREATE INDEX schedules_due_idx ON schedules (next_run_at) WHERE enabled AND next_run_at IS NOT NULL",
    // Claim: `status IN (…) AND due_at <= $now ORDER BY due_at`. Finished runs leave the index
    // (their due_at is NULL and their status terminal), so history does not slow the hot path.
    "CREATE INDEX runs_claim_idx ON runs (due_at) WHERE status IN ('pending', 'retrying', 'delivering')",
    // Overlap `skip`: is a run of this schedule still unfinished?
    "CREATE INDEX runs_active_schedule_idx ON runs (schedule_id) WHERE status IN ('pending', 'retrying', 'delivering')",
    // A schedule fires at most once per instant, even while two workers race for it.
    "CREATE UNIQUE INDEX runs_schedule_fire_uq ON runs (schedule_id, scheduled_for) WHERE \"trigger\" = 'schedule'",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Settings::Table)
                    .col(
                        ColumnDef::new(Settings::Key)
                            .string_len(64)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Settings::Value).text().not_null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Tenants::Table)
                    .col(
                        ColumnDef::new(Tenants::Id)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Tenants::Disabled)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(Tenants::MaxSchedules)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tenants::MinIntervalSeconds)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Tenants::ApiRatePerSecond)
                            .big_integer()
                            .not_null(),
                    )
                    .col(timestamp(Tenants::CreatedAt))
                    .col(timestamp(Tenants::UpdatedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SigningSecrets::Table)
                    .col(
                        ColumnDef::new(SigningSecrets::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(tenant_ref(SigningSecrets::TenantId))
                    .col(ColumnDef::new(SigningSecrets::Secret).text().not_null())
                    .col(timestamp(SigningSecrets::CreatedAt))
                    .col(
                        ColumnDef::new(SigningSecrets::ExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(&mut cascade_to_tenant(
                        SigningSecrets::Table,
                        SigningSecrets::TenantId,
                    ))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("signing_secrets_tenant_idx")
                    .table(SigningSecrets::Table)
                    .col(SigningSecrets::TenantId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Schedules::Table)
                    .col(
                        ColumnDef::new(Schedules::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(tenant_ref(Schedules::TenantId))
                    .col(ColumnDef::new(Schedules::Shard).integer().not_null())
                    .col(ColumnDef::new(Schedules::Name).string_len(200).not_null())
                    .col(ColumnDef::new(Schedules::Description).text().null())
                    .col(ColumnDef::new(Schedules::Spec).json_binary().not_null())
                    .col(ColumnDef::new(Schedules::Target).json_binary().not_null())
                    .col(ColumnDef::new(Schedules::Retry).json_binary().not_null())
                    .col(
                        ColumnDef::new(Schedules::StartAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Schedules::EndAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Schedules::MaxRuns).big_integer().null())
                    .col(
                        ColumnDef::new(Schedules::JitterMs)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Schedules::Catchup).string_len(16).not_null())
                    .col(ColumnDef::new(Schedules::Overlap).string_len(16).not_null())
                    .col(ColumnDef::new(Schedules::Enabled).boolean().not_null())
                    .col(ColumnDef::new(Schedules::PausedReason).text().null())
                    .col(ColumnDef::new(Schedules::Metadata).json_binary().not_null())
                    .col(
                        ColumnDef::new(Schedules::NextRunAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Schedules::LastRunAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Schedules::TotalRuns)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(timestamp(Schedules::CreatedAt))
                    .col(timestamp(Schedules::UpdatedAt))
                    .col(ColumnDef::new(Schedules::Version).big_integer().not_null())
                    .foreign_key(&mut cascade_to_tenant(
                        Schedules::Table,
                        Schedules::TenantId,
                    ))
                    .to_owned(),
            )
            .await?;
        // Names are unique per tenant (409 on a duplicate); the index also serves upsert by name.
        manager
            .create_index(
                Index::create()
                    .name("schedules_tenant_name_uq")
                    .table(Schedules::Table)
                    .col(Schedules::TenantId)
                    .col(Schedules::Name)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Listing: `tenant_id = $1 AND id > $cursor ORDER BY id`.
        manager
            .create_index(
                Index::create()
                    .name("schedules_tenant_id_idx")
                    .table(Schedules::Table)
                    .col(Schedules::TenantId)
                    .col(Schedules::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(ColumnDef::new(Runs::Id).uuid().not_null().primary_key())
                    .col(tenant_ref(Runs::TenantId))
                    .col(ColumnDef::new(Runs::ScheduleId).uuid().not_null())
                    .col(timestamp(Runs::ScheduledFor))
                    .col(ColumnDef::new(Runs::Trigger).string_len(16).not_null())
                    .col(ColumnDef::new(Runs::Status).string_len(16).not_null())
                    .col(
                        ColumnDef::new(Runs::Attempts)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    // Attempts made before the current retry budget began (a redelivery starts a
                    // fresh budget without renumbering the attempts already in history).
                    .col(
                        ColumnDef::new(Runs::RetryBase)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Runs::DueAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Runs::LockedBy).string_len(128).null())
                    .col(ColumnDef::new(Runs::LastStatusCode).integer().null())
                    .col(ColumnDef::new(Runs::LastError).text().null())
                    .col(timestamp(Runs::CreatedAt))
                    .col(timestamp(Runs::UpdatedAt))
                    .col(
                        ColumnDef::new(Runs::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(&mut cascade_to_tenant(Runs::Table, Runs::TenantId))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Runs::Table, Runs::ScheduleId)
                            .to(Schedules::Table, Schedules::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // History, newest first: per tenant, per tenant and status, per schedule.
        for (name, cols) in [
            ("runs_tenant_id_idx", vec![Runs::TenantId, Runs::Id]),
            (
                "runs_tenant_status_id_idx",
                vec![Runs::TenantId, Runs::Status, Runs::Id],
            ),
            ("runs_schedule_id_idx", vec![Runs::ScheduleId, Runs::Id]),
        ] {
            let mut index = Index::create();
            index.name(name).table(Runs::Table);
            for col in cols {
                index.col(col);
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager
            .create_table(
                Table::create()
                    .table(Attempts::Table)
                    .col(ColumnDef::new(Attempts::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Attempts::RunId).uuid().not_null())
                    .col(ColumnDef::new(Attempts::Attempt).integer().not_null())
                    .col(timestamp(Attempts::StartedAt))
                    .col(
                        ColumnDef::new(Attempts::DurationMs)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Attempts::Outcome).string_len(16).not_null())
                    .col(ColumnDef::new(Attempts::StatusCode).integer().null())
                    .col(ColumnDef::new(Attempts::Error).text().null())
                    .col(ColumnDef::new(Attempts::ResponseExcerpt).text().null())
                    .foreign_key(
                        ForeignKey::create()
                            .from(Attempts::Table, Attempts::RunId)
                            .to(Runs::Table, Runs::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("attempts_run_idx")
                    .table(Attempts::Table)
                    .col(Attempts::RunId)
                    .col(Attempts::Attempt)
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        for sql in PARTIAL_INDEXES {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Attempts::Table.into_iden(),
            Runs::Table.into_iden(),
            Schedules::Table.into_iden(),
            SigningSecrets::Table.into_iden(),
            Tenants::Table.into_iden(),
            Settings::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

/// Every instant is stored as UTC (`timestamptz` on PostgreSQL).
fn timestamp(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn tenant_ref(column: impl IntoIden) -> ColumnDef {
    ColumnDef::new(column).string_len(128).not_null().to_owned()
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Key,
    Value,
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Disabled,
    MaxSchedules,
    MinIntervalSeconds,
    ApiRatePerSecond,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SigningSecrets {
    Table,
    Id,
    TenantId,
    Secret,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Id,
    TenantId,
    Shard,
    Name,
    Description,
    Spec,
    Target,
    Retry,
    StartAt,
    EndAt,
    MaxRuns,
    JitterMs,
    Catchup,
    Overlap,
    Enabled,
    PausedReason,
    Metadata,
    NextRunAt,
    LastRunAt,
    TotalRuns,
    CreatedAt,
    UpdatedAt,
    Version,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    TenantId,
    ScheduleId,
    ScheduledFor,
    Trigger,
    Status,
    Attempts,
    RetryBase,
    DueAt,
    LockedBy,
    LastStatusCode,
    LastError,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Attempts {
    Table,
    Id,
    RunId,
    Attempt,
    StartedAt,
    DurationMs,
    Outcome,
    StatusCode,
    Error,
    ResponseExcerpt,
}
