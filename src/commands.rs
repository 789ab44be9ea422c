//! The one-shot commands: `migrate`, `token` and `preview`. Their output goes to stdout, their
//! errors to stderr with a non-zero exit.

use anyhow::Context;
use chrono::Utc;
use hookbeat_api::auth::{mint_token, resolve_secret, Scope, Secret};
use hookbeat_entity::TenantId;
use hookbeat_migration::{Migrator, MigratorTrait};
use hookbeat_scheduler::schedule::{preview_local, ScheduleSpec};
use hookbeat_scheduler::sealing::Sealer;
use hookbeat_scheduler::secrets_at_rest;
use std::io::Write;

use crate::cli::Settings;
use crate::database;

pub async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let db = database::connect(&settings.database_url, database::Pool::Api).await?;
    database::migrate(&db, &settings.database_url).await?;
    tracing::info!("migrations applied");
    Ok(())
}

pub async fn token(
    settings: &Settings,
    tenant: &str,
    scope: &str,
    ttl: chrono::Duration,
) -> anyhow::Result<()> {
    if tenant.is_empty() || tenant.len() > hookbeat_api::tenants::MAX_TENANT_ID_LEN {
        anyhow::bail!(
            "--tenant must be 1 to {} characters",
            hookbeat_api::tenants::MAX_TENANT_ID_LEN
        );
    }
    if let Some(unknown) = scope.split_whitespace().find(|s| Scope::parse(s).is_none()) {
        anyhow::bail!(
            "unknown scope {unknown:?}; scopes are schedules:read, schedules:write and admin"
        );
    }
    if settings.jwt_public_key.is_some() {
        anyhow::bail!(
            "tokens are issued by the external identity provider when --jwt-public-key is set"
        );
    }
    let db = database::connect(&settings.database_url, database::Pool::Api).await?;
    if settings.is_sqlite() {
        // The embedded install sets itself up, so the quick start needs no separate step.
        database::migrate(&db, &settings.database_url).await?;
    } else if !Migrator::get_pending_migrations(&db).await?.is_empty() {
        anyhow::bail!("the database has pending migrations; run `hookbeat migrate` first");
    }
    let sealer = Sealer::new(settings.secrets_key.clone());
    secrets_at_rest::prepare(&db, &sealer).await?;
    let secret = resolve_secret(&db, settings.jwt_secret.clone().map(Secret::new), &sealer).await?;
    let now = Utc::now();
    hookbeat_api::tenants::ensure(&db, &sealer, &TenantId(tenant.to_owned()), now)
        .await
        .context("creating the tenant")?;
    let token = mint_token(
        &secret,
        tenant,
        scope,
        ttl,
        now,
        settings.jwt_audience.as_deref(),
    )?;
    writeln!(std::io::stdout(), "{token}")?;
    Ok(())
}

pub fn preview(spec: &str, after: Option<chrono::DateTime<Utc>>, count: u16) -> anyhow::Result<()> {
    let value: serde_json::Value =
        serde_json::from_str(spec).context("the spec is not valid JSON")?;
    let describe = |errors: Vec<hookbeat_scheduler::validation::FieldError>| {
        let reasons: Vec<String> = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect();
        anyhow::anyhow!("invalid spec: {}", reasons.join("; "))
    };
    let spec = ScheduleSpec::from_json(&value, "schedule").map_err(describe)?;
    let fires = preview_local(
        &spec,
        Default::default(),
        after.unwrap_or_else(Utc::now),
        usize::from(count),
    )
    .map_err(describe)?;
    let fire_times: Vec<_> = fires.iter().map(|fire| fire.at).collect();
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::json!({ "fire_times": fire_times, "fires": fires })
    )?;
    Ok(())
}
