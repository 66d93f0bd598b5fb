//! The client's address: the TCP peer, unless the peer is a trusted proxy, in which case the
//! nearest address in `X-Forwarded-For` that is not itself a trusted proxy.

use std::net::IpAddr;

use ipnet::IpNet;

use super::canonical;

pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let peer = canonical(peer);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else {
        return peer;
    };
    let mut hops = Vec::new();
    for part in header.split(',') {
        match part.trim().parse::<IpAddr>() {
            Ok(ip) => hops.push(canonical(ip)),
            // A malformed chain cannot be trusted at all.
            Err(_) => return peer,
        }
    }
    // Walk from the proxy nearest to us outwards; the first untrusted hop is the client.
    let mut client = peer;
    for ip in hops.into_iter().rev() {
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(items: &[&str]) -> Vec<IpNet> {
        items.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn an_untrusted_peer_cannot_spoof_its_address() {
        let ip = client_ip(
            "198.51.100.7".parse().unwrap(),
            Some("203.0.113.1"),
            &nets(&["10.0.0.0/8"]),
        );
        assert_eq!(ip.to_string(), "198.51.100.7");
    }

    #[test]
    fn a_trusted_proxy_chain_yields_the_first_untrusted_hop() {
        let trusted = nets(&["10.0.0.0/8"]);
        let ip = client_ip(
            "10.0.0.2".parse().unwrap(),
            Some("1.2.3.4, 203.0.113.1, 10.0.0.9"),
            &trusted,
        );
        assert_eq!(
            ip.to_string(),
            "203.0.113.1",
            "the left-most entry is client-controlled"
        );
        let ip = client_ip(
            "10.0.0.2".parse().unwrap(),
            Some("garbage, 10.0.0.9"),
            &trusted,
        );
        assert_eq!(ip.to_string(), "10.0.0.2");
        let ip = client_ip("10.0.0.2".parse().unwrap(), None, &trusted);
        assert_eq!(ip.to_string(), "10.0.0.2");
    }
}
