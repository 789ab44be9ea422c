//! hookbeat's integration tests: one binary, one harness (`helpers`). Tests that touch storage
//! run on SQLite and on PostgreSQL (`<name>::sqlite`, `<name>::postgres`).

mod helpers;

mod auth;
mod cli;
mod delivery;
mod end_to_end;
mod errors;
mod isolation;
mod operations;
mod scale;
mod schedules;
mod secrets;
mod shards;
mod spec;
mod steps;
mod tenants;
mod time_engine;
