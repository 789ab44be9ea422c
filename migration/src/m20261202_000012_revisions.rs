//! Revisions: one row per change to a schedule, at the version the change made, with who made it,
//! why, the JSON merge patch from the revision before and the definition after it. A deleted
//! schedule's revisions outlive it until the history retention prunes them, so nothing ties them
//! to `schedules`; they go with their tenant.

use sea_orm_migration::prelude::*;

use crate::columns;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ScheduleRevisions {
    Table,
    ScheduleId,
    Version,
    TenantId,
    CreatedAt,
    Action,
    ActorSub,
    ActorTokenId,
    ActorName,
    Reason,
    RestoredFrom,
    Patch,
    Document,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use ScheduleRevisions as R;
        manager
            .create_table(
                Table::create()
                    .table(R::Table)
                    .col(ColumnDef::new(R::ScheduleId).uuid().not_null())
                    .col(ColumnDef::new(R::Version).big_integer().not_null())
                    .col(ColumnDef::new(R::TenantId).string_len(128).not_null())
                    .col(
                        ColumnDef::new(R::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(R::Action).string_len(16).not_null())
                    .col(ColumnDef::new(R::ActorSub).string_len(128).not_null())
                    .col(ColumnDef::new(R::ActorTokenId).text().null())
                    .col(ColumnDef::new(R::ActorName).text().null())
                    .col(ColumnDef::new(R::Reason).text().null())
                    .col(ColumnDef::new(R::RestoredFrom).big_integer().null())
                    // NULL is the merge patch `null`: a delete's.
                    .col(ColumnDef::new(R::Patch).json().null())
                    .col(ColumnDef::new(R::Document).json().not_null())
                    .primary_key(Index::create().col(R::ScheduleId).col(R::Version))
                    .foreign_key(&mut columns::cascade_to_tenant(R::Table, R::TenantId))
                    .to_owned(),
            )
            .await?;
        // A tenant's history of one schedule, newest first; and the pruning by age.
        columns::index(
            manager,
            R::Table,
            "schedule_revisions_tenant_idx",
            [R::TenantId, R::ScheduleId, R::Version],
        )
        .await?;
        columns::index(
            manager,
            R::Table,
            "schedule_revisions_created_idx",
            [R::CreatedAt],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ScheduleRevisions::Table).to_owned())
            .await
    }
}
