//! Write-backs in groups. Deliveries finish one by one, but recording each in its own
//! transaction would cost the database a commit and four round trips per delivery. Finished
//! deliveries queue here instead; one task records whatever has queued up in one transaction
//! (see [`runs::finish`]). It lets results gather for [`GATHER`] after the first of a group
//! arrives, so that a busy worker's results are not recorded one or two at a time, each group
//! paying a transaction's round trips.
//!
//! A group whose write-back fails (the database restarting, say) is tried again, with backoff,
//! for as long as the earliest of its runs' leases holds: giving up at once would leave every
//! run of the group to its lease, and each would be delivered a second time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use hookbeat_entity::run;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use crate::clock::Clock;
use crate::metrics::WorkerMetrics;
use crate::runs::{self, AttemptRecord, Finished, RunUpdate, Written};

/// The most results one transaction records.
const MAX_GROUP: usize = 512;

/// How long a group gathers results before it is recorded. Nobody waits on it but the run's
/// status: a delivery's slot is free as soon as the receiver answers.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// The first pause before a failed write-back is tried again, and the longest.
const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(50);
const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(2);
/// Retries stop this long before the earliest lease of the group ends, so that a result never
/// lands after another worker took the run over (the fence would refuse it anyway).
const LEASE_MARGIN: chrono::Duration = chrono::Duration::seconds(5);

/// What became of one result: whether the lease was still held, or why nothing was recorded.
pub(super) type Recorded = Result<bool, Arc<anyhow::Error>>;

struct Queued {
    finished: Finished,
    /// Until when this worker holds the run: how long a failed write-back may be tried again.
    lease_until: DateTime<Utc>,
    recorded: oneshot::Sender<Recorded>,
}

#[derive(Clone)]
pub(super) struct WriteBack {
    queue: mpsc::UnboundedSender<Queued>,
    /// Results recorded so far: the worker's progress, as the stall watch reads it.
    recorded: Arc<AtomicU64>,
}

impl WriteBack {
    /// Starts the recording task; it ends when the last `WriteBack` is dropped. Notices the
    /// results issue are counted, and `notices_issued` told of them.
    pub(super) fn start(
        db: DatabaseConnection,
        worker_id: String,
        clock: Arc<dyn Clock>,
        metrics: WorkerMetrics,
        notices_issued: Arc<tokio::sync::Notify>,
    ) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        let recorded = Arc::new(AtomicU64::new(0));
        tokio::spawn(record_groups(
            Recorder {
                db,
                worker_id,
                clock,
                metrics,
                notices_issued,
            },
            recorded.clone(),
            receiver,
        ));
        Self { queue, recorded }
    }

    /// Results recorded so far.
    pub(super) fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// Queues one attempt's result, for a run held until `lease_until`, and waits until it is
    /// recorded.
    pub(super) async fn record(
        &self,
        run: &run::Model,
        record: AttemptRecord,
        update: RunUpdate,
        lease_until: DateTime<Utc>,
    ) -> Recorded {
        let (recorded, answer) = oneshot::channel();
        let queued = Queued {
            lease_until,
            finished: Finished::new(run, record, update),
            recorded,
        };
        if self.queue.send(queued).is_err() {
            return Err(Arc::new(anyhow::anyhow!("the write-back task has stopped")));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(Arc::new(anyhow::anyhow!("the write-back task has stopped"))))
    }
}

/// What the recording task writes with, and tells.
struct Recorder {
    db: DatabaseConnection,
    worker_id: String,
    clock: Arc<dyn Clock>,
    metrics: WorkerMetrics,
    notices_issued: Arc<tokio::sync::Notify>,
}

async fn record_groups(
    recorder: Recorder,
    recorded: Arc<AtomicU64>,
    mut receiver: mpsc::UnboundedReceiver<Queued>,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while receiver.recv_many(&mut group, MAX_GROUP).await > 0 {
        if group.len() < MAX_GROUP {
            tokio::time::sleep(GATHER).await;
            while group.len() < MAX_GROUP {
                match receiver.try_recv() {
                    Ok(queued) => group.push(queued),
                    Err(_) => break,
                }
            }
        }
        let Some(lease_until) = group.iter().map(|queued| queued.lease_until).min() else {
            continue;
        };
        let (finished, answers): (Vec<Finished>, Vec<oneshot::Sender<Recorded>>) = group
            .drain(..)
            .map(|queued| (queued.finished, queued.recorded))
            .unzip();
        match write_while_leased(&recorder, &finished, lease_until).await {
            Ok(Written { held, notices }) => {
                recorded.fetch_add(held.len() as u64, Ordering::Relaxed);
                for transition in &notices {
                    recorder
                        .metrics
                        .notices
                        .with_label_values(&[transition.as_str()])
                        .inc();
                }
                if !notices.is_empty() {
                    recorder.notices_issued.notify_one();
                }
                for (answer, held) in answers.into_iter().zip(held) {
                    // The delivery that waits for this may have been cancelled at shutdown.
                    let _ = answer.send(Ok(held));
                }
            }
            Err(error) => {
                let error = Arc::new(error);
                for answer in answers {
                    let _ = answer.send(Err(error.clone()));
                }
            }
        }
    }
}

/// Writes a group back, trying again after a failure until [`LEASE_MARGIN`] before
/// `lease_until` (by the worker's clock, and at most that long in real time as well, so a clock
/// that stands still cannot keep a group for ever).
async fn write_while_leased(
    recorder: &Recorder,
    finished: &[Finished],
    lease_until: DateTime<Utc>,
) -> anyhow::Result<Written> {
    let Recorder {
        db,
        worker_id,
        clock,
        metrics,
        ..
    } = recorder;
    let give_up_at = lease_until - LEASE_MARGIN;
    let real_deadline = tokio::time::Instant::now()
        + (give_up_at - clock.now())
            .to_std()
            .unwrap_or(std::time::Duration::ZERO);
    let mut pause = RETRY_FIRST;
    loop {
        let error = match runs::finish(db, worker_id, finished, clock.now()).await {
            Ok(written) => return Ok(written),
            Err(error) => error,
        };
        metrics.write_back_failures.inc();
        let next_try = tokio::time::Instant::now() + pause;
        let pause_chrono = chrono::Duration::from_std(pause).unwrap_or(chrono::Duration::MAX);
        if next_try >= real_deadline || clock.now() + pause_chrono >= give_up_at {
            tracing::error!(
                error = %format!("{error:#}"),
                runs = finished.len(),
                "write-back failed until the leases ran out; the runs will be delivered again"
            );
            return Err(error);
        }
        tracing::warn!(
            error = %format!("{error:#}"),
            runs = finished.len(),
            retry_in_ms = pause.as_millis() as u64,
            "write-back failed; trying again while the leases hold"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(RETRY_MAX);
    }
}
