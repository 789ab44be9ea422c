//! Reading a stored schedule row back into its typed parts. The API validated every member on
//! the way in, so a failure here means the row was changed behind hookbeat's back.

use anyhow::Context;
use hookbeat_entity::schedule;

use crate::definition::{RetryPolicy, Target};
use crate::schedule::{ScheduleSpec, Timing};
use crate::steps::Steps;

pub fn timing(model: &schedule::Model) -> anyhow::Result<Timing> {
    let spec: ScheduleSpec = serde_json::from_value(model.spec.clone())
        .with_context(|| format!("schedule {} has an unreadable spec", model.id))?;
    let compiled = spec.compile("schedule").map_err(|errors| {
        anyhow::anyhow!("schedule {} has an invalid spec: {errors:?}", model.id)
    })?;
    Ok(Timing {
        spec: compiled,
        start_at: model.start_at,
        end_at: model.end_at,
        max_runs: model.max_runs,
    })
}

pub fn target(model: &schedule::Model) -> anyhow::Result<Target> {
    serde_json::from_value(model.target.clone())
        .with_context(|| format!("schedule {} has an unreadable target", model.id))
}

/// The target with its `then` steps and `on_failure` call.
pub fn steps(model: &schedule::Model) -> anyhow::Result<Steps> {
    let then = match &model.chain {
        Some(chain) => serde_json::from_value(chain.clone())
            .with_context(|| format!("schedule {} has unreadable then steps", model.id))?,
        None => Vec::new(),
    };
    let on_failure = match &model.on_failure {
        Some(target) => Some(
            serde_json::from_value(target.clone())
                .with_context(|| format!("schedule {} has an unreadable on_failure", model.id))?,
        ),
        None => None,
    };
    Ok(Steps {
        target: target(model)?,
        then,
        on_failure,
    })
}

pub fn retry(model: &schedule::Model) -> anyhow::Result<RetryPolicy> {
    serde_json::from_value(model.retry.clone())
        .with_context(|| format!("schedule {} has an unreadable retry policy", model.id))
}
