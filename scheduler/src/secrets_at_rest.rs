//! The stored secrets at start-up. With `--secrets-key`, every signing secret and the embedded
//! JWT secret ends up sealed under the first key: plaintext rows and rows sealed under another
//! configured key are sealed anew. A sealed secret that no configured key opens (or any sealed
//! secret, without keys) stops the start before anything is changed.

use anyhow::Context;
use hookbeat_entity::{setting, signing_secret};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use uuid::Uuid;

use crate::sealing::{OpenError, Row, Sealer, FLAG};

/// Rows read, and sealed, per statement and per transaction.
const BATCH: u64 = 500;
/// How every sealed value starts: a sealed row in a database opened without keys is found by it.
const SEALED_PREFIX: &str = "enc:";

/// What the start-up found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AtRest {
    /// No keys: secrets are stored as they are.
    Plaintext,
    /// Every secret is sealed under the first key; `resealed` of them were sealed now.
    Sealed { resealed: u64 },
}

/// Checks that every stored secret opens and, with keys, seals what is not sealed under the
/// first key. Refuses (before changing anything) when a secret does not open.
pub async fn prepare(db: &DatabaseConnection, sealer: &Sealer) -> anyhow::Result<AtRest> {
    if sealer.keys().is_none() {
        refuse_sealed_rows_without_keys(db).await?;
        return Ok(AtRest::Plaintext);
    }
    let (secrets, jwt) = check(db, sealer).await?;
    let mut resealed = 0;
    for ids in secrets.chunks(BATCH as usize) {
        resealed += reseal_signing_secrets(db, sealer, ids).await?;
    }
    if let Some(stored) = jwt {
        let row = Row::Setting {
            key: setting::JWT_SECRET_KEY,
        };
        let plaintext = sealer.open(row, &stored).expect("checked above");
        resealed += setting::Entity::update_many()
            .col_expr(
                setting::Column::Value,
                Expr::value(sealer.seal(row, &plaintext)),
            )
            .filter(setting::Column::Key.eq(setting::JWT_SECRET_KEY))
            .filter(setting::Column::Value.eq(stored))
            .exec(db)
            .await
            .context("sealing the JWT secret")?
            .rows_affected;
    }
    if resealed > 0 {
        tracing::info!(
            secrets = resealed,
            key_id = sealer.keys().map(|k| k.current_id()),
            "sealed stored secrets under the first --secrets-key"
        );
    }
    Ok(AtRest::Sealed { resealed })
}

fn cannot_open(what: &str, error: OpenError) -> anyhow::Error {
    let remedy = match error {
        OpenError::NoKeys => format!("set {FLAG} to the key that encrypted it"),
        OpenError::UnknownKey { .. } => {
            format!("add the key that encrypted it to {FLAG} (after the first key)")
        }
        OpenError::Corrupt { .. } | OpenError::Malformed => {
            "restore it from a backup, or delete the row and rotate the secret".to_owned()
        }
    };
    anyhow::anyhow!("cannot start: {what} is unreadable: {error}; {remedy}")
}

async fn refuse_sealed_rows_without_keys(db: &DatabaseConnection) -> anyhow::Result<()> {
    let sealed_secret = signing_secret::Entity::find()
        .filter(signing_secret::Column::Secret.starts_with(SEALED_PREFIX))
        .one(db)
        .await
        .context("looking for encrypted signing secrets")?;
    if let Some(row) = sealed_secret {
        return Err(cannot_open(
            &format!("signing secret {} of tenant {}", row.id, row.tenant_id),
            OpenError::NoKeys,
        ));
    }
    let sealed_jwt = setting::Entity::find_by_id(setting::JWT_SECRET_KEY)
        .filter(setting::Column::Value.starts_with(SEALED_PREFIX))
        .count(db)
        .await
        .context("looking for an encrypted JWT secret")?;
    if sealed_jwt > 0 {
        return Err(cannot_open(
            "the JWT secret kept in the database",
            OpenError::NoKeys,
        ));
    }
    Ok(())
}

/// Opens every stored secret; returns the ids of the signing secrets to seal anew, and the
/// stored JWT secret if it is to be sealed anew.
async fn check(
    db: &DatabaseConnection,
    sealer: &Sealer,
) -> anyhow::Result<(Vec<Uuid>, Option<String>)> {
    let mut to_seal = Vec::new();
    let mut after: Option<Uuid> = None;
    loop {
        let mut page = signing_secret::Entity::find()
            .order_by_asc(signing_secret::Column::Id)
            .limit(BATCH);
        if let Some(after) = after {
            page = page.filter(signing_secret::Column::Id.gt(after));
        }
        let rows = page.all(db).await.context("reading the signing secrets")?;
        for row in &rows {
            let at = Row::SigningSecret {
                tenant: row.tenant_id.as_str(),
                id: row.id,
            };
            sealer.open(at, &row.secret).map_err(|error| {
                cannot_open(
                    &format!("signing secret {} of tenant {}", row.id, row.tenant_id),
                    error,
                )
            })?;
            if sealer.needs_sealing(&row.secret) {
                to_seal.push(row.id);
            }
        }
        match rows.last() {
            Some(last) if rows.len() as u64 == BATCH => after = Some(last.id),
            _ => break,
        }
    }
    let jwt = setting::Entity::find_by_id(setting::JWT_SECRET_KEY)
        .one(db)
        .await
        .context("reading the JWT secret")?;
    let jwt = match jwt {
        Some(row) => {
            sealer
                .open(
                    Row::Setting {
                        key: setting::JWT_SECRET_KEY,
                    },
                    &row.value,
                )
                .map_err(|error| cannot_open("the JWT secret kept in the database", error))?;
            sealer.needs_sealing(&row.value).then_some(row.value)
        }
        None => None,
    };
    Ok((to_seal, jwt))
}

/// Seals the given signing secrets anew in one transaction. A row changed meanwhile (sealed by
/// another process starting at the same time) is left as that process wrote it.
async fn reseal_signing_secrets(
    db: &DatabaseConnection,
    sealer: &Sealer,
    ids: &[Uuid],
) -> anyhow::Result<u64> {
    let txn = hookbeat_entity::begin_write(db)
        .await
        .context("beginning to seal signing secrets")?;
    let rows = signing_secret::Entity::find()
        .filter(signing_secret::Column::Id.is_in(ids.iter().copied()))
        .all(&txn)
        .await
        .context("reading signing secrets to seal")?;
    let mut sealed = 0;
    for row in rows {
        let at = Row::SigningSecret {
            tenant: row.tenant_id.as_str(),
            id: row.id,
        };
        if !sealer.needs_sealing(&row.secret) {
            continue;
        }
        let plaintext = sealer
            .open(at, &row.secret)
            .map_err(|error| cannot_open(&format!("signing secret {}", row.id), error))?;
        sealed += signing_secret::Entity::update_many()
            .col_expr(
                signing_secret::Column::Secret,
                Expr::value(sealer.seal(at, &plaintext)),
            )
            .filter(signing_secret::Column::Id.eq(row.id))
            .filter(signing_secret::Column::Secret.eq(row.secret))
            .exec(&txn)
            .await
            .context("sealing a signing secret")?
            .rows_affected;
    }
    txn.commit()
        .await
        .context("committing the sealed signing secrets")?;
    Ok(sealed)
}
