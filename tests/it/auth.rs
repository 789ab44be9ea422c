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
        None,
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

mod external_issuer {
    //! `--jwt-public-key`: tokens of an external identity provider, RS256, ES256 or EdDSA, with
    //! an audience; algorithm swaps and the installation's own HS256 tokens are refused.

    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    use super::*;
    use crate::helpers::app::spawn_app_with;

    fn key(name: &str) -> Vec<u8> {
        std::fs::read(format!(
            "{}/tests/fixtures/jwt/{name}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap()
    }

    fn claims(aud: Option<&str>) -> serde_json::Value {
        let mut claims = json!({
            "sub": "idp-tenant",
            "exp": Utc::now().timestamp() + 600,
            "scope": "schedules:read"
        });
        if let Some(aud) = aud {
            claims["aud"] = json!(aud);
        }
        claims
    }

    #[tokio::test]
    async fn rs256_es256_and_eddsa_tokens_verify_and_swaps_do_not() {
        for (algorithm, private, public) in [
            (Algorithm::RS256, "rsa_private.pem", "rsa_public.pem"),
            (Algorithm::ES256, "ec_private.pem", "ec_public.pem"),
            (
                Algorithm::EdDSA,
                "ed25519_private.pem",
                "ed25519_public.pem",
            ),
        ] {
            let public_pem = key(public);
            let app = spawn_app_with(Backend::Sqlite, |options| {
                options.jwt_public_key_pem = Some(public_pem.clone());
                options.jwt_audience = Some("hookbeat-test".to_owned());
            })
            .await
            .unwrap();
            let signing = match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(&key(private)),
                Algorithm::ES256 => EncodingKey::from_ec_pem(&key(private)),
                _ => EncodingKey::from_ed_pem(&key(private)),
            }
            .unwrap();
            let sign = |claims: serde_json::Value| {
                encode(&Header::new(algorithm), &claims, &signing).unwrap()
            };

            let good = app
                .call_as(
                    &sign(claims(Some("hookbeat-test"))),
                    Method::GET,
                    "/v1/schedules",
                    None,
                )
                .await;
            assert_eq!(good.status, StatusCode::OK, "{algorithm:?}: {}", good.body);
            for (what, token) in [
                ("another audience", sign(claims(Some("someone-else")))),
                ("no audience", sign(claims(None))),
                (
                    "HS256 keyed with the public key",
                    encode(
                        &Header::new(Algorithm::HS256),
                        &claims(Some("hookbeat-test")),
                        &EncodingKey::from_secret(&public_pem),
                    )
                    .unwrap(),
                ),
                (
                    "the installation's HS256",
                    token_for("idp-tenant", "schedules:read"),
                ),
            ] {
                let answer = app
                    .call_as(&token, Method::GET, "/v1/schedules", None)
                    .await;
                assert_eq!(
                    answer.status,
                    StatusCode::UNAUTHORIZED,
                    "{algorithm:?}, {what}: {}",
                    answer.body
                );
            }
        }
    }
}
