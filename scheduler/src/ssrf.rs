//! The SSRF guard: tenants must not be able to make hookbeat call into its own network. Only
//! global unicast destinations are called: every block of the IANA special-purpose address
//! registries (IPv4 and IPv6) is refused, IPv6 outside 2000::/3 too, and the IPv4 address that
//! IPv4-mapped, IPv4-translated, NAT64, 6to4 and Teredo addresses embed is judged as itself. The
//! guard runs when a schedule is saved and again when connecting, because DNS may answer
//! differently later.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why an address may not be called: the kind of address, and the IPv6 form that carried it when
/// it was embedded ("a 6to4 address embedding a loopback address").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forbidden {
    kind: &'static str,
    embedded_in: Option<&'static str>,
}

impl Forbidden {
    const fn is(kind: &'static str) -> Self {
        Self {
            kind,
            embedded_in: None,
        }
    }
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.embedded_in {
            Some(outer) => write!(f, "{outer} embedding {}", self.kind),
            None => f.write_str(self.kind),
        }
    }
}

const LOOPBACK: &str = "a loopback address";
const PRIVATE: &str = "a private address";
const LINK_LOCAL: &str = "a link-local address";
const DOCUMENTATION: &str = "a documentation address";
const BENCHMARKING: &str = "a benchmarking address";
const AS112: &str = "an AS112 address";
const MULTICAST: &str = "a multicast address";
const PROTOCOL_ASSIGNMENT: &str = "an IETF protocol assignment";
const RESERVED: &str = "a reserved address";

/// The IPv4 special-purpose registry, every entry refused. Stricter than the registry's
/// "globally reachable" column for a few anycast services (192.0.0.9/32, 192.0.0.10/32 inside
/// 192.0.0.0/24, AS112, AMT): no webhook receiver lives there.
const V4_SPECIAL: &[(Ipv4Addr, u8, &str)] = &[
    (Ipv4Addr::new(0, 0, 0, 0), 8, "a \"this network\" address"),
    (Ipv4Addr::new(0, 0, 0, 0), 32, "the unspecified address"),
    (Ipv4Addr::new(10, 0, 0, 0), 8, PRIVATE),
    (Ipv4Addr::new(100, 64, 0, 0), 10, "a CGNAT address"),
    (Ipv4Addr::new(127, 0, 0, 0), 8, LOOPBACK),
    (Ipv4Addr::new(169, 254, 0, 0), 16, LINK_LOCAL),
    (Ipv4Addr::new(172, 16, 0, 0), 12, PRIVATE),
    (Ipv4Addr::new(192, 0, 0, 0), 24, PROTOCOL_ASSIGNMENT),
    (Ipv4Addr::new(192, 0, 2, 0), 24, DOCUMENTATION),
    (Ipv4Addr::new(192, 31, 196, 0), 24, AS112),
    (Ipv4Addr::new(192, 52, 193, 0), 24, "an AMT relay address"),
    (
        Ipv4Addr::new(192, 88, 99, 0),
        24,
        "a 6to4 relay anycast address",
    ),
    (Ipv4Addr::new(192, 168, 0, 0), 16, PRIVATE),
    (Ipv4Addr::new(192, 175, 48, 0), 24, AS112),
    (Ipv4Addr::new(198, 18, 0, 0), 15, BENCHMARKING),
    (Ipv4Addr::new(198, 51, 100, 0), 24, DOCUMENTATION),
    (Ipv4Addr::new(203, 0, 113, 0), 24, DOCUMENTATION),
    (Ipv4Addr::new(224, 0, 0, 0), 4, MULTICAST),
    (Ipv4Addr::new(240, 0, 0, 0), 4, RESERVED),
    (
        Ipv4Addr::new(255, 255, 255, 255),
        32,
        "the broadcast address",
    ),
];

/// What an IPv6 block of [`V6_SPECIAL`] means for a destination inside it.
#[derive(Debug, Clone, Copy)]
enum V6Rule {
    Refuse(&'static str),
    /// The block carries an IPv4 address, which is judged instead.
    Embeds(Embedding),
}

#[derive(Debug, Clone, Copy)]
enum Embedding {
    /// ::ffff:0:0/96, the last 32 bits.
    Mapped,
    /// ::ffff:0:0:0/96 (SIIT), the last 32 bits.
    Translated,
    /// 64:ff9b::/96, the last 32 bits (the well-known prefix is only used as a /96).
    Nat64,
    /// 64:ff9b:1::/48, whose operator picks the prefix length and so where the IPv4 address sits.
    LocalNat64,
    /// 2001::/32: the server's IPv4 address in bits 32..64, the client's inverted in the last 32.
    Teredo,
    /// 2002::/16, bits 16..48.
    SixToFour,
}

/// The IPv6 special-purpose registry; the most specific block containing an address decides.
/// Everything outside 2000::/3 that is not listed is refused as well: IANA has assigned no
/// global unicast space there. Stricter than the registry's "globally reachable" column for the
/// anycast, AMT and ORCHIDv2 assignments inside 2001::/23 and for AS112: no webhook receiver
/// lives there.
const V6_SPECIAL: &[(Ipv6Addr, u8, V6Rule)] = &[
    (v6(0, 0, 0), 128, V6Rule::Refuse("the unspecified address")),
    (v6(0, 0, 1), 128, V6Rule::Refuse(LOOPBACK)),
    (
        v6(0, 0, 0),
        96,
        V6Rule::Refuse("a deprecated IPv4-compatible address"),
    ),
    (
        v6(0, 0, 0xffff_0000_0000),
        96,
        V6Rule::Embeds(Embedding::Mapped),
    ),
    (
        v6(0, 0, 0xffff_0000_0000_0000),
        96,
        V6Rule::Embeds(Embedding::Translated),
    ),
    (v6(0x64, 0xff9b, 0), 96, V6Rule::Embeds(Embedding::Nat64)),
    (
        v6(0x64, 0xff9b, 1 << 80),
        48,
        V6Rule::Embeds(Embedding::LocalNat64),
    ),
    (
        v6(0x100, 0, 0),
        64,
        V6Rule::Refuse("a discard-only address"),
    ),
    (
        v6(0x100, 0, 1 << 64),
        64,
        V6Rule::Refuse("a dummy-prefix address"),
    ),
    (v6(0x2001, 0, 0), 23, V6Rule::Refuse(PROTOCOL_ASSIGNMENT)),
    (v6(0x2001, 0, 0), 32, V6Rule::Embeds(Embedding::Teredo)),
    (v6(0x2001, 0xdb8, 0), 32, V6Rule::Refuse(DOCUMENTATION)),
    (v6(0x2002, 0, 0), 16, V6Rule::Embeds(Embedding::SixToFour)),
    (v6(0x2620, 0x4f, 0x8000 << 80), 48, V6Rule::Refuse(AS112)),
    (v6(0x3fff, 0, 0), 20, V6Rule::Refuse(DOCUMENTATION)),
    (
        v6(0x5f00, 0, 0),
        16,
        V6Rule::Refuse("an SRv6 segment identifier"),
    ),
    (
        v6(0xfc00, 0, 0),
        7,
        V6Rule::Refuse("a unique-local address"),
    ),
    (v6(0xfe80, 0, 0), 10, V6Rule::Refuse(LINK_LOCAL)),
    (v6(0xfec0, 0, 0), 10, V6Rule::Refuse("a site-local address")),
    (v6(0xff00, 0, 0), 8, V6Rule::Refuse(MULTICAST)),
];

/// An IPv6 address from its first two segments and its last 96 bits.
const fn v6(first: u16, second: u16, rest: u128) -> Ipv6Addr {
    Ipv6Addr::from_bits(((first as u128) << 112) | ((second as u128) << 96) | rest)
}

/// Why an address may not be called, or `None` when it is a global unicast address.
pub fn forbidden_reason(ip: IpAddr) -> Option<Forbidden> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<Forbidden> {
    let bits = ip.to_bits();
    V4_SPECIAL
        .iter()
        .filter(|(block, len, _)| prefix_matches(bits.into(), block.to_bits().into(), *len, 32))
        .max_by_key(|(_, len, _)| *len)
        .map(|(_, _, kind)| Forbidden::is(kind))
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<Forbidden> {
    let bits = ip.to_bits();
    let rule = V6_SPECIAL
        .iter()
        .filter(|(block, len, _)| prefix_matches(bits, block.to_bits(), *len, 128))
        .max_by_key(|(_, len, _)| *len)
        .map(|(_, _, rule)| *rule);
    match rule {
        Some(V6Rule::Refuse(kind)) => Some(Forbidden::is(kind)),
        Some(V6Rule::Embeds(embedding)) => embedding.judge(bits),
        // 2000::/3 is the only block IANA hands out as global unicast.
        None if bits >> 125 != 0b001 => Some(Forbidden::is(RESERVED)),
        None => None,
    }
}

/// Whether the first `len` of `width` bits of `ip` and `block` agree.
fn prefix_matches(ip: u128, block: u128, len: u8, width: u32) -> bool {
    let shift = width - u32::from(len);
    shift >= width || ip >> shift == block >> shift
}

impl Embedding {
    fn judge(self, bits: u128) -> Option<Forbidden> {
        let last32 = Ipv4Addr::from_bits(bits as u32);
        let within = |outer: &'static str, v4: Ipv4Addr| {
            forbidden_v4(v4).map(|reason| Forbidden {
                kind: reason.kind,
                embedded_in: Some(outer),
            })
        };
        match self {
            Embedding::Mapped => within("an IPv4-mapped address", last32),
            Embedding::Translated => within("an IPv4-translated address", last32),
            Embedding::Nat64 => within("a NAT64 address", last32),
            Embedding::LocalNat64 => {
                // Only the /96 form (bits 48..96 zero) is judged by its last 32 bits: a gateway
                // using a shorter prefix reads its IPv4 address from those zero bits, an address
                // in 0.0.0.0/8 that no gateway translates. Any other form could be read as more
                // than one IPv4 address, so it is refused.
                if (bits >> 32) as u64 & 0xffff_ffff_ffff != 0 {
                    return Some(Forbidden::is(
                        "a local-use NAT64 address not in the /96 form",
                    ));
                }
                within("a local-use NAT64 address", last32)
            }
            Embedding::Teredo => {
                // Traffic to a Teredo address goes through the server and reaches the client,
                // so both embedded addresses are judged and either one refuses it.
                let server = Ipv4Addr::from_bits((bits >> 64) as u32);
                let client = Ipv4Addr::from_bits(!(bits as u32));
                within("a Teredo address", server).or_else(|| within("a Teredo address", client))
            }
            Embedding::SixToFour => {
                within("a 6to4 address", Ipv4Addr::from_bits((bits >> 80) as u32))
            }
        }
    }
}

const REFUSED: &str =
    "private targets are refused unless the server runs with --allow-private-targets";

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
                return Err(format!("points to {LOOPBACK} ({name}); {REFUSED}"));
            }
            return Ok(());
        }
    };
    match forbidden_reason(ip) {
        // The address is the tenant's own literal, so naming it reveals nothing.
        Some(reason) => Err(format!("points to {reason} ({ip}); {REFUSED}")),
        None => Ok(()),
    }
}

/// A DNS resolver for the delivery client that drops forbidden addresses, so a host name that
/// resolves to 127.0.0.1 is refused at connect time. Its error reaches the tenant (as the
/// attempt's error), so it never names the addresses; the log does.
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
            if resolved.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            let allowed: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| allow_private || forbidden_reason(addr.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let refused: Vec<String> = resolved
                    .iter()
                    .filter_map(|addr| {
                        forbidden_reason(addr.ip())
                            .map(|reason| format!("{} ({reason})", addr.ip()))
                    })
                    .collect();
                tracing::warn!(
                    host = %host,
                    addresses = %refused.join(", "),
                    "refused a delivery: the target name resolves only to forbidden addresses"
                );
                return Err(
                    format!("{host} resolves only to forbidden addresses; {REFUSED}").into(),
                );
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

    /// Every block of the IANA special-purpose registries that is not global unicast, and the
    /// transition forms whose embedded IPv4 address is not.
    #[test]
    fn refuses_everything_but_global_unicast() {
        let forbidden = [
            // The five addresses of issue #15.
            "2002:7f00:1::",
            "64:ff9b:1::7f00:1",
            "fec0::1",
            "192.0.0.192",
            "198.18.0.1",
            // IPv4 registry.
            "0.1.2.3",
            "10.255.255.255",
            "100.127.255.254",
            "127.255.255.255",
            "169.254.0.1",
            "172.31.255.255",
            "192.0.0.9",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.0.1",
            "192.175.48.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "239.255.255.255",
            "240.0.0.1",
            "255.255.255.254",
            "255.255.255.255",
            // IPv6 registry.
            "::",
            "::1",
            "::127.0.0.1",
            "::8.8.8.8",
            "::ffff:127.0.0.1",
            "::ffff:0:7f00:1",
            "::ffff:0:a00:1",
            "64:ff9b::7f00:1",
            "64:ff9b::c0a8:1",
            "64:ff9b:1::a00:1",
            "64:ff9b:1:7f00:0:100::",
            "100::1",
            "100:0:0:1::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "2002:a00:1::",
            "2002:c0a8:101::1",
            "2002:c058:6301::",
            "2620:4f:8000::1",
            "3fff::1",
            "3fff:fff:ffff::1",
            "5f00::1",
            "fc00::1",
            "fdff:ffff::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "feff::1",
            "ff0e::1",
            // Outside 2000::/3, IANA has assigned no unicast space.
            "4000::1",
            "1000::1",
            "e000::1",
            // Teredo: the server (bits 32..64) or the client (last 32 bits, inverted) forbidden.
            "2001:0:7f00:1::fefe:fefe",
            "2001:0:808:808::80ff:fffe",
            "2001:0:808:808::f5ff:fffe",
        ];
        for ip in forbidden {
            assert!(
                forbidden_reason(ip.parse().unwrap()).is_some(),
                "{ip} should be forbidden"
            );
        }
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "192.0.1.1",
            "198.20.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2a00:1450:4001:80b::200e",
            "2001:4860:4860::8888",
            "::ffff:1.1.1.1",
            "::ffff:0:808:808",
            // 6to4, NAT64 (well-known and local-use) and Teredo around public IPv4 addresses.
            "2002:808:808::",
            "2002:808:808:1::1",
            "64:ff9b::808:808",
            "64:ff9b:1::808:808",
            "2001:0:808:808::fefe:fefe",
        ] {
            assert_eq!(
                forbidden_reason(ip.parse().unwrap()),
                None,
                "{ip} should be allowed"
            );
        }
    }

    /// A tenant learns why: the registry's kind of address, and the wrapper it came in.
    #[test]
    fn reasons_name_the_kind_of_address() {
        let reason = |ip: &str| forbidden_reason(ip.parse().unwrap()).unwrap().to_string();
        assert_eq!(reason("127.0.0.1"), "a loopback address");
        assert_eq!(reason("198.18.0.1"), "a benchmarking address");
        assert_eq!(reason("fec0::1"), "a site-local address");
        assert_eq!(
            reason("2002:7f00:1::"),
            "a 6to4 address embedding a loopback address"
        );
        assert_eq!(
            reason("64:ff9b:1::7f00:1"),
            "a local-use NAT64 address embedding a loopback address"
        );
        assert_eq!(
            reason("2001:0:808:808::80ff:fffe"),
            "a Teredo address embedding a loopback address"
        );
        assert_eq!(
            reason("::ffff:10.0.0.1"),
            "an IPv4-mapped address embedding a private address"
        );
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
        let text = err.to_string();
        assert!(
            text.contains("resolves only to forbidden addresses"),
            "{text}"
        );
        for address in ["127.0.0.1", "::1"] {
            assert!(
                !text.contains(address),
                "the tenant is not told what the name resolved to: {text}"
            );
        }
        let allowed = GuardedResolver::new(true)
            .resolve("localhost".parse::<Name>().unwrap())
            .await
            .expect("allowed when private targets are");
        assert!(allowed.count() > 0);
    }
}
