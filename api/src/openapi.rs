//! The OpenAPI description, generated from the handlers and DTOs. The committed `openapi.yaml`
//! is this output; a test fails when the two differ (`UPDATE_OPENAPI=1` rewrites the file).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{actions, health, meta, runs, schedules, secrets, tenants};

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
        schedules::put_by_name, actions::backfill,
        runs::list, runs::list_for_schedule, runs::get, runs::redeliver,
        secrets::list, secrets::rotate,
        tenants::create, tenants::list, tenants::get, tenants::patch,
        health::healthz, health::readyz, meta::metrics, meta::openapi,
    ),
    modifiers(&BearerAuth),
    tags(
        (name = "schedules", description = "When to fire and what to send"),
        (name = "runs", description = "Fires and their delivery attempts"),
        (name = "signing-secrets", description = "Secrets that sign deliveries"),
        (name = "tenants", description = "Tenants and their quotas (scope admin)"),
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
