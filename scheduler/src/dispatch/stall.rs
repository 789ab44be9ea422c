//! The stall watch: a worker that records no result for `stall_after` while work has been due
//! at least that long says so, once, at warn and in `hookbeat_worker_stalled` (1 while it lasts)
//! and `hookbeat_worker_stalls_total`, with where its work stands (requests in flight, results
//! awaiting their write-back), and says so again at info when results flow again. The rule is
//! [`StallWatch::observe`], free of I/O and unit-tested here; the loop around it reads the
//! earliest due instant (two index probes) every [`TICK`].

use chrono::{DateTime, Duration, Utc};
use tokio_util::sync::CancellationToken;

use super::Worker;

/// How often the watch looks.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);

/// What a look found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Nothing changed: progressing, idle, or still stalled.
    Steady,
    /// No result recorded for `quiet` while something has been due since `due_since`.
    Began {
        quiet: Duration,
        due_since: DateTime<Utc>,
    },
    /// Results flow again, or nothing is due any more, after a stall of `lasted`.
    Ended { lasted: Duration },
}

/// The watch's memory between looks.
#[derive(Debug)]
pub(super) struct StallWatch {
    after: Duration,
    /// Results recorded at the last look.
    recorded: u64,
    /// When `recorded` last moved (or the watch began).
    progressed_at: DateTime<Utc>,
    stalled_since: Option<DateTime<Utc>>,
}

impl StallWatch {
    pub(super) fn new(after: Duration, now: DateTime<Utc>) -> Self {
        Self {
            after,
            recorded: 0,
            progressed_at: now,
            stalled_since: None,
        }
    }

    /// A look at `now`: `recorded` results so far, and the earliest instant at which something
    /// (a fire, a run) has been due and is still waiting, if any. A worker is stalled when it
    /// has recorded nothing for `after` and something has been due for `after`: an idle worker
    /// records nothing for hours without being stalled, and a fire due a moment ago has not been
    /// waited on yet.
    pub(super) fn observe(
        &mut self,
        now: DateTime<Utc>,
        recorded: u64,
        due_since: Option<DateTime<Utc>>,
    ) -> Verdict {
        let moved = recorded != self.recorded;
        if moved {
            self.recorded = recorded;
            self.progressed_at = now;
        }
        let overdue = due_since.filter(|due| now - *due >= self.after);
        match (self.stalled_since, overdue) {
            (Some(since), _) if moved || due_since.is_none() => {
                self.stalled_since = None;
                Verdict::Ended {
                    lasted: now - since,
                }
            }
            (None, Some(due_since)) if now - self.progressed_at >= self.after => {
                self.stalled_since = Some(now);
                Verdict::Began {
                    quiet: now - self.progressed_at,
                    due_since,
                }
            }
            _ => Verdict::Steady,
        }
    }
}

impl Worker {
    /// Looks every [`TICK`] until `cancel`.
    pub(super) async fn watch_for_stalls(self, cancel: CancellationToken) {
        let parts = &self.parts;
        let mut watch = StallWatch::new(parts.config.stall_after, parts.clock.now());
        parts.metrics.worker_stalled.set(0);
        while !cancel.is_cancelled() {
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            let Some(due) = cancel.run_until_cancelled(self.next_due()).await else {
                break;
            };
            let due = match due {
                Ok(due) => due,
                Err(error) => {
                    tracing::debug!(error = %format!("{error:#}"), "the stall watch could not read the next due time");
                    continue;
                }
            };
            let now = parts.clock.now();
            let due_since = due.filter(|due| *due <= now);
            match watch.observe(now, parts.attempts.write_back.recorded(), due_since) {
                Verdict::Steady => {}
                Verdict::Began { quiet, due_since } => {
                    let load = parts.admission.load();
                    parts.metrics.worker_stalled.set(1);
                    parts.metrics.worker_stalls.inc();
                    tracing::warn!(
                        quiet_s = quiet.num_seconds(),
                        due_since = %due_since.to_rfc3339(),
                        requests_in_flight = load.sending,
                        results_unrecorded = load.unrecorded,
                        "worker stalled: no result recorded while work is due; requests in flight \
                         all busy means slow receivers, results unrecorded piling up means the \
                         database is not taking the write-backs, neither means the worker cannot \
                         claim (see the worker pass errors)"
                    );
                }
                Verdict::Ended { lasted } => {
                    parts.metrics.worker_stalled.set(0);
                    tracing::info!(lasted_s = lasted.num_seconds(), "worker progressing again");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + seconds, 0).unwrap()
    }

    fn watch() -> StallWatch {
        StallWatch::new(Duration::seconds(30), at(0))
    }

    #[test]
    fn an_idle_worker_is_not_stalled() {
        let mut watch = watch();
        for second in (0..=3600).step_by(60) {
            assert_eq!(watch.observe(at(second), 0, None), Verdict::Steady);
        }
    }

    #[test]
    fn work_due_a_moment_ago_has_not_been_waited_on() {
        let mut watch = watch();
        // Idle for an hour, then a fire comes due: not a stall until it has waited 30 s.
        assert_eq!(watch.observe(at(3600), 0, Some(at(3600))), Verdict::Steady);
        assert_eq!(watch.observe(at(3629), 0, Some(at(3600))), Verdict::Steady);
        assert_eq!(
            watch.observe(at(3630), 0, Some(at(3600))),
            Verdict::Began {
                quiet: Duration::seconds(3630),
                due_since: at(3600)
            }
        );
    }

    #[test]
    fn a_worker_recording_results_is_not_stalled_however_long_the_backlog() {
        let mut watch = watch();
        for second in 1..=120 {
            assert_eq!(
                watch.observe(at(second), second as u64 * 100, Some(at(0))),
                Verdict::Steady
            );
        }
    }

    #[test]
    fn a_stall_is_told_once_and_its_end_once() {
        let mut watch = watch();
        assert_eq!(watch.observe(at(10), 5, Some(at(5))), Verdict::Steady);
        // Results stop at 10 s; work has been due since 5 s.
        assert_eq!(watch.observe(at(39), 5, Some(at(5))), Verdict::Steady);
        assert!(matches!(
            watch.observe(at(40), 5, Some(at(5))),
            Verdict::Began { quiet, .. } if quiet == Duration::seconds(30)
        ));
        for second in 41..100 {
            assert_eq!(watch.observe(at(second), 5, Some(at(5))), Verdict::Steady);
        }
        assert_eq!(
            watch.observe(at(100), 6, Some(at(5))),
            Verdict::Ended {
                lasted: Duration::seconds(60)
            }
        );
        assert_eq!(watch.observe(at(101), 7, Some(at(5))), Verdict::Steady);
    }

    #[test]
    fn a_stall_ends_when_nothing_is_due_any_more() {
        let mut watch = watch();
        assert!(matches!(
            watch.observe(at(60), 0, Some(at(0))),
            Verdict::Began { .. }
        ));
        // Another worker delivered it all.
        assert_eq!(
            watch.observe(at(70), 0, None),
            Verdict::Ended {
                lasted: Duration::seconds(10)
            }
        );
        // And when work waits again, a new stall needs another 30 s of waiting.
        assert_eq!(watch.observe(at(80), 0, Some(at(75))), Verdict::Steady);
        assert!(matches!(
            watch.observe(at(105), 0, Some(at(75))),
            Verdict::Began { .. }
        ));
    }
}
