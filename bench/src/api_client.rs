//! Talking to `hookbeat api`: waiting until it is ready, and creating schedules with bounded
//! concurrency while timing each request.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use uuid::Uuid;

use crate::stats::{self, Summary};

/// Attempts per create when the API answers 429 or 503 (a quota or an overloaded moment).
const ATTEMPTS: u32 = 5;

pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// A schedule the API created.
#[derive(Debug, Clone, Copy)]
pub struct Created {
    pub id: Uuid,
    pub next_run_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CreateReport {
    pub requested: usize,
    pub created: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub per_second: f64,
    pub concurrency: usize,
    pub latency: Option<Summary>,
}

impl Api {
    pub fn new(base: &str, concurrency: usize) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            // Only ever 127.0.0.1, whatever proxy the environment names.
            .no_proxy()
            .pool_max_idle_per_host(concurrency)
            .timeout(Duration::from_secs(30))
            .build()
            .context("building the API client")?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
        })
    }

    /// Waits until `GET /readyz` answers 200.
    pub async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let ready = self
                .http
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .map(|r| r.status().is_success())
                .unwrap_or(false);
            if ready {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the API was not ready within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `POST /v1/schedules`.
    pub async fn create(&self, token: &str, body: &serde_json::Value) -> anyhow::Result<Created> {
        let payload = serde_json::to_vec(body)?;
        for attempt in 1..=ATTEMPTS {
            let response = self
                .http
                .post(format!("{}/v1/schedules", self.base))
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(payload.clone())
                .send()
                .await
                .context("POST /v1/schedules")?;
            let status = response.status();
            if (status.as_u16() == 429 || status.as_u16() == 503) && attempt < ATTEMPTS {
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(10);
                tokio::time::sleep(Duration::from_secs(wait)).await;
                continue;
            }
            let bytes = response.bytes().await.context("reading the API's answer")?;
            if status.as_u16() != 201 {
                anyhow::bail!(
                    "POST /v1/schedules answered {status}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(300)
                        .collect::<String>()
                );
            }
            let value: serde_json::Value =
                serde_json::from_slice(&bytes).context("the API's answer is not JSON")?;
            let id = value
                .get("id")
                .and_then(|v| v.as_str())
                .and_then(|v| Uuid::try_parse(v).ok())
                .context("the created schedule has no id")?;
            let next_run_at = value
                .get("next_run_at")
                .and_then(|v| v.as_str())
                .and_then(|v| v.parse().ok());
            return Ok(Created { id, next_run_at });
        }
        anyhow::bail!("POST /v1/schedules kept answering 429/503")
    }

    /// Creates every `(token, body)` with at most `concurrency` requests in flight; the result
    /// keeps the order of `jobs`. `progress` gets the number finished so far.
    pub async fn create_many(
        &self,
        jobs: Vec<(String, serde_json::Value)>,
        concurrency: usize,
        progress: impl Fn(usize),
    ) -> (Vec<Option<Created>>, CreateReport) {
        let requested = jobs.len();
        let started = Instant::now();
        let mut results: Vec<Option<Created>> = vec![None; requested];
        let mut latencies = Vec::with_capacity(requested);
        let mut failed = 0;
        let mut first_error = None;
        let mut finished = 0;
        let mut stream = futures::stream::iter(jobs.into_iter().enumerate())
            .map(|(index, (token, body))| async move {
                let sent = Instant::now();
                let result = self.create(&token, &body).await;
                (index, result, sent.elapsed())
            })
            .buffer_unordered(concurrency.max(1));
        while let Some((index, result, latency)) = stream.next().await {
            finished += 1;
            match result {
                Ok(created) => {
                    results[index] = Some(created);
                    latencies.push(latency.as_micros() as i64);
                }
                Err(error) => {
                    failed += 1;
                    first_error.get_or_insert_with(|| format!("{error:#}"));
                }
            }
            if finished % 100 == 0 || finished == requested {
                progress(finished);
            }
        }
        let seconds = started.elapsed().as_secs_f64();
        let report = CreateReport {
            requested,
            created: requested - failed,
            failed,
            first_error,
            seconds,
            per_second: (requested - failed) as f64 / seconds.max(1e-9),
            concurrency,
            latency: stats::summarise(&mut latencies),
        };
        (results, report)
    }
}
