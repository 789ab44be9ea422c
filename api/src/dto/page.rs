//! Keyset pagination: `limit` and an opaque `cursor` (the last id of the previous page; ids are
//! UUIDv7 and sort by creation), stable under concurrent inserts and deletes. No OFFSET.

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

    pub fn cursor(&self) -> Result<Option<Uuid>, ApiError> {
        self.cursor
            .as_deref()
            .map(|c| {
                Uuid::parse_str(c).map_err(|_| {
                    ApiError::validation("cursor", "is not a cursor returned by this API")
                })
            })
            .transpose()
    }
}

/// Cuts one extra fetched row off and turns it into the next cursor.
pub fn finish_page<T>(
    mut rows: Vec<T>,
    limit: u64,
    id: impl Fn(&T) -> Uuid,
) -> (Vec<T>, Option<String>) {
    if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(|row| id(row).to_string());
        (rows, next)
    } else {
        (rows, None)
    }
}
