//! One HTTP delivery attempt: the request a receiver sees (CONTRACT §5) and what came back.
//! Classification into success / retry / failure lives in `retry`; this module only talks HTTP.

use std::time::Instant;

use chrono::{DateTime, SecondsFormat, Utc};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, RETRY_AFTER};

use crate::definition::{reserved_header, Target};
use crate::retry::parse_retry_after;
use crate::signing::{signature_header, SigningKey};
use crate::ssrf;

/// How much of a response is kept with the attempt.
pub const EXCERPT_BYTES: usize = 1024;
/// How much of a response is read at most; the rest is dropped unread.
const MAX_READ_BYTES: usize = 64 * 1024;

pub const USER_AGENT: &str = concat!("hookbeat/", env!("CARGO_PKG_VERSION"));

/// Everything needed to send one attempt.
pub struct Delivery<'a> {
    /// The run's id, or a step's id derived from it (see `steps::webhook_id`).
    pub webhook_id: String,
    pub schedule_id: hookbeat_entity::ScheduleId,
    pub scheduled_for: DateTime<Utc>,
    pub attempt: i32,
    pub target: &'a Target,
    pub keys: &'a [SigningKey],
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub duration: std::time::Duration,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Why no (usable) answer came.
    pub error: Option<DeliveryError>,
    /// The first [`EXCERPT_BYTES`] of the response body.
    pub excerpt: Option<String>,
    pub retry_after: Option<chrono::Duration>,
}

impl AttemptResult {
    /// An attempt that got no answer at all, for `error`.
    pub fn not_sent(error: DeliveryError) -> Self {
        Self {
            duration: std::time::Duration::ZERO,
            status: None,
            error: Some(error),
            excerpt: None,
            retry_after: None,
        }
    }
}

/// Why an attempt got no usable answer. The retry decision branches on it: a run that cannot be
/// sent fails at once, the rest are worth another attempt. Its text is what `last_error` and
/// the attempt's history show.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The run cannot be sent at all (its schedule cannot be read, its tenant has no signing
    /// secret, its step is gone).
    #[error("{0}")]
    Unsendable(String),
    /// The target URL cannot be used: invalid, or its host is a forbidden address.
    #[error("{0}")]
    Target(String),
    /// A header of the request cannot be encoded.
    #[error("cannot encode header {0}")]
    Header(&'static str),
    #[error("connection failed{0}")]
    Connect(Causes),
    #[error("timed out after {after_ms} ms")]
    Timeout { after_ms: i64 },
    /// The answer came, but reading its body failed.
    #[error("reading the response failed{0}")]
    Body(Causes),
    #[error("request failed{0}")]
    Request(Causes),
}

/// The chain of causes under an HTTP client error, which holds the useful part ("connection
/// refused"); shown as `: cause: cause…`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Causes(pub Vec<String>);

impl std::fmt::Display for Causes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for cause in &self.0 {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

/// Sends deliveries over one shared, keep-alive HTTP client that never follows redirects,
/// resolves names through the SSRF guard and connects to the target itself: proxy variables
/// (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`) are ignored, because a proxy resolves the target's
/// name on its own, past the guard. A delivery proxy, if one is ever offered, must apply the same
/// guard to the addresses it connects to.
#[derive(Clone)]
pub struct Deliverer {
    client: reqwest::Client,
    allow_private: bool,
}

impl Deliverer {
    pub fn new(allow_private: bool) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(ssrf::GuardedResolver::new(allow_private))
            .pool_idle_timeout(std::time::Duration::from_secs(90))
            .pool_max_idle_per_host(64)
            .connect_timeout(std::time::Duration::from_secs(10))
            .build()?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    pub async fn deliver(&self, delivery: &Delivery<'_>, now: DateTime<Utc>) -> AttemptResult {
        let started = Instant::now();
        let mut result = self.send(delivery, now).await;
        result.duration = started.elapsed();
        result
    }

    async fn send(&self, delivery: &Delivery<'_>, now: DateTime<Utc>) -> AttemptResult {
        let failed = AttemptResult::not_sent;
        let target = delivery.target;
        // IP literals never reach the resolver, so they are checked here (the stored target was
        // checked at creation, but the server's --allow-private-targets may have changed since).
        let url = match url::Url::parse(&target.url) {
            Ok(url) => url,
            Err(e) => return failed(DeliveryError::Target(format!("invalid target URL: {e}"))),
        };
        if let Err(reason) = ssrf::check_url_host(&url, self.allow_private) {
            return failed(DeliveryError::Target(format!("target URL {reason}")));
        }

        let (body, default_content_type) = target.encoded_body();
        let webhook_id = delivery.webhook_id.clone();
        let timestamp = now.timestamp();
        let mut headers = HeaderMap::new();
        for (name, value) in &target.headers {
            // Targets saved before a header was reserved may still name it.
            if reserved_header(name).is_some() {
                continue;
            }
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(name, value);
            }
        }
        if let Some(content_type) = default_content_type {
            headers
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static(content_type));
        }
        let ours = [
            ("webhook-id", webhook_id.clone()),
            ("webhook-timestamp", timestamp.to_string()),
            (
                "webhook-signature",
                signature_header(delivery.keys, &webhook_id, timestamp, &body),
            ),
            ("hookbeat-schedule-id", delivery.schedule_id.to_string()),
            (
                "hookbeat-scheduled-for",
                delivery
                    .scheduled_for
                    .to_rfc3339_opts(SecondsFormat::AutoSi, true),
            ),
            ("hookbeat-attempt", delivery.attempt.to_string()),
        ];
        for (name, value) in ours {
            match HeaderValue::from_str(&value) {
                Ok(value) => {
                    headers.insert(name, value);
                }
                Err(_) => return failed(DeliveryError::Header(name)),
            }
        }

        let request = self
            .client
            .request(target.method.as_reqwest(), url)
            .headers(headers)
            .timeout(std::time::Duration::from_millis(target.timeout_ms as u64))
            .body(body);
        let response = match request.send().await {
            Ok(response) => response,
            Err(e) => return failed(describe(&e, target.timeout_ms)),
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, now));
        let (excerpt, read_error) = read_excerpt(response, target.timeout_ms).await;
        AttemptResult {
            duration: std::time::Duration::ZERO,
            status: Some(status),
            error: read_error,
            excerpt,
            retry_after,
        }
    }
}

/// Reads at most [`MAX_READ_BYTES`] of the body and keeps the first [`EXCERPT_BYTES`].
async fn read_excerpt(
    mut response: reqwest::Response,
    timeout_ms: i64,
) -> (Option<String>, Option<DeliveryError>) {
    let mut kept = Vec::new();
    let mut read = 0usize;
    let mut error = None;
    loop {
        match response.chunk().await {
            Ok(None) => break,
            Ok(Some(bytes)) => {
                read += bytes.len();
                let room = EXCERPT_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
                if read >= MAX_READ_BYTES {
                    break;
                }
            }
            Err(e) => {
                error = Some(describe(&e, timeout_ms));
                break;
            }
        }
    }
    let excerpt = (!kept.is_empty()).then(|| utf8_prefix(&kept));
    (excerpt, error)
}

/// The longest valid UTF-8 prefix, so an excerpt cut mid-character stays readable.
fn utf8_prefix(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) => text.to_owned(),
        Err(e) if e.error_len().is_none() => {
            String::from_utf8_lossy(&bytes[..e.valid_up_to()]).into_owned()
        }
        Err(_) => String::from_utf8_lossy(bytes).into_owned(),
    }
}

/// What a reqwest error means for the attempt, with its causes.
fn describe(error: &reqwest::Error, timeout_ms: i64) -> DeliveryError {
    if error.is_timeout() {
        return DeliveryError::Timeout {
            after_ms: timeout_ms,
        };
    }
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        causes.push(cause.to_string());
        source = cause.source();
    }
    let causes = Causes(causes);
    if error.is_connect() {
        DeliveryError::Connect(causes)
    } else if error.is_body() || error.is_decode() {
        DeliveryError::Body(causes)
    } else {
        DeliveryError::Request(causes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_cut_on_character_boundaries() {
        let text = "é".repeat(600); // 1200 bytes
        let cut = utf8_prefix(&text.as_bytes()[..EXCERPT_BYTES]);
        assert_eq!(cut.len(), EXCERPT_BYTES);
        assert!(cut.chars().all(|c| c == 'é'));
        let odd = utf8_prefix(&text.as_bytes()[..1023]);
        assert_eq!(odd.len(), 1022);
    }
}
