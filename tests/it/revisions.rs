//! Revisions (issue 19, item 3): every change to a schedule appends one, with who made it (the
//! token's `sub`, `jti` and `name`, or hookbeat itself), why (`X-Change-Reason`) and what changed
//! (a JSON merge patch); a revision can be read back whole and restored, under `If-Match`, even
//! after the schedule was deleted; another tenant sees none of it; old ones are pruned with the
//! history. The clock is the test's.

use chrono::{DateTime, Duration, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::helpers::app::{signed_token, start_time, token_for, Answer};
use crate::helpers::instant as t;
use crate::helpers::{minutely, spawn_app, Backend, Receiver, Reply, TestApp};
use crate::notices::hourly;
use crate::on_both_databases;

/// What a client would PUT to get `schedule` (as the API reads it) back.
fn writable(schedule: &Value) -> Value {
    let mut document = schedule.clone();
    for member in hookbeat_api::dto::schedule::READ_ONLY {
        document.as_object_mut().unwrap().remove(*member);
    }
    document
}

/// RFC 7396, written out here so that the server's merge patches are checked by another hand.
fn merge(target: &Value, patch: &Value) -> Value {
    let Value::Object(members) = patch else {
        return patch.clone();
    };
    let mut merged = match target {
        Value::Object(existing) => existing.clone(),
        _ => serde_json::Map::new(),
    };
    for (name, value) in members {
        if value.is_null() {
            merged.remove(name);
        } else {
            let before = merged.get(name).cloned().unwrap_or(Value::Null);
            merged.insert(name.clone(), merge(&before, value));
        }
    }
    Value::Object(merged)
}

/// A token of the app's tenant that names itself: `jti` and `name` claims.
fn bot_token(app: &TestApp) -> String {
    signed_token(&json!({
        "sub": app.tenant,
        "exp": Utc::now().timestamp() + 3600,
        "scope": "schedules:read schedules:write",
        "jti": "tok-7f3a",
        "name": "deploy-bot",
    }))
}

/// A change as `token`, with `X-Change-Reason: reason` when given.
async fn change(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    reason: Option<&str>,
    body: Option<Value>,
) -> Answer {
    let headers: Vec<(&str, &[u8])> = reason
        .map(|reason| ("x-change-reason", reason.as_bytes()))
        .into_iter()
        .collect();
    app.call_with_headers(token, method, path, &headers, body)
        .await
}

/// `POST …/revisions/{version}/restore`, with `If-Match: "if_match"` when given.
async fn restore(app: &TestApp, id: &str, version: &str, if_match: Option<&str>) -> Answer {
    let tag = if_match.map(|v| format!("\"{v}\""));
    let headers: Vec<(&str, &[u8])> = tag.iter().map(|tag| ("if-match", tag.as_bytes())).collect();
    app.call_with_headers(
        &app.token,
        Method::POST,
        &format!("/v1/schedules/{id}/revisions/{version}/restore"),
        &headers,
        None,
    )
    .await
}

/// Every revision of schedule `id`, newest first.
async fn revisions(app: &TestApp, id: &str) -> Vec<Value> {
    let page = app
        .get(&format!("/v1/schedules/{id}/revisions?limit=500"))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["next_cursor"], Value::Null);
    page.body["items"].as_array().unwrap().clone()
}

fn versions_and_actions(items: &[Value]) -> Vec<(i64, String)> {
    items
        .iter()
        .map(|r| {
            (
                r["version"].as_i64().unwrap(),
                r["action"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

async fn revision(app: &TestApp, id: &str, version: i64) -> Value {
    let one = app
        .get(&format!("/v1/schedules/{id}/revisions/{version}"))
        .await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.body);
    one.body
}

/// The app with one schedule `name`, firing every minute; and the schedule's id.
async fn app_with_schedule(backend: Backend, name: &str) -> Option<(TestApp, String)> {
    let app = spawn_app(backend).await?;
    let schedule = app
        .create_schedule(minutely(name, "https://example.com/hook", json!({})))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    Some((app, id))
}

async fn schedule_of(app: &TestApp, id: &str) -> Value {
    let schedule = app.get(&format!("/v1/schedules/{id}")).await;
    assert_eq!(schedule.status, StatusCode::OK, "{}", schedule.body);
    schedule.body
}

/// Create, PATCH, PUT by name (replace), pause, resume and delete each append one revision with
/// the version the change made, the actor and the reason; a change that changes nothing appends
/// none. The patches replay into the documents, and each document is the schedule as it was.
async fn every_change_appends_a_revision_with_its_actor_and_reason(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let bot = bot_token(&app);
    let url = "https://example.com/hooks/report";
    let minute = |n: i64| start_time() + Duration::minutes(n);

    let created = change(
        &app,
        &bot,
        Method::POST,
        "/v1/schedules",
        Some("first cut"),
        Some(minutely("report", url, json!({"description": "daily"}))),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/schedules/{id}");
    let mut documents = vec![writable(&created.body)];

    app.clock.set(minute(1));
    let patched = change(
        &app,
        &bot,
        Method::PATCH,
        &path,
        Some("caf%C3%A9 au lait"),
        Some(json!({"description": "hourly"})),
    )
    .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["version"], 2);
    documents.push(writable(&patched.body));
    let same = change(
        &app,
        &bot,
        Method::PATCH,
        &path,
        None,
        Some(json!({"description": "hourly"})),
    )
    .await;
    assert_eq!(same.status, StatusCode::OK, "{}", same.body);
    assert_eq!(same.body["version"], 2, "a patch that changes nothing");

    app.clock.set(minute(2));
    let mut whole = minutely("report", url, json!({"description": "hourly"}));
    whole["schedule"]["every_seconds"] = json!(120);
    let put_path = "/v1/schedules/by-name/report";
    let replaced = change(&app, &bot, Method::PUT, put_path, None, Some(whole.clone())).await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.body);
    assert_eq!(replaced.body["version"], 3);
    documents.push(writable(&replaced.body));
    let again = change(&app, &bot, Method::PUT, put_path, None, Some(whole)).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["version"], 3, "a PUT of the same content");

    app.clock.set(minute(3));
    let pause_path = format!("{path}/pause");
    let paused = change(
        &app,
        &bot,
        Method::POST,
        &pause_path,
        Some("maintenance window"),
        None,
    )
    .await;
    assert_eq!(paused.status, StatusCode::OK, "{}", paused.body);
    assert_eq!(paused.body["version"], 4);
    documents.push(writable(&paused.body));
    let paused_again = change(&app, &bot, Method::POST, &pause_path, None, None).await;
    assert_eq!(paused_again.body["version"], 4, "pausing a paused schedule");

    app.clock.set(minute(4));
    let resumed = change(
        &app,
        &app.token,
        Method::POST,
        &format!("{path}/resume"),
        None,
        None,
    )
    .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    assert_eq!(resumed.body["version"], 5);
    documents.push(writable(&resumed.body));

    app.clock.set(minute(5));
    let deleted = change(&app, &bot, Method::DELETE, &path, Some("retired"), None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);

    // The history outlives the schedule.
    let items = revisions(&app, &id).await;
    let expected: Vec<(i64, String)> = [
        (6, "deleted"),
        (5, "resumed"),
        (4, "paused"),
        (3, "replaced"),
        (2, "updated"),
        (1, "created"),
    ]
    .map(|(v, a)| (v, a.to_owned()))
    .into();
    assert_eq!(versions_and_actions(&items), expected);
    let bot_actor = json!({"sub": app.tenant, "token_id": "tok-7f3a", "name": "deploy-bot"});
    let plain_actor = json!({"sub": app.tenant});
    let actors: Vec<&Value> = items.iter().map(|r| &r["actor"]).collect();
    assert_eq!(
        actors,
        [
            &bot_actor,
            &plain_actor,
            &bot_actor,
            &bot_actor,
            &bot_actor,
            &bot_actor
        ]
    );
    let reasons: Vec<Option<&str>> = items.iter().map(|r| r["reason"].as_str()).collect();
    assert_eq!(
        reasons,
        [
            Some("retired"),
            None,
            Some("maintenance window"),
            None,
            Some("café au lait"),
            Some("first cut")
        ]
    );
    for (n, item) in items.iter().enumerate() {
        assert_eq!(t(&item["created_at"]), minute(5 - n as i64), "{item}");
        assert!(
            item.get("schedule").is_none(),
            "a list leaves the documents out"
        );
    }
    assert_eq!(
        items[5]["patch"], documents[0],
        "a create's patch is all of it"
    );
    assert_eq!(items[4]["patch"], json!({"description": "hourly"}));
    assert_eq!(
        items[3]["patch"],
        json!({"schedule": {"every_seconds": 120}})
    );
    assert_eq!(items[2]["patch"], json!({"enabled": false}));
    assert_eq!(items[1]["patch"], json!({"enabled": true}));
    assert_eq!(items[0]["patch"], Value::Null, "a delete's patch is null");

    // Each revision holds the schedule as it was; the patches replay into the same documents.
    let mut replayed = Value::Null;
    for (n, document) in documents.iter().enumerate() {
        let version = n as i64 + 1;
        let one = revision(&app, &id, version).await;
        assert_eq!(&one["schedule"], document, "revision {version}");
        assert_eq!(one["version"], version);
        assert_eq!(one["action"], items[5 - n]["action"]);
        replayed = merge(&replayed, &one["patch"]);
        assert_eq!(&replayed, document, "the patches up to {version}");
    }
    let last = revision(&app, &id, 6).await;
    assert_eq!(
        last["schedule"], documents[4],
        "a delete keeps what was deleted"
    );
    assert_eq!(merge(&replayed, &last["patch"]), Value::Null);

    // A PUT by name that creates is a `created` revision too, by the plain token.
    let put_created = app
        .call(
            Method::PUT,
            "/v1/schedules/by-name/sync",
            Some(minutely("sync", url, json!({}))),
        )
        .await;
    assert_eq!(
        put_created.status,
        StatusCode::CREATED,
        "{}",
        put_created.body
    );
    let sync = put_created.body["id"].as_str().unwrap();
    let items = revisions(&app, sync).await;
    assert_eq!(versions_and_actions(&items), [(1, "created".to_owned())]);
    assert_eq!(items[0]["actor"], plain_actor);
    assert_eq!(items[0]["patch"], writable(&put_created.body));
}

/// When hookbeat pauses a schedule itself (its runs kept failing; its target answered 410 Gone)
/// the revision says so: actor `hookbeat`, the paused reason, at the schedule's new version.
async fn hookbeat_pausing_a_schedule_is_a_revision_of_its_own(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let failing = Receiver::start();
    let gone = Receiver::start();
    failing.script([Reply::status(500)]);
    gone.script([Reply::status(410)]);
    let fragile = app
        .create_schedule(hourly(
            "fragile",
            &failing.url,
            json!({"pause_after_failures": 1}),
        ))
        .await;
    let ended = app
        .create_schedule(hourly("ended", &gone.url, json!({})))
        .await;
    app.run_worker_at(t(&fragile["next_run_at"])).await;
    assert_eq!(failing.received().len(), 1);
    assert_eq!(gone.received().len(), 1);

    for (schedule, says) in [(&fragile, "pause_after_failures"), (&ended, "410 Gone")] {
        let id = schedule["id"].as_str().unwrap();
        let now = schedule_of(&app, id).await;
        assert_eq!(now["enabled"], false, "{now}");
        let items = revisions(&app, id).await;
        assert_eq!(
            versions_and_actions(&items),
            [(2, "paused".to_owned()), (1, "created".to_owned())],
            "{id}"
        );
        let pause = &items[0];
        assert_eq!(pause["version"], now["version"]);
        assert_eq!(pause["actor"], json!({"sub": "hookbeat"}));
        assert_eq!(pause["reason"], now["paused_reason"]);
        assert!(pause["reason"].as_str().unwrap().contains(says), "{pause}");
        assert_eq!(pause["patch"], json!({"enabled": false}));
        assert_eq!(revision(&app, id, 2).await["schedule"], writable(&now));
    }

    // The user's resume after it is the next revision, by the user.
    let id = ended["id"].as_str().unwrap();
    let resumed = app
        .call(Method::POST, &format!("/v1/schedules/{id}/resume"), None)
        .await;
    assert_eq!(resumed.status, StatusCode::OK, "{}", resumed.body);
    let items = revisions(&app, id).await;
    assert_eq!(items[0]["action"], "resumed");
    assert_eq!(items[0]["version"], 3);
    assert_eq!(items[0]["actor"], json!({"sub": app.tenant}));
}

/// Restore writes an old revision's content as a new revision, honouring `If-Match` as PATCH
/// does (stale: 412 and nothing changes); restoring the content the schedule already has
/// changes nothing; a revision that no longer validates is a 422 naming the member.
async fn restore_brings_back_a_revision_under_if_match(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let first = "https://example.com/hooks/one";
    let schedule = app
        .create_schedule(minutely("restorable", first, json!({"description": "one"})))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/schedules/{id}");
    for patch in [
        json!({"description": "two"}),
        json!({"target": {"url": "https://example.com/hooks/three"}}),
    ] {
        let patched = app.call(Method::PATCH, &path, Some(patch)).await;
        assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    }
    let before = schedule_of(&app, &id).await;
    assert_eq!(before["version"], 3);

    let stale = restore(&app, &id, "1", Some("1")).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(
        stale.headers["content-type"], "application/problem+json",
        "{}",
        stale.body
    );
    assert_eq!(schedule_of(&app, &id).await, before, "nothing changed");
    assert_eq!(revisions(&app, &id).await.len(), 3);

    let restored = restore(&app, &id, "1", Some("3")).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.body);
    assert_eq!(restored.header("etag"), "\"4\"");
    assert_eq!(restored.body["version"], 4);
    assert_eq!(restored.body["id"], id.as_str());
    assert_eq!(writable(&restored.body), writable(&schedule));
    assert_eq!(schedule_of(&app, &id).await, restored.body);
    let items = revisions(&app, &id).await;
    assert_eq!(items.len(), 4);
    let newest = &items[0];
    assert_eq!(newest["action"], "restored");
    assert_eq!(newest["restored_from"], 1);
    assert_eq!(newest["version"], 4);
    assert_eq!(
        newest["patch"],
        json!({"description": "one", "target": {"url": first}})
    );
    assert!(items[1].get("restored_from").is_none(), "{}", items[1]);

    // The content it already has: nothing to do, the same version.
    let again = restore(&app, &id, "1", None).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.body["version"], 4);
    assert_eq!(revisions(&app, &id).await.len(), 4);

    // Without If-Match, any version is restored over.
    let second = restore(&app, &id, "2", None).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    assert_eq!(second.body["version"], 5);
    assert_eq!(second.body["description"], "two");

    // A revision that would no longer be accepted: a one-off whose time has passed.
    let soon = start_time() + Duration::hours(1);
    let once = app
        .create_schedule(json!({
            "name": "one-off",
            "schedule": {"kind": "once", "at": soon.to_rfc3339()},
            "target": {"url": first}
        }))
        .await;
    let once_id = once["id"].as_str().unwrap().to_owned();
    let moved = app
        .call(
            Method::PATCH,
            &format!("/v1/schedules/{once_id}"),
            Some(json!({"schedule": {"kind": "interval", "every_seconds": 60, "at": null}})),
        )
        .await;
    assert_eq!(moved.status, StatusCode::OK, "{}", moved.body);
    app.clock.set(soon + Duration::hours(1));
    let refused = restore(&app, &once_id, "1", None).await;
    assert_eq!(
        refused.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        refused.body
    );
    assert_eq!(refused.error_fields(), ["schedule.at"]);
    assert_eq!(schedule_of(&app, &once_id).await["version"], 2);
}

/// A deleted schedule is restored under its own id, counted like a create (its name must be
/// free, the tenant under its quota), and `If-Match` is checked against the delete's version.
async fn a_deleted_schedule_is_restored_under_its_id(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let url = "https://example.com/hooks/nightly";
    let schedule = app
        .create_schedule(minutely("nightly", url, json!({})))
        .await;
    let id = schedule["id"].as_str().unwrap().to_owned();
    let path = format!("/v1/schedules/{id}");
    let patched = app
        .call(Method::PATCH, &path, Some(json!({"description": "kept"})))
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    let deleted = app.call(Method::DELETE, &path, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        revision(&app, &id, 2).await["schedule"]["description"],
        "kept"
    );

    let stale = restore(&app, &id, "2", Some("2")).await;
    assert_eq!(
        stale.status,
        StatusCode::PRECONDITION_FAILED,
        "{}",
        stale.body
    );
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);

    // Its name was taken meanwhile.
    let usurper = app
        .create_schedule(minutely("nightly", url, json!({})))
        .await;
    let taken = restore(&app, &id, "2", None).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert!(
        taken.body["detail"].as_str().unwrap().contains("name"),
        "{}",
        taken.body
    );
    let usurper_path = format!("/v1/schedules/{}", usurper["id"].as_str().unwrap());
    assert_eq!(
        app.call(Method::DELETE, &usurper_path, None).await.status,
        StatusCode::NO_CONTENT
    );

    // The tenant is at its quota.
    app.create_schedule(minutely("filler", url, json!({})))
        .await;
    let admin = token_for("operator", "admin");
    let tenant_path = format!("/v1/tenants/{}", app.tenant);
    let quota = |max: i64| {
        app.call_as(
            &admin,
            Method::PATCH,
            &tenant_path,
            Some(json!({"max_schedules": max})),
        )
    };
    assert_eq!(quota(1).await.status, StatusCode::OK);
    let full = restore(&app, &id, "2", None).await;
    assert_eq!(full.status, StatusCode::TOO_MANY_REQUESTS, "{}", full.body);
    assert_eq!(app.get(&path).await.status, StatusCode::NOT_FOUND);
    assert_eq!(quota(10).await.status, StatusCode::OK);

    let back = restore(&app, &id, "2", Some("3")).await;
    assert_eq!(back.status, StatusCode::CREATED, "{}", back.body);
    assert_eq!(back.header("location"), path);
    assert_eq!(back.header("etag"), "\"4\"");
    assert_eq!(back.body["id"], id.as_str());
    assert_eq!(back.body["description"], "kept");
    assert_eq!(back.body["version"], 4);
    assert!(back.body["next_run_at"].is_string(), "{}", back.body);
    assert_eq!(schedule_of(&app, &id).await, back.body);
    let items = revisions(&app, &id).await;
    assert_eq!(
        versions_and_actions(&items),
        [
            (4, "restored".to_owned()),
            (3, "deleted".to_owned()),
            (2, "updated".to_owned()),
            (1, "created".to_owned())
        ]
    );
    assert_eq!(items[0]["restored_from"], 2);
    assert_eq!(
        items[0]["patch"],
        writable(&back.body),
        "after a delete, the patch is all of it"
    );
    assert_eq!(app.get("/v1/tenant").await.body["schedule_count"], 2);
}

/// The list pages newest first with the other lists' `limit` and `cursor`; bad ones, and
/// versions that are no version, are 4xx naming what is wrong.
async fn revisions_are_listed_newest_first_in_pages(backend: Backend) {
    let Some((app, id)) = app_with_schedule(backend, "paged").await else {
        return;
    };
    for n in 1..=4 {
        let patched = app
            .call(
                Method::PATCH,
                &format!("/v1/schedules/{id}"),
                Some(json!({"description": format!("take {n}")})),
            )
            .await;
        assert_eq!(patched.status, StatusCode::OK);
    }
    let list = format!("/v1/schedules/{id}/revisions");
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..3 {
        let query = match &cursor {
            Some(cursor) => format!("{list}?limit=2&cursor={cursor}"),
            None => format!("{list}?limit=2"),
        };
        let page = app.get(&query).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        seen.push(
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["version"].as_i64().unwrap())
                .collect::<Vec<_>>(),
        );
        cursor = page.body["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, [vec![5, 4], vec![3, 2], vec![1]]);
    assert_eq!(cursor, None);

    for (query, field) in [
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=many", "limit"),
        ("cursor=abc", "cursor"),
        ("cursor=-1", "cursor"),
        ("cursor=0", "cursor"),
        ("cursor=99999999999999999999", "cursor"),
    ] {
        let answer = app.get(&format!("{list}?{query}")).await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(answer.error_fields(), [field], "{query}: {}", answer.body);
    }
    for version in ["abc", "-1", "0", "1.5", "99999999999999999999", "6"] {
        let one = app.get(&format!("{list}/{version}")).await;
        assert_eq!(one.status, StatusCode::NOT_FOUND, "{version}: {}", one.body);
        let detail = one.body["detail"].as_str().unwrap();
        assert!(detail.contains("revision"), "{version}: {detail}");
        let restored = restore(&app, &id, version, None).await;
        assert_eq!(restored.status, StatusCode::NOT_FOUND, "{version}");
        assert_eq!(restored.body, one.body, "{version}");
    }
    let unknown = uuid::Uuid::now_v7();
    for path in [
        format!("/v1/schedules/{unknown}/revisions"),
        format!("/v1/schedules/{unknown}/revisions/1"),
        "/v1/schedules/not-an-id/revisions".to_owned(),
    ] {
        let answer = app.get(&path).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(answer.body["detail"], "schedule not found", "{path}");
    }
    assert_eq!(schedule_of(&app, &id).await["version"], 5);
}

/// Another tenant gets 404 for the list, one revision and a restore, of a live schedule and of
/// a deleted one, exactly as for an id that does not exist; nothing of the owner's changes.
async fn another_tenants_revisions_are_not_found(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let live = app
        .create_schedule(minutely("live", "https://example.com/hook", json!({})))
        .await;
    let gone = app
        .create_schedule(minutely("gone", "https://example.com/hook", json!({})))
        .await;
    let gone_id = gone["id"].as_str().unwrap();
    let deleted = app
        .call(Method::DELETE, &format!("/v1/schedules/{gone_id}"), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let intruder = token_for("intruder", "schedules:read schedules:write");
    let unknown = uuid::Uuid::now_v7().to_string();
    for id in [live["id"].as_str().unwrap(), gone_id] {
        let before = revisions(&app, id).await;
        for (method, suffix) in [
            (Method::GET, "revisions"),
            (Method::GET, "revisions/1"),
            (Method::POST, "revisions/1/restore"),
        ] {
            let theirs = app
                .call_as(
                    &intruder,
                    method.clone(),
                    &format!("/v1/schedules/{id}/{suffix}"),
                    None,
                )
                .await;
            assert_eq!(theirs.status, StatusCode::NOT_FOUND, "{method} {suffix}");
            let missing = app
                .call_as(
                    &intruder,
                    method.clone(),
                    &format!("/v1/schedules/{unknown}/{suffix}"),
                    None,
                )
                .await;
            assert_eq!(
                (missing.status, missing.body),
                (theirs.status, theirs.body),
                "{method} {suffix}"
            );
        }
        assert_eq!(revisions(&app, id).await, before);
    }
    assert_eq!(
        app.get(&format!("/v1/schedules/{gone_id}")).await.status,
        StatusCode::NOT_FOUND,
        "the intruder's restore recreated nothing"
    );
}

/// `X-Change-Reason` is percent-decoded and kept; one longer than 1,000 characters or not UTF-8
/// is a 422 naming the header, and the change is not made.
async fn change_reasons_are_decoded_and_bad_ones_refused(backend: Backend) {
    let Some((app, id)) = app_with_schedule(backend, "reasoned").await else {
        return;
    };
    let path = format!("/v1/schedules/{id}");
    let mut take = 0;
    let mut patch_with = |reason: Vec<u8>| {
        take += 1;
        let body = json!({"description": format!("take {take}")});
        let app = &app;
        let path = path.clone();
        async move {
            app.call_with_headers(
                &app.token,
                Method::PATCH,
                &path,
                &[("x-change-reason", reason.as_slice())],
                Some(body),
            )
            .await
        }
    };

    let accepted: [(Vec<u8>, Option<String>); 5] = [
        ("x".repeat(1000).into_bytes(), Some("x".repeat(1000))),
        ("%C3%A9".repeat(1000).into_bytes(), Some("é".repeat(1000))),
        ("100% sure".into(), Some("100% sure".to_owned())),
        ("naïve ✓".as_bytes().to_vec(), Some("naïve ✓".to_owned())),
        ("  ".into(), None),
    ];
    for (header, kept) in accepted {
        let answer = patch_with(header).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
        let newest = &revisions(&app, &id).await[0];
        assert_eq!(newest["version"], answer.body["version"]);
        assert_eq!(newest["reason"].as_str(), kept.as_deref());
    }

    let version = schedule_of(&app, &id).await["version"].clone();
    for header in [
        "x".repeat(1001).into_bytes(),
        "%C3%A9".repeat(1001).into_bytes(),
        b"%FF%FE".to_vec(),
        vec![b'a', 0xFF],
        b"nul %00 byte".to_vec(),
        b"two%0Alines".to_vec(),
    ] {
        let answer = patch_with(header).await;
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            answer.body
        );
        assert_eq!(answer.error_fields(), ["X-Change-Reason"]);
    }
    let paused = change(
        &app,
        &app.token,
        Method::POST,
        &format!("{path}/pause"),
        Some(&"y".repeat(1001)),
        None,
    )
    .await;
    assert_eq!(paused.status, StatusCode::UNPROCESSABLE_ENTITY);
    let now = schedule_of(&app, &id).await;
    assert_eq!(now["version"], version, "no refused change was made");
    assert_eq!(now["enabled"], true);
}

/// Revisions older than the retention are pruned, except a live schedule's latest, so the
/// current state always has one; a deleted schedule's history goes altogether.
async fn pruning_keeps_only_a_live_schedules_latest_old_revision(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let url = "https://example.com/hook";
    let ids: Vec<String> = {
        let mut ids = Vec::new();
        for name in ["settled", "deleted", "recent"] {
            let schedule = app.create_schedule(minutely(name, url, json!({}))).await;
            ids.push(schedule["id"].as_str().unwrap().to_owned());
        }
        ids
    };
    let patch = |at: usize, description: &str| {
        let path = format!("/v1/schedules/{}", ids[at]);
        let body = json!({"description": description});
        let app = &app;
        async move { app.call(Method::PATCH, &path, Some(body)).await }
    };
    assert_eq!(patch(0, "settled").await.status, StatusCode::OK);
    let deleted = app
        .call(Method::DELETE, &format!("/v1/schedules/{}", ids[1]), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    let later: DateTime<Utc> = start_time() + Duration::days(40);
    app.clock.set(later);
    assert_eq!(patch(2, "recent").await.status, StatusCode::OK);

    let pruned = hookbeat_scheduler::maintenance::prune(
        &app.db,
        later + Duration::hours(1),
        Duration::days(30),
        10,
    )
    .await
    .unwrap();
    assert_eq!(pruned.revisions, 4, "{pruned:?}");
    let kept = |items: Vec<Value>| versions_and_actions(&items);
    assert_eq!(
        kept(revisions(&app, &ids[0]).await),
        [(2, "updated".to_owned())],
        "old, but the current state's"
    );
    assert_eq!(
        kept(revisions(&app, &ids[2]).await),
        [(2, "updated".to_owned())]
    );
    let forgotten = app
        .get(&format!("/v1/schedules/{}/revisions", ids[1]))
        .await;
    assert_eq!(
        forgotten.status,
        StatusCode::NOT_FOUND,
        "{}",
        forgotten.body
    );
}

on_both_databases!(
    every_change_appends_a_revision_with_its_actor_and_reason,
    hookbeat_pausing_a_schedule_is_a_revision_of_its_own,
    restore_brings_back_a_revision_under_if_match,
    a_deleted_schedule_is_restored_under_its_id,
    revisions_are_listed_newest_first_in_pages,
    another_tenants_revisions_are_not_found,
    change_reasons_are_decoded_and_bad_ones_refused,
    pruning_keeps_only_a_live_schedules_latest_old_revision,
);
