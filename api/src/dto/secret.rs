//! Signing secrets as the secrets endpoint shows them (the only place a secret is ever returned),
//! and the body of a rotation.

use chrono::{DateTime, Utc};
use hookbeat_entity::signing_secret;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

#[derive(Debug, Serialize, ToSchema)]
pub struct SigningSecret {
    pub id: Uuid,
    /// `whsec_` + base64 key, as the Standard Webhooks specification defines it.
    #[schema(example = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")]
    pub secret: String,
    pub created_at: DateTime<Utc>,
    /// When a rotated-out secret stops signing; `null` for the current secret.
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Serialize, ToSchema)]
#[schema(example = crate::dto::examples::signing_secrets)]
pub struct SigningSecrets {
    /// The secrets that currently sign deliveries, newest first: at most two.
    pub secrets: Vec<SigningSecret>,
}

impl SigningSecret {
    /// The row as shown, with its secret opened (`secret`): the row holds it sealed.
    pub fn shown(m: signing_secret::Model, secret: String) -> Self {
        Self {
            id: m.id,
            secret,
            created_at: m.created_at,
            expires_at: m.expires_at,
        }
    }
}

/// The body of a rotation; optional, as is each member.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[schema(example = json!({"expire_previous": "now"}))]
pub struct RotateRequest {
    /// When the secret being replaced stops signing: `24h` (the default) keeps it signing beside
    /// the new one for 24 hours, so receivers can switch over; `now` stops it at once, for a secret
    /// that leaked. Any older secret stops at once either way: at most two secrets sign.
    #[serde(default)]
    pub expire_previous: ExpirePrevious,
}

/// When a rotated-out secret stops signing: `24h` or `now`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
pub enum ExpirePrevious {
    #[default]
    #[serde(rename = "24h")]
    After24Hours,
    #[serde(rename = "now")]
    Now,
}
