//! Write-backs in groups. Deliveries finish one by one, but recording each in its own
//! transaction costs the database a commit and four round trips per delivery, which is what
//! capped a worker's throughput. Finished deliveries queue here instead; one task records
//! whatever has queued up in one transaction (see [`claim::finish_attempts`]). It lets results
//! gather for [`GATHER`] after the first of a group arrives: without that pause, results of a
//! busy worker were recorded one or two at a time, each group paying a transaction's four round
//! trips, which cost PostgreSQL more than the rows themselves.

use std::sync::Arc;

use hookbeat_entity::run;
use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};

use crate::claim::{self, AttemptRecord, Finished, RunUpdate};
use crate::clock::Clock;

/// The most results one transaction records.
const MAX_GROUP: usize = 512;

/// How long a group gathers results before it is recorded. Nobody waits on it but the run's
/// status: a delivery's slot is free as soon as the receiver answers.
const GATHER: std::time::Duration = std::time::Duration::from_millis(10);

/// What became of one result: whether the lease was still held, or why nothing was recorded.
pub(super) type Recorded = Result<bool, Arc<anyhow::Error>>;

struct Queued {
    finished: Finished,
    recorded: oneshot::Sender<Recorded>,
}

#[derive(Clone)]
pub(super) struct WriteBack {
    queue: mpsc::UnboundedSender<Queued>,
}

impl WriteBack {
    /// Starts the recording task; it ends when the last `WriteBack` is dropped.
    pub(super) fn start(db: DatabaseConnection, worker_id: String, clock: Arc<dyn Clock>) -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        tokio::spawn(record_groups(db, worker_id, clock, receiver));
        Self { queue }
    }

    /// Queues one attempt's result and waits until it is recorded.
    pub(super) async fn record(
        &self,
        run: &run::Model,
        record: AttemptRecord,
        update: RunUpdate,
    ) -> Recorded {
        let (recorded, answer) = oneshot::channel();
        let queued = Queued {
            finished: Finished {
                run_id: run.id,
                attempt: run.attempts,
                step: run.step,
                record,
                update,
            },
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

async fn record_groups(
    db: DatabaseConnection,
    worker_id: String,
    clock: Arc<dyn Clock>,
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
        let (finished, answers): (Vec<Finished>, Vec<oneshot::Sender<Recorded>>) = group
            .drain(..)
            .map(|queued| (queued.finished, queued.recorded))
            .unzip();
        match claim::finish_attempts(&db, &worker_id, &finished, clock.now()).await {
            Ok(held) => {
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
