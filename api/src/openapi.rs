//! The OpenAPI description, generated from the handlers and DTOs. The committed `openapi.yaml`
//! is this output; a test fails when the two differ (`UPDATE_OPENAPI=1` rewrites the file).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::error::Problem;
use crate::responses;
use crate::routes::{
    actions, calendars, health, meta, revisions, runs, schedules, secrets, tenants,
};

/// The spec as served at `/openapi.yaml`: the committed file.
pub const SPEC_YAML: &str = include_str!("../../openapi.yaml");

#[derive(OpenApi)]
#[openapi(
    info(
        title = "hookbeat",
        description = "Multi-tenant HTTP webhook scheduler: crontab, interval, solar and one-off \
schedules, delivered as signed webhooks (Standard Webhooks) with retries.\n\n\
Every `/v1` call carries `Authorization: Bearer <JWT>`; `sub` is the tenant. Errors are \
`application/problem+json` (RFC 9457) with a `type` URN `urn:hookbeat:problem:<kind>`; \
validation errors (422) list every offending field under `errors`.",
        license(name = "Apache-2.0"),
    ),
    paths(
        schedules::create, schedules::list, schedules::get, schedules::patch, schedules::delete,
        actions::pause, actions::resume, actions::trigger, actions::preview,
        schedules::put_by_name, actions::backfill, schedules::timeline, schedules::notices,
        revisions::list, revisions::get, revisions::restore,
        calendars::create, calendars::list, calendars::get, calendars::patch, calendars::delete,
        runs::list, runs::list_for_schedule, runs::get, runs::redeliver,
        secrets::list, secrets::rotate,
        tenants::create, tenants::list, tenants::get, tenants::patch,
        tenants::get_own, tenants::patch_own,
        health::healthz, health::readyz, meta::metrics, meta::openapi,
    ),
    components(
        schemas(Problem),
        responses(
            responses::BadRequest, responses::Unauthorized, responses::ForbiddenRead,
            responses::ForbiddenWrite, responses::ForbiddenAdmin, responses::NotFound,
            responses::Conflict, responses::PreconditionFailed, responses::PayloadTooLarge,
            responses::RequestTimeout,
            responses::UnsupportedMediaType, responses::Invalid, responses::TooManyRequests,
        ),
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "schedules", description = "When to fire and what to send"),
        (name = "calendars", description = "Dates that schedules excluding them do not fire on"),
        (name = "runs", description = "Fires and their delivery attempts"),
        (name = "signing-secrets", description = "Secrets that sign deliveries"),
        (name = "tenants", description = "Tenants and their quotas (scope admin), and a tenant's own settings"),
        (name = "operations", description = "Health, metrics and this spec"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The spec as YAML.
pub fn generate_yaml() -> String {
    ApiDoc::openapi()
        .to_yaml()
        .expect("the OpenAPI document serialises to YAML")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed `openapi.yaml` is exactly what the code generates. After an intended API
    /// change, regenerate it with `UPDATE_OPENAPI=1 cargo test -p hookbeat-api openapi`.
    #[test]
    fn committed_spec_matches_the_code() {
        let generated = generate_yaml();
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi.yaml");
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(path, &generated).expect("writing openapi.yaml");
            return;
        }
        assert!(
            generated == SPEC_YAML,
            "openapi.yaml is out of date: run `UPDATE_OPENAPI=1 cargo test -p hookbeat-api openapi` and commit it"
        );
    }

    fn spec_json() -> serde_json::Value {
        serde_json::to_value(ApiDoc::openapi()).unwrap()
    }

    /// Every `/v1` operation as (method, path, operation).
    fn v1_operations(spec: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
        let mut operations = Vec::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            if !path.starts_with("/v1/") {
                continue;
            }
            for (method, operation) in item.as_object().unwrap() {
                operations.push((method.clone(), path.clone(), operation.clone()));
            }
        }
        assert!(
            operations.len() >= 20,
            "{} /v1 operations",
            operations.len()
        );
        operations
    }

    /// What `$ref` points at, `#/components/<kind>/<name>` only.
    fn resolve<'a>(spec: &'a serde_json::Value, reference: &str) -> Option<&'a serde_json::Value> {
        let name = reference.strip_prefix("#/components/")?;
        let (kind, name) = name.split_once('/')?;
        spec["components"][kind].get(name)
    }

    #[test]
    fn every_reference_resolves() {
        fn walk(node: &serde_json::Value, spec: &serde_json::Value, seen: &mut usize) {
            match node {
                serde_json::Value::Object(members) => {
                    if let Some(reference) = members.get("$ref").and_then(|r| r.as_str()) {
                        assert!(resolve(spec, reference).is_some(), "dangling {reference}");
                        *seen += 1;
                    }
                    members.values().for_each(|v| walk(v, spec, seen));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, spec, seen)),
                _ => {}
            }
        }
        let spec = spec_json();
        let mut seen = 0;
        walk(&spec, &spec, &mut seen);
        assert!(seen > 100, "only {seen} references");
    }

    #[test]
    fn operation_ids_are_unique() {
        let spec = spec_json();
        let mut ids = std::collections::BTreeMap::new();
        for (path, item) in spec["paths"].as_object().unwrap() {
            for (method, operation) in item.as_object().unwrap() {
                let id = operation["operationId"].as_str().unwrap().to_owned();
                if let Some(other) = ids.insert(id.clone(), format!("{method} {path}")) {
                    panic!("operationId {id} names both {other} and {method} {path}");
                }
            }
        }
    }

    /// Each error response is written once, as a component: operations only reference them.
    /// And the 403 an operation documents is the one of the scope its security names.
    #[test]
    fn errors_are_shared_components_matching_the_scope() {
        let spec = spec_json();
        for (method, path, operation) in v1_operations(&spec) {
            let scopes = operation["security"][0]["bearer"].as_array().unwrap();
            assert_eq!(scopes.len(), 1, "{method} {path} needs one scope");
            let forbidden = match scopes[0].as_str().unwrap() {
                "schedules:read" => "ForbiddenRead",
                "schedules:write" => "ForbiddenWrite",
                "admin" => "ForbiddenAdmin",
                other => panic!("{method} {path}: unknown scope {other}"),
            };
            let responses = operation["responses"].as_object().unwrap();
            for (status, response) in responses {
                if status.starts_with('4') {
                    assert!(
                        response["$ref"].is_string(),
                        "{method} {path} {status} is written out instead of referencing a component"
                    );
                }
            }
            for status in ["401", "403", "429"] {
                assert!(
                    responses.contains_key(status),
                    "{method} {path} lacks {status}"
                );
            }
            assert_eq!(
                responses["403"]["$ref"],
                format!("#/components/responses/{forbidden}"),
                "{method} {path}"
            );
            if operation.get("requestBody").is_some() {
                for status in ["400", "413", "415", "422"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path} lacks {status}"
                    );
                }
            }
        }
    }

    /// The example of a JSON request or response body: its own, or its schema's.
    fn example_of<'a>(
        spec: &'a serde_json::Value,
        content: &'a serde_json::Value,
    ) -> Option<&'a serde_json::Value> {
        let (_, media) = content.as_object()?.iter().next()?;
        if let Some(example) = media.get("example") {
            return Some(example);
        }
        let schema = match media["schema"]["$ref"].as_str() {
            Some(reference) => resolve(spec, reference)?,
            None => &media["schema"],
        };
        schema
            .get("example")
            .or_else(|| schema.get("examples").and_then(|e| e.get(0)))
    }

    /// Every `/v1` request body and success response shows an example; so does every error
    /// response component.
    #[test]
    fn bodies_show_examples() {
        let spec = spec_json();
        for (method, path, operation) in v1_operations(&spec) {
            if let Some(body) = operation.get("requestBody") {
                assert!(
                    example_of(&spec, &body["content"]).is_some(),
                    "{method} {path}: the request body has no example"
                );
            }
            for (status, response) in operation["responses"].as_object().unwrap() {
                if status.starts_with('2') && response.get("content").is_some() {
                    assert!(
                        example_of(&spec, &response["content"]).is_some(),
                        "{method} {path} {status}: the response has no example"
                    );
                }
            }
        }
        for (name, response) in spec["components"]["responses"].as_object().unwrap() {
            let example = example_of(&spec, &response["content"])
                .unwrap_or_else(|| panic!("response {name} has no example"));
            assert!(example["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:hookbeat:problem:"));
        }
        assert!(example_of(
            &spec,
            &serde_json::json!({"application/json": {"schema": {"$ref": "#/components/schemas/Problem"}}})
        )
        .is_some());
    }

    #[test]
    fn spec_is_openapi_3_1_with_bearer_auth() {
        let spec = ApiDoc::openapi();
        let yaml = generate_yaml();
        assert!(yaml.starts_with("openapi: 3.1"), "{}", &yaml[..40]);
        assert!(spec
            .components
            .unwrap()
            .security_schemes
            .contains_key("bearer"));
    }
}
