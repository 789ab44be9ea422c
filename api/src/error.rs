//! One error type for the API, rendered as `application/problem+json` (RFC 9457). Extractor
//! failures are routed through it too, so no plain-text error ever reaches a client. 5xx bodies
//! say nothing internal; the log has the detail.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use hookbeat_scheduler::validation::FieldError;
use sea_orm::{DbErr, SqlErr};
use serde::Serialize;
use utoipa::ToSchema;

pub const PROBLEM_JSON: &str = "application/problem+json";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("this call needs the scope `{0}`")]
    MissingScope(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A conflict with the state of one member (a limit it sets), named like a validation error.
    #[error("{}: {}", .0.field, .0.message)]
    FieldConflict(FieldError),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    RequestTimeout(String),
    #[error("{0}")]
    PayloadTooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    Forbidden(String),
    #[error("{detail}")]
    TooManyRequests {
        detail: String,
        retry_after_seconds: u64,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!(ApiError::validation("schedule.every_seconds", "must be at least 1").problem()))]
pub struct Problem {
    /// A URN naming the kind of problem, e.g. `urn:hookbeat:problem:validation`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Present on validation errors (422), one entry per offending field, and on a conflict with
    /// a limit a member sets (409, e.g. `max_runs`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl ApiError {
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn not_found(what: &str) -> Self {
        ApiError::NotFound(format!("{what} not found"))
    }

    /// The problem+json body of this error. An internal error's says nothing internal.
    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let detail = match self {
            ApiError::Internal(_) => "an internal error occurred; it has been logged".to_owned(),
            ApiError::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        let errors = match self {
            ApiError::Validation(errors) => Some(errors.clone()),
            ApiError::FieldConflict(error) => Some(vec![error.clone()]),
            _ => None,
        };
        Problem::new(status, self.slug(), detail, errors)
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad-request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::MissingScope(_) => "forbidden",
            ApiError::NotFound(_) => "not-found",
            ApiError::Conflict(_) | ApiError::FieldConflict(_) => "conflict",
            ApiError::PreconditionFailed(_) => "precondition-failed",
            ApiError::RequestTimeout(_) => "request-timeout",
            ApiError::PayloadTooLarge(_) => "payload-too-large",
            ApiError::UnsupportedMediaType(_) => "unsupported-media-type",
            ApiError::Validation(_) => "validation",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooManyRequests { .. } => "too-many-requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl From<DbErr> for ApiError {
    /// The one place where a unique violation becomes a 409.
    fn from(error: DbErr) -> Self {
        match error.sql_err() {
            Some(SqlErr::UniqueConstraintViolation(_)) => {
                ApiError::Conflict("a schedule with this name already exists".to_owned())
            }
            _ => ApiError::Internal(anyhow::Error::new(error).context("database error")),
        }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MissingScope(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) | ApiError::FieldConflict(_) => StatusCode::CONFLICT,
            ApiError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            ApiError::RequestTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let ApiError::Internal(error) = self {
            tracing::error!(error = %format!("{error:#}"), "internal error");
        }
        let mut response = render(self.problem());
        if let ApiError::TooManyRequests {
            retry_after_seconds,
            ..
        } = self
        {
            if let Ok(value) = header::HeaderValue::from_str(&retry_after_seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

impl Problem {
    fn new(
        status: StatusCode,
        slug: &str,
        detail: String,
        errors: Option<Vec<FieldError>>,
    ) -> Self {
        Problem {
            kind: format!("urn:hookbeat:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors,
        }
    }
}

pub fn problem_response(
    status: StatusCode,
    slug: &str,
    detail: String,
    errors: Option<Vec<FieldError>>,
) -> HttpResponse {
    render(Problem::new(status, slug, detail, errors))
}

fn render(problem: Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = HttpResponse::build(status);
    response.insert_header((header::CONTENT_TYPE, PROBLEM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
    }
    response.json(problem)
}
