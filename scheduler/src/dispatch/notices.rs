//! The notice sender, beside the worker loop: delivers the notices write-backs issued
//! (`crate::notices`), signed like any delivery with the notice's id as its `webhook-id`, and
//! retried until their target answers or their attempts run out. It looks when a write-back of
//! this worker issued one, when the earliest pending notice comes due, and every [`POLL`] for
//! notices another worker issued and did not deliver (it stopped, or died holding them).

use std::collections::HashSet;

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use super::Worker;
use crate::definition::Notify;
use crate::deliver::{AttemptResult, Delivery, DeliveryError};
use crate::notices::{self, Notice, NoticeResult};
use crate::signing::SigningKey;

/// Notices claimed per statement.
const BATCH: i64 = 32;
/// How long the sender goes at most without looking in the database.
const POLL: Duration = Duration::seconds(30);
/// How often it looks at the clock: a clock moved by hand (tests) is noticed this soon.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

impl Worker {
    /// Delivers the notices due, a batch at a time (each claimed at the clock's time, so its
    /// lease starts when it does), until none is left or `stop` fires; returns how many
    /// attempts it made. A claim waiting on the database gives way to `stop`; a batch being
    /// sent is finished.
    pub async fn send_notices(&self, stop: Option<&CancellationToken>) -> anyhow::Result<usize> {
        let parts = &self.parts;
        let mut attempts = 0;
        loop {
            let now = parts.clock.now();
            let claim = notices::claim(&parts.db, &parts.config.worker_id, now, BATCH);
            let due = match stop {
                Some(stop) => match stop.run_until_cancelled(claim).await {
                    Some(due) => due?,
                    None => return Ok(attempts),
                },
                None => claim.await?,
            };
            if due.is_empty() {
                return Ok(attempts);
            }
            let tenants: HashSet<&str> = due.iter().map(|n| n.tenant_id.as_str()).collect();
            let keys = parts.intake.keys_of(tenants, now).await?;
            let sends = due.iter().map(|notice| {
                let keys = keys
                    .get(&notice.tenant_id)
                    .map(Vec::as_slice)
                    .unwrap_or(&[]);
                self.send_notice(notice, keys)
            });
            futures::future::join_all(sends).await;
            attempts += due.len();
            if (due.len() as i64) < BATCH || stop.is_some_and(CancellationToken::is_cancelled) {
                return Ok(attempts);
            }
        }
    }

    /// One attempt at `notice`, recorded; a failure to record leaves it to its lease.
    async fn send_notice(&self, notice: &Notice, keys: &[SigningKey]) {
        let parts = &self.parts;
        let started = parts.clock.now();
        let answer = match (keys.is_empty(), request(notice)) {
            (true, _) => AttemptResult::not_sent(DeliveryError::Unsendable(
                "the tenant has no signing secret".to_owned(),
            )),
            (false, Err(reason)) => AttemptResult::not_sent(DeliveryError::Unsendable(reason)),
            (false, Ok(notify)) => {
                let needs = Duration::milliseconds(notify.timeout_ms) + notices::LEASE_SLACK;
                if needs > notices::NOTICE_LEASE {
                    let until = started + needs;
                    let extended =
                        notices::extend(&parts.db, &parts.config.worker_id, notice, until).await;
                    if let Err(error) = extended {
                        tracing::warn!(notice_id = %notice.id, error = %format!("{error:#}"), "could not hold a notice for its timeout; sending it all the same");
                    }
                }
                let delivery = Delivery {
                    webhook_id: notice.id.to_string(),
                    schedule_id: notice.schedule_id,
                    scheduled_for: notice.created_at,
                    attempt: notice.attempts,
                    target: &notify,
                    keys,
                };
                parts.attempts.deliverer.deliver(&delivery, started).await
            }
        };
        let result: NoticeResult = notices::decide(notice, &answer, parts.clock.now());
        parts
            .metrics
            .notice_deliveries
            .with_label_values(&[result.outcome()])
            .inc();
        if result.status == notices::status::FAILED {
            tracing::warn!(
                notice_id = %notice.id,
                schedule_id = %notice.schedule_id,
                transition = %notice.transition,
                attempts = notice.attempts,
                error = result.error.as_deref().unwrap_or(""),
                "notice given up"
            );
        }
        let recorded = notices::finish(
            &parts.db,
            &parts.config.worker_id,
            notice,
            &result,
            parts.clock.now(),
        )
        .await;
        if let Err(error) = recorded {
            tracing::warn!(notice_id = %notice.id, error = %format!("{error:#}"), "recording a notice's attempt failed; it is sent again when its lease ends");
        }
    }

    /// The sender's loop, until `cancel` fires. Notices being sent when it does have the
    /// worker's shutdown grace to finish, as deliveries do; what is left returns to the queue
    /// when its lease ends.
    pub(super) async fn notice_loop(self, cancel: CancellationToken) {
        let parts = &self.parts;
        let mut next_look = parts.clock.now();
        while !cancel.is_cancelled() {
            let now = parts.clock.now();
            if now >= next_look {
                let look = self.look(now, &cancel);
                tokio::pin!(look);
                next_look = tokio::select! {
                    looked = &mut look => looked,
                    _ = cancel.cancelled() => {
                        let _ = tokio::time::timeout(parts.config.shutdown_grace, look).await;
                        break;
                    }
                };
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
                _ = parts.notices_issued.notified() => next_look = parts.clock.now(),
            }
        }
    }

    /// Sends what is due at `now`; returns when to look next.
    async fn look(&self, now: DateTime<Utc>, stop: &CancellationToken) -> DateTime<Utc> {
        if let Err(error) = self.send_notices(Some(stop)).await {
            tracing::warn!(error = %format!("{error:#}"), "sending notices failed");
            return now + Duration::seconds(5);
        }
        if stop.is_cancelled() {
            return now;
        }
        match notices::next_due(&self.parts.db).await {
            Ok(Some(due)) => due.min(now + POLL),
            Ok(None) => now + POLL,
            Err(error) => {
                tracing::debug!(error = %format!("{error:#}"), "looking for the next notice failed");
                now + Duration::seconds(5)
            }
        }
    }
}

/// The request `notice` is: its `notify` target with its body.
fn request(notice: &Notice) -> Result<crate::definition::Target, String> {
    let notify: Notify = serde_json::from_value(notice.target.clone())
        .map_err(|e| format!("the notice's target is unreadable: {e}"))?;
    let body: serde_json::Value = serde_json::from_str(&notice.body)
        .map_err(|e| format!("the notice's body is unreadable: {e}"))?;
    let mut target = notify.target();
    target.body = Some(body);
    Ok(target)
}
