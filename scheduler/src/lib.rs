//! hookbeat's scheduler: the schedule math (pure), the definitions of what a schedule sends, and
//! the worker that turns due schedules into runs and delivers them as signed webhooks.
//!
//! ```text
//! schedules ──materialise──> runs ──claim──> deliver (HTTP) ──record──> runs + attempts
//! ```
//!
//! Every write of `runs` is a transition of [`runs`]; see `docs/architecture.md` for the modules
//! and what each owns.

pub mod calendar;
pub mod clock;
pub mod definition;
pub mod deliver;
pub mod dispatch;
pub mod fairness;
pub mod health;
pub mod instant;
pub mod maintenance;
pub mod materialise;
pub mod merge_patch;
pub mod metrics;
pub mod notices;
pub mod notify;
pub mod outcome;
pub mod pausing;
pub mod politeness;
pub mod retry;
pub mod revisions;
pub mod runs;
pub mod schedule;
pub mod sealing;
pub mod secrets_at_rest;
pub mod shards;
pub mod signing;
pub mod skips;
pub mod sql;
pub mod ssrf;
pub mod steps;
pub mod stored;
pub mod timeline;
pub mod validation;

pub use clock::{Clock, ManualClock, SystemClock};
pub use dispatch::{Worker, WorkerConfig};
