//! The examples of the OpenAPI description. Request examples are JSON a client would send (a
//! test feeds them to the real parsers); response examples are real DTO values serialised by the
//! server's own code, so they cannot drift from what the server answers. One story runs through
//! them: tenant `acme`'s `nightly-report`, which posts a report at 02:30 Berlin time on weekdays.

use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use super::notice::{Notice, NoticePage};
use super::revision::{Actor, Revision, RevisionDetail, RevisionPage};
use super::run::{Attempt, Run, RunDetail, RunPage};
use super::schedule::{
    BackfillResult, FireTimes, Schedule, ScheduleHealth, ScheduleHealthCounts, ScheduleInput,
    SchedulePage,
};
use super::secret::{SigningSecret, SigningSecrets};
use super::tenant::{Tenant, TenantPage};
use crate::error::ApiError;
use hookbeat_entity::schedule_revision::RevisionAction;
use hookbeat_scheduler::health::HealthState;

const SCHEDULE_ID: &str = "01958f0e-3c2a-7d41-9b6e-2f4c8a1d5e70";
const RUN_ID: &str = "01958f4b-a1f0-7c3e-8d2b-6e9a0c4f1b37";

fn at(instant: &str) -> DateTime<Utc> {
    instant.parse().expect("example instants are RFC 3339")
}

fn id(text: &str) -> Uuid {
    Uuid::parse_str(text).expect("example ids are UUIDs")
}

fn to_json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("DTOs serialise to JSON")
}

/// `POST /v1/schedules`, `PUT /v1/schedules/by-name/{name}`.
pub fn schedule_input() -> Value {
    json!({
        "name": "nightly-report",
        "description": "Builds the sales report of the previous day",
        "schedule": {"kind": "crontab", "expression": "30 2 * * MON-FRI", "timezone": "Europe/Berlin"},
        "target": {
            "url": "https://example.com/hooks/report",
            "headers": {"x-report": "sales"},
            "body": {"report": "sales", "period": "day"}
        },
        "metadata": {"team": "finance"},
        "notify": {"url": "https://example.com/hooks/hookbeat-notices", "after_failures": 3},
        "pause_after_failures": 10
    })
}

/// `PATCH /v1/schedules/{id}`: a JSON merge patch.
pub fn schedule_patch() -> Value {
    json!({"description": "Builds the sales and returns report", "target": {"timeout_ms": 30000}})
}

/// A schedule as the API returns it: [`schedule_input`] with its defaults and state.
pub fn schedule() -> Value {
    to_json(&schedule_model())
}

fn schedule_model() -> Schedule {
    let input = ScheduleInput::from_json(schedule_input()).expect("the schedule example is valid");
    Schedule {
        id: id(SCHEDULE_ID),
        input,
        paused_reason: None,
        next_run_at: Some(at("2026-03-04T01:30:00Z")),
        last_run_at: Some(at("2026-03-03T01:30:00Z")),
        total_runs: 2,
        created_at: at("2026-03-01T09:12:44Z"),
        updated_at: at("2026-03-01T09:12:44Z"),
        version: 1,
        health: ScheduleHealth {
            state: HealthState::Healthy,
            consecutive_failures: 0,
            failing_since: None,
            last_success_at: Some(at("2026-03-03T01:30:00.412Z")),
            last_failure_at: None,
            last_fire_lag_ms: Some(137),
            late_after_ms: 60_000,
            last_24h: ScheduleHealthCounts {
                succeeded: 1,
                ..ScheduleHealthCounts::default()
            },
        },
    }
}

pub fn schedule_page() -> Value {
    to_json(&SchedulePage {
        items: vec![schedule_model()],
        next_cursor: Some(SCHEDULE_ID.to_owned()),
    })
}

/// `POST /v1/schedules/preview`: the example schedule's next fires around the switch to summer
/// time (29 March 2026 in Berlin): the UTC hour moves, the local time does not.
pub fn preview_request() -> Value {
    json!({
        "schedule": {"kind": "crontab", "expression": "30 2 * * MON-FRI", "timezone": "Europe/Berlin"},
        "after": "2026-03-27T00:00:00Z",
        "count": 3
    })
}

pub fn fire_times() -> Value {
    let request: super::schedule::PreviewRequest =
        super::schedule::PreviewRequest::from_json(preview_request())
            .expect("the preview example is valid");
    let count = request.count.expect("the preview example has a count") as usize;
    let after = request.after.expect("the preview example has an instant");
    let fires = hookbeat_scheduler::schedule::preview_local(
        &request.schedule,
        Default::default(),
        after,
        count,
    )
    .expect("the preview example previews");
    to_json(&FireTimes::from(fires))
}

/// `POST /v1/calendars`: German public holidays, Christmas week, and May Day by rule.
pub fn calendar_input() -> Value {
    json!({
        "name": "de-holidays",
        "timezone": "Europe/Berlin",
        "dates": ["2026-10-03"],
        "ranges": [{"from": "2026-12-24", "to": "2026-12-31"}],
        "rules": ["FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1"],
        "ics": "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nUID:easter-monday-2026\r\nDTSTART;VALUE=DATE:20260406\r\nSUMMARY:Ostermontag\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    })
}

/// The calendar `calendar_input` makes.
pub fn calendar() -> Value {
    json!({
        "name": "de-holidays",
        "timezone": "Europe/Berlin",
        "dates": ["2026-10-03"],
        "ranges": [{"from": "2026-12-24", "to": "2026-12-31"}],
        "rules": ["FREQ=YEARLY;BYMONTH=5;BYMONTHDAY=1"],
        "imported_dates": ["2026-04-06"],
        "imported_events": 1,
        "ignored_events": 0,
        "created_at": "2026-03-20T09:00:00Z",
        "updated_at": "2026-03-20T09:00:00Z"
    })
}

/// `PATCH /v1/calendars/{name}`: another closed day, and the imported holidays dropped.
pub fn calendar_patch() -> Value {
    json!({"dates": ["2026-10-03", "2026-11-02"], "ics": null})
}

/// `GET /v1/calendars`.
pub fn calendar_list() -> Value {
    json!({"items": [calendar()]})
}

/// `POST /v1/schedules/{id}/backfill`: Monday and Tuesday of the example schedule.
/// A timeline across Berlin's switch to summer time (29 March 2026, 01:00 UTC) of an every
/// half hour crontab: 02:00 and 02:30 did not exist and were skipped (`dst_gap: skip`).
pub fn timeline_page() -> Value {
    json!({
        "items": [
            {"at": "2026-03-29T00:30:00Z", "local_time": "2026-03-29T01:30:00",
             "utc_offset": "+01:00", "status": "delivered", "run_id": RUN_ID,
             "fire_lag_ms": 41, "attempts": 1},
            {"at": "2026-03-29T01:00:00Z", "local_time": "2026-03-29T02:00:00",
             "utc_offset": "+02:00", "dst": "gap_skipped", "status": "skipped",
             "reason": "dst_gap", "fires": 2},
            {"at": "2026-03-29T01:00:00Z", "local_time": "2026-03-29T03:00:00",
             "utc_offset": "+02:00", "status": "failed",
             "run_id": "01958f4c-0b12-7e41-9c3d-7f0b1d5a2c48", "fire_lag_ms": 38, "attempts": 5},
            {"at": "2026-03-29T01:30:00Z", "local_time": "2026-03-29T03:30:00",
             "utc_offset": "+02:00", "status": "skipped", "reason": "overlap"},
            {"at": "2026-03-29T02:00:00Z", "local_time": "2026-03-29T04:00:00",
             "utc_offset": "+02:00", "status": "expected"}
        ],
        "next_cursor": "2026-03-29T02:00:00Z"
    })
}

pub fn backfill_request() -> Value {
    json!({"from": "2026-03-02T00:00:00Z", "to": "2026-03-04T00:00:00Z"})
}

pub fn backfill_result() -> Value {
    let request: super::schedule::BackfillRequest =
        crate::body::typed(backfill_request(), "").expect("the backfill example is valid");
    let input = ScheduleInput::from_json(schedule_input()).expect("the schedule example is valid");
    let fire_times: Vec<_> = hookbeat_scheduler::schedule::preview(
        &input.schedule,
        request.from - Duration::microseconds(1),
        1000,
    )
    .expect("the schedule example previews")
    .into_iter()
    .take_while(|fire| *fire <= request.to)
    .collect();
    to_json(&BackfillResult {
        created: fire_times.len(),
        fire_times,
    })
}

fn run_model() -> Run {
    Run {
        id: id(RUN_ID),
        schedule_id: id(SCHEDULE_ID),
        scheduled_for: at("2026-03-03T01:30:00Z"),
        trigger: "schedule".to_owned(),
        status: "succeeded".to_owned(),
        step: "target".to_owned(),
        attempt_count: 2,
        next_attempt_at: None,
        last_status_code: Some(200),
        last_error: None,
        created_at: at("2026-03-03T01:30:00Z"),
        updated_at: at("2026-03-03T01:30:06Z"),
        finished_at: Some(at("2026-03-03T01:30:06Z")),
        failure: None,
    }
}

/// One run: a fire that succeeded at its second attempt.
pub fn run() -> Value {
    to_json(&run_model())
}

pub fn run_detail() -> Value {
    to_json(&RunDetail {
        run: run_model(),
        attempts: vec![
            Attempt {
                step: "target".to_owned(),
                attempt: 1,
                started_at: at("2026-03-03T01:30:00.214Z"),
                duration_ms: 93,
                outcome: "retry".to_owned(),
                status_code: Some(503),
                error: None,
                response_excerpt: Some("upstream unavailable".to_owned()),
            },
            Attempt {
                step: "target".to_owned(),
                attempt: 2,
                started_at: at("2026-03-03T01:30:05.871Z"),
                duration_ms: 128,
                outcome: "success".to_owned(),
                status_code: Some(200),
                error: None,
                response_excerpt: Some("{\"accepted\":true}".to_owned()),
            },
        ],
    })
}

pub fn run_page() -> Value {
    to_json(&RunPage {
        items: vec![run_model()],
        next_cursor: Some(RUN_ID.to_owned()),
    })
}

/// The secrets just after a rotation: the new one, and the old one for 24 more hours.
pub fn signing_secrets() -> Value {
    to_json(&SigningSecrets {
        secrets: vec![
            SigningSecret {
                id: id("01959a2c-77d0-7b8e-a4f1-0d3e5c6b7a82"),
                secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned(),
                created_at: at("2026-03-05T08:00:00Z"),
                expires_at: None,
            },
            SigningSecret {
                id: id("01958e11-0b5a-7f20-91c4-3a8d2e6f0c19"),
                secret: "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD".to_owned(),
                created_at: at("2026-03-01T09:00:00Z"),
                expires_at: Some(at("2026-03-06T08:00:00Z")),
            },
        ],
    })
}

/// `POST /v1/tenants`: quotas left out take the defaults.
pub fn new_tenant() -> Value {
    json!({"id": "acme", "max_schedules": 500, "min_interval_seconds": 60})
}

/// `PATCH /v1/tenants/{id}`.
pub fn tenant_change() -> Value {
    json!({"max_schedules": 2000, "api_rate_per_second": 50})
}

/// A schedule's notices: it turned failing after three failed runs, and recovered.
pub fn notice_page() -> Value {
    use hookbeat_scheduler::notices::Issued;
    let notice = |id: &str, transition: &str, when: &str, run: &str, error: Option<&str>| {
        let body = json!({
            "type": format!("schedule.{transition}"), "notice_id": id, "transition": transition,
            "occurred_at": when, "schedule": {"id": SCHEDULE_ID, "name": "nightly-report"},
            "consecutive_failures": if error.is_some() { 3 } else { 0 }, "failing_after": 3,
            "failing_since": if error.is_some() { None } else { Some("2026-03-05T01:30:02Z") },
            "last_error": error, "paused_reason": null, "run_id": run,
            "links": {
                "schedule": format!("/v1/schedules/{SCHEDULE_ID}"),
                "run": format!("/v1/runs/{run}"),
                "failed_runs": format!("/v1/runs?schedule_id={SCHEDULE_ID}&status=failed"),
                "timeline": format!("/v1/schedules/{SCHEDULE_ID}/timeline"),
            },
        });
        Notice::from(Issued {
            id: Uuid::parse_str(id).expect("example ids are UUIDs"),
            transition: transition.to_owned(),
            status: "delivered".to_owned(),
            attempts: 1,
            body: body.to_string(),
            created_at: at(when),
            next_attempt_at: at(when),
            finished_at: Some(at(when) + Duration::milliseconds(84)),
            last_status_code: Some(200),
            last_error: None,
        })
    };
    to_json(&NoticePage {
        items: vec![
            notice(
                "0195a3c1-7a10-7d3e-8c41-2b9d6e0f4a18",
                "recovered",
                "2026-03-06T01:30:00.318Z",
                "0195a3c1-79f0-7b62-a1c4-5d8e2f3b9c07",
                None,
            ),
            notice(
                "01959e9b-1e2c-7f45-b7a3-9c0d1e2f3a4b",
                "failing",
                "2026-03-05T01:30:02Z",
                RUN_ID,
                Some("receiver answered 503"),
            ),
        ],
        next_cursor: None,
    })
}

/// The example schedule as created and as [`schedule_patch`] changed it, as revisions keep it.
fn revised_documents() -> (Value, Value) {
    let created = to_json(
        &ScheduleInput::from_json(schedule_input()).expect("the schedule example is valid"),
    );
    let mut patched = created.clone();
    hookbeat_scheduler::merge_patch::apply(&mut patched, &schedule_patch());
    let patched =
        to_json(&ScheduleInput::from_json(patched).expect("the patched example is valid"));
    (created, patched)
}

/// The example's second revision: [`schedule_patch`], by a deploy job's token, with its reason.
fn second_revision() -> RevisionDetail {
    let (created, patched) = revised_documents();
    RevisionDetail {
        revision: Revision {
            version: 2,
            created_at: at("2026-03-02T16:05:31Z"),
            action: RevisionAction::Updated,
            actor: Actor {
                sub: "acme".to_owned(),
                token_id: Some("tok-7f3a".to_owned()),
                name: Some("deploy-bot".to_owned()),
            },
            reason: Some("The report now covers returns (FIN-204)".to_owned()),
            restored_from: None,
            patch: Some(hookbeat_scheduler::merge_patch::between(&created, &patched)),
        },
        schedule: patched,
    }
}

pub fn revision_detail() -> Value {
    to_json(&second_revision())
}

/// The example's revisions, newest first: hookbeat paused it after its `pause_after_failures`
/// runs failed, after the deploy job's change.
pub fn revision_page() -> Value {
    let second = second_revision();
    let mut paused = second.schedule.clone();
    paused["enabled"] = json!(false);
    let third = Revision {
        version: 3,
        created_at: at("2026-03-12T01:30:04Z"),
        action: RevisionAction::Paused,
        actor: Actor::hookbeat(),
        reason: Some(hookbeat_scheduler::notices::paused_reason(10)),
        restored_from: None,
        patch: Some(hookbeat_scheduler::merge_patch::between(
            &second.schedule,
            &paused,
        )),
    };
    to_json(&RevisionPage {
        items: vec![third, second.revision],
        next_cursor: Some("2".to_owned()),
    })
}

/// `PATCH /v1/tenant`.
pub fn tenant_settings() -> Value {
    json!({"notify": {"url": "https://example.com/hooks/hookbeat-notices", "after_failures": 5}})
}

fn tenant_model() -> Tenant {
    Tenant {
        id: "acme".to_owned(),
        disabled: false,
        max_schedules: 500,
        schedule_count: 12,
        min_interval_seconds: 60,
        api_rate_per_second: 100,
        notify: Some(
            serde_json::from_value(tenant_settings()["notify"].clone())
                .expect("the notify example is valid"),
        ),
        created_at: at("2026-03-01T09:00:00Z"),
        updated_at: at("2026-03-01T09:00:00Z"),
    }
}

pub fn tenant() -> Value {
    to_json(&tenant_model())
}

pub fn tenant_page() -> Value {
    to_json(&TenantPage {
        items: vec![tenant_model()],
        next_cursor: Some("acme".to_owned()),
    })
}

/// The 400 a truncated body really gets.
pub fn malformed_json_problem() -> Value {
    let error = serde_json::from_str::<Value>(r#"{"name": "nightly-report""#)
        .expect_err("a truncated body is not JSON");
    to_json(&crate::body::malformed(error).problem())
}

/// The 422 a schedule with two mistakes really gets.
pub fn invalid_schedule_problem() -> Value {
    let mut document = schedule_input();
    document["schedule"]["expression"] = json!("30 25 * * MON-FRI");
    document["target"]["url"] = json!("ftp://example.com/hooks/report");
    let error = match ScheduleInput::from_json(document)
        .and_then(|input| input.validate(false, &Default::default()))
    {
        Err(error @ ApiError::Validation(_)) => error,
        Err(other) => panic!("the invalid schedule example must fail validation, got {other}"),
        Ok(_) => panic!("the invalid schedule example passed validation"),
    };
    to_json(&error.problem())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dto::schedule::PreviewRequest;
    use crate::dto::tenant::{NewTenant, TenantChange};

    /// Every request example is one the server accepts.
    #[test]
    fn request_examples_are_valid_requests() {
        ScheduleInput::from_json(schedule_input())
            .unwrap()
            .validate(false, &Default::default())
            .unwrap();
        let mut patched = to_json(&ScheduleInput::from_json(schedule_input()).unwrap());
        hookbeat_scheduler::merge_patch::apply(&mut patched, &schedule_patch());
        ScheduleInput::from_json(patched)
            .unwrap()
            .validate(false, &Default::default())
            .unwrap();
        PreviewRequest::from_json(preview_request()).unwrap();
        crate::dto::calendar::CalendarInput::from_json(calendar_input()).unwrap();
        crate::body::typed::<super::super::schedule::BackfillRequest>(backfill_request(), "")
            .unwrap();
        crate::body::typed::<NewTenant>(new_tenant(), "").unwrap();
        crate::body::typed::<TenantChange>(tenant_change(), "").unwrap();
    }

    /// A schedule's document (what responses show and revisions keep) reads back as the same
    /// schedule, so a revision's content can be written again.
    #[test]
    fn a_document_reads_back_as_the_same_schedule() {
        use hookbeat_scheduler::stored::StoredSchedule;
        let mut written = schedule_input();
        written["then"] = json!([{"url": "https://example.com/hooks/archive"}]);
        written["start_at"] = json!("2026-03-01T00:00:00Z");
        let input = ScheduleInput::from_json(written).unwrap();
        let document = to_json(&input);
        assert_eq!(
            document,
            StoredSchedule::from(input.clone()).document().unwrap()
        );
        let read = ScheduleInput::from_json(document).unwrap();
        assert_eq!(StoredSchedule::from(read), StoredSchedule::from(input));
    }

    #[test]
    fn derived_examples_follow_the_story() {
        assert_eq!(
            fire_times()["fire_times"],
            json!([
                "2026-03-27T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]),
            "02:30 Berlin time on either side of the switch to summer time"
        );
        assert_eq!(
            backfill_result(),
            json!({"created": 2, "fire_times": ["2026-03-02T01:30:00Z", "2026-03-03T01:30:00Z"]})
        );
        let problem = invalid_schedule_problem();
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert_eq!(fields, ["schedule.expression", "target.url"], "{problem}");
        assert_eq!(
            revision_detail()["patch"],
            json!({"description": "Builds the sales and returns report", "target": {"timeout_ms": 30000}})
        );
        assert_eq!(
            revision_page()["items"][0]["patch"],
            json!({"enabled": false})
        );
    }
}
