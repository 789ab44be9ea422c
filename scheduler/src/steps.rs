//! Dependent steps. A run delivers its schedule's `target`, then each `then` target in order, each
//! only after the one before succeeded, each under its own stable `webhook-id`. When a step fails
//! for good the run fails, and the `on_failure` target, if any, is called once with the failure
//! as its JSON body.
//!
//! ```text
//!  step 0 (target) ─ok─> step 1 (then[0]) ─ok─> … ─ok─> succeeded
//!        │ failed for good      │
//!        └──────────────┬───────┘
//!                       v
//!        on_failure set? ─yes─> step −1 (on_failure call) ─any end─> failed
//!                       └─no──> failed
//! ```

use chrono::{DateTime, SecondsFormat, Utc};
use hookbeat_entity::run::{self, ON_FAILURE_STEP};
use hookbeat_entity::RunId;
use serde_json::{json, Value};

use crate::definition::Target;

/// Every target a schedule's runs may deliver.
#[derive(Debug, Clone)]
pub struct Steps {
    pub target: Target,
    pub then: Vec<Target>,
    pub on_failure: Option<Target>,
}

impl Steps {
    /// The target that step `step` delivers, with the failure as body for the `on_failure` call.
    pub fn target_of(&self, run: &run::Model) -> Option<Target> {
        match run.step {
            0 => Some(self.target.clone()),
            ON_FAILURE_STEP => self.on_failure.clone().map(|mut target| {
                target.body = Some(run.failure.clone().unwrap_or(Value::Null));
                target
            }),
            k if k > 0 => self.then.get(k as usize - 1).cloned(),
            _ => None,
        }
    }

    /// Whether a `then` step follows `step`.
    pub fn has_step_after(&self, step: i32) -> bool {
        step >= 0 && (step as usize) < self.then.len()
    }
}

/// The `webhook-id` of a step of a run: the run id for the target, suffixed for the others, so
/// each step has its own id and keeps it on every attempt.
pub fn webhook_id(run_id: RunId, step: i32) -> String {
    match step {
        0 => run_id.to_string(),
        ON_FAILURE_STEP => format!("{run_id}-on-failure"),
        k => format!("{run_id}-then-{k}"),
    }
}

/// How history names a step: `target`, `then[0]`, …, `on_failure`.
pub fn step_name(step: i32) -> String {
    match step {
        0 => "target".to_owned(),
        ON_FAILURE_STEP => "on_failure".to_owned(),
        k => format!("then[{}]", k - 1),
    }
}

/// The failure of a run, as kept on the run and sent to `on_failure`.
pub fn failure(
    run: &run::Model,
    status_code: Option<i32>,
    error: Option<&str>,
    failed_at: DateTime<Utc>,
) -> Value {
    json!({
        "run_id": run.id,
        "schedule_id": run.schedule_id,
        "scheduled_for": run.scheduled_for.to_rfc3339_opts(SecondsFormat::AutoSi, true),
        "failed_step": step_name(run.step),
        "step": run.step,
        "attempts": run.attempts,
        "status_code": status_code,
        "error": error,
        "failed_at": failed_at.to_rfc3339_opts(SecondsFormat::AutoSi, true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_step_has_its_own_stable_id_and_name() {
        let id = RunId::new();
        assert_eq!(webhook_id(id, 0), id.to_string());
        assert_eq!(webhook_id(id, 2), format!("{id}-then-2"));
        assert_eq!(webhook_id(id, ON_FAILURE_STEP), format!("{id}-on-failure"));
        assert_eq!(step_name(0), "target");
        assert_eq!(step_name(1), "then[0]");
        assert_eq!(step_name(ON_FAILURE_STEP), "on_failure");
    }
}
