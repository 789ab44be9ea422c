//! The `hookbeat` binary's pieces: configuration, telemetry, the database, and the roles it can
//! run (all-in-one, API only, worker only) plus its one-shot commands. `main` only composes them.

pub mod app;
pub mod cli;
pub mod commands;
pub mod database;
pub mod telemetry;
