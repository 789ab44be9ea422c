//! Dependent steps: a schedule's `then` targets and `on_failure` target, and which step a run
//! is at.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .add_column(ColumnDef::new(Schedules::Chain).json_binary().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Schedules::Table)
                    .add_column(ColumnDef::new(Schedules::OnFailure).json_binary().null())
                    .to_owned(),
            )
            .await?;
        // 0: the target; 1..: the `then` steps; -1: the `on_failure` call.
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(ColumnDef::new(Runs::Step).integer().not_null().default(0))
                    .to_owned(),
            )
            .await?;
        // What failed, kept while the `on_failure` call is delivered and after.
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .add_column(ColumnDef::new(Runs::Failure).json_binary().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Attempts::Table)
                    .add_column(
                        ColumnDef::new(Attempts::Step)
                            .integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (table, column) in [
            (Schedules::Table.into_iden(), Schedules::Chain.into_iden()),
            (
                Schedules::Table.into_iden(),
                Schedules::OnFailure.into_iden(),
            ),
            (Runs::Table.into_iden(), Runs::Step.into_iden()),
            (Runs::Table.into_iden(), Runs::Failure.into_iden()),
            (Attempts::Table.into_iden(), Attempts::Step.into_iden()),
        ] {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Schedules {
    Table,
    Chain,
    OnFailure,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Step,
    Failure,
}

#[derive(DeriveIden)]
enum Attempts {
    Table,
    Step,
}
