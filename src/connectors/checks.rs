//! Connectivity checks of a connection, in the order a failure explains the next: DNS, TCP,
//! TLS, authentication (a token exchange where the scheme has one), a read probe through
//! the shared rate limits, and the platform's list of webhook subscriptions. Each check
//! reports its status, how long it took, an error class and a remedy a seller can act on.

use std::time::{Duration, Instant};

use serde::Serialize;
use serde_json::Value;

use super::client::{CallError, ConnectorClient, ErrorClass, Vars};
use crate::netpolicy::outbound::ResolveError;
use crate::netpolicy::{OutboundClient, OutboundError};

const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    Passed,
    /// Works, but not as well as it should (no webhook subscription: changes wait for the
    /// next scheduled run). Does not fail the report.
    Warning,
    Failed,
    /// Not run: an earlier check failed, or the connector has nothing to check here.
    Skipped,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckErrorClass {
    Dns,
    Connect,
    Tls,
    Timeout,
    Auth,
    ForbiddenIp,
    RateLimited,
    ServerError,
    SchemaMismatch,
    /// The outbound guard refused the address: a private, loopback or link-local target.
    Blocked,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// dns, tcp, tls, auth, read or webhooks.
    pub name: &'static str,
    pub status: CheckStatus,
    pub duration_ms: u64,
    pub error_class: Option<CheckErrorClass>,
    pub message: String,
    /// What to do about a failure.
    pub remedy: Option<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckReport {
    pub connector: String,
    pub version: String,
    /// No check failed (warnings do not count).
    pub passed: bool,
    pub checks: Vec<CheckResult>,
}

struct Failure {
    class: CheckErrorClass,
    message: String,
    remedy: String,
    /// A warning: reported with its remedy, the later checks still run.
    warning: bool,
}

fn failure(
    class: CheckErrorClass,
    message: impl Into<String>,
    remedy: impl Into<String>,
) -> Failure {
    Failure {
        class,
        message: message.into(),
        remedy: remedy.into(),
        warning: false,
    }
}

/// A 403 that says the caller's address is not allowed, as platforms with IP whitelists
/// word it (Shopee, TikTok Shop, ERPs behind a firewall).
fn refuses_the_address(message: &str) -> bool {
    let text = message.to_ascii_lowercase();
    text.contains("ip")
        && [
            "whitelist",
            "allowlist",
            "allow list",
            "not allowed",
            "not in",
            "forbidden ip",
        ]
        .iter()
        .any(|w| text.contains(w))
}

/// The outbound guard refused the target: nothing was sent to it.
fn blocked_failure(message: &str) -> Failure {
    failure(
        CheckErrorClass::Blocked,
        message,
        "synchub does not call private, loopback or link-local addresses for tenants: give the platform's public address. An on-premises system needs the operator to open its range (outbound.allowed_private_cidrs).",
    )
}

/// How a platform call's failure reads as a check failure.
fn call_failure(err: &CallError, during: &str) -> Failure {
    use CheckErrorClass as C;
    match err.class {
        ErrorClass::Forbidden if refuses_the_address(&err.message) => failure(
            C::ForbiddenIp,
            &err.message,
            err.remedy.clone().unwrap_or_else(|| "The platform refuses this server's IP address: add synchub's outbound addresses to the app's IP whitelist in the platform's developer console.".into()),
        ),
        ErrorClass::Auth | ErrorClass::Forbidden | ErrorClass::Config if err.remedy.is_some() => failure(
            if err.class == ErrorClass::Config { C::SchemaMismatch } else { C::Auth },
            &err.message,
            err.remedy.clone().unwrap_or_default(),
        ),
        ErrorClass::Auth | ErrorClass::Forbidden => failure(
            C::Auth,
            &err.message,
            format!(
                "The platform refused the credentials during {during}: check they are current (re-authorise the app if a token was revoked) and that the app has the permissions this connector needs."
            ),
        ),
        ErrorClass::RateLimited => failure(
            C::RateLimited,
            &err.message,
            "The account's rate-limit budget is spent: wait, or lower the schedules sharing it.",
        ),
        ErrorClass::Timeout => failure(
            C::Timeout,
            &err.message,
            "The platform did not answer in time: try again; if it persists, check the platform's status page.",
        ),
        ErrorClass::Connect => failure(
            C::Connect,
            &err.message,
            "The connection broke: check the base URL and any firewall between synchub and the platform.",
        ),
        ErrorClass::ServerError => failure(
            C::ServerError,
            &err.message,
            "The platform answered with a server error: check its status page and try again later.",
        ),
        ErrorClass::SchemaMismatch | ErrorClass::ClientError | ErrorClass::NotFound => failure(
            C::SchemaMismatch,
            &err.message,
            "The platform's answer is not what this connector version expects: check the settings (API version, region) or deploy a connector version that matches the platform's API.",
        ),
        ErrorClass::Blocked => blocked_failure(&err.message),
        ErrorClass::Storage => failure(
            C::ServerError,
            &err.message,
            "synchub's own database did not answer: try again; if it persists, tell the operator.",
        ),
        ErrorClass::Config => failure(
            C::SchemaMismatch,
            &err.message,
            "A setting or credential this connector needs is missing or invalid: complete the connection's settings.",
        ),
    }
}

struct Runner {
    checks: Vec<CheckResult>,
    failed: bool,
}

impl Runner {
    /// Runs `check` unless an earlier one failed; None from it means nothing to check.
    async fn run<F, Fut>(&mut self, name: &'static str, check: F)
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Option<String>, Failure>>,
    {
        if self.failed {
            self.skip(name, "an earlier check failed");
            return;
        }
        let started = Instant::now();
        let outcome = check().await;
        let duration_ms = started.elapsed().as_millis() as u64;
        let result = match outcome {
            Ok(Some(message)) => CheckResult {
                name,
                status: CheckStatus::Passed,
                duration_ms,
                error_class: None,
                message,
                remedy: None,
            },
            Ok(None) => CheckResult {
                name,
                status: CheckStatus::Skipped,
                duration_ms,
                error_class: None,
                message: "nothing to check for this connector".into(),
                remedy: None,
            },
            Err(f) => {
                self.failed |= !f.warning;
                CheckResult {
                    name,
                    status: if f.warning {
                        CheckStatus::Warning
                    } else {
                        CheckStatus::Failed
                    },
                    duration_ms,
                    error_class: Some(f.class),
                    message: f.message.chars().take(500).collect(),
                    remedy: Some(f.remedy),
                }
            }
        };
        self.checks.push(result);
    }

    fn skip(&mut self, name: &'static str, why: &str) {
        self.checks.push(CheckResult {
            name,
            status: CheckStatus::Skipped,
            duration_ms: 0,
            error_class: None,
            message: why.into(),
            remedy: None,
        });
    }
}

/// Runs every check against the connection the client speaks for. `webhook_url` is where
/// the platform should send this connection's webhooks. A token the auth check obtains is
/// used by the later checks and left in the client ([`ConnectorClient::renewed`]).
pub async fn run(
    client: &mut ConnectorClient,
    http: &OutboundClient,
    webhook_url: &str,
) -> CheckReport {
    let manifest = client.manifest().clone();
    let mut runner = Runner {
        checks: Vec::new(),
        failed: false,
    };
    let base = client.base_url();
    let target = base.as_ref().ok().and_then(|b| url::Url::parse(b).ok());
    let (host, port, tls) = match &target {
        Some(url) => (
            // Without an IPv6 literal's brackets, which no resolver takes.
            url.host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            url.port_or_known_default().unwrap_or(443),
            url.scheme() == "https",
        ),
        None => (String::new(), 0, false),
    };
    let mut addresses = Vec::new();
    runner
        .run("dns", || async {
            if let Err(err) = &base {
                return Err(call_failure(err, "building the base URL"));
            }
            // The guard resolves and checks; the TCP step connects to what it checked.
            let lookup = tokio::time::timeout(NETWORK_TIMEOUT, http.resolve(&host, port)).await;
            match lookup {
                Err(_) => Err(failure(CheckErrorClass::Timeout, format!("resolving {host} took over 5 s"), "The DNS server did not answer: check the machine's resolver.")),
                Ok(Err(ResolveError::Blocked(blocked))) => Err(blocked_failure(&blocked.0)),
                Ok(Err(err)) => Err(failure(CheckErrorClass::Dns, err.to_string(), format!("{host} does not resolve: check the host in the connection's settings (shop domain, region, base URL)."))),
                Ok(Ok(found)) => {
                    addresses = found;
                    Ok(Some(format!("{host} resolves to {} address(es)", addresses.len())))
                }
            }
        })
        .await;
    runner
        .run("tcp", || async {
            let Some(address) = addresses.first() else {
                return Err(failure(CheckErrorClass::Dns, format!("{host} has no address"), "Check the host in the connection's settings."));
            };
            match tokio::time::timeout(NETWORK_TIMEOUT, tokio::net::TcpStream::connect(address)).await {
                Err(_) => Err(failure(CheckErrorClass::Timeout, format!("connecting to {address} took over 5 s"), "A firewall may drop the traffic: allow outbound connections to the platform.")),
                Ok(Err(err)) => Err(failure(CheckErrorClass::Connect, format!("{address}: {err}"), "Nothing accepts connections there: check the port in the base URL and that the service is up.")),
                Ok(Ok(_)) => Ok(Some(format!("connected to {address}"))),
            }
        })
        .await;
    runner
        .run("tls", || async {
            if !tls {
                return Ok(None);
            }
            let Ok(root) = base.as_deref() else {
                return Ok(None);
            };
            // Any HTTP answer means the handshake and the certificate checked out.
            match http.send(http.get(root).timeout(NETWORK_TIMEOUT)).await {
                Ok(response) => Ok(Some(format!("TLS handshake done; {root} answered {}", response.status()))),
                Err(OutboundError::Blocked(blocked)) => Err(blocked_failure(&blocked.0)),
                Err(err) if err.is_timeout() => Err(failure(CheckErrorClass::Timeout, "the TLS handshake took over 5 s", "Try again; if it persists, check the network path to the platform.")),
                Err(err) => Err(failure(CheckErrorClass::Tls, err.to_string(), "The platform's certificate is not trusted or the handshake failed: check the base URL's host and any TLS-intercepting proxy.")),
            }
        })
        .await;
    runner
        .run("auth", || async {
            match client.exchange_token().await {
                Ok(true) => Ok(Some(
                    "exchanged the app's credentials for a new access token".into(),
                )),
                // Proven by the read probe.
                Ok(false) => Ok(None),
                Err(err) => Err(call_failure(&err, "the token exchange")),
            }
        })
        .await;
    runner
        .run("read", || async {
            let Some(operation) = &manifest.checks.read else {
                return Ok(None);
            };
            // The last hour: platforms that need a time filter (Amazon) get one.
            let since = (chrono::Utc::now() - chrono::Duration::hours(1))
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            match client
                .list_page(operation, &Vars::new().with("cursor", since), None)
                .await
            {
                Ok(page) => Ok(Some(format!(
                    "{operation} answered with {} record(s)",
                    page.records.len()
                ))),
                Err(err) => Err(call_failure(&err, operation)),
            }
        })
        .await;
    runner
        .run("webhooks", || async {
            let Some(spec) = manifest.checks.webhooks.as_ref().filter(|_| !webhook_url.is_empty()) else {
                return Ok(None);
            };
            let subscriptions = client
                .list_all(&spec.operation, &Vars::new())
                .await
                .map_err(|err| call_failure(&err, &spec.operation))?;
            let registered = subscriptions
                .iter()
                .filter(|s| s.pointer(&spec.address).and_then(Value::as_str) == Some(webhook_url))
                .count();
            if registered == 0 {
                return Err(Failure {
                    warning: true,
                    ..failure(
                        CheckErrorClass::SchemaMismatch,
                        format!("none of the {} webhook subscription(s) points at {webhook_url}", subscriptions.len()),
                        format!("Register {webhook_url} as the webhook address for the topics you sync (orders/create, orders/updated), so changes arrive at once instead of at the next schedule."),
                    )
                });
            }
            Ok(Some(format!("{registered} subscription(s) point at {webhook_url}")))
        })
        .await;
    CheckReport {
        connector: manifest.name.clone(),
        version: manifest.version.clone(),
        passed: runner
            .checks
            .iter()
            .all(|c| c.status != CheckStatus::Failed),
        checks: runner.checks,
    }
}

#[cfg(test)]
mod tests {
    use super::refuses_the_address;

    #[test]
    fn ip_whitelist_refusals_are_told_apart_from_bad_credentials() {
        assert!(refuses_the_address(
            "HTTP 403: {\"error\":\"error_ip\",\"message\":\"Your IP is not in the whitelist\"}"
        ));
        assert!(refuses_the_address("IP address 203.0.113.9 is not allowed"));
        assert!(!refuses_the_address("HTTP 403: access token has expired"));
    }
}

/// What a new version reads beside the current one, for the same window (blue-green).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ShadowReport {
    pub operation: String,
    pub current_version: String,
    pub new_version: String,
    pub current_records: usize,
    pub new_records: usize,
    /// Records the current version reads that the new one does not (first 10).
    pub missing_in_new: Vec<String>,
    /// Records both read but map differently (a mapping change shows here).
    pub differing: usize,
    pub identical: usize,
    /// Why the new version could not read or map the window.
    pub error: Option<String>,
    /// The new version reads everything the current one does, without error.
    pub passed: bool,
}

/// Reads the same window (the last day) with both versions and compares the unified
/// records, by platform id.
pub async fn compare_reads(current: &ConnectorClient, new: &ConnectorClient) -> ShadowReport {
    let operation = new
        .manifest()
        .checks
        .read
        .clone()
        .unwrap_or_else(|| "list_orders".into());
    let since = (chrono::Utc::now() - chrono::Duration::days(1))
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let vars = Vars::new().with("cursor", since);
    let mut report = ShadowReport {
        operation: operation.clone(),
        current_version: current.manifest().version.clone(),
        new_version: new.manifest().version.clone(),
        current_records: 0,
        new_records: 0,
        missing_in_new: Vec::new(),
        differing: 0,
        identical: 0,
        error: None,
        passed: false,
    };
    let before = match read_window(current, &operation, &vars).await {
        Ok(records) => records,
        Err(err) => {
            report.error = Some(format!(
                "the current version could not read: {}",
                err.message
            ));
            return report;
        }
    };
    let after = match read_window(new, &operation, &vars).await {
        Ok(records) => records,
        Err(err) => {
            report.current_records = before.len();
            report.error = Some(format!("{}: {}", err.class.as_str(), err.message));
            return report;
        }
    };
    report.current_records = before.len();
    report.new_records = after.len();
    let after: std::collections::HashMap<String, Value> = after.into_iter().collect();
    for (id, record) in &before {
        match after.get(id) {
            None => {
                if report.missing_in_new.len() < 10 {
                    report.missing_in_new.push(id.clone());
                }
            }
            Some(other) if other == record => report.identical += 1,
            Some(_) => report.differing += 1,
        }
    }
    report.passed = report.missing_in_new.is_empty();
    report
}

/// One page of the window, as unified orders by platform id where the connector maps
/// orders, else as the platform's records by position.
async fn read_window(
    client: &ConnectorClient,
    operation: &str,
    vars: &Vars,
) -> Result<Vec<(String, Value)>, CallError> {
    let page = client.list_page(operation, vars, None).await?;
    match &client.manifest().mappings.order {
        Some(mapping) => page
            .records
            .iter()
            .map(|r| {
                let order = super::unified::map_order(r, mapping, client.zone())?;
                Ok((
                    order.platform_id.clone(),
                    serde_json::to_value(order).unwrap_or_default(),
                ))
            })
            .collect(),
        None => Ok(page
            .records
            .into_iter()
            .enumerate()
            .map(|(i, r)| (i.to_string(), r))
            .collect()),
    }
}
