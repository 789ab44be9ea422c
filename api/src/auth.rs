//! Bearer-token authentication. A token is a JWT whose `sub` is the tenant id; `exp` is required
//! and `scope` lists what it may do. Tokens are HS256 with the installation's secret, or, when an
//! external identity provider issues them, RS256 / ES256 / EdDSA verified with its public key.
//! Only the configured algorithm is accepted, so `alg: none` and algorithm swaps are refused.

use std::future::Future;
use std::pin::Pin;

use actix_web::{web, FromRequest, HttpRequest};
use base64::Engine;
use chrono::{DateTime, Utc};
use hookbeat_entity::{setting, TenantId};
use hookbeat_scheduler::revisions::{Actor, Author};
use hookbeat_scheduler::sealing::{Row, Sealer};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use sea_orm::{ActiveModelTrait, DatabaseConnection, DbBackend, EntityTrait, Set};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::rate_limit::AUTH_FAILURES_PER_SECOND;
use crate::state::AppState;
use crate::tenants;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    SchedulesRead,
    SchedulesWrite,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::SchedulesRead => "schedules:read",
            Scope::SchedulesWrite => "schedules:write",
            Scope::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Scope> {
        [Scope::SchedulesRead, Scope::SchedulesWrite, Scope::Admin]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// What `hookbeat token` grants when no `--scope` is given.
pub const DEFAULT_SCOPES: &str = "schedules:read schedules:write";
/// Clock skew tolerated on `exp` and `nbf`.
const LEEWAY_SECONDS: u64 = 5;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub scope: String,
    /// Checked when the server is configured with an audience (`--jwt-audience`): one name or a
    /// list of names (RFC 7519 section 4.1.3), one of which must be the configured audience.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<Audience>,
    /// The token's own id (RFC 7519 section 4.1.7), kept with the changes it makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Who or what holds the token (a person, a deploy job), kept with the changes it makes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The `aud` claim: a string or an array of strings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    One(String),
    Many(Vec<String>),
}

/// A secret that does not print.
#[derive(Clone)]
pub struct Secret(String);

/// The shortest HS256 secret accepted, in bytes: 256 bits, the size of the hash (RFC 7518
/// section 3.2).
pub const MIN_SECRET_LEN: usize = 32;

impl Secret {
    pub fn new(value: String) -> Self {
        Self(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    /// Whether the secret is long enough to sign tokens with ([`MIN_SECRET_LEN`]).
    pub fn long_enough(secret: &str) -> bool {
        secret.len() >= MIN_SECRET_LEN
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl TokenVerifier {
    /// Verifies HS256 tokens signed with the installation's secret.
    pub fn hs256(secret: &Secret, audience: Option<&str>) -> Self {
        Self::with(
            DecodingKey::from_secret(secret.expose().as_bytes()),
            Algorithm::HS256,
            audience,
        )
    }

    /// Verifies tokens of an external issuer with its PEM public key (RSA, EC P-256 or Ed25519).
    pub fn public_key(pem: &[u8], audience: Option<&str>) -> anyhow::Result<Self> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::with(key, Algorithm::RS256, audience));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(pem) {
            return Ok(Self::with(key, Algorithm::ES256, audience));
        }
        if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            return Ok(Self::with(key, Algorithm::EdDSA, audience));
        }
        anyhow::bail!("the JWT public key is not a PEM RSA, EC (P-256) or Ed25519 public key")
    }

    /// Only `algorithm` is accepted: `alg: none` and algorithm swaps fail verification.
    fn with(key: DecodingKey, algorithm: Algorithm, audience: Option<&str>) -> Self {
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECONDS;
        match audience {
            Some(audience) => {
                validation.set_audience(&[audience]);
                validation.set_required_spec_claims(&["exp", "sub", "aud"]);
            }
            None => validation.validate_aud = false,
        }
        Self { key, validation }
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let reason = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::ImmatureSignature => "the token is not valid yet",
                    ErrorKind::InvalidAlgorithm => "the token's algorithm is not accepted",
                    ErrorKind::InvalidSignature => "the token's signature is invalid",
                    ErrorKind::InvalidAudience => "the token is for another audience",
                    ErrorKind::MissingRequiredClaim(_) => {
                        "the token lacks a required claim (sub, exp)"
                    }
                    _ => "the token is malformed",
                };
                ApiError::Unauthorized(reason.to_owned())
            })
    }
}

/// Signs an HS256 token for `tenant`.
pub fn mint_token(
    secret: &Secret,
    tenant: &str,
    scope: &str,
    ttl: chrono::Duration,
    now: DateTime<Utc>,
    audience: Option<&str>,
) -> anyhow::Result<String> {
    let claims = Claims {
        sub: tenant.to_owned(),
        exp: (now + ttl).timestamp(),
        iat: Some(now.timestamp()),
        nbf: None,
        scope: scope.to_owned(),
        aud: audience.map(|aud| Audience::One(aud.to_owned())),
        jti: None,
        name: None,
    };
    Ok(jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose().as_bytes()),
    )?)
}

/// The installation's HS256 secret: the configured one, or for an embedded (SQLite) install one
/// generated on first start and kept in the database, so `hookbeat token` and the server agree.
pub async fn resolve_secret(
    db: &DatabaseConnection,
    configured: Option<Secret>,
    sealer: &Sealer,
) -> anyhow::Result<Secret> {
    if let Some(secret) = configured {
        if !Secret::long_enough(secret.expose()) {
            anyhow::bail!("the JWT secret must be at least {MIN_SECRET_LEN} characters long");
        }
        return Ok(secret);
    }
    if db.get_database_backend() != DbBackend::Sqlite {
        anyhow::bail!("--jwt-secret (HOOKBEAT_JWT_SECRET) is required with PostgreSQL");
    }
    let row = Row::Setting {
        key: setting::JWT_SECRET_KEY,
    };
    if let Some(stored) = setting::Entity::find_by_id(setting::JWT_SECRET_KEY)
        .one(db)
        .await?
    {
        let opened = sealer.open(row, &stored.value);
        return Ok(Secret::new(opened.map_err(|error| {
            anyhow::anyhow!("the JWT secret kept in the database is unreadable: {error}")
        })?));
    }
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    let generated = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    setting::ActiveModel {
        key: Set(setting::JWT_SECRET_KEY.to_owned()),
        value: Set(sealer.seal(row, &generated)),
    }
    .insert(db)
    .await?;
    tracing::info!("generated a JWT secret for this embedded database");
    Ok(Secret::new(generated))
}

use sea_orm::ConnectionTrait;

/// The verified caller of a `/v1` request: its tenant, its scopes, and who it says it is.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    /// The tenant's row: its quotas.
    pub account: hookbeat_entity::tenant::Model,
    /// The token's `sub`, `jti` and `name`: what a revision says made a change.
    pub actor: Actor,
    scopes: Vec<Scope>,
}

impl Caller {
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::MissingScope(scope.as_str()))
        }
    }

    /// This caller as the author of a change made for `reason` (its `X-Change-Reason`).
    pub fn author(&self, reason: Option<String>) -> Author {
        Author {
            actor: self.actor.clone(),
            reason,
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let state = req.app_data::<web::Data<AppState>>().cloned();
        // Behind a proxy every client shares its address: the limit then applies to them all.
        let address = req
            .peer_addr()
            .map_or_else(|| "unknown".to_owned(), |addr| addr.ip().to_string());
        let header = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .map(|v| v.to_str().map(str::to_owned));
        Box::pin(async move {
            let state = state.ok_or_else(|| anyhow::anyhow!("application state is missing"))?;
            let now = state.clock.now();
            let claims = match bearer_token(header).and_then(|token| state.verifier.verify(&token))
            {
                Ok(claims) => claims,
                Err(error) => return Err(count_failure(&state, &address, now, error)),
            };
            match authorise(&state, claims, now).await {
                Err(error @ ApiError::Forbidden(_)) => {
                    Err(count_failure(&state, &address, now, error))
                }
                other => other,
            }
        })
    }
}

/// Counts a failed authentication from `address`: the failure itself, or 429 once the address
/// has used up its allowance ([`crate::rate_limit::RateLimiter::for_auth_failures`]). A token
/// that fails its check costs no database work, so a flood of them costs none either.
fn count_failure(state: &AppState, address: &str, now: DateTime<Utc>, error: ApiError) -> ApiError {
    match state
        .auth_failures
        .check(address, AUTH_FAILURES_PER_SECOND, now)
    {
        Ok(()) => error,
        Err(retry_after_seconds) => ApiError::TooManyRequests {
            detail: format!(
                "too many failed authentications from this address ({error}); wait before trying again"
            ),
            retry_after_seconds,
        },
    }
}

/// The token of an `Authorization: Bearer <token>` header.
fn bearer_token(
    header: Option<Result<String, actix_web::http::header::ToStrError>>,
) -> Result<String, ApiError> {
    match header {
        None => Err(ApiError::Unauthorized(
            "an Authorization: Bearer token is required".into(),
        )),
        Some(Err(_)) => Err(ApiError::Unauthorized(
            "the Authorization header is not readable".into(),
        )),
        Some(Ok(value)) => match value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            Some(token) => Ok(token.trim().to_owned()),
            None => Err(ApiError::Unauthorized(
                "the Authorization header must be `Bearer <token>`".into(),
            )),
        },
    }
}

/// The caller that verified `claims` name: its tenant (made on first sight), not disabled and
/// within its rate limit.
async fn authorise(
    state: &AppState,
    claims: Claims,
    now: DateTime<Utc>,
) -> Result<Caller, ApiError> {
    if claims.sub.is_empty() || claims.sub.len() > tenants::MAX_TENANT_ID_LEN {
        return Err(ApiError::Unauthorized(
            "the token's sub is not a valid tenant id".into(),
        ));
    }
    let scopes = claims
        .scope
        .split_whitespace()
        .filter_map(Scope::parse)
        .collect();
    let actor = Actor {
        sub: claims.sub.clone(),
        token_id: claims.jti,
        name: claims.name,
    };
    let tenant = TenantId(claims.sub);
    // Tokens from an external issuer may name a tenant hookbeat has not seen yet.
    let account = tenants::ensure(&state.db, &state.sealer, &tenant, now).await?;
    if account.disabled {
        return Err(ApiError::Forbidden(format!("tenant {tenant} is disabled")));
    }
    state
        .rate_limiter
        .check(tenant.as_str(), account.api_rate_per_second, now)
        .map_err(|retry_after_seconds| ApiError::TooManyRequests {
            detail: format!(
                "tenant {tenant} is over its rate limit of {} requests per second",
                account.api_rate_per_second
            ),
            retry_after_seconds,
        })?;
    Ok(Caller {
        tenant,
        account,
        actor,
        scopes,
    })
}
