//! Politeness: limits on deliveries in flight per tenant and per target host, so one tenant's
//! slow receiver cannot take every delivery slot of a worker, and no receiver is flooded.
//!
//! The limits are per worker process (W workers allow W × the limit in all). A claimed run over a
//! limit is not held waiting (its lease would run out): it is handed back, due again shortly,
//! and the fair claim gives its slot to someone else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Default)]
struct InFlight {
    tenants: HashMap<String, usize>,
    hosts: HashMap<String, usize>,
}

#[derive(Debug)]
pub struct Limits {
    per_tenant: usize,
    per_host: usize,
    in_flight: Mutex<InFlight>,
}

/// A delivery's place under both limits, given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    limits: Arc<Limits>,
    tenant: String,
    host: String,
}

impl Limits {
    pub fn new(per_tenant: usize, per_host: usize) -> Arc<Self> {
        Arc::new(Self {
            per_tenant: per_tenant.max(1),
            per_host: per_host.max(1),
            in_flight: Mutex::default(),
        })
    }

    /// A place for one more delivery of `tenant` to `host`, if both are under their limits.
    pub fn try_reserve(self: &Arc<Self>, tenant: &str, host: &str) -> Option<Reservation> {
        let mut in_flight = self.in_flight.lock().expect("in-flight lock poisoned");
        let tenant_count = in_flight.tenants.get(tenant).copied().unwrap_or(0);
        let host_count = in_flight.hosts.get(host).copied().unwrap_or(0);
        if tenant_count >= self.per_tenant || host_count >= self.per_host {
            return None;
        }
        *in_flight.tenants.entry(tenant.to_owned()).or_default() += 1;
        *in_flight.hosts.entry(host.to_owned()).or_default() += 1;
        Some(Reservation {
            limits: self.clone(),
            tenant: tenant.to_owned(),
            host: host.to_owned(),
        })
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut in_flight = self
            .limits
            .in_flight
            .lock()
            .expect("in-flight lock poisoned");
        let InFlight { tenants, hosts } = &mut *in_flight;
        release(tenants, &self.tenant);
        release(hosts, &self.host);
    }
}

fn release(counts: &mut HashMap<String, usize>, key: &str) {
    if let Some(count) = counts.get_mut(key) {
        *count -= 1;
        if *count == 0 {
            counts.remove(key);
        }
    }
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
        assert!(
            limits.try_reserve("a", "z:443").is_none(),
            "tenant a is at its limit"
        );
        let _b1 = limits.try_reserve("b", "x:443").unwrap();
        let _c1 = limits.try_reserve("c", "x:443").unwrap();
        assert!(
            limits.try_reserve("d", "x:443").is_none(),
            "host x is at its limit"
        );
        drop(a1);
        assert!(limits.try_reserve("a", "z:443").is_some());
        assert!(limits.try_reserve("d", "x:443").is_some());
    }

    #[test]
    fn host_keys_include_the_port() {
        assert_eq!(host_key("https://Example.com/a"), "example.com:443");
        assert_eq!(host_key("http://10.0.0.1:8080/"), "10.0.0.1:8080");
    }
}
