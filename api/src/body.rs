//! JSON request bodies with errors that say what is wrong and where: 415 for a body that is not
//! JSON, 413 past the size limit, 408 when the whole body takes longer than the body timeout
//! (`--body-timeout`) to arrive, 400 for malformed JSON, 422 naming the field for well-formed
//! JSON of the wrong shape (`schedule.every_seconds: invalid type: string "10", expected i64`).
//! An optional body (a rotation's) may also be left out altogether.

use std::future::Future;
use std::pin::Pin;

use actix_web::{dev::Payload, http::header, FromRequest, HttpRequest};
use futures::StreamExt;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// How long a whole body may take to arrive unless configured otherwise.
pub const DEFAULT_BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A request body parsed as JSON, not yet given a type (a merge patch needs it untyped).
pub struct JsonValue(pub serde_json::Value);

/// A request body that may be absent: no body at all is `None`; a body there is must be JSON,
/// as for [`JsonValue`].
pub struct OptionalJsonValue(pub Option<serde_json::Value>);

impl FromRequest for JsonValue {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read(req, payload, false);
        Box::pin(async move {
            let value = read.await?;
            Ok(JsonValue(value.expect("a required body is never absent")))
        })
    }
}

impl FromRequest for OptionalJsonValue {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let read = read(req, payload, true);
        Box::pin(async move { read.await.map(OptionalJsonValue) })
    }
}

/// Reads and parses the body; `None` only when `optional` and the request has no body bytes.
fn read(
    req: &HttpRequest,
    payload: &mut Payload,
    optional: bool,
) -> impl Future<Output = Result<Option<serde_json::Value>, ApiError>> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        });
    let declared_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let mut payload = payload.take();
    let timeout = req
        .app_data::<actix_web::web::Data<crate::state::AppState>>()
        .map_or(DEFAULT_BODY_TIMEOUT, |state| state.body_timeout);
    async move {
        let is_json = |content_type: Option<&str>| match content_type {
            Some("application/json") => true,
            Some(ct) => ct.starts_with("application/") && ct.ends_with("+json"),
            None => false,
        };
        // A body's type is judged before it is read; only an optional body may come without one.
        let may_be_absent = optional && content_type.is_none();
        if !(is_json(content_type.as_deref()) || may_be_absent) {
            return Err(not_json(content_type.as_deref()));
        }
        if declared_length.is_some_and(|len| len > MAX_BODY_BYTES) {
            return Err(too_large());
        }
        let mut body = Vec::new();
        let receive = async {
            while let Some(chunk) = payload.next().await {
                let chunk = chunk
                    .map_err(|e| ApiError::BadRequest(format!("reading the body failed: {e}")))?;
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(())
        };
        // The whole body, not each chunk: a client trickling a byte a second must not hold a
        // connection (and a handler) for as long as it likes.
        tokio::time::timeout(timeout, receive).await.map_err(|_| {
            ApiError::RequestTimeout(format!(
                "the body did not arrive within {} s",
                timeout.as_secs()
            ))
        })??;
        if optional && body.is_empty() {
            return Ok(None);
        }
        if !is_json(content_type.as_deref()) {
            return Err(not_json(content_type.as_deref()));
        }
        serde_json::from_slice(&body).map(Some).map_err(malformed)
    }
}

/// 415 for a body whose content type (`None`: none given) is not JSON.
pub(crate) fn not_json(content_type: Option<&str>) -> ApiError {
    ApiError::UnsupportedMediaType(format!(
        "the body must be JSON (content-type: application/json), got {}",
        content_type.map_or("no content-type".to_owned(), |ct| format!("{ct:?}"))
    ))
}

/// 413 for a body past [`MAX_BODY_BYTES`].
pub(crate) fn too_large() -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the body exceeds the limit of {MAX_BODY_BYTES} bytes"
    ))
}

/// 400 for a body that is not well-formed JSON.
pub(crate) fn malformed(error: serde_json::Error) -> ApiError {
    ApiError::BadRequest(format!("the body is not valid JSON: {error}"))
}

/// Query parameters whose bad values are 422s naming the parameter, like body fields.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let pairs = serde_urlencoded::Deserializer::new(url::form_urlencoded::parse(
            req.query_string().as_bytes(),
        ));
        std::future::ready(
            serde_path_to_error::deserialize(pairs)
                .map(Query)
                .map_err(|e| {
                    let field = e.path().to_string();
                    ApiError::validation(
                        if field == "." {
                            "query".to_owned()
                        } else {
                            field
                        },
                        e.into_inner().to_string(),
                    )
                }),
        )
    }
}

/// Gives a JSON value its type strictly, naming the offending field on failure (see
/// [`hookbeat_scheduler::validation::strict_from_json`]). `prefix` is prepended to field paths
/// (empty for a whole body).
pub fn typed<T: DeserializeOwned>(value: serde_json::Value, prefix: &str) -> Result<T, ApiError> {
    hookbeat_scheduler::validation::strict_from_json(value, prefix).map_err(ApiError::Validation)
}
