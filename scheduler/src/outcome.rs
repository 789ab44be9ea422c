//! What an attempt's result means for its run: done, try again later, move on to the next
//! `then` step, call `on_failure`, or fail for good. Pure: tested without a database or network.

use chrono::{DateTime, Utc};
use hookbeat_entity::run::{self, RunStatus, ON_FAILURE_STEP};

use crate::definition::RetryPolicy;
use crate::deliver::{AttemptResult, DeliveryError};
use crate::retry::{self, Verdict};
use crate::runs::RunUpdate;
use crate::steps::{self, Steps};

/// What an attempt's result says (any delivery's, a notice's too), and the error its history
/// shows.
pub fn judge(result: &AttemptResult) -> (Verdict, Option<String>) {
    let verdict = match (result.status, &result.error) {
        // Nothing was sent, and sending again would not change that.
        (_, Some(DeliveryError::Unsendable(_))) => Verdict::Fail,
        (Some(status), None) => retry::classify_status(status),
        // The answer came but reading it failed: a 2xx still counts, the rest is retried.
        (Some(status), Some(_)) if (200..300).contains(&status) => Verdict::Success,
        _ => Verdict::Retry,
    };
    let error = result
        .error
        .as_ref()
        .map(ToString::to_string)
        .or_else(|| match verdict {
            Verdict::Success => None,
            _ => result.status.map(|s| format!("receiver answered {s}")),
        });
    (verdict, error)
}

/// The run's next state after an attempt, and the attempt's outcome (`success`, `retry`,
/// `failed`) for metrics and history.
pub fn decide(
    run: &run::Model,
    policy: &RetryPolicy,
    steps: Option<&Steps>,
    result: &AttemptResult,
    now: DateTime<Utc>,
) -> (&'static str, RunUpdate) {
    let (verdict, error) = judge(result);
    let status_code = result.status.map(i32::from);
    let update = |status, due_at, finished_at| RunUpdate {
        status,
        due_at,
        status_code,
        error: error.clone(),
        finished_at,
        next_step: None,
        failure: None,
    };
    let attempts_left = run.attempts - run.retry_base < policy.max_attempts;
    match verdict {
        Verdict::Retry if attempts_left => {
            let delay = retry::next_delay(
                policy,
                run.attempts - run.retry_base,
                run.id.0.as_u128() as u64,
                result.retry_after,
            );
            (
                "retry",
                update(RunStatus::Retrying, Some(now + delay), None),
            )
        }
        Verdict::Success if run.step == ON_FAILURE_STEP => ("success", failed_after_call(run, now)),
        Verdict::Success if steps.is_some_and(|s| s.has_step_after(run.step)) => (
            "success",
            RunUpdate {
                next_step: Some(run.step + 1),
                ..update(RunStatus::Pending, Some(now), None)
            },
        ),
        Verdict::Success => ("success", update(RunStatus::Succeeded, None, Some(now))),
        _ if run.step == ON_FAILURE_STEP => ("failed", failed_after_call(run, now)),
        _ => {
            let failure = steps::failure(run, status_code, error.as_deref(), now);
            let has_call = steps.is_some_and(|s| s.on_failure.is_some());
            let next = if has_call {
                RunUpdate {
                    next_step: Some(ON_FAILURE_STEP),
                    ..update(RunStatus::Pending, Some(now), None)
                }
            } else {
                update(RunStatus::Failed, None, Some(now))
            };
            (
                "failed",
                RunUpdate {
                    failure: Some(failure),
                    ..next
                },
            )
        }
    }
}

/// The end of the `on_failure` call, however it went: the run is `failed`, reporting the failure
/// that started the call (the call's own attempts are in the history).
fn failed_after_call(run: &run::Model, now: DateTime<Utc>) -> RunUpdate {
    let failure = run.failure.as_ref();
    RunUpdate {
        status: RunStatus::Failed,
        due_at: None,
        status_code: failure
            .and_then(|f| f["status_code"].as_i64())
            .map(|c| c as i32),
        error: failure.and_then(|f| f["error"].as_str()).map(str::to_owned),
        finished_at: Some(now),
        next_step: None,
        failure: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::Target;

    fn run(step: i32, attempts: i32) -> run::Model {
        let now: DateTime<Utc> = "2030-01-01T00:00:00Z".parse().unwrap();
        run::Model {
            id: hookbeat_entity::RunId::new(),
            tenant_id: "t".into(),
            schedule_id: hookbeat_entity::ScheduleId::new(),
            scheduled_for: now,
            trigger: "schedule".into(),
            status: RunStatus::Delivering,
            attempts,
            retry_base: 0,
            due_at: None,
            locked_by: Some("w".into()),
            last_status_code: None,
            last_error: None,
            created_at: now,
            updated_at: now,
            finished_at: None,
            step,
            failure: None,
            sole_attempt_started_at: None,
            sole_attempt_duration_ms: None,
            sole_attempt_excerpt: None,
            fire_lag_ms: None,
        }
    }

    fn target() -> Target {
        serde_json::from_value(serde_json::json!({"url": "https://example.com/"})).unwrap()
    }

    fn answered(status: u16) -> AttemptResult {
        AttemptResult {
            duration: std::time::Duration::ZERO,
            status: Some(status),
            error: None,
            excerpt: None,
            retry_after: None,
        }
    }

    fn steps(then: usize, on_failure: bool) -> Steps {
        Steps {
            target: target(),
            then: vec![target(); then],
            on_failure: on_failure.then(target),
        }
    }

    #[test]
    fn success_moves_through_the_then_steps() {
        let policy = RetryPolicy::default();
        let now = "2030-01-01T00:00:01Z".parse().unwrap();
        let s = steps(2, false);
        let (_, first) = decide(&run(0, 1), &policy, Some(&s), &answered(200), now);
        assert_eq!(
            (first.status, first.next_step),
            (RunStatus::Pending, Some(1))
        );
        let (_, second) = decide(&run(1, 1), &policy, Some(&s), &answered(204), now);
        assert_eq!(second.next_step, Some(2));
        let (_, last) = decide(&run(2, 3), &policy, Some(&s), &answered(200), now);
        assert_eq!((last.status, last.next_step), (RunStatus::Succeeded, None));
    }

    #[test]
    fn a_final_failure_calls_on_failure_once_then_fails() {
        let policy = RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        };
        let now = "2030-01-01T00:00:01Z".parse().unwrap();
        let s = steps(1, true);
        let (outcome, update) = decide(&run(1, 1), &policy, Some(&s), &answered(500), now);
        assert_eq!(outcome, "failed");
        assert_eq!(
            (update.status, update.next_step),
            (RunStatus::Pending, Some(ON_FAILURE_STEP))
        );
        let failure = update.failure.unwrap();
        assert_eq!(failure["failed_step"], "then[0]");
        assert_eq!(failure["status_code"], 500);

        let mut calling = run(ON_FAILURE_STEP, 1);
        calling.failure = Some(failure);
        let (_, done) = decide(&calling, &policy, Some(&s), &answered(200), now);
        assert_eq!((done.status, done.next_step), (RunStatus::Failed, None));
        assert_eq!(done.error.as_deref(), Some("receiver answered 500"));
        let (_, call_failed) = decide(&calling, &policy, Some(&s), &answered(503), now);
        assert_eq!(
            (call_failed.status, call_failed.next_step),
            (RunStatus::Failed, None)
        );
    }

    #[test]
    fn without_on_failure_a_final_failure_just_fails() {
        let policy = RetryPolicy {
            max_attempts: 2,
            ..RetryPolicy::default()
        };
        let now = "2030-01-01T00:00:01Z".parse().unwrap();
        let s = steps(0, false);
        let (outcome, retry) = decide(&run(0, 1), &policy, Some(&s), &answered(502), now);
        assert_eq!((outcome, retry.status), ("retry", RunStatus::Retrying));
        let (outcome, failed) = decide(&run(0, 2), &policy, Some(&s), &answered(502), now);
        assert_eq!((outcome, failed.status), ("failed", RunStatus::Failed));
        assert!(
            failed.failure.is_some(),
            "the failure is kept for redelivery"
        );
    }

    #[test]
    fn a_run_that_cannot_be_sent_fails_at_once_whatever_attempts_are_left() {
        let policy = RetryPolicy::default();
        let now = "2030-01-01T00:00:01Z".parse().unwrap();
        let unsent = AttemptResult {
            error: Some(DeliveryError::Unsendable(
                "the tenant has no signing secret".into(),
            )),
            ..answered(0)
        };
        let unsent = AttemptResult {
            status: None,
            ..unsent
        };
        let (outcome, update) = decide(&run(0, 1), &policy, Some(&steps(0, false)), &unsent, now);
        assert_eq!((outcome, update.status), ("failed", RunStatus::Failed));
        assert_eq!(
            update.error.as_deref(),
            Some("the tenant has no signing secret")
        );
        // A connection that failed is worth another attempt.
        let refused = AttemptResult {
            status: None,
            error: Some(DeliveryError::Connect(Default::default())),
            ..answered(0)
        };
        let (outcome, update) = decide(&run(0, 1), &policy, Some(&steps(0, false)), &refused, now);
        assert_eq!((outcome, update.status), ("retry", RunStatus::Retrying));
        assert_eq!(update.error.as_deref(), Some("connection failed"));
    }
}
