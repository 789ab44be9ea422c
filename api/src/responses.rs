//! The OpenAPI pieces operations share, each written once: the error responses, as response
//! components (`#/components/responses/<Name>`, a `Problem` with an example rendered by
//! [`ApiError`] itself) that operations reference by name, either one by one (`(status = 404,
//! response = NotFound)`) or through the sets below, which group the errors that always come
//! together; and the `Idempotency-Key` and `X-Change-Reason` header parameters.

use utoipa::{IntoParams, IntoResponses, ToResponse};

use crate::error::{ApiError, Problem};

/// 400.
#[derive(ToResponse)]
#[response(
    description = "Malformed JSON, or an `If-Match` that holds no ETag of this API",
    content_type = "application/problem+json",
    example = json!(crate::dto::examples::malformed_json_problem())
)]
pub struct BadRequest(pub Problem);

/// 401.
#[derive(ToResponse)]
#[response(
    description = "No token, or a bad one: malformed, badly signed, with another algorithm, \
expired, not yet valid or for another audience",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer`")),
    example = json!(ApiError::Unauthorized("the token has expired".into()).problem())
)]
pub struct Unauthorized(pub Problem);

/// 403 on an operation that needs `schedules:read`.
#[derive(ToResponse)]
#[response(
    description = "The token lacks the scope `schedules:read`, or its tenant is disabled",
    content_type = "application/problem+json",
    example = json!(ApiError::MissingScope("schedules:read").problem())
)]
pub struct ForbiddenRead(pub Problem);

/// 403 on an operation that needs `schedules:write`.
#[derive(ToResponse)]
#[response(
    description = "The token lacks the scope `schedules:write`, or its tenant is disabled",
    content_type = "application/problem+json",
    example = json!(ApiError::MissingScope("schedules:write").problem())
)]
pub struct ForbiddenWrite(pub Problem);

/// 403 on an operation that needs `admin`.
#[derive(ToResponse)]
#[response(
    description = "The token lacks the scope `admin`, or its tenant is disabled",
    content_type = "application/problem+json",
    example = json!(ApiError::MissingScope("admin").problem())
)]
pub struct ForbiddenAdmin(pub Problem);

/// 404.
#[derive(ToResponse)]
#[response(
    description = "No such id: another tenant's id, and an id that is not a UUID, answer \
exactly like an id that does not exist",
    content_type = "application/problem+json",
    example = json!(ApiError::not_found("schedule").problem())
)]
pub struct NotFound(pub Problem);

/// 409.
#[derive(ToResponse)]
#[response(
    description = "The request conflicts with the current state: a schedule name that is \
taken, a tenant that exists, a run that has not failed, a schedule that kept changing under the \
request, a manual run past the schedule's `max_runs` (naming it in `errors`), an admin disabling \
its own tenant, or a request with the same `Idempotency-Key` that is still being handled",
    content_type = "application/problem+json",
    example = json!(ApiError::Conflict(
        "a schedule with this name already exists".into()
    ).problem())
)]
pub struct Conflict(pub Problem);

/// 412.
#[derive(ToResponse)]
#[response(
    description = "`If-Match` names a version the schedule is no longer at (for `PUT` by name: \
there is no schedule of that name yet)",
    content_type = "application/problem+json",
    example = json!(ApiError::PreconditionFailed(
        "the schedule is at version 3, not the one If-Match names".into()
    ).problem())
)]
pub struct PreconditionFailed(pub Problem);

/// 413.
#[derive(ToResponse)]
#[response(
    description = "The body exceeds 256 KiB",
    content_type = "application/problem+json",
    example = json!(crate::body::too_large().problem())
)]
pub struct PayloadTooLarge(pub Problem);

/// 408.
#[derive(ToResponse)]
#[response(
    description = "The request's body did not arrive within the body timeout (`--body-timeout`, \
default 30 s), or its head within 5 s",
    content_type = "application/problem+json",
    example = json!(ApiError::RequestTimeout("the body did not arrive within 30 s".into()).problem())
)]
pub struct RequestTimeout(pub Problem);

/// 415.
#[derive(ToResponse)]
#[response(
    description = "The body is not JSON (`application/json` or `application/*+json`)",
    content_type = "application/problem+json",
    example = json!(crate::body::not_json(Some("text/plain")).problem())
)]
pub struct UnsupportedMediaType(pub Problem);

/// 422.
#[derive(ToResponse)]
#[response(
    description = "Invalid: `errors` lists every offending body member, query parameter or \
header (`Idempotency-Key` reused for another request, say)",
    content_type = "application/problem+json",
    example = json!(crate::dto::examples::invalid_schedule_problem())
)]
pub struct Invalid(pub Problem);

/// 429.
#[derive(ToResponse)]
#[response(
    description = "Over the tenant's API rate limit, or (creating a schedule) over its schedule \
quota",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait before trying again")),
    example = json!(ApiError::TooManyRequests {
        detail: "tenant acme is over its rate limit of 100 requests per second".into(),
        retry_after_seconds: 1,
    }.problem())
)]
pub struct TooManyRequests(pub Problem);

/// What any call that needs `schedules:read` may answer before it does anything.
#[derive(IntoResponses)]
pub enum ReadAccess {
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(status = 403)]
    Forbidden(#[ref_response] ForbiddenRead),
    #[response(status = 429)]
    TooManyRequests(#[ref_response] TooManyRequests),
}

/// What any call that needs `schedules:write` may answer before it does anything.
#[derive(IntoResponses)]
pub enum WriteAccess {
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(status = 403)]
    Forbidden(#[ref_response] ForbiddenWrite),
    #[response(status = 429)]
    TooManyRequests(#[ref_response] TooManyRequests),
}

/// What any call that needs `admin` may answer before it does anything.
#[derive(IntoResponses)]
pub enum AdminAccess {
    #[response(status = 401)]
    Unauthorized(#[ref_response] Unauthorized),
    #[response(status = 403)]
    Forbidden(#[ref_response] ForbiddenAdmin),
    #[response(status = 429)]
    TooManyRequests(#[ref_response] TooManyRequests),
}

/// What a call with a JSON body may answer about the body.
#[derive(IntoResponses)]
pub enum JsonBody {
    #[response(status = 400)]
    BadRequest(#[ref_response] BadRequest),
    #[response(status = 408)]
    RequestTimeout(#[ref_response] RequestTimeout),
    #[response(status = 413)]
    PayloadTooLarge(#[ref_response] PayloadTooLarge),
    #[response(status = 415)]
    UnsupportedMediaType(#[ref_response] UnsupportedMediaType),
    #[response(status = 422)]
    Invalid(#[ref_response] Invalid),
}

/// What a call that honours `Idempotency-Key` may answer about the key: 409 while the first
/// request with it is still being handled, 422 when it was used for another request.
#[derive(IntoResponses)]
pub enum Idempotent {
    #[response(status = 409)]
    Conflict(#[ref_response] Conflict),
    #[response(status = 422)]
    Invalid(#[ref_response] Invalid),
}

/// The `Idempotency-Key` request header of the operations that honour it (see `idempotency`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct IdempotencyKeyHeader {
    /// Makes a retried request return the first successful response (marked Idempotent-Replayed: true) instead of acting again; kept 24 h, per calling tenant
    #[param(rename = "Idempotency-Key")]
    pub idempotency_key: Option<String>,
}

/// The `X-Change-Reason` request header of the operations that change a schedule (see
/// `routes::change_reason`).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
pub struct ChangeReasonHeader {
    /// Why the change is made, kept with its revision: at most 1000 characters of UTF-8 without control characters, percent-decoded (`caf%C3%A9` is `café`; a `%` not followed by two hex digits stays as it is); 422 otherwise
    #[param(rename = "X-Change-Reason")]
    pub change_reason: Option<String>,
}
