//! Keyset pagination: `limit` and an opaque `cursor` (the last key of the previous page: an id,
//! UUIDv7, which sorts by creation; a revision's version), stable under concurrent inserts and
//! deletes. No OFFSET.

use std::str::FromStr;

use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u64 = 50;
pub const MAX_LIMIT: u64 = 500;

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl PageQuery {
    pub fn limit(&self) -> Result<u64, ApiError> {
        match self.limit {
            None => Ok(DEFAULT_LIMIT),
            Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
            Some(n) => Err(ApiError::validation(
                "limit",
                format!("must be between 1 and {MAX_LIMIT}, got {n}"),
            )),
        }
    }

    /// The cursor of a list keyed by time-ordered ids.
    pub fn cursor(&self) -> Result<Option<Uuid>, ApiError> {
        self.cursor_as()
    }

    /// The cursor of a list keyed by something else that reads from its text.
    pub fn cursor_as<K: FromStr>(&self) -> Result<Option<K>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                c.parse().map_err(|_| {
                    ApiError::validation("cursor", "is not a cursor returned by this API")
                })
            })
            .transpose()
    }
}

/// Cuts one extra fetched row off and turns its key into the next cursor.
pub fn finish_page<T, K: ToString>(
    mut rows: Vec<T>,
    limit: u64,
    id: impl Fn(&T) -> K,
) -> (Vec<T>, Option<String>) {
    if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(|row| id(row).to_string());
        (rows, next)
    } else {
        (rows, None)
    }
}
