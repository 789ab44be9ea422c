//! `/metrics` (Prometheus text format) and `/openapi.yaml` (the spec this server implements).

use actix_web::{web, HttpResponse};
use prometheus::{Encoder, TextEncoder};

use crate::error::ApiError;
use crate::state::AppState;

/// Prometheus metrics.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain; version=0.0.4")))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&state.registry.gather(), &mut buffer)
        .map_err(|e| ApiError::Internal(e.into()))?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(buffer))
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.yaml", tag = "operations",
    responses((status = 200, description = "The spec", body = String, content_type = "application/yaml")))]
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/yaml")
        .body(crate::openapi::SPEC_YAML)
}
