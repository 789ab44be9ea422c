//! The SSRF guard: tenants must not be able to make hookbeat call into its own network. Targets
//! whose address is loopback, private, link-local, unique-local, CGNAT, multicast or unspecified
//! (IPv4-mapped IPv6 forms included) are refused when a schedule is saved and again when
//! connecting, because DNS may answer differently later.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address may not be called, or `None` when it is a public address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden_v4(v4);
            }
            let first = v6.segments()[0];
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("the unspecified address")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else if first & 0xfe00 == 0xfc00 {
                Some("a unique-local address")
            } else if first & 0xffc0 == 0xfe80 {
                Some("a link-local address")
            } else if v6.segments()[..6] == [0, 0, 0, 0, 0, 0] {
                // Deprecated IPv4-compatible form (::a.b.c.d): judge the embedded address.
                forbidden_v4(Ipv4Addr::from(v6.to_bits() as u32))
            } else if v6.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
                forbidden_v4(Ipv4Addr::from(v6.to_bits() as u32))
            } else {
                None
            }
        }
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    if ip.is_loopback() {
        Some("a loopback address")
    } else if ip.is_unspecified() || a == 0 {
        Some("the unspecified address")
    } else if ip.is_private() {
        Some("a private address")
    } else if ip.is_link_local() {
        Some("a link-local address")
    } else if a == 100 && (64..128).contains(&b) {
        Some("a CGNAT address")
    } else if ip.is_multicast() || ip.is_broadcast() {
        Some("a multicast or broadcast address")
    } else if a >= 240 {
        Some("a reserved address")
    } else {
        None
    }
}

/// Checks a URL's host when it is an IP literal or a `localhost` name. Other names are checked
/// when they are resolved ([`GuardedResolver`]).
pub fn check_url_host(url: &url::Url, allow_private: bool) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let ip = match url.host() {
        None => return Err("has no host".to_owned()),
        Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if name == "localhost" || name.ends_with(".localhost") {
                return Err(forbidden_message(IpAddr::V6(Ipv6Addr::LOCALHOST)));
            }
            return Ok(());
        }
    };
    match forbidden_reason(ip) {
        Some(_) => Err(forbidden_message(ip)),
        None => Ok(()),
    }
}

fn forbidden_message(ip: IpAddr) -> String {
    format!(
        "points to {} ({ip}); private targets are refused unless the server runs with --allow-private-targets",
        forbidden_reason(ip).unwrap_or("a private address")
    )
}

/// A DNS resolver for the delivery client that drops forbidden addresses, so a host name that
/// resolves to 127.0.0.1 is refused at connect time.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allow_private: bool,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> Arc<Self> {
        Arc::new(Self { allow_private })
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| allow_private || forbidden_reason(addr.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let shown = resolved
                    .first()
                    .map(|a| a.ip().to_string())
                    .unwrap_or_default();
                return Err(format!(
                    "{host} resolves only to forbidden addresses ({shown}); private targets are refused"
                )
                .into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_addresses() {
        let forbidden = [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
            "240.0.0.1",
        ];
        for ip in forbidden {
            assert!(
                forbidden_reason(ip.parse().unwrap()).is_some(),
                "{ip} should be forbidden"
            );
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700::1111",
            "100.128.0.1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(
                forbidden_reason(ip.parse().unwrap()),
                None,
                "{ip} should be allowed"
            );
        }
    }

    #[test]
    fn checks_url_hosts() {
        let check = |u: &str| check_url_host(&url::Url::parse(u).unwrap(), false);
        assert!(check("http://localhost:8080/").is_err());
        assert!(check("http://api.localhost/").is_err());
        assert!(check("http://[::ffff:192.168.0.1]/").is_err());
        assert!(check("http://example.com/").is_ok());
        assert!(check_url_host(&url::Url::parse("http://127.0.0.1/").unwrap(), true).is_ok());
    }

    #[tokio::test]
    async fn resolver_refuses_names_that_resolve_to_loopback() {
        let resolver = GuardedResolver::new(false);
        let err = resolver
            .resolve("localhost".parse::<Name>().unwrap())
            .await
            .err()
            .expect("localhost must be refused");
        assert!(err.to_string().contains("forbidden"), "{err}");
        let allowed = GuardedResolver::new(true)
            .resolve("localhost".parse::<Name>().unwrap())
            .await
            .expect("allowed when private targets are");
        assert!(allowed.count() > 0);
    }
}
