//! Outbound URLs that users set (connector base URLs, alert webhooks) must not reach into the
//! operator's network unless the operator allows it. Literal addresses and local names are
//! refused here; the HTTP client re-checks resolved addresses at connect time.

use std::net::IpAddr;

pub fn guard_outbound_url(raw: &str, allow_private: bool) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(raw).map_err(|e| format!("not a valid URL: {e}"))?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err("must be an http or https URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; put them in the connection's credentials".into());
    }
    let host = url
        .host_str()
        .ok_or("must name a host")?
        .to_ascii_lowercase();
    if allow_private {
        return Ok(url);
    }
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".internal")
        || host.ends_with(".local")
    {
        return Err(format!(
            "{host} is a local name; set SYNCHUB_ALLOW_PRIVATE_TARGETS=true to allow it"
        ));
    }
    if let Ok(ip) = host.parse::<IpAddr>()
        && is_private(super::canonical(ip))
    {
        return Err(format!(
            "{ip} is a private, loopback or link-local address; set SYNCHUB_ALLOW_PRIVATE_TARGETS=true to allow it"
        ));
    }
    Ok(url)
}

pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // carrier-grade NAT
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // benchmarking
        }
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg[0] & 0xfe00) == 0xfc00 // unique local
                || (seg[0] & 0xffc0) == 0xfe80 // link local
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_local_targets_are_refused_unless_allowed() {
        for url in [
            "http://127.0.0.1:8080/x",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://localhost:9000",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(guard_outbound_url(url, false).is_err(), "{url}");
            assert!(guard_outbound_url(url, true).is_ok(), "{url}");
        }
        assert!(guard_outbound_url("https://acme.myshopify.com", false).is_ok());
        assert!(guard_outbound_url("ftp://example.com", true).is_err());
        assert!(guard_outbound_url("https://user:pw@example.com", true).is_err());
    }
}
