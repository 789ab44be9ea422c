//! Politeness: limits on deliveries in flight per tenant and per target host, so one tenant's
//! slow receiver cannot take every delivery slot of a worker, and no receiver is flooded.
//!
//! A tenant's share shrinks with the others' use: it may hold at most half of the slots the
//! other tenants leave (and never more than `--max-in-flight-per-tenant`), but always one. (A
//! per-tenant limit at or above the worker's slots turns the share off: one tenant may then
//! take them all, as a single-tenant installation wants.) With
//! k tenants busy each settles at about slots / (k + 1), and a tenant arriving while others hold
//! everything they may still finds slots free: three tenants whose receivers hang hold 128, 64
//! and 32 of 256 slots, and a fourth still has 32 to use. A hanging receiver costs its own
//! tenant, not the others.
//!
//! The limits are per worker process (W workers allow W × the limit in all). A claimed run over a
//! limit is not held waiting (its lease would run out): it is handed back, due again shortly,
//! and the fair claim gives its slot to someone else. The worker then sizes its next claims by
//! the places the refusing tenant or host has free ([`Limits::places`]), and waits for them to
//! come free ([`Limits::eased`]) rather than claim runs it would only hand back again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use tokio::sync::Notify;

#[derive(Debug, Default)]
struct InFlight {
    tenants: HashMap<String, usize>,
    hosts: HashMap<String, usize>,
    /// Deliveries in flight in all.
    total: usize,
}

impl InFlight {
    /// The most deliveries `tenant` may have in flight now (see the module's documentation).
    fn tenant_cap(&self, tenant: &str, per_tenant: usize, slots: usize) -> usize {
        if per_tenant >= slots {
            // One tenant may take every slot: the operator turned the share off.
            return per_tenant;
        }
        let own = self.tenants.get(tenant).copied().unwrap_or(0);
        let left_by_others = slots.saturating_sub(self.total - own);
        (left_by_others / 2).min(per_tenant).max(1)
    }
}

#[derive(Debug)]
pub struct Limits {
    per_tenant: usize,
    per_host: usize,
    /// The worker's delivery slots, which the tenants share.
    slots: usize,
    in_flight: Mutex<InFlight>,
    /// Signalled when a tenant or host falls to half its limit in flight.
    eased: Notify,
}

/// A tenant or a target host: what a limit counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Tenant(String),
    Host(String),
}

/// How long the tenants and hosts that refused runs keep bounding claims after the last refusal.
const AT_LIMIT_FOR: Duration = Duration::seconds(1);

/// The longest a worker holds back its claims for a tenant or host at its limit to have half its
/// places free, and so the longest its loop waits after a limit sent runs back. One that frees
/// none in this time is slow, not busy: claims go on as before (what does not fit is handed
/// back), so its backlog never holds up the other tenants' runs for long.
pub const AT_LIMIT_WAIT: Duration = Duration::milliseconds(50);

/// The tenants and hosts that lately refused runs for being at their limit, and what that means
/// for the next claim: while a refusal is recent, a claim takes no more runs than those keys have
/// places free, and none until they have at least half (the guess being that the runs waiting
/// are theirs), so a backlog for one receiving host is not claimed and handed back, a write each
/// way, as each of its deliveries ends.
#[derive(Debug, Default)]
pub struct AtLimit {
    keys: Vec<Key>,
    until: Option<DateTime<Utc>>,
    /// Since when claims have been held back, waiting for places.
    holding_since: Option<DateTime<Utc>>,
}

impl AtLimit {
    /// Notes the keys that refused runs in a claim at `now`.
    pub fn refused(&mut self, keys: Vec<Key>, now: DateTime<Utc>) {
        *self = Self {
            keys,
            until: Some(now + AT_LIMIT_FOR),
            holding_since: None,
        };
    }

    /// How many runs the next claim may take: `None` for no bound (no recent refusal, or the
    /// keys stayed full for [`AT_LIMIT_WAIT`]), `Some(0)` to hold back until places come free.
    pub fn bound(&mut self, limits: &Limits, now: DateTime<Utc>) -> Option<usize> {
        if self.until.is_none_or(|until| now >= until) {
            return None;
        }
        let mut bound = usize::MAX;
        let mut full = false;
        for key in &self.keys {
            let (free, limit) = limits.places(key);
            if free == 0 && matches!(key, Key::Tenant(_)) {
                // Claims leave a full tenant's runs where they are: it bounds nothing.
                continue;
            }
            full |= free < (limit / 2).max(1);
            bound = bound.min(free);
        }
        if !full {
            self.holding_since = None;
            return Some(bound);
        }
        let since = *self.holding_since.get_or_insert(now);
        if now - since >= AT_LIMIT_WAIT {
            // Slow rather than busy: stop holding back until the next refusal.
            self.until = None;
            return None;
        }
        Some(0)
    }
}

/// A delivery's place under both limits, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    limits: Arc<Limits>,
    tenant: String,
    host: String,
}

impl Limits {
    /// Fixed limits alone, with no share of a worker's slots to keep.
    pub fn new(per_tenant: usize, per_host: usize) -> Arc<Self> {
        Self::sharing(per_tenant, per_host, usize::MAX)
    }

    /// The limits of a worker with `slots` delivery slots, shared fairly among its tenants.
    pub fn sharing(per_tenant: usize, per_host: usize, slots: usize) -> Arc<Self> {
        Arc::new(Self {
            per_tenant: per_tenant.max(1),
            per_host: per_host.max(1),
            slots,
            in_flight: Mutex::default(),
            eased: Notify::new(),
        })
    }

    /// A place for one more delivery of `tenant` to `host` if both are under their limits, else
    /// the one at its limit.
    pub fn try_reserve(self: &Arc<Self>, tenant: &str, host: &str) -> Result<Reservation, Key> {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock poisoned");
        let cap = in_flight.tenant_cap(tenant, self.per_tenant, self.slots);
        if in_flight.tenants.get(tenant).copied().unwrap_or(0) >= cap {
            return Err(Key::Tenant(tenant.to_owned()));
        }
        if in_flight.hosts.get(host).copied().unwrap_or(0) >= self.per_host {
            return Err(Key::Host(host.to_owned()));
        }
        *in_flight.tenants.entry(tenant.to_owned()).or_default() += 1;
        *in_flight.hosts.entry(host.to_owned()).or_default() += 1;
        in_flight.total += 1;
        Ok(Reservation {
            limits: self.clone(),
            tenant: tenant.to_owned(),
            host: host.to_owned(),
        })
    }

    /// The tenants that may start no delivery now: a claim leaves their runs where they are.
    pub fn tenants_at_limit(&self) -> Vec<String> {
        let in_flight = self.in_flight.lock().expect("in-flight lock poisoned");
        in_flight
            .tenants
            .iter()
            .filter(|(tenant, busy)| {
                **busy >= in_flight.tenant_cap(tenant, self.per_tenant, self.slots)
            })
            .map(|(tenant, _)| tenant.clone())
            .collect()
    }

    /// How many more deliveries `key` may start now, and how many it may have in flight.
    pub fn places(&self, key: &Key) -> (usize, usize) {
        let in_flight = self.in_flight.lock().expect("in-flight lock poisoned");
        let (counts, name, limit) = match key {
            Key::Tenant(tenant) => (
                &in_flight.tenants,
                tenant,
                in_flight.tenant_cap(tenant, self.per_tenant, self.slots),
            ),
            Key::Host(host) => (&in_flight.hosts, host, self.per_host),
        };
        let busy = counts.get(name).copied().unwrap_or(0);
        (limit.saturating_sub(busy), limit)
    }

    /// Completes once some tenant or host has fallen to half its limit in flight since the last
    /// call returned: from then on a claim can keep a batch of its runs, not one or two.
    pub async fn eased(&self) {
        self.eased.notified().await;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut in_flight = self
            .limits
            .in_flight
            .lock()
            .expect("in-flight lock poisoned");
        let InFlight {
            tenants,
            hosts,
            total,
        } = &mut *in_flight;
        *total -= 1;
        let tenant_left = release(tenants, &self.tenant);
        let host_left = release(hosts, &self.host);
        if tenant_left == Some(self.limits.per_tenant / 2)
            || host_left == Some(self.limits.per_host / 2)
        {
            self.limits.eased.notify_one();
        }
    }
}

/// Counts one delivery of `key` out; returns how many are left in flight.
fn release(counts: &mut HashMap<String, usize>, key: &str) -> Option<usize> {
    let count = counts.get_mut(key)?;
    *count -= 1;
    let left = *count;
    if left == 0 {
        counts.remove(key);
    }
    Some(left)
}

/// The host a target URL connects to, as `host:port`: the unit of the per-host limit.
pub fn host_key(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(url) => format!(
            "{}:{}",
            url.host_str().unwrap_or(""),
            url.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_per_tenant_and_per_host_and_free_on_drop() {
        let limits = Limits::new(2, 3);
        let a1 = limits.try_reserve("a", "x:443").unwrap();
        let _a2 = limits.try_reserve("a", "y:443").unwrap();
        assert_eq!(
            limits.try_reserve("a", "z:443").unwrap_err(),
            Key::Tenant("a".into()),
            "tenant a is at its limit"
        );
        let _b1 = limits.try_reserve("b", "x:443").unwrap();
        let _c1 = limits.try_reserve("c", "x:443").unwrap();
        assert_eq!(
            limits.try_reserve("d", "x:443").unwrap_err(),
            Key::Host("x:443".into()),
            "host x is at its limit"
        );
        assert_eq!(limits.places(&Key::Host("x:443".into())), (0, 3));
        assert_eq!(limits.places(&Key::Tenant("b".into())), (1, 2));
        drop(a1);
        assert_eq!(limits.places(&Key::Host("x:443".into())), (1, 3));
        assert!(limits.try_reserve("a", "z:443").is_ok());
        assert!(limits.try_reserve("d", "x:443").is_ok());
    }

    #[test]
    fn tenants_share_the_slots_so_a_newcomer_always_finds_some() {
        // Three tenants whose receivers hang, 150 runs each, on a worker of 256 slots.
        let limits = Limits::sharing(128, 1_000, 256);
        let mut held = Vec::new();
        let mut taken = Vec::new();
        for tenant in ["a", "b", "c"] {
            let before = held.len();
            for _ in 0..150 {
                if let Ok(place) = limits.try_reserve(tenant, &format!("{tenant}:443")) {
                    held.push(place);
                }
            }
            taken.push(held.len() - before);
        }
        assert_eq!(
            taken,
            vec![128, 64, 32],
            "each takes half of what the others leave"
        );
        // A fourth tenant still gets places, and so would the fifth after it.
        let d: Vec<_> = (0..100)
            .filter_map(|_| limits.try_reserve("d", "d:443").ok())
            .collect();
        assert_eq!(d.len(), 16);
        assert!(limits.try_reserve("e", "e:443").is_ok());
        assert_eq!(
            limits.places(&Key::Tenant("a".into())),
            (0, 72),
            "a holds more than half of what b, c and d leave it"
        );
        // Places come back as deliveries end; an early tenant over its share waits for them.
        drop(d);
        held.truncate(128 + 64);
        assert_eq!(limits.places(&Key::Tenant("c".into())), (32, 32));
        // Never below one, however full the worker.
        let full = Limits::sharing(2, 1_000, 3);
        let _x = full.try_reserve("x", "x:443").unwrap();
        let _y = full.try_reserve("y", "y:443").unwrap();
        assert_eq!(full.places(&Key::Tenant("z".into())), (1, 1));
        // A per-tenant limit at or above the slots turns the share off.
        let alone = Limits::sharing(256, 1_000, 256);
        let all: Vec<_> = (0..256)
            .filter_map(|_| alone.try_reserve("only", "x:443").ok())
            .collect();
        assert_eq!(all.len(), 256);
    }

    #[test]
    fn limits_ease_when_a_host_falls_to_half_its_limit() {
        use futures::FutureExt;
        let limits = Limits::new(100, 4);
        let mut held: Vec<_> = (0..4)
            .map(|n| limits.try_reserve(&format!("t{n}"), "x:443").unwrap())
            .collect();
        held.pop();
        assert!(
            limits.eased().now_or_never().is_none(),
            "three of four in flight"
        );
        held.pop();
        assert!(limits.eased().now_or_never().is_some(), "two of four: half");
        held.pop();
        assert!(
            limits.eased().now_or_never().is_none(),
            "signalled once per fall to half"
        );
    }

    #[test]
    fn claims_wait_for_half_the_places_of_a_key_at_its_limit_but_not_for_long() {
        let limits = Limits::new(100, 4);
        let t0: DateTime<Utc> = "2030-01-07T10:00:00Z".parse().unwrap();
        let ms = Duration::milliseconds;
        let mut at_limit = AtLimit::default();
        assert_eq!(at_limit.bound(&limits, t0), None, "nothing refused yet");

        let mut held: Vec<_> = (0..4)
            .map(|n| limits.try_reserve(&format!("t{n}"), "x:443").unwrap())
            .collect();
        at_limit.refused(vec![Key::Host("x:443".into())], t0);
        assert_eq!(at_limit.bound(&limits, t0), Some(0), "x is full");
        held.truncate(3);
        assert_eq!(
            at_limit.bound(&limits, t0 + ms(10)),
            Some(0),
            "one of four free is less than half"
        );
        held.truncate(2);
        assert_eq!(at_limit.bound(&limits, t0 + ms(20)), Some(2), "half free");
        held.truncate(0);
        assert_eq!(at_limit.bound(&limits, t0 + ms(30)), Some(4));

        // A host that frees nothing for AT_LIMIT_WAIT stops holding claims back.
        let _held: Vec<_> = (0..4)
            .map(|n| limits.try_reserve(&format!("t{n}"), "x:443").unwrap())
            .collect();
        at_limit.refused(vec![Key::Host("x:443".into())], t0 + ms(100));
        assert_eq!(at_limit.bound(&limits, t0 + ms(100)), Some(0));
        assert_eq!(at_limit.bound(&limits, t0 + ms(149)), Some(0));
        assert_eq!(
            at_limit.bound(&limits, t0 + ms(150)),
            None,
            "slow, not busy"
        );
        assert_eq!(
            at_limit.bound(&limits, t0 + ms(151)),
            None,
            "until the next refusal"
        );

        // A refusal counts for AT_LIMIT_FOR.
        at_limit.refused(vec![Key::Tenant("t9".into())], t0 + ms(200));
        assert_eq!(at_limit.bound(&limits, t0 + ms(1_199)), Some(100));
        assert_eq!(at_limit.bound(&limits, t0 + ms(1_200)), None);
    }

    #[test]
    fn host_keys_include_the_port() {
        assert_eq!(host_key("https://Example.com/a"), "example.com:443");
        assert_eq!(host_key("http://10.0.0.1:8080/"), "10.0.0.1:8080");
    }
}
