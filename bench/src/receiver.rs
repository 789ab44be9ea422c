//! The webhook receiver: a bare hyper HTTP/1 server on 127.0.0.1:0 that answers every request
//! `204 No Content` and records when it arrived and which fire it carried. It can listen on
//! several ports at once: hookbeat limits deliveries in flight per `host:port`, so targets
//! spread over several ports stand for that many receiving hosts.
//!
//! It has to stay far from being the bottleneck (tens of thousands of requests a second on two
//! shared cores), so a request costs one clock read, four header parses and a push onto a
//! vector behind an uncontended mutex; all matching and statistics happen after the run.
//! Requests have no body (the bench's targets define none), so none is read.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::header::HeaderMap;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::accounting::Delivery;
use crate::clock::now_us;

/// Everything the receiver recorded.
#[derive(Default)]
pub struct Recorded {
    deliveries: Mutex<Vec<Delivery>>,
    /// Requests without the hookbeat headers (or with unreadable ones).
    malformed: AtomicU64,
    connections: AtomicU64,
}

impl Recorded {
    fn push(&self, delivery: Delivery) {
        self.deliveries
            .lock()
            .expect("receiver store poisoned")
            .push(delivery);
    }

    /// Deliveries recorded since index `from` (for live monitoring), copied out so the lock is
    /// held only for a memcpy.
    pub fn since(&self, from: usize) -> Vec<Delivery> {
        let all = self.deliveries.lock().expect("receiver store poisoned");
        all.get(from..)
            .map(<[Delivery]>::to_vec)
            .unwrap_or_default()
    }

    pub fn all(&self) -> Vec<Delivery> {
        self.since(0)
    }

    pub fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }
}

pub struct Receiver {
    pub addresses: Vec<SocketAddr>,
    pub recorded: Arc<Recorded>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Receiver {
    /// Listens on `ports` ports of 127.0.0.1 (at least one).
    pub async fn start(ports: usize) -> anyhow::Result<Self> {
        let recorded = Arc::new(Recorded::default());
        let stop = CancellationToken::new();
        let mut addresses = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..ports.max(1) {
            let listener = TcpListener::bind("127.0.0.1:0")
                .await
                .context("binding the receiver")?;
            addresses.push(listener.local_addr()?);
            tasks.push(tokio::spawn(accept_loop(
                listener,
                recorded.clone(),
                stop.clone(),
            )));
        }
        Ok(Self {
            addresses,
            recorded,
            stop,
            tasks,
        })
    }

    /// The URL of schedule `index`'s target: the ports are used round-robin.
    pub fn url(&self, index: usize) -> String {
        format!(
            "http://{}/hook",
            self.addresses[index % self.addresses.len()]
        )
    }

    /// Stops accepting and closes every connection.
    pub async fn stop(self) {
        self.stop.cancel();
        for task in self.tasks {
            task.await.ok();
        }
    }
}

async fn accept_loop(listener: TcpListener, recorded: Arc<Recorded>, stop: CancellationToken) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors or a reset during the handshake: keep serving the
                // others rather than stop the run.
                Err(_) => continue,
            },
        };
        // Responses are tiny; waiting for Nagle would add latency to every keep-alive request.
        stream.set_nodelay(true).ok();
        recorded.connections.fetch_add(1, Ordering::Relaxed);
        let recorded = recorded.clone();
        let stop = stop.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let recorded = recorded.clone();
                async move { Ok::<_, Infallible>(handle(&recorded, &request)) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = connection => {}
            }
        });
        // Reap finished connection tasks so the set does not grow with churn.
        while connections.try_join_next().is_some() {}
    }
    connections.shutdown().await;
}

fn handle(recorded: &Recorded, request: &Request<Incoming>) -> Response<Empty<Bytes>> {
    let arrival_us = now_us();
    match parse(request.headers(), arrival_us) {
        Some(delivery) => recorded.push(delivery),
        None => {
            recorded.malformed.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut response = Response::new(Empty::new());
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

/// The fire a request carries, from hookbeat's delivery headers.
pub fn parse(headers: &HeaderMap, arrival_us: i64) -> Option<Delivery> {
    let text = |name: &str| headers.get(name)?.to_str().ok();
    let scheduled_for =
        chrono::DateTime::parse_from_rfc3339(text("hookbeat-scheduled-for")?).ok()?;
    Some(Delivery {
        arrival_us,
        schedule_id: Uuid::try_parse(text("hookbeat-schedule-id")?).ok()?,
        scheduled_for_us: scheduled_for.timestamp_micros(),
        webhook_id: Uuid::try_parse(text("webhook-id")?).ok()?,
        attempt: text("hookbeat-attempt")?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    #[test]
    fn reads_the_fire_from_the_headers() {
        let mut headers = HeaderMap::new();
        let schedule = "0192f1c2-7a6b-7cde-8f00-0123456789ab";
        let webhook = "0192f1c2-7a6b-7cde-8f00-ba9876543210";
        headers.insert("hookbeat-schedule-id", HeaderValue::from_static(schedule));
        headers.insert(
            "hookbeat-scheduled-for",
            HeaderValue::from_static("2026-01-01T00:01:00Z"),
        );
        headers.insert("webhook-id", HeaderValue::from_static(webhook));
        headers.insert("hookbeat-attempt", HeaderValue::from_static("2"));
        let delivery = parse(&headers, 42).unwrap();
        assert_eq!(delivery.arrival_us, 42);
        assert_eq!(delivery.schedule_id.to_string(), schedule);
        assert_eq!(delivery.webhook_id.to_string(), webhook);
        assert_eq!(delivery.scheduled_for_us, 1_767_225_660_000_000);
        assert_eq!(delivery.attempt, 2);

        headers.remove("webhook-id");
        assert_eq!(parse(&headers, 42), None);
    }
}
