//! Wake-ups: a hint that something became due earlier than the worker planned (a schedule was
//! created, changed or triggered). The worker's own timer to the next due instant remains the
//! guarantee; a wake-up only shortens the wait.

use std::sync::Arc;

use tokio::sync::Notify;

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
