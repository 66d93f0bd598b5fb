//! The one way out for calls a tenant can steer (connector base URLs and host settings,
//! published manifests, token endpoints, alert webhooks, connectivity checks): URLs are
//! checked when saved and again on every request, names are resolved once by the guard and
//! every address is checked, the connection goes to the checked address, and each redirect
//! hop is checked like the first request. A saved URL is never trusted for having passed.

mod client;
mod ranges;
mod url;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

pub use client::{OutboundClient, OutboundError, read_limited};
pub use ranges::is_forbidden;
pub use url::is_host_name;

/// Why a target was refused: shown to the caller as it is, so it names the address (the
/// caller gave the name) but never anything the target said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Blocked(pub String);

/// Why a name gave no usable address.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Blocked(#[from] Blocked),
    #[error("{host} does not resolve: {source}")]
    NotFound {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

/// Which outbound targets tenants may reach. Built once from the settings and shared by
/// every outbound client of the process.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    /// `SYNCHUB_ALLOW_PRIVATE_TARGETS`: every address is allowed (tests, the simulator).
    allow_private: bool,
    /// Private ranges the operator opened without opening everything (an on-premises ERP).
    opened: Arc<[IpNet]>,
    /// Fixed answers for names, like /etc/hosts for outbound calls only. The addresses are
    /// checked like any resolver's answer.
    hosts: Arc<HashMap<String, Vec<IpAddr>>>,
}

const HOW_TO_OPEN: &str = "the operator may open private targets with SYNCHUB_ALLOW_PRIVATE_TARGETS=true or outbound.allowed_private_cidrs";

impl OutboundPolicy {
    pub fn new(allow_private: bool, opened: Vec<IpNet>, hosts: Vec<(String, IpAddr)>) -> Self {
        let mut table: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for (name, ip) in hosts {
            table.entry(normalize_host(&name)).or_default().push(ip);
        }
        Self {
            allow_private,
            opened: opened.into(),
            hosts: Arc::new(table),
        }
    }

    /// Every target allowed, as `SYNCHUB_ALLOW_PRIVATE_TARGETS=true` gives: for the
    /// simulator, benchmarks and tests that talk to local servers.
    pub fn allowing_private() -> Self {
        Self::new(true, Vec::new(), Vec::new())
    }

    pub fn allows_private(&self) -> bool {
        self.allow_private
    }

    /// Whether a call may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.allow_private || !is_forbidden(ip) || ranges::within(&self.opened, ip)
    }

    /// Parses a URL a tenant gives (a base URL, an alert webhook) and checks it as a request
    /// to it would be checked; the message is meant for the field's 400.
    pub fn parse_url(&self, raw: &str) -> Result<reqwest::Url, String> {
        let url = reqwest::Url::parse(raw.trim()).map_err(|e| format!("not a valid URL: {e}"))?;
        self.check_url(&url).map_err(|b| b.0)?;
        Ok(url)
    }

    /// The checks a URL must pass before any request to it: http(s), no credentials in it,
    /// no local name, and an address literal must be permitted. Names are checked again when
    /// resolved.
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), Blocked> {
        url::check_syntax(url)?;
        match url.host() {
            Some(::url::Host::Ipv4(ip)) => self.check_address(&ip.to_string(), IpAddr::V4(ip)),
            Some(::url::Host::Ipv6(ip)) => self.check_address(&ip.to_string(), IpAddr::V6(ip)),
            Some(::url::Host::Domain(name)) => self.check_name(name),
            None => Err(Blocked("the URL must name a host".into())),
        }
    }

    fn check_address(&self, host: &str, ip: IpAddr) -> Result<(), Blocked> {
        if self.permits(ip) {
            return Ok(());
        }
        let via = if host == ip.to_string() {
            String::new()
        } else {
            format!("{host} resolves to ")
        };
        Err(Blocked(format!(
            "{via}{ip} is a private, loopback, link-local or reserved address, which outbound calls may not reach ({HOW_TO_OPEN})"
        )))
    }

    fn check_name(&self, name: &str) -> Result<(), Blocked> {
        if self.allow_private || self.hosts.contains_key(&normalize_host(name)) {
            return Ok(());
        }
        url::check_public_name(name).map_err(|why| Blocked(format!("{why} ({HOW_TO_OPEN})")))
    }

    /// Resolves `host` once and checks every address it gives: a name that answers with
    /// any forbidden address is refused whole (a rebinding name mixes both). The caller
    /// connects to these addresses and to no others.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, ResolveError> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_address(bare, ip)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        self.check_name(bare)?;
        let key = normalize_host(bare);
        let addresses: Vec<SocketAddr> = match self.hosts.get(&key) {
            Some(ips) => ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect(),
            None => tokio::net::lookup_host((key.as_str(), port))
                .await
                .map_err(|source| ResolveError::NotFound {
                    host: bare.to_string(),
                    source,
                })?
                .collect(),
        };
        for address in &addresses {
            self.check_address(bare, address.ip())?;
        }
        if addresses.is_empty() {
            return Err(ResolveError::NotFound {
                host: bare.to_string(),
                source: std::io::Error::other("no address"),
            });
        }
        Ok(addresses)
    }
}

/// Lower case without the trailing dot of a fully qualified name (`localhost.` is
/// `localhost`).
fn normalize_host(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// `name=address` pairs, for `outbound.hosts`.
pub fn parse_host_entry(entry: &str) -> Result<(String, IpAddr), String> {
    let (name, address) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?}: expected name=address"))?;
    let ip = address
        .trim()
        .parse::<IpAddr>()
        .map_err(|_| format!("{entry:?}: {address:?} is not an IP address"))?;
    let name = name.trim();
    if !is_host_name(name) {
        return Err(format!("{entry:?}: {name:?} is not a host name"));
    }
    Ok((name.to_string(), ip))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strict() -> OutboundPolicy {
        OutboundPolicy::new(false, Vec::new(), Vec::new())
    }

    #[test]
    fn literal_private_targets_and_local_names_are_refused_unless_allowed() {
        let open = OutboundPolicy::new(true, Vec::new(), Vec::new());
        for url in [
            "http://127.0.0.1:8080/x",
            "http://10.1.2.3/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:a9fe:a9fe]/",
            "http://[64:ff9b::7f00:1]/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://localhost:9000",
            "http://localhost.:9000",
            "http://LOCALHOST./",
            "http://api.localhost/",
            "http://metadata.google.internal/",
            "http://printer.local/",
            "http://intranet/",
        ] {
            assert!(strict().parse_url(url).is_err(), "{url}");
            assert!(open.parse_url(url).is_ok(), "{url}");
        }
        assert!(strict().parse_url("https://acme.myshopify.com").is_ok());
        assert!(open.parse_url("ftp://example.com").is_err());
        assert!(open.parse_url("https://user:pw@example.com").is_err());
    }

    #[test]
    fn opened_ranges_let_one_private_network_through() {
        let policy = OutboundPolicy::new(false, vec!["10.0.5.0/24".parse().unwrap()], Vec::new());
        assert!(policy.parse_url("http://10.0.5.7:8080/api").is_ok());
        assert!(policy.parse_url("http://10.0.6.7:8080/api").is_err());
        assert!(policy.parse_url("http://127.0.0.1/").is_err());
    }

    #[tokio::test]
    async fn resolved_addresses_are_checked_and_fixed_answers_are_not_trusted() {
        let policy = OutboundPolicy::new(
            false,
            Vec::new(),
            vec![
                ("erp.example.test".into(), "127.0.0.1".parse().unwrap()),
                ("mixed.example.test".into(), "8.8.8.8".parse().unwrap()),
                ("mixed.example.test".into(), "10.0.0.1".parse().unwrap()),
                ("public.example.test".into(), "8.8.8.8".parse().unwrap()),
            ],
        );
        for host in [
            "erp.example.test",
            "ERP.example.test.",
            "mixed.example.test",
            "[::1]",
            "localhost.",
        ] {
            assert!(
                matches!(
                    policy.resolve(host, 80).await,
                    Err(ResolveError::Blocked(_))
                ),
                "{host}"
            );
        }
        let found = policy.resolve("public.example.test", 443).await.unwrap();
        assert_eq!(found, vec!["8.8.8.8:443".parse().unwrap()]);
    }

    #[test]
    fn host_entries_parse() {
        assert!(parse_host_entry("erp.example.test=127.0.0.1").is_ok());
        assert!(parse_host_entry("erp.example.test=::1").is_ok());
        assert!(parse_host_entry("erp.example.test").is_err());
        assert!(parse_host_entry("a/b=127.0.0.1").is_err());
    }
}
