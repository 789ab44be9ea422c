//! The routes, one module per resource.

pub mod actions;
pub mod health;
pub mod meta;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod tenants;

use actix_web::HttpRequest;
use uuid::Uuid;

use crate::error::ApiError;

/// A path id; anything that is not a UUID names nothing, so it is a 404 like an unknown id.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::not_found(what))
}

/// The version an `If-Match` header demands, if any. `*` matches every version.
pub fn if_match(req: &HttpRequest) -> Result<Option<Vec<i64>>, ApiError> {
    let Some(value) = req.headers().get(actix_web::http::header::IF_MATCH) else {
        return Ok(None);
    };
    let value = value
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not readable".into()))?;
    if value.trim() == "*" {
        return Ok(None);
    }
    value
        .split(',')
        .map(|tag| {
            let tag = tag.trim().trim_start_matches("W/").trim_matches('"');
            tag.parse::<i64>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "If-Match must hold ETags returned by this API, got {value:?}"
                ))
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}
