//! The one test harness: a fresh database per test (SQLite file or PostgreSQL database), the app
//! on port 0 with an injected clock, a token for a random tenant, and a recording receiver.

pub mod app;
pub mod db;
pub mod process;
pub mod proxy;
pub mod receiver;

pub use app::{spawn_app, TestApp};
pub use db::Backend;
pub use receiver::{Receiver, Reply};

/// An instant as the API writes it (RFC 3339).
pub fn instant(value: &serde_json::Value) -> chrono::DateTime<chrono::Utc> {
    value
        .as_str()
        .expect("an instant")
        .parse()
        .expect("RFC 3339")
}

/// A schedule document firing every minute to `url`, with the members of `extra` added.
pub fn minutely(name: &str, url: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut body = serde_json::json!({
        "name": name,
        "schedule": {"kind": "interval", "every_seconds": 60},
        "target": {"url": url},
    });
    if let serde_json::Value::Object(members) = extra {
        body.as_object_mut().unwrap().extend(members);
    }
    body
}

/// Runs one async test body against SQLite and against PostgreSQL, as two tests named
/// `<name>::sqlite` and `<name>::postgres`.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name($crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name($crate::helpers::Backend::Postgres).await;
            }
        }
    )+};
}

/// Polls `check` every 20 ms until it returns `Some`, for at most `timeout`. The one polling
/// helper, for the end-to-end tests that run the real worker loop.
pub async fn eventually<T, F, Fut>(timeout: std::time::Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
