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
pub fn parse_id<Id: From<Uuid>>(raw: &str, what: &str) -> Result<Id, ApiError> {
    Uuid::parse_str(raw)
        .map(Id::from)
        .map_err(|_| ApiError::not_found(what))
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
    // Every member must be an entity-tag (RFC 9110 section 8.8.3): `"…"` or `W/"…"`. One that
    // is well formed but not one of ours (not a version number) matches nothing, so a request
    // naming only such tags fails its precondition (412) rather than being malformed (400).
    let mut versions = Vec::new();
    for member in value.split(',').map(str::trim).filter(|m| !m.is_empty()) {
        let opaque = member.strip_prefix("W/").unwrap_or(member);
        match opaque.strip_prefix('"').and_then(|o| o.strip_suffix('"')) {
            Some(inner) if !inner.contains('"') => {
                if let Ok(version) = inner.parse::<i64>() {
                    versions.push(version);
                }
            }
            _ => {
                return Err(ApiError::BadRequest(format!(
                "If-Match must be * or a list of quoted entity-tags such as \"3\", got {value:?}"
            )))
            }
        }
    }
    Ok(Some(versions))
}
