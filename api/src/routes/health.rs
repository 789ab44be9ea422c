//! Liveness and readiness.

use std::collections::BTreeMap;

use actix_web::{web, HttpResponse};
use hookbeat_migration::{Migrator, MigratorTrait};
use sea_orm::ConnectionTrait;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, Problem};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// What readiness checked, each with what it found.
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ok")]
    pub status: &'static str,
    #[schema(example = json!({
        "database": "reachable",
        "migrations": "all 7 applied",
        "worker": "owns 16 of 64 shards"
    }))]
    pub checks: BTreeMap<&'static str, String>,
}

/// The process is alive.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// The process can serve: its database answers, its schema is up to date, and its worker (where
/// it runs one) holds or is acquiring shards. A failure names every check that failed.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "Ready, with what each check found", body = Readiness),
        (status = 503, description = "Not ready, naming the checks that failed", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut checks = BTreeMap::new();
    let mut failures = Vec::new();
    let mut check = |name: &'static str, result: Result<String, String>| match result {
        Ok(found) => {
            checks.insert(name, found);
        }
        Err(reason) => failures.push(format!("{name}: {reason}")),
    };

    // Callers are unauthenticated: they learn which check failed, the log learns why.
    let database = state
        .db
        .execute_unprepared("SELECT 1")
        .await
        .map(|_| "reachable".to_owned())
        .map_err(|error| {
            tracing::warn!(error = %error, "readiness: the database is not reachable");
            "not reachable".to_owned()
        });
    let reachable = database.is_ok();
    check("database", database);
    if reachable {
        check("migrations", migrations(&state).await);
    }
    if let Some(worker) = &state.worker {
        check("worker", worker.readiness());
    }
    if failures.is_empty() {
        Ok(HttpResponse::Ok().json(Readiness {
            status: "ok",
            checks,
        }))
    } else {
        Err(ApiError::Unavailable(format!(
            "not ready: {}",
            failures.join("; ")
        )))
    }
}

async fn migrations(state: &AppState) -> Result<String, String> {
    let pending = Migrator::get_pending_migrations(&state.db)
        .await
        .map_err(|error| {
            tracing::warn!(error = %error, "readiness: cannot read the applied migrations");
            "cannot read the applied migrations".to_owned()
        })?;
    if pending.is_empty() {
        Ok(format!("all {} applied", Migrator::migrations().len()))
    } else {
        let names: Vec<_> = pending.iter().map(|m| m.name().to_owned()).collect();
        Err(format!(
            "{} pending ({}); run `hookbeat migrate`",
            pending.len(),
            names.join(", ")
        ))
    }
}
