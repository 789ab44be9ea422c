//! What a schedule sends and how it behaves around failures and downtime: the `target`, `retry`,
//! `catchup` and `overlap` members, with their defaults and validation.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::ssrf;
use crate::validation::FieldErrors;

/// Longest a single attempt may wait for its receiver.
pub const MAX_TIMEOUT_MS: i64 = 15 * 60 * 1000;
pub const DEFAULT_TIMEOUT_MS: i64 = 15_000;
const MAX_HEADERS: usize = 64;
const MAX_HEADER_BYTES: usize = 8 * 1024;

/// Header names (lower case) and name prefixes that hookbeat sets itself: signatures, delivery
/// metadata, its user agent.
const OWN_HEADERS: &[&str] = &["user-agent"];
const OWN_PREFIXES: &[&str] = &["webhook-", "hookbeat-"];
/// Hop-by-hop and framing headers, which belong to the HTTP client and the connection: a target
/// setting them could smuggle a second request or talk to a proxy.
const CONNECTION_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "expect",
    "host",
    "content-length",
];
const CONNECTION_PREFIXES: &[&str] = &["proxy-"];

/// Why a target may not set the header `name` (any case), or `None` when it may.
pub fn reserved_header(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let listed = |names: &[&str], prefixes: &[&str]| {
        names.contains(&lower.as_str()) || prefixes.iter().any(|p| lower.starts_with(p))
    };
    if listed(OWN_HEADERS, OWN_PREFIXES) {
        Some("is set by hookbeat and cannot be overridden")
    } else if listed(CONNECTION_HEADERS, CONNECTION_PREFIXES) {
        Some("is a hop-by-hop or framing header, which only the HTTP client sets")
    } else {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl HttpMethod {
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            HttpMethod::Get => reqwest::Method::GET,
            HttpMethod::Post => reqwest::Method::POST,
            HttpMethod::Put => reqwest::Method::PUT,
            HttpMethod::Patch => reqwest::Method::PATCH,
            HttpMethod::Delete => reqwest::Method::DELETE,
        }
    }
}

/// Where and what a fire delivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Target {
    /// An `http` or `https` URL.
    #[schema(example = "https://example.com/hooks/report")]
    pub url: String,
    #[serde(default)]
    pub method: HttpMethod,
    /// Extra request headers. Names are case-insensitive and may appear once. `webhook-*`,
    /// `hookbeat-*`, `user-agent`, `proxy-*` and the hop-by-hop and framing headers (connection,
    /// keep-alive, te, trailer, transfer-encoding, upgrade, expect, host, content-length) are
    /// refused.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The request body: a string is sent as it is (`text/plain` unless a `content-type` header
    /// says otherwise), any other JSON value is sent as JSON (`application/json`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
    /// Per-attempt timeout in milliseconds (1 to 900000).
    #[serde(default = "default_timeout_ms")]
    #[schema(default = 15000, minimum = 1, maximum = 900000)]
    pub timeout_ms: i64,
}

fn default_timeout_ms() -> i64 {
    DEFAULT_TIMEOUT_MS
}

impl Target {
    pub fn validate(&self, prefix: &str, allow_private_targets: bool, errors: &mut FieldErrors) {
        match url::Url::parse(&self.url) {
            Err(e) => errors.add(format!("{prefix}.url"), format!("is not a valid URL: {e}")),
            Ok(url) if !matches!(url.scheme(), "http" | "https") => errors.add(
                format!("{prefix}.url"),
                format!("scheme must be http or https, got {:?}", url.scheme()),
            ),
            Ok(url) => {
                if let Err(reason) = ssrf::check_url_host(&url, allow_private_targets) {
                    errors.add(format!("{prefix}.url"), reason);
                }
            }
        }
        if self.headers.len() > MAX_HEADERS {
            errors.add(
                format!("{prefix}.headers"),
                format!("at most {MAX_HEADERS} headers are allowed"),
            );
        }
        // Names are case-insensitive: spellings of one name are grouped under the first.
        let mut spellings: BTreeMap<String, Vec<&str>> = BTreeMap::new();
        for (name, value) in &self.headers {
            let field = format!("{prefix}.headers.{name}");
            spellings
                .entry(name.to_ascii_lowercase())
                .or_default()
                .push(name);
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                errors.add(field, "is not a valid header name");
            } else if let Some(reason) = reserved_header(name) {
                errors.add(field, reason);
            } else if value.len() > MAX_HEADER_BYTES
                || reqwest::header::HeaderValue::from_str(value).is_err()
            {
                errors.add(field, "is not a valid header value");
            }
        }
        for names in spellings.values().filter(|names| names.len() > 1) {
            errors.add(
                format!("{prefix}.headers.{}", names[0]),
                format!(
                    "is given more than once ({}); header names are case-insensitive",
                    names.join(", ")
                ),
            );
        }
        if !(1..=MAX_TIMEOUT_MS).contains(&self.timeout_ms) {
            errors.add(
                format!("{prefix}.timeout_ms"),
                format!(
                    "must be between 1 and {MAX_TIMEOUT_MS}, got {}",
                    self.timeout_ms
                ),
            );
        }
    }

    /// The body bytes and the content type hookbeat sends when the target names none.
    pub fn encoded_body(&self) -> (Vec<u8>, Option<&'static str>) {
        match &self.body {
            None | Some(serde_json::Value::Null) => (Vec::new(), None),
            Some(serde_json::Value::String(text)) => {
                (text.clone().into_bytes(), Some("text/plain; charset=utf-8"))
            }
            Some(value) => (value.to_string().into_bytes(), Some("application/json")),
        }
    }
}

/// Where a schedule's notices go: one signed `POST` when it turns `failing` (its last
/// `after_failures` runs failed for good), when it recovers (its next success), and when it
/// pauses itself (`pause_after_failures`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Notify {
    /// An `http` or `https` URL, under the same rules as a target's.
    #[schema(example = "https://example.com/hooks/hookbeat-notices")]
    pub url: String,
    /// Extra request headers, under the same rules as a target's.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Per-attempt timeout in milliseconds (1 to 900000).
    #[serde(default = "default_timeout_ms")]
    #[schema(default = 15000, minimum = 1, maximum = 900000)]
    pub timeout_ms: i64,
    /// Runs failed for good in a row after which the schedule is `failing` (1 to 100).
    #[serde(default = "Notify::default_after_failures")]
    #[schema(default = 3, minimum = 1, maximum = 100)]
    pub after_failures: i32,
}

impl Notify {
    /// Runs failed for good in a row after which a schedule is `failing`, unless its `notify`
    /// (or its tenant's) says otherwise.
    pub const DEFAULT_AFTER_FAILURES: i32 = 3;
    pub const MAX_AFTER_FAILURES: i32 = 100;

    fn default_after_failures() -> i32 {
        Self::DEFAULT_AFTER_FAILURES
    }

    /// The request a notice is: a `POST` of the notice as JSON.
    pub fn target(&self) -> Target {
        Target {
            url: self.url.clone(),
            method: HttpMethod::Post,
            headers: self.headers.clone(),
            body: None,
            timeout_ms: self.timeout_ms,
        }
    }

    pub fn validate(&self, prefix: &str, allow_private_targets: bool, errors: &mut FieldErrors) {
        self.target()
            .validate(prefix, allow_private_targets, errors);
        if !(1..=Self::MAX_AFTER_FAILURES).contains(&self.after_failures) {
            errors.add(
                format!("{prefix}.after_failures"),
                format!(
                    "must be between 1 and {}, got {}",
                    Self::MAX_AFTER_FAILURES,
                    self.after_failures
                ),
            );
        }
    }

    /// The runs in a row that make a schedule `failing`: its own `notify`'s, else its tenant's,
    /// else the default.
    pub fn failing_after(own: Option<&Notify>, tenant: Option<&Notify>) -> i32 {
        own.or(tenant)
            .map_or(Self::DEFAULT_AFTER_FAILURES, |n| n.after_failures)
    }
}

/// How failed attempts are retried: exponential backoff with jitter, capped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 to 50).
    #[serde(default = "RetryPolicy::default_max_attempts")]
    #[schema(default = 5, minimum = 1, maximum = 50)]
    pub max_attempts: i32,
    /// Delay before the second attempt (100 ms to 1 day).
    #[serde(default = "RetryPolicy::default_initial_backoff_ms")]
    #[schema(default = 5000)]
    pub initial_backoff_ms: i64,
    /// The longest delay between two attempts (up to 7 days).
    #[serde(default = "RetryPolicy::default_max_backoff_ms")]
    #[schema(default = 3600000)]
    pub max_backoff_ms: i64,
    /// Factor by which each delay grows (1 to 10).
    #[serde(default = "RetryPolicy::default_multiplier")]
    #[schema(default = 2.0)]
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: Self::default_max_attempts(),
            initial_backoff_ms: Self::default_initial_backoff_ms(),
            max_backoff_ms: Self::default_max_backoff_ms(),
            multiplier: Self::default_multiplier(),
        }
    }
}

impl RetryPolicy {
    fn default_max_attempts() -> i32 {
        5
    }
    fn default_initial_backoff_ms() -> i64 {
        5_000
    }
    fn default_max_backoff_ms() -> i64 {
        3_600_000
    }
    fn default_multiplier() -> f64 {
        2.0
    }

    pub fn validate(&self, prefix: &str, errors: &mut FieldErrors) {
        if !(1..=50).contains(&self.max_attempts) {
            errors.add(
                format!("{prefix}.max_attempts"),
                format!("must be between 1 and 50, got {}", self.max_attempts),
            );
        }
        if !(100..=86_400_000).contains(&self.initial_backoff_ms) {
            errors.add(
                format!("{prefix}.initial_backoff_ms"),
                format!(
                    "must be between 100 and 86400000, got {}",
                    self.initial_backoff_ms
                ),
            );
        }
        if self.max_backoff_ms < self.initial_backoff_ms || self.max_backoff_ms > 7 * 86_400_000 {
            errors.add(
                format!("{prefix}.max_backoff_ms"),
                format!(
                    "must be between initial_backoff_ms and 604800000, got {}",
                    self.max_backoff_ms
                ),
            );
        }
        if !(1.0..=10.0).contains(&self.multiplier) {
            errors.add(
                format!("{prefix}.multiplier"),
                format!("must be between 1 and 10, got {}", self.multiplier),
            );
        }
    }
}

/// What happens to fires missed while no worker ran (see `materialise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Catchup {
    /// Missed fires are dropped.
    Skip,
    /// All missed fires become one run, for the latest of them.
    #[default]
    Latest,
    /// Every missed fire becomes a run (at most `MAX_CATCHUP_RUNS`, the most recent ones).
    All,
}

/// Whether a fire is delivered while the schedule's previous run is unfinished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    #[default]
    Allow,
    Skip,
}

macro_rules! db_text {
    ($ty:ty { $($variant:ident => $text:literal),+ }) => {
        impl $ty {
            /// The value as stored in the database.
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            /// Reads a stored value; unknown text falls back to the default.
            pub fn from_db(text: &str) -> Self {
                match text { $($text => Self::$variant,)+ _ => Self::default() }
            }
        }
    };
}

db_text!(Catchup { Skip => "skip", Latest => "latest", All => "all" });
db_text!(Overlap { Allow => "allow", Skip => "skip" });

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        serde_json::from_value(serde_json::json!({ "url": url })).unwrap()
    }

    fn errors_of(t: &Target, allow_private: bool) -> Vec<String> {
        let mut errors = FieldErrors::new();
        t.validate("target", allow_private, &mut errors);
        errors
            .into_vec()
            .into_iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect()
    }

    #[test]
    fn defaults_are_filled_in() {
        let t = target("https://example.com/x");
        assert_eq!(t.method, HttpMethod::Post);
        assert_eq!(t.timeout_ms, DEFAULT_TIMEOUT_MS);
        assert!(errors_of(&t, false).is_empty());
    }

    #[test]
    fn refuses_non_http_schemes_and_private_addresses() {
        assert_eq!(
            errors_of(&target("ftp://example.com/x"), false),
            vec!["target.url: scheme must be http or https, got \"ftp\""]
        );
        assert!(errors_of(&target("http://127.0.0.1:9/x"), false)[0].contains("loopback"));
        assert!(errors_of(&target("http://127.0.0.1:9/x"), true).is_empty());
        assert!(
            errors_of(&target("not a url"), false)[0].starts_with("target.url: is not a valid URL")
        );
    }

    #[test]
    fn refuses_reserved_and_invalid_headers() {
        let mut t = target("https://example.com/");
        t.headers.insert("Webhook-Signature".into(), "x".into());
        t.headers.insert("bad header".into(), "x".into());
        t.headers.insert("x-ok".into(), "fine".into());
        let errors = errors_of(&t, false);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors
            .iter()
            .any(|e| e.contains("Webhook-Signature: is set by hookbeat")));
        assert!(errors
            .iter()
            .any(|e| e.contains("bad header: is not a valid header name")));
    }

    /// The whole `webhook-` and `hookbeat-` namespaces, and the hop-by-hop and framing headers
    /// the HTTP client owns, in any case.
    #[test]
    fn refuses_reserved_prefixes_and_hop_by_hop_headers() {
        for name in [
            "Webhook-Foo",
            "webhook-id",
            "HOOKBEAT-x",
            "Hookbeat-Attempt",
            "User-Agent",
            "Connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "Proxy-Authorization",
            "proxy-connection",
            "Expect",
            "Host",
            "Content-Length",
        ] {
            let mut t = target("https://example.com/");
            t.headers.insert(name.into(), "x".into());
            let errors = errors_of(&t, false);
            assert_eq!(errors.len(), 1, "{name}: {errors:?}");
            assert!(
                errors[0].starts_with(&format!("target.headers.{name}: ")),
                "{name}: {errors:?}"
            );
        }
        for name in ["Content-Type", "Authorization", "X-Webhook-Foo", "Accept"] {
            let mut t = target("https://example.com/");
            t.headers.insert(name.into(), "x".into());
            assert!(errors_of(&t, false).is_empty(), "{name} is allowed");
        }
    }

    /// Header names are case-insensitive: two spellings of one name would be one header, so
    /// which value is sent would be an accident.
    #[test]
    fn refuses_header_names_differing_only_in_case() {
        let mut t = target("https://example.com/");
        t.headers.insert("X-A".into(), "1".into());
        t.headers.insert("x-a".into(), "2".into());
        t.headers.insert("x-b".into(), "3".into());
        let errors = errors_of(&t, false);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("target.headers.X-A: "), "{errors:?}");
        assert!(
            errors[0].contains("x-a"),
            "names the other spelling: {errors:?}"
        );
    }

    #[test]
    fn body_encoding_follows_its_json_type() {
        let mut t = target("https://example.com/");
        t.body = Some(serde_json::json!({"a": 1}));
        assert_eq!(
            t.encoded_body(),
            (b"{\"a\":1}".to_vec(), Some("application/json"))
        );
        t.body = Some(serde_json::json!("raw"));
        assert_eq!(
            t.encoded_body(),
            (b"raw".to_vec(), Some("text/plain; charset=utf-8"))
        );
    }

    #[test]
    fn retry_policy_bounds() {
        let mut errors = FieldErrors::new();
        RetryPolicy {
            max_attempts: 0,
            initial_backoff_ms: 10,
            max_backoff_ms: 5,
            multiplier: 0.5,
        }
        .validate("retry", &mut errors);
        assert_eq!(errors.into_vec().len(), 4);
    }
}
