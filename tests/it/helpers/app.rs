//! `spawn_app`: the app on port 0 over a fresh database, driven by a manual clock.

use std::net::TcpListener;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hookbeat::app::{build, Options};
use hookbeat::database::Pool;
use hookbeat_api::auth::{mint_token, Secret, DEFAULT_SCOPES};
use hookbeat_scheduler::{ManualClock, Worker, WorkerConfig};
use reqwest::{Method, StatusCode};
use sea_orm::DatabaseConnection;
use serde_json::Value;

use super::db::{Backend, TestDb};

pub const JWT_SECRET: &str = "test-secret-that-is-at-least-32-characters";

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    pub tenant: String,
    pub token: String,
    pub clock: ManualClock,
    pub worker: Worker,
    /// The API's pool.
    pub db: DatabaseConnection,
    /// The worker's pool.
    pub worker_db: DatabaseConnection,
    /// What the API announces to the worker by.
    pub wakeup: hookbeat_scheduler::notify::Wakeup,
    /// Shared by the starts of the app over it (see [`TestApp::restart_with`]).
    test_db: Arc<TestDb>,
}

/// Where the manual clock starts: a fixed, ordinary instant.
pub fn start_time() -> DateTime<Utc> {
    "2030-01-07T10:00:00Z".parse().unwrap()
}

/// The app over a fresh database; `None` when the backend is absent (PostgreSQL on a laptop).
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// The same, with options changed by `configure` first.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Options),
) -> Option<TestApp> {
    let test_db = Arc::new(TestDb::new(backend).await?);
    let tenant = format!("tenant-{}", uuid::Uuid::now_v7().simple());
    let clock = ManualClock::new(start_time());
    Some(
        start(test_db, tenant, clock, configure)
            .await
            .expect("building the app"),
    )
}

/// Starts the app over `test_db`, for `tenant`, as `serve` does: migrations are applied already.
async fn start(
    test_db: Arc<TestDb>,
    tenant: String,
    clock: ManualClock,
    configure: impl FnOnce(&mut Options),
) -> anyhow::Result<TestApp> {
    // Two pools, as `serve` has: the API's, and the worker's own.
    let db = hookbeat::database::connect(&test_db.url, Pool::Api).await?;
    let worker_db = hookbeat::database::connect(&test_db.url, Pool::Worker).await?;
    let mut options = Options {
        allow_private_targets: true,
        jwt_secret: Some(Secret::new(JWT_SECRET.to_owned())),
        jwt_public_key_pem: None,
        jwt_audience: None,
        body_timeout: std::time::Duration::from_secs(30),
        sealer: Default::default(),
        worker: WorkerConfig {
            allow_private_targets: true,
            ..WorkerConfig::default()
        },
    };
    configure(&mut options);
    let components = build(
        db.clone(),
        Some(worker_db.clone()),
        Arc::new(clock.clone()),
        options,
    )
    .await?;
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let address = format!("http://{}", listener.local_addr()?);
    let server = hookbeat_api::run(listener, components.state.clone(), Some(1))?;
    tokio::spawn(server);
    let token = token_for(&tenant, DEFAULT_SCOPES);
    Ok(TestApp {
        address,
        http: reqwest::Client::new(),
        tenant,
        token,
        clock,
        worker: components.worker,
        wakeup: components.state.wakeup.clone(),
        db,
        worker_db,
        test_db,
    })
}

/// A token signed with the test secret carrying exactly `claims`.
pub fn signed_token(claims: &Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn token_for(tenant: &str, scope: &str) -> String {
    mint_token(
        &Secret::new(JWT_SECRET.to_owned()),
        tenant,
        scope,
        chrono::Duration::hours(1),
        Utc::now(),
        None,
    )
    .unwrap()
}

/// A JSON response.
pub struct Answer {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    /// The fields a 422 names, in order.
    pub fn error_fields(&self) -> Vec<&str> {
        self.body["errors"]
            .as_array()
            .expect("a validation problem lists its errors")
            .iter()
            .map(|e| e["field"].as_str().expect("each error names its field"))
            .collect()
    }

    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no {name} header"))
    }
}

impl TestApp {
    /// Another API server on the same database and clock, with a pool of its own, as a second
    /// `hookbeat api` process would be; returns its address.
    pub async fn another_api(&self) -> String {
        self.restart_with(|_| {})
            .await
            .expect("starting another API")
            .address
    }

    /// The app started again over the same database, clock and tenant, with options changed by
    /// `configure`, as after a restart; the error when it does not start. This start keeps
    /// serving too.
    pub async fn restart_with(
        &self,
        configure: impl FnOnce(&mut Options),
    ) -> anyhow::Result<TestApp> {
        start(
            self.test_db.clone(),
            self.tenant.clone(),
            self.clock.clone(),
            configure,
        )
        .await
    }

    pub async fn call_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Answer {
        self.call_with_headers(token, method, path, &[], body).await
    }

    /// A call as the tenant of `token` with further request `headers`.
    pub async fn call_with_headers(
        &self,
        token: &str,
        method: Method,
        path: &str,
        headers: &[(&str, &[u8])],
        body: Option<Value>,
    ) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.address))
            .bearer_auth(token);
        for (name, value) in headers {
            let value = reqwest::header::HeaderValue::from_bytes(value).expect("a header value");
            request = request.header(*name, value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("calling the API");
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Creates a schedule and returns it, failing the test unless it was created.
    pub async fn create_schedule(&self, body: Value) -> Value {
        self.create_schedule_as(&self.token, body).await
    }

    /// The same, as the tenant of `token`.
    pub async fn create_schedule_as(&self, token: &str, body: Value) -> Value {
        let answer = self
            .call_as(token, Method::POST, "/v1/schedules", Some(body))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.body);
        answer.body
    }

    /// Creates `count` schedules, `{prefix}-0`…, that fire at `url` every minute.
    pub async fn create_minutely_schedules(&self, prefix: &str, count: usize, url: &str) {
        for n in 0..count {
            self.create_schedule(serde_json::json!({
                "name": format!("{prefix}-{n}"),
                "schedule": {"kind": "interval", "every_seconds": 60},
                "target": {"url": url}
            }))
            .await;
        }
    }

    /// Interval schedules named `names`, every `every_seconds`, to `url`: their ids, and the
    /// latest of their first fires.
    pub async fn interval_schedules(
        &self,
        names: &[&str],
        every_seconds: u64,
        url: &str,
    ) -> (Vec<String>, DateTime<Utc>) {
        let mut ids = Vec::new();
        let mut due = Vec::new();
        for name in names {
            let schedule = self
                .create_schedule(serde_json::json!({
                    "name": name,
                    "schedule": {"kind": "interval", "every_seconds": every_seconds},
                    "target": {"url": url}
                }))
                .await;
            ids.push(schedule["id"].as_str().unwrap().to_owned());
            due.push(schedule["next_run_at"].as_str().unwrap().parse().unwrap());
        }
        (ids, due.into_iter().max().expect("at least one name"))
    }

    /// `POST /v1/schedules/{id}/trigger`: a manual run of the schedule.
    pub async fn trigger(&self, id: &str) -> Answer {
        self.call(Method::POST, &format!("/v1/schedules/{id}/trigger"), None)
            .await
    }

    /// One worker pass at the clock's current time.
    pub async fn run_worker(&self) -> hookbeat_scheduler::dispatch::PassReport {
        self.worker.run_once().await.expect("worker pass")
    }

    /// Moves the clock to `t` and runs one worker pass.
    pub async fn run_worker_at(
        &self,
        t: DateTime<Utc>,
    ) -> hookbeat_scheduler::dispatch::PassReport {
        self.clock.set(t);
        self.run_worker().await
    }

    /// A second worker on the same database and clock, as another process would be.
    pub fn another_worker(&self, config: WorkerConfig) -> Worker {
        let metrics =
            hookbeat_scheduler::metrics::WorkerMetrics::register(&prometheus::Registry::new())
                .unwrap();
        let wakeup = hookbeat_scheduler::notify::Wakeup::new();
        Worker::new(
            self.worker_db.clone(),
            Arc::new(self.clock.clone()),
            config,
            metrics,
            wakeup,
        )
        .unwrap()
    }

    /// The value of one series on the app's `/metrics`, named as the text format writes it
    /// (`name{label="value"}`).
    pub async fn metric(&self, series: &str) -> f64 {
        let scrape = self.get("/metrics").await.body;
        let text = scrape.as_str().expect("/metrics is text");
        let prefix = format!("{series} ");
        text.lines()
            .find_map(|line| line.strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("no {series} in {text}"))
            .parse()
            .expect("a sample is a number")
    }

    /// The tenant's current signing secret.
    pub async fn signing_secret(&self) -> String {
        let answer = self.get("/v1/signing-secrets").await;
        assert_eq!(answer.status, StatusCode::OK);
        answer.body["secrets"][0]["secret"]
            .as_str()
            .unwrap()
            .to_owned()
    }
}
