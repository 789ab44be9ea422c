//! `receiver-check`: how many requests a second the receiver answers on this machine, so that a
//! scenario's throughput can be told apart from the receiver's ceiling. In-process keep-alive
//! clients (reqwest, as hookbeat's workers use) send requests that carry hookbeat's delivery
//! headers for a fixed time. Client and server share the process and its cores, so the figure
//! is a lower bound of what the receiver alone can take.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::procfs::{self, TICKS_PER_SECOND};
use crate::receiver::Receiver;

pub async fn run(seconds: u64, connections: usize) -> anyhow::Result<()> {
    let receiver = Receiver::start(1).await?;
    let url = receiver.url(0);
    let client = reqwest::Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(connections)
        .build()
        .context("building the client")?;
    let failures = Arc::new(AtomicU64::new(0));
    let cpu_before = procfs::sample(std::process::id()).unwrap_or_default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let mut clients = tokio::task::JoinSet::new();
    for c in 0..connections {
        let client = client.clone();
        let url = url.clone();
        let failures = failures.clone();
        clients.spawn(async move {
            let schedule = uuid::Uuid::now_v7().to_string();
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let sent = client
                    .post(&url)
                    .header("webhook-id", uuid::Uuid::now_v7().to_string())
                    .header("hookbeat-schedule-id", &schedule)
                    .header("hookbeat-scheduled-for", "2026-01-01T00:00:00Z")
                    .header("hookbeat-attempt", "1")
                    .header("x-client", format!("{c}-{n}"))
                    .send()
                    .await;
                if !sent.is_ok_and(|r| r.status().as_u16() == 204) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    while clients.join_next().await.is_some() {}
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_after = procfs::sample(std::process::id()).unwrap_or_default();
    let recorded = receiver.recorded.all().len();
    let connections_seen = receiver.recorded.connections();
    receiver.stop().await;
    let cpu = (cpu_after.cpu_ticks - cpu_before.cpu_ticks) as f64 / TICKS_PER_SECOND;
    writeln!(
        std::io::stdout(),
        "receiver-check: {recorded} requests recorded in {elapsed:.1} s = {:.0}/s over {connections_seen} \
         connections ({} failed); the process (clients and receiver) used {:.0} % of one core",
        recorded as f64 / elapsed,
        failures.load(Ordering::Relaxed),
        100.0 * cpu / elapsed
    )?;
    Ok(())
}
