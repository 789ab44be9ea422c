//! Wake-ups: a hint that something became due earlier than the worker planned (a schedule was
//! created, changed or triggered). The worker's own timer to the next due instant remains the
//! guarantee; a wake-up only shortens the wait. An announcement names when its change comes due,
//! and a worker asleep until no later than that is left asleep: creating schedules that fire
//! later costs an idle worker nothing.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use prometheus::IntCounter;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The PostgreSQL channel on which changes are announced to every worker. The payload is the
/// instant the change comes due, in microseconds since the epoch; empty means now.
pub const CHANNEL: &str = "hookbeat_wakeup";

/// `Shared::asleep_until` while the worker is not asleep: every announcement wakes it (or, while
/// it is busy, leaves a permit that ends its next wait at once).
const AWAKE: i64 = i64::MIN;

#[derive(Debug, Clone)]
pub struct Wakeup(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    notify: Notify,
    /// When the sleeping worker looks again by itself (µs since the epoch), or [`AWAKE`].
    asleep_until: AtomicI64,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self(Arc::new(Shared {
            notify: Notify::new(),
            asleep_until: AtomicI64::new(AWAKE),
        }))
    }
}

impl Wakeup {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes the worker now, or at its next wait if it is busy (the permit is kept).
    pub fn wake(&self) {
        self.0.notify.notify_one();
    }

    /// Wakes the worker for something due at `due`, unless it is asleep and looks again by
    /// itself no later than that.
    pub fn wake_for(&self, due: DateTime<Utc>) {
        let asleep_until = self.0.asleep_until.load(Ordering::SeqCst);
        if asleep_until == AWAKE || due.timestamp_micros() < asleep_until {
            self.wake();
        }
    }

    /// When the worker, asleep, looks again by itself; `None` while it is not asleep.
    pub fn asleep_until(&self) -> Option<DateTime<Utc>> {
        match self.0.asleep_until.load(Ordering::SeqCst) {
            AWAKE => None,
            micros => DateTime::from_timestamp_micros(micros),
        }
    }

    /// Sleeps until woken; the caller looks again by itself at `until` (and drops this then).
    pub async fn woken(&self, until: DateTime<Utc>) {
        let _asleep = Asleep::until(&self.0, until);
        self.0.notify.notified().await;
    }
}

/// Marks the worker asleep until an instant for as long as it lives.
struct Asleep<'a>(&'a Shared);

impl<'a> Asleep<'a> {
    fn until(shared: &'a Shared, until: DateTime<Utc>) -> Self {
        shared
            .asleep_until
            .store(until.timestamp_micros(), Ordering::SeqCst);
        Self(shared)
    }
}

impl Drop for Asleep<'_> {
    fn drop(&mut self) {
        self.0.asleep_until.store(AWAKE, Ordering::SeqCst);
    }
}

/// Announces a change that makes something due at `due` (`None`: now): wakes this process's
/// worker and, on PostgreSQL, every listening worker, unless it is asleep until no later than
/// that. A failed NOTIFY is only logged: the workers' own timers still pick the change up
/// within their idle limit.
pub async fn announce(db: &DatabaseConnection, wakeup: &Wakeup, due: Option<DateTime<Utc>>) {
    match due {
        Some(due) => wakeup.wake_for(due),
        None => wakeup.wake(),
    }
    if db.get_database_backend() == DbBackend::Postgres {
        let payload = due.map_or(String::new(), |due| due.timestamp_micros().to_string());
        if let Err(error) = db
            .execute_unprepared(&format!("NOTIFY {CHANNEL}, '{payload}'"))
            .await
        {
            tracing::warn!(%error, "NOTIFY failed; workers will see the change at their next poll");
        }
    }
}

/// What a NOTIFY payload asks of a worker: to wake for an instant, or now.
fn due_of(payload: &str) -> Option<DateTime<Utc>> {
    payload
        .parse::<i64>()
        .ok()
        .and_then(DateTime::from_timestamp_micros)
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
                            Ok(notification) => {
                                notifications.inc();
                                match due_of(notification.payload()) {
                                    Some(due) => wakeup.wake_for(due),
                                    None => wakeup.wake(),
                                }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    /// Starts a sleeper that would look again by itself at `until`, and lets it fall asleep.
    async fn asleep(wakeup: &Wakeup, until: DateTime<Utc>) -> tokio::task::JoinHandle<()> {
        let sleeper = wakeup.clone();
        let handle = tokio::spawn(async move { sleeper.woken(until).await });
        tokio::task::yield_now().await;
        handle
    }

    #[tokio::test]
    async fn a_change_due_after_the_next_look_leaves_the_worker_asleep() {
        let wakeup = Wakeup::new();
        let sleeper = asleep(&wakeup, at(10)).await;
        wakeup.wake_for(at(10));
        wakeup.wake_for(at(3600));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        // Something due sooner than the worker looks wakes it.
        wakeup.wake_for(at(9));
        sleeper.await.unwrap();
    }

    #[tokio::test]
    async fn a_busy_worker_is_woken_for_anything() {
        let wakeup = Wakeup::new();
        // Announced while the worker is in a pass: its next wait ends at once.
        wakeup.wake_for(at(3600));
        let sleeper = asleep(&wakeup, at(10)).await;
        tokio::task::yield_now().await;
        assert!(sleeper.is_finished());
    }

    #[tokio::test]
    async fn a_worker_that_woke_by_itself_is_awake_again() {
        let wakeup = Wakeup::new();
        let sleeper = asleep(&wakeup, at(10)).await;
        // Its timer fired first: the wait is dropped, and it is no longer asleep.
        sleeper.abort();
        let _ = sleeper.await;
        wakeup.wake_for(at(3600));
        let next = asleep(&wakeup, at(20)).await;
        tokio::task::yield_now().await;
        assert!(next.is_finished());
    }

    #[test]
    fn notify_payloads() {
        assert_eq!(due_of(&at(5).timestamp_micros().to_string()), Some(at(5)));
        assert_eq!(due_of(""), None);
        assert_eq!(due_of("soon"), None);
    }
}
