//! The address ranges no tenant-steered call may reach unless the operator opens them: every
//! range that is not globally routable unicast. IPv6 addresses that stand for an IPv4 one
//! (mapped, compatible, NAT64) are judged by the address they embed; the tunnelling ranges
//! 6to4 and Teredo are refused whole, since any relay can carry them inward.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use ipnet::IpNet;

/// IANA's special-purpose registries (RFC 6890 and its updates), the ranges that are not
/// "globally reachable", plus multicast and the reserved class E.
/// https://www.iana.org/assignments/iana-ipv4-special-registry/
/// https://www.iana.org/assignments/iana-ipv6-special-registry/
const FORBIDDEN: &[&str] = &[
    "0.0.0.0/8",       // "this network"
    "10.0.0.0/8",      // private
    "100.64.0.0/10",   // carrier-grade NAT
    "127.0.0.0/8",     // loopback
    "169.254.0.0/16",  // link-local (cloud metadata at 169.254.169.254)
    "172.16.0.0/12",   // private
    "192.0.0.0/24",    // IETF protocol assignments
    "192.0.2.0/24",    // documentation
    "192.88.99.0/24",  // 6to4 relay anycast
    "192.168.0.0/16",  // private
    "198.18.0.0/15",   // benchmarking
    "198.51.100.0/24", // documentation
    "203.0.113.0/24",  // documentation
    "224.0.0.0/4",     // multicast
    "240.0.0.0/4",     // reserved, and the broadcast address
    "::/128",          // unspecified
    "::1/128",         // loopback
    "100::/64",        // discard-only
    "2001::/23",       // IETF protocol assignments, Teredo (2001::/32) among them
    "2001:db8::/32",   // documentation
    "2002::/16",       // 6to4
    "3fff::/20",       // documentation
    "5f00::/16",       // segment routing
    "fc00::/7",        // unique local
    "fe80::/10",       // link-local
    "fec0::/10",       // site-local (deprecated, still routed by some stacks)
    "ff00::/8",        // multicast
];

static FORBIDDEN_NETS: LazyLock<Vec<IpNet>> = LazyLock::new(|| {
    FORBIDDEN
        .iter()
        .filter_map(|text| text.parse::<IpNet>().ok())
        .collect()
});

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (::ffff:0:0/96),
/// IPv4-compatible (::/96, deprecated) and NAT64 (64:ff9b::/96; the local-use
/// 64:ff9b:1::/48 is the operator's own translator, so private whatever it embeds).
/// A connection to any of these reaches the embedded address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last32 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    // IPv4-compatible: 96 zero bits, but not :: and ::1 (judged as IPv6 themselves).
    if s[..6] == [0; 6] && (s[6] != 0 || s[7] > 1) {
        return Some(last32);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(last32);
    }
    if s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1 {
        // Local-use NAT64: the operator's own translator; the prefix itself is private.
        return Some(Ipv4Addr::new(10, 0, 0, 0));
    }
    None
}

/// Whether an address is off limits to tenant-steered calls by default.
pub fn is_forbidden(ip: IpAddr) -> bool {
    if let IpAddr::V6(v6) = ip
        && let Some(v4) = embedded_v4(v6)
    {
        return is_forbidden(IpAddr::V4(v4));
    }
    FORBIDDEN_NETS.iter().any(|net| net.contains(&ip))
}

/// Whether `ip` lies in one of `nets`, judging embedded IPv4 addresses by what they embed.
pub fn within(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => embedded_v4(v6).map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    };
    nets.iter().any(|net| net.contains(&ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_range_is_forbidden_and_public_addresses_are_not() {
        for text in [
            "0.0.0.0",
            "10.1.2.3",
            "100.64.0.1",
            "127.0.0.1",
            "127.255.255.254",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.168.1.1",
            "198.18.0.1",
            "198.19.255.255",
            "224.0.0.251",
            "239.255.255.250",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            // IPv4-mapped and IPv4-compatible loopback and metadata.
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "::a9fe:a9fe",
            // NAT64 of a private address, and the local-use NAT64 prefix.
            "64:ff9b::7f00:1",
            "64:ff9b::a00:1",
            "64:ff9b:1::1",
            // 6to4 and Teredo, whatever they carry.
            "2002:7f00:1::1",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
            "2001:db8::1",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert!(is_forbidden(ip), "{text} must be forbidden");
        }
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "23.227.38.65", // a Shopify edge address
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            assert!(!is_forbidden(ip), "{text} is public");
        }
    }

    #[test]
    fn opened_ranges_match_embedded_addresses_too() {
        let nets = vec!["10.0.5.0/24".parse().unwrap()];
        assert!(within(&nets, "10.0.5.7".parse().unwrap()));
        assert!(within(&nets, "::ffff:10.0.5.7".parse().unwrap()));
        assert!(!within(&nets, "10.0.6.7".parse().unwrap()));
    }
}
