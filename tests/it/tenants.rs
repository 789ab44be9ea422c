//! Tenants and quotas: the admin endpoints, the schedule quota, the minimum interval, the API
//! rate limit, and disabling a tenant.

use chrono::Duration;
use hookbeat_scheduler::Clock;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::app::token_for;
use crate::helpers::{spawn_app, Backend, Receiver};
use crate::on_both_databases;

async fn admins_manage_tenants_and_quotas_hold(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = token_for("operator", "admin");
    let denied = app.post("/v1/tenants", json!({"id": "acme"})).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert!(denied.body["detail"].as_str().unwrap().contains("admin"));

    let created = app
        .call_as(
            &admin,
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme", "max_schedules": 2, "min_interval_seconds": 60})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.header("location"), "/v1/tenants/acme");
    assert_eq!(created.body["api_rate_per_second"], 100, "a default quota");
    let again = app
        .call_as(
            &admin,
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme"})),
        )
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let bad = app
        .call_as(
            &admin,
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "x", "max_schedules": 0})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.body["errors"][0]["field"], "max_schedules");
    let listed = app
        .call_as(&admin, Method::GET, "/v1/tenants?limit=500", None)
        .await;
    assert!(listed.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["id"] == "acme"));
    assert_eq!(
        app.call_as(&admin, Method::GET, "/v1/tenants/nobody", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let acme = token_for("acme", "schedules:read schedules:write");
    let schedule = |name: &str, every: i64| json!({"name": name, "schedule": {"kind": "interval", "every_seconds": every}, "target": {"url": "https://example.com/"}});
    let too_often = app
        .call_as(
            &acme,
            Method::POST,
            "/v1/schedules",
            Some(schedule("fast", 30)),
        )
        .await;
    assert_eq!(too_often.status, StatusCode::UNPROCESSABLE_ENTITY);
    let message = too_often.body["errors"][0]["message"].as_str().unwrap();
    assert!(
        message.contains("every 30 s") && message.contains("60 s"),
        "{message}"
    );
    for n in 0..2 {
        let ok = app
            .call_as(
                &acme,
                Method::POST,
                "/v1/schedules",
                Some(schedule(&format!("ok-{n}"), 60)),
            )
            .await;
        assert_eq!(ok.status, StatusCode::CREATED);
    }
    let over = app
        .call_as(
            &acme,
            Method::POST,
            "/v1/schedules",
            Some(schedule("third", 60)),
        )
        .await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(over.header("retry-after").parse::<u64>().unwrap() > 0);
    assert!(over.body["detail"].as_str().unwrap().contains("quota is 2"));

    // The rate limit: 1 request a second, bursts of two.
    let patched = app
        .call_as(
            &admin,
            Method::PATCH,
            "/v1/tenants/acme",
            Some(json!({"api_rate_per_second": 1})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["max_schedules"], 2, "unchanged members stay");
    let statuses: Vec<StatusCode> = futures::future::join_all(
        (0..3).map(|_| app.call_as(&acme, Method::GET, "/v1/schedules", None)),
    )
    .await
    .into_iter()
    .map(|a| a.status)
    .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == StatusCode::OK).count(),
        2,
        "{statuses:?}"
    );
    let limited = app.call_as(&acme, Method::GET, "/v1/schedules", None).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.header("retry-after"), "1");
    app.clock.advance(Duration::seconds(1));
    assert_eq!(
        app.call_as(&acme, Method::GET, "/v1/schedules", None)
            .await
            .status,
        StatusCode::OK
    );
}

async fn a_disabled_tenant_is_refused_and_does_not_fire(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let receiver = Receiver::start();
    let admin = token_for("operator", "admin");
    let schedule = app
        .create_schedule(json!({"name": "n", "schedule": {"kind": "interval", "every_seconds": 60}, "target": {"url": receiver.url}}))
        .await;
    let path = format!("/v1/tenants/{}", app.tenant);
    let disabled = app
        .call_as(
            &admin,
            Method::PATCH,
            &path,
            Some(json!({"disabled": true})),
        )
        .await;
    assert_eq!(disabled.body["disabled"], true);
    let refused = app.get("/v1/schedules").await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.body["detail"]
        .as_str()
        .unwrap()
        .contains("disabled"));
    let fire: chrono::DateTime<chrono::Utc> =
        schedule["next_run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(app.run_worker_at(fire).await.runs_created, 0);
    assert!(receiver.received().is_empty());

    app.call_as(
        &admin,
        Method::PATCH,
        &path,
        Some(json!({"disabled": false})),
    )
    .await;
    assert_eq!(app.get("/v1/schedules").await.status, StatusCode::OK);
    assert_eq!(
        app.run_worker_at(app.clock.now() + Duration::seconds(60))
            .await
            .runs_created,
        1
    );
    assert_eq!(receiver.received().len(), 1);
}

/// Creating a tenant with an `Idempotency-Key`: a retry returns the first response, not a 409;
/// the same key for another tenant is refused; keys belong to the calling admin's tenant, so
/// another admin's identical key is its own.
async fn a_retried_tenant_create_returns_the_first_result(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let create = |admin: String, key: &'static str, id: &'static str| {
        app.http
            .post(format!("{}/v1/tenants", app.address))
            .bearer_auth(admin)
            .header("idempotency-key", key)
            .json(&json!({"id": id, "max_schedules": 5}))
            .send()
    };
    let operator = token_for("operator", "admin");
    let first = create(operator.clone(), "make-globex", "globex")
        .await
        .unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    assert_eq!(first.headers()["location"], "/v1/tenants/globex");
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = first.json().await.unwrap();
    let retried = create(operator.clone(), "make-globex", "globex")
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::CREATED);
    assert_eq!(retried.headers()["idempotent-replayed"], "true");
    assert_eq!(retried.headers()["location"], "/v1/tenants/globex");
    assert_eq!(retried.json::<serde_json::Value>().await.unwrap(), first);
    let unkeyed = app
        .call_as(
            &operator,
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "globex", "max_schedules": 5})),
        )
        .await;
    assert_eq!(unkeyed.status, StatusCode::CONFLICT, "without a key: a 409");

    let reused = create(operator.clone(), "make-globex", "initech")
        .await
        .unwrap();
    assert_eq!(reused.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reused: serde_json::Value = reused.json().await.unwrap();
    assert_eq!(reused["errors"][0]["field"], "Idempotency-Key");
    let initech = "/v1/tenants/initech";
    assert_eq!(
        app.call_as(&operator, Method::GET, initech, None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );

    let other_admin = token_for("another-operator", "admin");
    let theirs = create(other_admin, "make-globex", "initech").await.unwrap();
    assert_eq!(theirs.status(), StatusCode::CREATED, "another admin's key");
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    assert_eq!(
        app.call_as(&operator, Method::GET, initech, None)
            .await
            .body["id"],
        "initech"
    );
}

/// A tenant's `schedule_count` follows every create and delete, and only those that take
/// effect; the quota is checked against it, so a delete makes room again.
async fn a_tenant_counts_its_schedules(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let admin = token_for("operator", "admin");
    let acme = token_for("acme", "schedules:read schedules:write");
    let created = app
        .call_as(
            &admin,
            Method::POST,
            "/v1/tenants",
            Some(json!({"id": "acme", "max_schedules": 2})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["schedule_count"], 0);
    let count = || async {
        let tenant = app
            .call_as(&admin, Method::GET, "/v1/tenants/acme", None)
            .await;
        assert_eq!(tenant.status, StatusCode::OK, "{}", tenant.body);
        tenant.body["schedule_count"].as_i64().unwrap()
    };
    let schedule = |name: &str| json!({"name": name, "schedule": {"kind": "interval", "every_seconds": 60}, "target": {"url": "https://example.com/"}});
    let create = |body: serde_json::Value| {
        let acme = acme.clone();
        let app = &app;
        async move {
            app.call_as(&acme, Method::POST, "/v1/schedules", Some(body))
                .await
        }
    };

    let first = create(schedule("first")).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(count().await, 1);
    // Refused creates leave the count alone: a taken name, an invalid schedule.
    assert_eq!(create(schedule("first")).await.status, StatusCode::CONFLICT);
    let invalid = create(json!({"name": "bad", "schedule": {"kind": "interval", "every_seconds": 0}, "target": {"url": "https://example.com/"}})).await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(count().await, 1);
    // A create by name counts as a create; replacing by name does not.
    let put_second = || {
        app.call_as(
            &acme,
            Method::PUT,
            "/v1/schedules/by-name/second",
            Some(schedule("second")),
        )
    };
    let by_name = put_second().await;
    assert_eq!(by_name.status, StatusCode::CREATED, "{}", by_name.body);
    let replaced = put_second().await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(count().await, 2);

    let over = create(schedule("third")).await;
    assert_eq!(over.status, StatusCode::TOO_MANY_REQUESTS);
    let detail = over.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("has 2 schedules") && detail.contains("quota is 2"),
        "{detail}"
    );

    // Deleting one makes room; deleting it again changes nothing.
    let path = format!("/v1/schedules/{}", first.body["id"].as_str().unwrap());
    let deleted = app.call_as(&acme, Method::DELETE, &path, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let again = app.call_as(&acme, Method::DELETE, &path, None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert_eq!(count().await, 1);
    assert_eq!(create(schedule("third")).await.status, StatusCode::CREATED);
    assert_eq!(count().await, 2);
}

on_both_databases!(
    a_tenant_counts_its_schedules,
    admins_manage_tenants_and_quotas_hold,
    a_disabled_tenant_is_refused_and_does_not_fire,
    a_retried_tenant_create_returns_the_first_result,
);
