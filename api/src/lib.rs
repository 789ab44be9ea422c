//! hookbeat's HTTP API (actix-web): authentication, problem+json errors, the `/v1` routes, and
//! the operational endpoints (`/healthz`, `/readyz`, `/metrics`, `/openapi.yaml`).

pub mod auth;
pub mod body;
pub mod calendars;
pub mod dto;
pub mod error;
pub mod head_timeout;
pub mod http_metrics;
pub mod idempotency;
pub mod openapi;
pub mod rate_limit;
pub mod responses;
pub mod revisions;
pub mod routes;
pub mod schedules;
pub mod startup;
pub mod state;
pub mod tenants;

pub use startup::run;
pub use state::AppState;
