//! The routes, one module per resource.

pub mod actions;
pub mod calendars;
pub mod health;
pub mod meta;
pub mod revisions;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod tenants;

use actix_web::HttpRequest;
use uuid::Uuid;

use crate::error::ApiError;

/// The request header that says why a change is made; its revision keeps it.
pub const CHANGE_REASON: &str = "X-Change-Reason";
/// The longest change reason, in characters.
pub const MAX_CHANGE_REASON_CHARS: usize = 1_000;

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

/// Why the change a request makes is made: its `X-Change-Reason`, percent-decoded (`%C3%A9` is
/// `é`, so any text survives HTTP; a `%` not followed by two hex digits is kept as it is), at
/// most [`MAX_CHANGE_REASON_CHARS`] characters of UTF-8 without control characters, else a 422
/// naming the header. `None` when absent or blank.
pub fn change_reason(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(value) = req.headers().get(CHANGE_REASON) else {
        return Ok(None);
    };
    let refuse = |message: String| ApiError::validation(CHANGE_REASON, message);
    let decoded = percent_encoding::percent_decode(value.as_bytes())
        .decode_utf8()
        .map_err(|_| refuse("must be UTF-8, percent-encoded or not".to_owned()))?;
    let reason = decoded.trim();
    let chars = reason.chars().count();
    if chars > MAX_CHANGE_REASON_CHARS {
        return Err(refuse(format!(
            "must be at most {MAX_CHANGE_REASON_CHARS} characters, got {chars}"
        )));
    }
    if reason.chars().any(char::is_control) {
        return Err(refuse("must not contain control characters".to_owned()));
    }
    Ok((!reason.is_empty()).then(|| reason.to_owned()))
}
