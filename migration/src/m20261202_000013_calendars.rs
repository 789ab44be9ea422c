//! Exclusion calendars: a tenant's named calendars (their definition as one JSON document), and
//! the `exclude` list of calendar names on a schedule.

use sea_orm_migration::prelude::*;

use crate::columns;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Exclude,
}

#[derive(DeriveIden)]
enum Calendars {
    Table,
    TenantId,
    Name,
    Definition,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Calendars::Table)
                    .col(ColumnDef::new(Calendars::TenantId).string().not_null())
                    .col(ColumnDef::new(Calendars::Name).string().not_null())
                    .col(ColumnDef::new(Calendars::Definition).json().not_null())
                    .col(
                        ColumnDef::new(Calendars::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Calendars::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(Calendars::TenantId)
                            .col(Calendars::Name),
                    )
                    .to_owned(),
            )
            .await?;
        columns::add(
            manager,
            Schedules::Table,
            [ColumnDef::new(Schedules::Exclude).json().null().to_owned()],
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        columns::drop(manager, Schedules::Table, [Schedules::Exclude]).await?;
        manager
            .drop_table(Table::drop().table(Calendars::Table).to_owned())
            .await
    }
}
