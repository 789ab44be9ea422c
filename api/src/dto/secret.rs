//! Signing secrets as the secrets endpoint shows them: the only place a secret is ever returned.

use chrono::{DateTime, Utc};
use hookbeat_entity::signing_secret;
use serde::Serialize;
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
    /// The secrets that currently sign deliveries, newest first.
    pub secrets: Vec<SigningSecret>,
}

impl From<signing_secret::Model> for SigningSecret {
    fn from(m: signing_secret::Model) -> Self {
        Self {
            id: m.id,
            secret: m.secret,
            created_at: m.created_at,
            expires_at: m.expires_at,
        }
    }
}
