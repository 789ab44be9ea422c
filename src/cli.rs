//! Command line and environment (CONTRACT §1). Every flag also reads an environment variable;
//! a flag wins over its variable. Values are validated here, at start-up, before any role runs.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use hookbeat_api::auth::{Secret, MIN_SECRET_LEN};
use hookbeat_scheduler::sealing::SecretsKeys;

#[derive(Debug, Parser)]
#[command(
    name = "hookbeat",
    version,
    about = "Multi-tenant HTTP webhook scheduler"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// Address the HTTP API listens on.
    #[arg(
        long,
        env = "HOOKBEAT_LISTEN",
        default_value = "127.0.0.1:8080",
        global = true
    )]
    pub listen: SocketAddr,

    /// Where a worker-only process (`hookbeat worker`) serves /healthz, /readyz and /metrics;
    /// unset, it serves nothing. (`serve` and `api` serve them on --listen.)
    #[arg(long, env = "HOOKBEAT_METRICS_LISTEN", global = true)]
    pub metrics_listen: Option<SocketAddr>,

    /// sqlite://FILE?mode=rwc (embedded, one process) or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://hookbeat.db?mode=rwc",
        global = true
    )]
    pub database_url: String,

    /// HS256 secret for API tokens (at least 32 characters). Required with PostgreSQL; with
    /// SQLite one is generated on first start and kept in the database.
    #[arg(
        long,
        env = "HOOKBEAT_JWT_SECRET",
        global = true,
        hide_env_values = true
    )]
    pub jwt_secret: Option<String>,

    /// PEM public key (RSA, EC P-256 or Ed25519) of an external token issuer; tokens are then
    /// verified with RS256/ES256/EdDSA instead of the HS256 secret.
    #[arg(long, env = "HOOKBEAT_JWT_PUBLIC_KEY", global = true)]
    pub jwt_public_key: Option<PathBuf>,

    /// The audience (`aud`) tokens must name; not checked when unset. `hookbeat token` puts it in
    /// the tokens it makes.
    #[arg(long, env = "HOOKBEAT_JWT_AUDIENCE", global = true)]
    pub jwt_audience: Option<String>,

    /// Allow targets on loopback, private, link-local and other internal addresses. The variable
    /// takes true/false, 1/0, yes/no or on/off.
    #[arg(long, env = "HOOKBEAT_ALLOW_PRIVATE_TARGETS", global = true,
          action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_targets: bool,

    /// How long finished runs (and their attempts) are kept, e.g. 30d, 12h.
    #[arg(long, env = "HOOKBEAT_RETENTION", default_value = "30d", value_parser = parse_retention, global = true)]
    pub retention: chrono::Duration,

    /// Deliveries in flight per tenant, per worker process.
    #[arg(long, env = "HOOKBEAT_MAX_IN_FLIGHT_PER_TENANT", default_value_t = 128, global = true,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight_per_tenant: u32,

    /// Deliveries in flight per target host (host:port), per worker process.
    #[arg(long, env = "HOOKBEAT_MAX_IN_FLIGHT_PER_HOST", default_value_t = 64, global = true,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_in_flight_per_host: u32,

    /// How long a request's whole body may take to arrive, e.g. 30s; a slower client gets 408.
    #[arg(long, env = "HOOKBEAT_BODY_TIMEOUT", default_value = "30s", value_parser = parse_body_timeout, global = true)]
    pub body_timeout: std::time::Duration,

    /// Log format: `text` for people, `json` for machines.
    #[arg(long, env = "HOOKBEAT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,

    /// Encrypts signing secrets and the embedded JWT secret at rest: base64 32-byte keys,
    /// comma-separated; the first encrypts, every one decrypts (rotate by putting a new key first).
    #[arg(long, env = "HOOKBEAT_SECRETS_KEY", global = true, hide_env_values = true,
          value_parser = SecretsKeysParser)]
    pub secrets_key: Option<SecretsKeys>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// All-in-one: apply migrations, then run the API, the scheduler and the dispatcher (default).
    Serve,
    /// The HTTP API only.
    Api,
    /// Scheduler and dispatcher only; any number may run against one PostgreSQL.
    Worker,
    /// Apply pending migrations and exit.
    Migrate,
    /// Create the tenant if absent and print a signed API token for it.
    Token {
        /// Tenant id (the token's `sub`).
        #[arg(long)]
        tenant: String,
        /// Space-separated scopes: schedules:read, schedules:write, admin.
        #[arg(long, default_value = hookbeat_api::auth::DEFAULT_SCOPES)]
        scope: String,
        /// Validity, e.g. 30d, 12h, 90m.
        #[arg(long, default_value = "30d", value_parser = parse_ttl)]
        ttl: chrono::Duration,
    },
    /// Print the next fire times of a schedule spec as {"fire_times": [...]}.
    Preview {
        /// Fires strictly after this RFC 3339 instant (default: now), within 1970 … 9999.
        #[arg(long, value_parser = hookbeat_scheduler::instant::parse_in_range)]
        after: Option<chrono::DateTime<chrono::Utc>>,
        /// How many fires (1 to 1000).
        #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=1000))]
        count: u16,
        /// The spec, e.g. '{"kind":"interval","every_seconds":60}'.
        spec: String,
    },
}

fn parse_ttl(text: &str) -> Result<chrono::Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30d, 12h, 90m)"))?;
    let ttl = chrono::Duration::from_std(duration).map_err(|_| "too long".to_owned())?;
    if ttl <= chrono::Duration::zero() || ttl > chrono::Duration::days(3650) {
        return Err("must be between 1 second and 3650 days".to_owned());
    }
    Ok(ttl)
}

fn parse_body_timeout(text: &str) -> Result<std::time::Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30s, 2m)"))?;
    if duration < std::time::Duration::from_secs(1)
        || duration > std::time::Duration::from_secs(600)
    {
        return Err("must be between 1 second and 10 minutes".to_owned());
    }
    Ok(duration)
}

fn parse_retention(text: &str) -> Result<chrono::Duration, String> {
    let duration =
        humantime::parse_duration(text).map_err(|e| format!("{e} (examples: 30d, 12h)"))?;
    let retention = chrono::Duration::from_std(duration).map_err(|_| "too long".to_owned())?;
    if retention < chrono::Duration::hours(1) || retention > chrono::Duration::days(3650) {
        return Err("must be between 1 hour and 3650 days".to_owned());
    }
    Ok(retention)
}

impl Settings {
    pub fn is_sqlite(&self) -> bool {
        self.database_url.starts_with("sqlite:")
    }

    /// Cross-field rules, checked before anything connects. `tokens`: the command verifies or
    /// issues API tokens (serve, api, token), so it needs a way to; a command that does not
    /// (worker, migrate) ignores the token settings rather than failing on them.
    pub fn validate(&self, tokens: bool) -> anyhow::Result<()> {
        if !self.is_sqlite() && !self.database_url.starts_with("postgres") {
            anyhow::bail!("--database-url must start with sqlite:// or postgres://");
        }
        if !tokens {
            return Ok(());
        }
        if let Some(secret) = &self.jwt_secret {
            if !Secret::long_enough(secret) {
                anyhow::bail!(
                    "--jwt-secret (HOOKBEAT_JWT_SECRET) must be at least {MIN_SECRET_LEN} characters"
                );
            }
        } else if !self.is_sqlite() && self.jwt_public_key.is_none() {
            anyhow::bail!("--jwt-secret (HOOKBEAT_JWT_SECRET) is required with PostgreSQL");
        }
        if self.jwt_public_key.is_some() && self.jwt_audience.is_none() {
            anyhow::bail!(
                "--jwt-audience (HOOKBEAT_JWT_AUDIENCE) is required with --jwt-public-key: tokens \
                 from a shared identity provider must name hookbeat as their audience"
            );
        }
        Ok(())
    }
}

/// Parses `--secrets-key` without quoting the value, as clap's own errors would: it is a key.
#[derive(Clone)]
struct SecretsKeysParser;

impl clap::builder::TypedValueParser for SecretsKeysParser {
    type Value = SecretsKeys;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        _: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<SecretsKeys, clap::Error> {
        let refuse = |message: String| {
            clap::Error::raw(clap::error::ErrorKind::ValueValidation, message + "\n").with_cmd(cmd)
        };
        let text = value.to_str().ok_or_else(|| {
            refuse(format!(
                "{} is not UTF-8",
                hookbeat_scheduler::sealing::FLAG
            ))
        })?;
        SecretsKeys::parse(text).map_err(|error| refuse(error.to_string()))
    }
}
