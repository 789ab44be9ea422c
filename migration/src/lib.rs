//! hookbeat's schema, as sea-orm migrations. Partial indexes are raw SQL because sea-query
//! cannot express their `WHERE` clause; the SQL is the same on PostgreSQL and SQLite.

pub use sea_orm_migration::prelude::*;

mod columns;
mod m20261122_000001_initial;
mod m20261122_000002_shards;
mod m20261122_000003_history;
mod m20261122_000004_steps;
mod m20261122_000005_idempotency;
mod m20261122_000006_leases;
mod m20261122_000007_queue_indexes;
mod m20261201_000008_schedule_count;
mod m20261201_000009_sole_attempt;
mod m20261202_000010_schedule_health;
mod m20261202_000011_notices;
mod m20261202_000012_revisions;
mod m20261202_000013_calendars;
mod m20261202_000014_runs_by_rule;

pub use m20261122_000002_shards::SHARDS;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261122_000001_initial::Migration),
            Box::new(m20261122_000002_shards::Migration),
            Box::new(m20261122_000003_history::Migration),
            Box::new(m20261122_000004_steps::Migration),
            Box::new(m20261122_000005_idempotency::Migration),
            Box::new(m20261122_000006_leases::Migration),
            Box::new(m20261122_000007_queue_indexes::Migration),
            Box::new(m20261201_000008_schedule_count::Migration),
            Box::new(m20261201_000009_sole_attempt::Migration),
            Box::new(m20261202_000010_schedule_health::Migration),
            Box::new(m20261202_000011_notices::Migration),
            Box::new(m20261202_000012_revisions::Migration),
            Box::new(m20261202_000013_calendars::Migration),
            Box::new(m20261202_000014_runs_by_rule::Migration),
        ]
    }
}
