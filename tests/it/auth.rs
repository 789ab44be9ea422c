//! Tokens: missing, forged, expired, `alg: none` and wrong-scope tokens are refused.

use base64::Engine;
use chrono::Utc;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::app::token_for;
use crate::helpers::{spawn_app, Backend};
use crate::on_both_databases;

fn b64(value: serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

async fn bad_tokens_are_401_and_missing_scopes_403(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let no_token = app
        .http
        .get(format!("{}/v1/schedules", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(no_token.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        no_token.headers()["content-type"],
        "application/problem+json"
    );

    let exp = Utc::now().timestamp() + 3600;
    let claims = json!({"sub": "someone", "exp": exp, "scope": "schedules:read"});
    let forged = format!(
        "{}.{}.{}",
        b64(json!({"alg": "HS256", "typ": "JWT"})),
        b64(claims.clone()),
        "c2lnbmF0dXJlLWJ5LXNvbWVvbmUtZWxzZQ"
    );
    let none = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(claims)
    );
    let expired = hookbeat_api::auth::mint_token(
        &hookbeat_api::auth::Secret::new(crate::helpers::app::JWT_SECRET.to_owned()),
        "someone",
        "schedules:read",
        chrono::Duration::seconds(1),
        Utc::now() - chrono::Duration::hours(1),
    )
    .unwrap();
    for (what, token) in [
        ("forged", forged),
        ("alg none", none),
        ("expired", expired),
        ("garbage", "abc".to_owned()),
    ] {
        let answer = app
            .call_as(&token, Method::GET, "/v1/schedules", None)
            .await;
        assert_eq!(
            answer.status,
            StatusCode::UNAUTHORIZED,
            "{what}: {}",
            answer.body
        );
    }

    let reader = token_for(&app.tenant, "schedules:read");
    let answer = app
        .call_as(
            &reader,
            Method::POST,
            "/v1/schedules",
            Some(json!({"name": "x"})),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN);
    assert!(answer.body["detail"]
        .as_str()
        .unwrap()
        .contains("schedules:write"));
    assert_eq!(
        app.call_as(&reader, Method::GET, "/v1/schedules", None)
            .await
            .status,
        StatusCode::OK
    );
}

on_both_databases!(bad_tokens_are_401_and_missing_scopes_403);
