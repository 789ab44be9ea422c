//! Workers and shard leases, and the index behind tenant-fair claiming. Workers and shards: the schedules are divided into a fixed number of shards, and live
//! workers share them out, each owning its shards under a lease it renews by heartbeat.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The number of shards, fixed at install. It must equal the scheduler's `SHARD_COUNT` (a test
/// checks): changing it would move schedules between shards.
pub const SHARDS: i32 = 64;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Workers::Table)
                    .col(
                        ColumnDef::new(Workers::Id)
                            .string_len(128)
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Workers::StartedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Workers::HeartbeatAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Workers::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ShardLeases::Table)
                    .col(
                        ColumnDef::new(ShardLeases::Shard)
                            .integer()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ShardLeases::Owner).string_len(128).null())
                    .col(
                        ColumnDef::new(ShardLeases::LeaseUntil)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        let mut insert = Query::insert();
        insert
            .into_table(ShardLeases::Table)
            .columns([ShardLeases::Shard]);
        for shard in 0..SHARDS {
            insert.values_panic([shard.into()]);
        }
        manager.exec_stmt(insert).await?;
        // Materialise within owned shards: `shard IN (…) AND enabled AND next_run_at <= $now`.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX schedules_shard_due_idx ON schedules (shard, next_run_at) \
                 WHERE enabled AND next_run_at IS NOT NULL",
            )
            .await?;
        // Fair claiming: which tenants have due runs, and each one's oldest due runs.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE INDEX runs_tenant_due_idx ON runs (tenant_id, due_at) \
                 WHERE status IN ('pending', 'retrying', 'delivering')",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX schedules_shard_due_idx")
            .await?;
        manager
            .get_connection()
            .execute_unprepared("DROP INDEX runs_tenant_due_idx")
            .await?;
        manager
            .drop_table(Table::drop().table(ShardLeases::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Workers::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Workers {
    Table,
    Id,
    StartedAt,
    HeartbeatAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum ShardLeases {
    Table,
    Shard,
    Owner,
    LeaseUntil,
}
