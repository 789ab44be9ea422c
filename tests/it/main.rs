//! hookbeat's integration tests: one binary, one harness (`helpers`). Tests that touch storage
//! run on SQLite and on PostgreSQL (`<name>::sqlite`, `<name>::postgres`).

mod helpers;

mod auth;
mod calendars;
mod capacity;
mod cli;
mod delivery;
mod end_to_end;
mod errors;
mod guards;
mod health;
mod instants;
mod isolation;
mod life_cycle;
mod notices;
mod operations;
mod outbound;
mod revisions;
mod rrule;
mod scale;
mod schedules;
mod secrets;
mod shards;
mod spec;
mod steps;
mod tenants;
mod time_engine;
mod timeline;
