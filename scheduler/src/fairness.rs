//! Fairness across tenants: which tenants a claim serves, in rotation, and how the claim is
//! shared out among them.

use chrono::{DateTime, Utc};
use hookbeat_entity::{run, TenantId};
use sea_orm::DatabaseConnection;

use crate::runs;

/// How many tenants one fair claim serves at most; the rest get their turn as the rotation
/// moves on.
const MAX_TENANTS_PER_CLAIM: usize = 256;

/// How long a list of tenants with due runs is reused. Listing them walks an index that churns
/// with every claim, so it is done a few times a second rather than at every claim; a tenant
/// whose runs became due meanwhile still gets the slots the fair shares leave free.
const TENANT_LIST_TTL: chrono::Duration = chrono::Duration::milliseconds(500);

/// Where a worker's tenant rotation stands: the tenants with due runs it last listed, and when.
#[derive(Debug, Default)]
pub struct Rotation {
    /// The last tenant served, where the next listing starts.
    cursor: TenantId,
    tenants: Vec<TenantId>,
    listed_at: Option<DateTime<Utc>>,
}

/// Claims up to `limit` due runs, shared out among the tenants that have due runs, an equal part
/// each, so a tenant with 100,000 due runs delays another tenant's run by one batch at most.
/// Tenants are taken in rotation (the list moves on at each listing), so that with more due
/// tenants than [`MAX_TENANTS_PER_CLAIM`] every one is served in turn. Slots the fair parts leave
/// empty (tenants with fewer runs than their part) go to the oldest due runs of anyone. The runs
/// of the tenants in `skip` stay where they are.
pub async fn claim_fair(
    db: &DatabaseConnection,
    worker_id: &str,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
    rotation: &mut Rotation,
    skip: &[TenantId],
) -> anyhow::Result<Vec<run::Model>> {
    let stale = rotation
        .listed_at
        .is_none_or(|listed| now - listed >= TENANT_LIST_TTL || now < listed);
    if stale {
        list_due_tenants(db, now, rotation).await?;
    }
    let served: Vec<TenantId> = rotation
        .tenants
        .iter()
        .filter(|tenant| !skip.contains(tenant))
        .cloned()
        .collect();
    // At most one run per tenant when there are more tenants than slots.
    let tenants = &served[..served.len().min(limit)];
    let mut claimed = if tenants.is_empty() {
        Vec::new()
    } else {
        let share = (limit / tenants.len()).max(1);
        runs::claim_per_tenant(db, worker_id, now, lease_until, share, tenants).await?
    };
    if claimed.len() < limit {
        let rest = limit - claimed.len();
        claimed.extend(runs::claim(db, worker_id, now, lease_until, rest, skip).await?);
    }
    Ok(claimed)
}

/// Lists up to [`MAX_TENANTS_PER_CLAIM`] tenants with due runs, starting after the rotation's
/// cursor and wrapping around, and moves the cursor to the last of them.
async fn list_due_tenants(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    rotation: &mut Rotation,
) -> anyhow::Result<()> {
    let mut tenants = runs::due_tenants(db, now, &rotation.cursor, MAX_TENANTS_PER_CLAIM).await?;
    if tenants.len() < MAX_TENANTS_PER_CLAIM && !rotation.cursor.as_str().is_empty() {
        let first = TenantId::default();
        let wrapped =
            runs::due_tenants(db, now, &first, MAX_TENANTS_PER_CLAIM - tenants.len()).await?;
        for tenant in wrapped {
            if !tenants.contains(&tenant) {
                tenants.push(tenant);
            }
        }
    }
    rotation.cursor = tenants.last().cloned().unwrap_or_default();
    rotation.tenants = tenants;
    rotation.listed_at = Some(now);
    Ok(())
}
