//! Classification of IP addresses as public or non-public.
//!
//! Webhook deliveries must only ever reach hosts on the public Internet. This
//! module decides, from explicit prefix tables, whether an address lies in a
//! range that is loopback, private, link-local, reserved, documentation,
//! multicast or otherwise not globally reachable. It is used when an endpoint
//! URL is registered ([`crate::target_guard::url`]) and again at delivery time on every
//! address the endpoint's host name resolves to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Returns `true` only if `ip` is a publicly routable address that webhook
/// deliveries may be sent to.
///
/// IPv4-mapped (`::ffff:0:0/96`) and NAT64 (`64:ff9b::/96`) IPv6 addresses
/// are judged by the IPv4 address they embed.
pub fn is_public_ip(ip: IpAddr) -> bool {
    non_public_reason(ip).is_none()
}

/// Names the non-public range `ip` belongs to, or `None` if it is public.
///
/// The name is short and meant to be shown to API users, e.g. `"loopback"`,
/// `"private"` or `"IPv4-mapped link-local"`.
pub fn non_public_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_range(v4).map(|range| range.name),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

/// A non-public IPv4 prefix, with the names reported for it when met directly
/// and when embedded in an IPv6 address.
struct V4Range {
    network: Ipv4Addr,
    len: u8,
    name: &'static str,
    mapped_name: &'static str,
    nat64_name: &'static str,
}

macro_rules! v4_range {
    ([$a:literal, $b:literal, $c:literal, $d:literal], $len:literal, $name:literal) => {
        V4Range {
            network: Ipv4Addr::new($a, $b, $c, $d),
            len: $len,
            name: $name,
            mapped_name: concat!("IPv4-mapped ", $name),
            nat64_name: concat!("NAT64-translated ", $name),
        }
    };
}

/// Non-public IPv4 ranges. The first matching entry wins, so more specific
/// prefixes come before the prefixes that contain them.
const V4_RANGES: &[V4Range] = &[
    v4_range!([0, 0, 0, 0], 8, "unspecified"),
    v4_range!([10, 0, 0, 0], 8, "private"),
    v4_range!([100, 64, 0, 0], 10, "CGNAT"),
    v4_range!([127, 0, 0, 0], 8, "loopback"),
    v4_range!([169, 254, 0, 0], 16, "link-local"),
    v4_range!([172, 16, 0, 0], 12, "private"),
    v4_range!([192, 0, 0, 0], 24, "IETF protocol assignments"),
    v4_range!([192, 0, 2, 0], 24, "documentation"),
    v4_range!([192, 88, 99, 0], 24, "6to4 relay anycast"),
    v4_range!([192, 168, 0, 0], 16, "private"),
    v4_range!([198, 18, 0, 0], 15, "benchmarking"),
    v4_range!([198, 51, 100, 0], 24, "documentation"),
    v4_range!([203, 0, 113, 0], 24, "documentation"),
    v4_range!([224, 0, 0, 0], 4, "multicast"),
    v4_range!([255, 255, 255, 255], 32, "broadcast"),
    v4_range!([240, 0, 0, 0], 4, "reserved"),
];

/// What a matching IPv6 prefix means.
#[derive(Clone, Copy)]
enum V6Rule {
    /// The whole prefix is non-public.
    NonPublic(&'static str),
    /// `::ffff:0:0/96`: judge the embedded IPv4 address.
    Ipv4Mapped,
    /// `64:ff9b::/96`: judge the embedded IPv4 address.
    Nat64,
}

/// An IPv6 prefix and the rule applied to addresses inside it.
struct V6Range {
    network: Ipv6Addr,
    len: u8,
    rule: V6Rule,
}

const fn v6_range(segments: [u16; 8], len: u8, rule: V6Rule) -> V6Range {
    let [a, b, c, d, e, f, g, h] = segments;
    V6Range {
        network: Ipv6Addr::new(a, b, c, d, e, f, g, h),
        len,
        rule,
    }
}

/// Special IPv6 ranges. The first matching entry wins, so more specific
/// prefixes come before the prefixes that contain them.
#[rustfmt::skip]
const V6_RANGES: &[V6Range] = &[
    v6_range([0, 0, 0, 0, 0, 0, 0, 0], 128, V6Rule::NonPublic("unspecified")),
    v6_range([0, 0, 0, 0, 0, 0, 0, 1], 128, V6Rule::NonPublic("loopback")),
    v6_range([0, 0, 0, 0, 0, 0xffff, 0, 0], 96, V6Rule::Ipv4Mapped),
    v6_range([0, 0, 0, 0, 0, 0, 0, 0], 96, V6Rule::NonPublic("IPv4-compatible")),
    v6_range([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, V6Rule::Nat64),
    v6_range([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, V6Rule::NonPublic("local-use NAT64")),
    v6_range([0x100, 0, 0, 0, 0, 0, 0, 0], 64, V6Rule::NonPublic("discard-only")),
    v6_range([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, V6Rule::NonPublic("Teredo")),
    v6_range([0x2001, 0, 0, 0, 0, 0, 0, 0], 23, V6Rule::NonPublic("IETF protocol assignments")),
    v6_range([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, V6Rule::NonPublic("documentation")),
    v6_range([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, V6Rule::NonPublic("6to4")),
    v6_range([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, V6Rule::NonPublic("documentation")),
    v6_range([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, V6Rule::NonPublic("private")),
    v6_range([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, V6Rule::NonPublic("link-local")),
    v6_range([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, V6Rule::NonPublic("site-local")),
    v6_range([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, V6Rule::NonPublic("multicast")),
];

fn v4_range(ip: Ipv4Addr) -> Option<&'static V4Range> {
    V4_RANGES
        .iter()
        .find(|range| in_v4_prefix(ip, range.network, range.len))
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    let range = V6_RANGES
        .iter()
        .find(|range| in_v6_prefix(ip, range.network, range.len))?;
    match range.rule {
        V6Rule::NonPublic(name) => Some(name),
        V6Rule::Ipv4Mapped => v4_range(embedded_v4(ip)).map(|range| range.mapped_name),
        V6Rule::Nat64 => v4_range(embedded_v4(ip)).map(|range| range.nat64_name),
    }
}

/// The IPv4 address held in the last 32 bits of an IPv6 address.
fn embedded_v4(ip: Ipv6Addr) -> Ipv4Addr {
    let [.., a, b, c, d] = ip.octets();
    Ipv4Addr::new(a, b, c, d)
}

fn in_v4_prefix(ip: Ipv4Addr, network: Ipv4Addr, len: u8) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
    ip.to_bits() & mask == network.to_bits()
}

fn in_v6_prefix(ip: Ipv6Addr, network: Ipv6Addr, len: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
    ip.to_bits() & mask == network.to_bits()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse()
            .unwrap_or_else(|e| panic!("bad test address {s}: {e}"))
    }

    fn assert_non_public(cases: &[(&str, &str)]) {
        for &(addr, range) in cases {
            assert_eq!(non_public_reason(ip(addr)), Some(range), "{addr}");
            assert!(!is_public_ip(ip(addr)), "{addr} should not be public");
        }
    }

    fn assert_public(cases: &[&str]) {
        for &addr in cases {
            assert_eq!(non_public_reason(ip(addr)), None, "{addr}");
            assert!(is_public_ip(ip(addr)), "{addr} should be public");
        }
    }

    #[test]
    fn v4_non_public_ranges_first_and_last_address() {
        assert_non_public(&[
            ("0.0.0.0", "unspecified"),
            ("0.255.255.255", "unspecified"),
            ("10.0.0.0", "private"),
            ("10.255.255.255", "private"),
            ("100.64.0.0", "CGNAT"),
            ("100.127.255.255", "CGNAT"),
            ("127.0.0.0", "loopback"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.255", "loopback"),
            ("169.254.0.0", "link-local"),
            ("169.254.169.254", "link-local"),
            ("169.254.255.255", "link-local"),
            ("172.16.0.0", "private"),
            ("172.31.255.255", "private"),
            ("192.0.0.0", "IETF protocol assignments"),
            ("192.0.0.255", "IETF protocol assignments"),
            ("192.0.2.0", "documentation"),
            ("192.0.2.255", "documentation"),
            ("192.88.99.0", "6to4 relay anycast"),
            ("192.88.99.255", "6to4 relay anycast"),
            ("192.168.0.0", "private"),
            ("192.168.255.255", "private"),
            ("198.18.0.0", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.0", "documentation"),
            ("198.51.100.255", "documentation"),
            ("203.0.113.0", "documentation"),
            ("203.0.113.255", "documentation"),
            ("224.0.0.0", "multicast"),
            ("239.255.255.255", "multicast"),
            ("240.0.0.0", "reserved"),
            ("255.255.255.254", "reserved"),
            ("255.255.255.255", "broadcast"),
        ]);
    }

    #[test]
    fn v4_addresses_just_outside_each_range_are_public() {
        assert_public(&[
            "1.0.0.0",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "191.255.255.255",
            "192.0.1.0",
            "192.0.3.0",
            "192.88.98.255",
            "192.88.100.0",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.255",
            "198.51.101.0",
            "203.0.112.255",
            "203.0.114.0",
            "223.255.255.255",
        ]);
    }

    #[test]
    fn v4_well_known_public_addresses() {
        assert_public(&["1.1.1.1", "8.8.8.8", "93.184.216.34", "140.82.112.3"]);
    }

    #[test]
    fn v6_non_public_ranges_first_and_last_address() {
        assert_non_public(&[
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("::2", "IPv4-compatible"),
            ("::127.0.0.1", "IPv4-compatible"),
            ("::8.8.8.8", "IPv4-compatible"),
            ("::ffff:ffff", "IPv4-compatible"),
            ("64:ff9b:1::", "local-use NAT64"),
            ("64:ff9b:1:ffff:ffff:ffff:ffff:ffff", "local-use NAT64"),
            ("100::", "discard-only"),
            ("100::ffff:ffff:ffff:ffff", "discard-only"),
            ("2001::", "Teredo"),
            ("2001:0:ffff:ffff:ffff:ffff:ffff:ffff", "Teredo"),
            ("2001:1::", "IETF protocol assignments"),
            (
                "2001:1ff:ffff:ffff:ffff:ffff:ffff:ffff",
                "IETF protocol assignments",
            ),
            ("2001:db8::", "documentation"),
            ("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"),
            ("2002::", "6to4"),
            ("2002:7f00:1::1", "6to4"),
            ("2002:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "6to4"),
            ("3fff::", "documentation"),
            ("3fff:fff:ffff:ffff:ffff:ffff:ffff:ffff", "documentation"),
            ("fc00::", "private"),
            ("fd00::1", "private"),
            ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "private"),
            ("fe80::", "link-local"),
            ("fe80::1", "link-local"),
            ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "link-local"),
            ("fec0::", "site-local"),
            ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "site-local"),
            ("ff00::", "multicast"),
            ("ff02::1", "multicast"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "multicast"),
        ]);
    }

    #[test]
    fn v6_addresses_just_outside_each_range_are_public() {
        assert_public(&[
            "::1:0:0",
            "64:ff9b::1:0:0",
            "64:ff9b:0:ffff::",
            "64:ff9b:2::",
            "100:0:0:1::",
            "2001:200::",
            "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff",
            "2001:db9::",
            "2001:1fff:ffff:ffff:ffff:ffff:ffff:ffff",
            "2003::",
            "3ffe:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "3fff:1000::",
            "fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ]);
    }

    #[test]
    fn v6_well_known_public_addresses() {
        assert_public(&[
            "2001:4860:4860::8888",
            "2606:4700:4700::1111",
            "2a00:1450:4001:82b::200e",
        ]);
    }

    #[test]
    fn v4_mapped_v6_is_judged_by_embedded_v4() {
        assert_non_public(&[
            ("::ffff:0.0.0.0", "IPv4-mapped unspecified"),
            ("::ffff:127.0.0.1", "IPv4-mapped loopback"),
            ("::ffff:7f00:1", "IPv4-mapped loopback"),
            ("::ffff:10.1.2.3", "IPv4-mapped private"),
            ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
            ("::ffff:100.64.0.1", "IPv4-mapped CGNAT"),
            ("::ffff:255.255.255.255", "IPv4-mapped broadcast"),
        ]);
        assert_public(&["::ffff:93.184.216.34", "::ffff:8.8.8.8"]);
    }

    #[test]
    fn nat64_is_judged_by_embedded_v4() {
        assert_non_public(&[
            ("64:ff9b::10.0.0.1", "NAT64-translated private"),
            ("64:ff9b::127.0.0.1", "NAT64-translated loopback"),
            ("64:ff9b::169.254.169.254", "NAT64-translated link-local"),
            ("64:ff9b::192.168.1.1", "NAT64-translated private"),
        ]);
        assert_public(&["64:ff9b::93.184.216.34", "64:ff9b::8.8.8.8"]);
    }

    #[test]
    fn table_networks_have_no_host_bits_set() {
        for range in V4_RANGES {
            assert!(range.len <= 32, "{}/{}", range.network, range.len);
            let host_mask = u32::MAX.checked_shr(u32::from(range.len)).unwrap_or(0);
            assert_eq!(
                range.network.to_bits() & host_mask,
                0,
                "{}/{} has host bits set",
                range.network,
                range.len
            );
        }
        for range in V6_RANGES {
            assert!(range.len <= 128, "{}/{}", range.network, range.len);
            let host_mask = u128::MAX.checked_shr(u32::from(range.len)).unwrap_or(0);
            assert_eq!(
                range.network.to_bits() & host_mask,
                0,
                "{}/{} has host bits set",
                range.network,
                range.len
            );
        }
    }
}
