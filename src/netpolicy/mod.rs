//! Network policy: CIDR allowlists, which client address to believe, and the guarded
//! outbound client that keeps tenant-steered calls out of the operator's network.

mod client_ip;
pub mod outbound;

pub use client_ip::client_ip;
pub use outbound::{OutboundClient, OutboundError, OutboundPolicy};

use std::net::IpAddr;

use ipnet::IpNet;

use crate::error::FieldError;

/// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (taken as a single host).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if let Ok(net) = text.parse::<IpNet>() {
        return Ok(net.trunc());
    }
    text.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{text:?} is not an IPv4 or IPv6 CIDR"))
}

/// Parses a list, collecting one error per bad entry (`field[2]`).
pub fn parse_cidrs(items: &[String], field: &str, errors: &mut Vec<FieldError>) -> Vec<IpNet> {
    if items.len() > 1000 {
        errors.push(FieldError::new(field, "at most 1000 entries"));
        return Vec::new();
    }
    let mut nets = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match parse_cidr(item) {
            Ok(net) => nets.push(net),
            Err(message) => errors.push(FieldError::new(format!("{field}[{i}]"), message)),
        }
    }
    nets.sort();
    nets.dedup();
    nets
}

pub fn cidrs_to_json(nets: &[IpNet]) -> serde_json::Value {
    serde_json::Value::Array(
        nets.iter()
            .map(|n| serde_json::Value::String(n.to_string()))
            .collect(),
    )
}

/// Reads a stored list; the column is only ever written by `cidrs_to_json`.
pub fn cidrs_from_json(value: &serde_json::Value) -> Vec<IpNet> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|v| v.as_str())
                .filter_map(|s| parse_cidr(s).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// An empty list allows everyone. IPv4-mapped IPv6 addresses match IPv4 ranges.
pub fn allows(nets: &[IpNet], ip: IpAddr) -> bool {
    if nets.is_empty() {
        return true;
    }
    let ip = canonical(ip);
    nets.iter().any(|net| net.contains(&ip))
}

pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlists_match_v4_v6_and_mapped_addresses() {
        let nets = vec![
            parse_cidr("203.0.113.0/24").unwrap(),
            parse_cidr("2001:db8::/32").unwrap(),
        ];
        assert!(allows(&nets, "203.0.113.9".parse().unwrap()));
        assert!(allows(&nets, "::ffff:203.0.113.9".parse().unwrap()));
        assert!(allows(&nets, "2001:db8::1".parse().unwrap()));
        assert!(!allows(&nets, "198.51.100.1".parse().unwrap()));
        assert!(allows(&[], "198.51.100.1".parse().unwrap()));
    }

    #[test]
    fn bad_entries_are_named_by_position() {
        let mut errors = Vec::new();
        parse_cidrs(
            &["10.0.0.0/8".into(), "nope".into(), "10.0.0.0/33".into()],
            "cidrs",
            &mut errors,
        );
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["cidrs[1]", "cidrs[2]"]);
    }
}
