//! What an outbound URL and a host name may look like, before any address is known.

use super::Blocked;

/// http(s) and no credentials in the URL (they belong in the vault).
pub fn check_syntax(url: &reqwest::Url) -> Result<(), Blocked> {
    if !matches!(url.scheme(), "https" | "http") {
        return Err(Blocked("must be an http or https URL".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Blocked(
            "must not carry credentials; put them in the connection's credentials".into(),
        ));
    }
    Ok(())
}

/// Names that only mean something inside the operator's network: `localhost` (with or
/// without its trailing dot) and its subdomains, the mDNS and cloud-internal suffixes, and
/// single-label names, which the resolver completes with the machine's search domains.
pub fn check_public_name(name: &str) -> Result<(), String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let local = name == "localhost"
        || [".localhost", ".local", ".internal", ".localdomain", ".arpa"]
            .iter()
            .any(|suffix| name.ends_with(suffix));
    if local {
        return Err(format!(
            "{name} is a local name, which outbound calls may not reach"
        ));
    }
    if !name.contains('.') {
        return Err(format!(
            "{name} is a single-label name, which the resolver completes with the local search domains"
        ));
    }
    Ok(())
}

/// A DNS host name and nothing else: letters, digits and hyphens in dot-separated labels of
/// 1 to 63 characters, at most 253 in all, not an address literal, no port, path or query.
/// Settings that are filled into a URL's host (a Shopify shop domain) must be one.
pub fn is_host_name(text: &str) -> bool {
    let name = text.strip_suffix('.').unwrap_or(text);
    if name.is_empty() || name.len() > 253 || name.parse::<std::net::IpAddr>().is_ok() {
        return false;
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    // The last label of a real name is not all digits (that would be an IPv4 form).
    let last_is_numeric = name
        .rsplit('.')
        .next()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()));
    labels_ok && !last_is_numeric
}

#[cfg(test)]
mod tests {
    use super::is_host_name;

    #[test]
    fn a_host_name_is_nothing_but_a_host_name() {
        for good in [
            "acme-us.myshopify.com",
            "a.b",
            "xn--bcher-kva.example",
            "shop1.myshopify.com.",
        ] {
            assert!(is_host_name(good), "{good}");
        }
        for bad in [
            "169.254.169.254:80/x?.myshopify.com",
            "169.254.169.254",
            "evil.com/.myshopify.com",
            "evil.com#.myshopify.com",
            "evil.com?.myshopify.com",
            "user@evil.com",
            "acme.myshopify.com:8080",
            "[::1]",
            "-acme.myshopify.com",
            "acme..myshopify.com",
            "acme.myshopify.com\u{0}",
            "0x7f.1",
            "",
        ] {
            assert!(!is_host_name(bad), "{bad:?}");
        }
    }
}
