//! Wake-ups: a hint that something became due earlier than the worker planned (a schedule was
//! created, changed or triggered). The worker's own timer to the next due instant remains the
//! guarantee; a wake-up only shortens the wait.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounter;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The PostgreSQL channel on which changes are announced to every worker.
pub const CHANNEL: &str = "hookbeat_wakeup";

#[derive(Debug, Clone, Default)]
pub struct Wakeup(Arc<Notify>);

impl Wakeup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the worker now, or at its next wait if it is busy (the permit is kept).
    pub fn wake(&self) {
        self.0.notify_one();
    }

    pub async fn woken(&self) {
        self.0.notified().await;
    }
}

/// Announces a change that may make something due sooner: wakes this process's worker and, on
/// PostgreSQL, every listening worker. A failed NOTIFY is only logged: the workers' own timers
/// still pick the change up within their idle limit.
pub async fn announce(db: &DatabaseConnection, wakeup: &Wakeup) {
    wakeup.wake();
    if db.get_database_backend() == DbBackend::Postgres {
        if let Err(error) = db.execute_unprepared(&format!("NOTIFY {CHANNEL}")).await {
            tracing::warn!(%error, "NOTIFY failed; workers will see the change at their next poll");
        }
    }
}

/// Listens for announcements on a dedicated PostgreSQL connection and wakes the worker on each
/// (counted in `notifications`), until `cancel`. Reconnects (and listens again) with backoff after the
/// connection drops, and wakes the worker after every (re)connect, since announcements may have
/// been missed meanwhile.
pub async fn listen(
    database_url: String,
    wakeup: Wakeup,
    notifications: IntCounter,
    cancel: CancellationToken,
) {
    let mut failures = 0u32;
    while !cancel.is_cancelled() {
        match connect(&database_url).await {
            Ok(mut listener) => {
                failures = 0;
                wakeup.wake();
                loop {
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        received = listener.recv() => match received {
                            Ok(_) => {
                                notifications.inc();
                                wakeup.wake();
                            }
                            Err(error) => {
                                tracing::warn!(%error, "the LISTEN connection failed; reconnecting");
                                break;
                            }
                        },
                    }
                }
            }
            Err(error) => {
                failures += 1;
                tracing::warn!(%error, "cannot LISTEN for wake-ups; retrying");
            }
        }
        let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(7)));
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
    }
}

async fn connect(database_url: &str) -> Result<PgListener, sea_orm::sqlx::Error> {
    let mut listener = PgListener::connect(database_url).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
