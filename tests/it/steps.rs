//! Dependent steps: `then` targets in order, each only after the one before succeeded, each with
//! its own webhook-id; `on_failure` called once with the failure; redelivery resumes the step
//! that failed.

use chrono::DateTime;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend, Receiver, Reply};
use crate::on_both_databases;

async fn chained(app: &crate::helpers::TestApp, receiver: &Receiver) -> Value {
    app.create_schedule(json!({
        "name": "pipeline",
        "schedule": {"kind": "interval", "every_seconds": 3600},
        "target": {"url": format!("{}/extract", receiver.url)},
        "then": [
            {"url": format!("{}/transform", receiver.url), "body": {"stage": 2}},
            {"url": format!("{}/load", receiver.url)}
        ],
        "on_failure": {"url": format!("{}/alert", receiver.url)},
        "retry": {"max_attempts": 1}
    }))
    .await
}

fn paths(receiver: &Receiver) -> Vec<String> {
    receiver.received().iter().map(|r| r.path.clone()).collect()
}

async fn then_steps_run_in_order_each_with_its_own_id(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let schedule = chained(&app, &receiver).await;
    assert_eq!(schedule["then"].as_array().unwrap().len(), 2);
    let fire: DateTime<chrono::Utc> = schedule["next_run_at"].as_str().unwrap().parse().unwrap();
    app.run_worker_at(fire).await;
    assert_eq!(paths(&receiver), vec!["/extract", "/transform", "/load"]);
    let got = receiver.received();
    let run_id = got[0].header("webhook-id").to_owned();
    assert_eq!(got[1].header("webhook-id"), format!("{run_id}-then-1"));
    assert_eq!(got[2].header("webhook-id"), format!("{run_id}-then-2"));
    assert_eq!(got[1].body, br#"{"stage":2}"#);
    let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "succeeded");
    let steps: Vec<&str> = run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, vec!["target", "then[0]", "then[1]"]);
}

async fn a_failed_step_stops_the_chain_and_calls_on_failure_once(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    receiver.script([Reply::status(200), Reply::status(400).body("bad stage")]);
    let schedule = chained(&app, &receiver).await;
    let fire: DateTime<chrono::Utc> = schedule["next_run_at"].as_str().unwrap().parse().unwrap();
    app.run_worker_at(fire).await;
    assert_eq!(
        paths(&receiver),
        vec!["/extract", "/transform", "/alert"],
        "load never runs"
    );
    let got = receiver.received();
    let run_id = got[0].header("webhook-id").to_owned();
    assert_eq!(got[2].header("webhook-id"), format!("{run_id}-on-failure"));
    let failure: Value = serde_json::from_slice(&got[2].body).unwrap();
    assert_eq!(failure["run_id"], run_id.as_str());
    assert_eq!(failure["failed_step"], "then[0]");
    assert_eq!(failure["status_code"], 400);
    assert_eq!(failure["error"], "receiver answered 400");

    let run = app.get(&format!("/v1/runs/{run_id}")).await.body;
    assert_eq!(run["status"], "failed");
    assert_eq!(run["last_error"], "receiver answered 400");
    assert_eq!(run["failure"]["failed_step"], "then[0]");
    let steps: Vec<&str> = run["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, vec!["target", "then[0]", "on_failure"]);
    // Another pass does not call on_failure again.
    app.run_worker().await;
    assert_eq!(receiver.received().len(), 3);

    // Redelivery resumes the failed step, not the whole chain.
    let redelivered = app
        .call(Method::POST, &format!("/v1/runs/{run_id}/redeliver"), None)
        .await;
    assert_eq!(redelivered.status, StatusCode::ACCEPTED);
    assert_eq!(redelivered.body["step"], "then[0]");
    app.run_worker().await;
    assert_eq!(paths(&receiver)[3..], ["/transform", "/load"]);
    assert_eq!(receiver.received()[3].header("hookbeat-attempt"), "2");
    assert_eq!(
        app.get(&format!("/v1/runs/{run_id}")).await.body["status"],
        "succeeded"
    );
}

async fn invalid_steps_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let answer = app
        .post(
            "/v1/schedules",
            json!({
                "name": "bad-steps",
                "schedule": {"kind": "interval", "every_seconds": 60},
                "target": {"url": "https://example.com/a"},
                "then": [{"url": "https://example.com/b"}, {"url": "gopher://example.com/c"}],
                "on_failure": {"url": "https://example.com/alert", "body": "mine"}
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields = answer.error_fields();
    assert_eq!(fields, vec!["then[1].url", "on_failure.body"]);
}

on_both_databases!(
    then_steps_run_in_order_each_with_its_own_id,
    a_failed_step_stops_the_chain_and_calls_on_failure_once,
    invalid_steps_are_refused,
);
