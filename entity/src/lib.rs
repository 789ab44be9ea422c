//! sea-orm models of hookbeat's tables, typed ids, and the tenant-scoped query roots.
//!
//! Every tenant-owned table is reached through a tenant-scoped root (`find_for_tenant`,
//! `find_for_tenant_by_id`, `update_for_tenant`, `delete_for_tenant`) so that neither a read nor
//! a write can forget the tenant filter; the tenant itself only ever comes from a verified token.
//! Runs are written only by the scheduler's run transitions (`hookbeat_scheduler::runs`), which
//! take the tenant from the run itself.

pub mod attempt;
pub mod calendar;
pub mod idempotency_key;
pub mod ids;
pub mod run;
pub mod schedule;
pub mod schedule_revision;
pub mod setting;
pub mod signing_secret;
pub mod tenant;
pub mod transaction;

pub use ids::{RunId, ScheduleId, TenantId};
pub use transaction::begin_write;
