//! Layered settings: built-in `config/default.toml` < `config/$SYNCHUB_ENV.toml` < environment.
//! Validated once at start-up, so a misconfiguration fails with the name of the key.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use ipnet::IpNet;
use serde::Deserialize;

use crate::secret::SecretString;

const DEFAULTS: &str = include_str!("../config/default.toml");

/// SYNCHUB_ variables that are not settings: every other one must name a setting, so a typo
/// stops start-up instead of being ignored.
const NOT_SETTINGS: &[&str] = &["SYNCHUB_ENV", "SYNCHUB_NEW_MASTER_KEY"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
    Test,
}

impl Environment {
    fn parse(value: &str) -> anyhow::Result<Self> {
        match value {
            "" | "development" | "dev" => Ok(Self::Development),
            "production" | "prod" => Ok(Self::Production),
            "test" => Ok(Self::Test),
            other => {
                anyhow::bail!("SYNCHUB_ENV must be development, production or test, not {other:?}")
            }
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
            Self::Test => "test",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub listen: SocketAddr,
    /// Where a worker process listens (health and metrics) unless told otherwise.
    pub worker_listen: SocketAddr,
    pub public_url: String,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub master_key: SecretString,
    pub bootstrap_token: SecretString,
    pub log_json: bool,
    #[serde(deserialize_with = "cidr_list")]
    pub trusted_proxies: Vec<IpNet>,
    pub allow_private_targets: bool,
    pub outbound: OutboundSettings,
    pub max_json_body_bytes: usize,
    pub http: HttpSettings,
    pub database: DatabaseSettings,
    pub webhooks: WebhookSettings,
    pub scheduler: SchedulerSettings,
    pub workers: WorkerSettings,
    pub deployments: DeploymentSettings,
    pub alerts: AlertSettings,
    pub credentials: CredentialSettings,
    pub connect: ConnectSettings,
    pub rate_limits: RateLimitSettings,
    #[serde(skip, default = "default_env")]
    pub environment: Environment,
}

fn default_env() -> Environment {
    Environment::Development
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    pub body_read_timeout_seconds: u64,
}

/// Which private targets tenant-steered calls may reach without `allow_private_targets`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    #[serde(deserialize_with = "cidr_list")]
    pub allowed_private_cidrs: Vec<IpNet>,
    #[serde(deserialize_with = "host_list")]
    pub hosts: Vec<(String, std::net::IpAddr)>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    pub max_connections: u32,
    pub migrate_at_start: bool,
    pub schema_wait_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    pub max_body_bytes: usize,
    pub secret_grace_seconds: i64,
    pub timestamp_tolerance_seconds: i64,
    pub max_batch: usize,
    pub batch_linger_micros: u64,
    pub cache_ttl_seconds: u64,
    pub rejection_flush_millis: u64,
    /// Days a received event is kept (listed, and deduplicated against) before deletion.
    pub retention_days: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerSettings {
    pub enabled: bool,
    pub tick_millis: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    pub enabled: bool,
    pub concurrency: usize,
    pub poll_millis: u64,
    pub lease_seconds: u64,
    /// Worker slots one connector version may hold at once; 0 = three quarters of
    /// `concurrency`, at least one kept back.
    pub per_version_slots: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertSettings {
    pub enabled: bool,
    pub tick_millis: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSettings {
    pub enabled: bool,
    pub tick_millis: u64,
    pub refresh_ahead_minutes: i64,
    pub expiry_warning_days: i64,
}

/// Connect links: how long they stay valid and who may frame the seller's page.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectSettings {
    /// A link made through the API, unless the request asks for another lifetime.
    pub link_ttl_seconds: i64,
    /// The link an alert carries when a refresh was refused.
    pub reauthorization_link_ttl_seconds: i64,
    /// How long a code trade with the platform may take before the seller is told it did
    /// not answer.
    pub exchange_timeout_seconds: u64,
    /// Origins allowed to embed the connect page in a frame; empty: none may.
    #[serde(deserialize_with = "text_list")]
    pub frame_ancestors: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSettings {
    pub enabled: bool,
    pub tick_millis: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// Empty: buckets in the database. Secret: the URL may carry a password.
    pub redis_url: SecretString,
}

/// A list in TOML, or comma-separated text in an environment variable.
fn text_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Raw::deserialize(deserializer)? {
        Raw::List(items) => items,
        Raw::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect(),
    })
}

fn cidr_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Vec<IpNet>, D::Error> {
    text_list(deserializer)?
        .iter()
        .map(|item| crate::netpolicy::parse_cidr(item).map_err(serde::de::Error::custom))
        .collect()
}

fn host_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<(String, std::net::IpAddr)>, D::Error> {
    text_list(deserializer)?
        .iter()
        .map(|item| {
            crate::netpolicy::outbound::parse_host_entry(item).map_err(serde::de::Error::custom)
        })
        .collect()
}

/// Values given on the command line; they win over every other layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
}

impl Settings {
    /// What tenants' outbound calls may reach, as configured.
    pub fn outbound_policy(&self) -> crate::netpolicy::OutboundPolicy {
        crate::netpolicy::OutboundPolicy::new(
            self.allow_private_targets,
            self.outbound.allowed_private_cidrs.clone(),
            self.outbound.hosts.clone(),
        )
    }

    /// Reads the layers from the process environment.
    pub fn load(overrides: &Overrides) -> anyhow::Result<Self> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        Self::from_layers(&env, overrides)
    }

    /// Builds settings from explicit environment pairs, so tests need not touch the process env.
    pub fn from_layers(env: &[(String, String)], overrides: &Overrides) -> anyhow::Result<Self> {
        let lookup = |key: &str| env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
        let environment = Environment::parse(lookup("SYNCHUB_ENV").as_deref().unwrap_or(""))?;
        let prefixed: config::Map<String, String> = env
            .iter()
            .filter(|(k, _)| k.starts_with("SYNCHUB_") && !NOT_SETTINGS.contains(&k.as_str()))
            .filter(|(k, _)| !k.starts_with("SYNCHUB_TEST_"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        let mut builder = config::Config::builder()
            .add_source(config::File::from_str(DEFAULTS, config::FileFormat::Toml))
            .add_source(
                config::File::with_name(&format!("config/{}", environment.name()))
                    .format(config::FileFormat::Toml)
                    .required(false),
            )
            .add_source(
                config::Environment::with_prefix("SYNCHUB")
                    .prefix_separator("_")
                    .separator("__")
                    .try_parsing(true)
                    .source(Some(prefixed)),
            );
        if let Some(url) = lookup("DATABASE_URL") {
            builder = builder.set_override("database_url", url)?;
        }
        if let Some(listen) = &overrides.listen {
            builder = builder.set_override("listen", listen.as_str())?;
        }
        if let Some(dir) = &overrides.data_dir {
            builder = builder.set_override("data_dir", dir.to_string_lossy().as_ref())?;
        }
        let mut settings: Settings = builder
            .build()
            .context("reading configuration")?
            .try_deserialize()
            .context("invalid configuration")?;
        settings.environment = environment;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> anyhow::Result<()> {
        for (name, ttl) in [
            ("connect.link_ttl_seconds", self.connect.link_ttl_seconds),
            (
                "connect.reauthorization_link_ttl_seconds",
                self.connect.reauthorization_link_ttl_seconds,
            ),
        ] {
            if !(60..=30 * 24 * 3600).contains(&ttl) {
                anyhow::bail!("{name} must be between 60 and 2592000");
            }
        }
        if !(1..=120).contains(&self.connect.exchange_timeout_seconds) {
            anyhow::bail!("connect.exchange_timeout_seconds must be between 1 and 120");
        }
        for origin in &self.connect.frame_ancestors {
            let parsed = url::Url::parse(origin).ok();
            if !parsed.is_some_and(|u| {
                matches!(u.scheme(), "https" | "http") && u.path() == "/" && u.query().is_none()
            }) {
                anyhow::bail!(
                    "connect.frame_ancestors: {origin:?} is not an origin (https://host[:port])"
                );
            }
        }
        if self.webhooks.rejection_flush_millis == 0 {
            anyhow::bail!("webhooks.rejection_flush_millis must be greater than 0");
        }
        if self.http.body_read_timeout_seconds == 0 {
            anyhow::bail!("http.body_read_timeout_seconds must be greater than 0");
        }
        if self.environment == Environment::Production && self.master_key.is_empty() {
            anyhow::bail!(
                "master_key: SYNCHUB_MASTER_KEY must be set in production (base64 of 32 random bytes)"
            );
        }
        if self.webhooks.max_body_bytes == 0 {
            anyhow::bail!("webhooks.max_body_bytes must be greater than 0");
        }
        if !(1..=10_000).contains(&self.webhooks.max_batch) {
            anyhow::bail!("webhooks.max_batch must be between 1 and 10000");
        }
        if !(1..=3_650).contains(&self.webhooks.retention_days) {
            anyhow::bail!("webhooks.retention_days must be between 1 and 3650");
        }
        if self.webhooks.secret_grace_seconds < 0 {
            anyhow::bail!("webhooks.secret_grace_seconds must not be negative");
        }
        if !(10..=60_000).contains(&self.scheduler.tick_millis) {
            anyhow::bail!("scheduler.tick_millis must be between 10 and 60000");
        }
        if !(1..=256).contains(&self.workers.concurrency) {
            anyhow::bail!("workers.concurrency must be between 1 and 256");
        }
        if self.workers.per_version_slots > self.workers.concurrency {
            anyhow::bail!(
                "workers.per_version_slots must be at most workers.concurrency (0 = three quarters of it)"
            );
        }
        if !(1..=3600).contains(&self.workers.lease_seconds) {
            anyhow::bail!("workers.lease_seconds must be between 1 and 3600");
        }
        if !(10..=60_000).contains(&self.workers.poll_millis) {
            anyhow::bail!("workers.poll_millis must be between 10 and 60000");
        }
        if self.database.max_connections == 0 {
            anyhow::bail!("database.max_connections must be greater than 0");
        }
        let url = self.database_url.trim();
        if !(url.is_empty()
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://")
            || url.starts_with("sqlite:"))
        {
            anyhow::bail!("database_url: DATABASE_URL must be a postgres:// or sqlite: URL");
        }
        Ok(())
    }

    /// The database URL in use: the configured one, or the embedded SQLite file.
    pub fn effective_database_url(&self) -> String {
        if self.database_url.trim().is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                self.data_dir.join("synchub.db").display()
            )
        } else {
            self.database_url.trim().to_string()
        }
    }

    /// The base URL platforms call, without a trailing slash.
    pub fn effective_public_url(&self) -> String {
        let url = self.public_url.trim().trim_end_matches('/');
        if url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            url.to_string()
        }
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_start_on_localhost_with_embedded_sqlite() {
        let settings = Settings::from_layers(&[], &Overrides::default()).unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:8080");
        assert!(settings.effective_database_url().starts_with("sqlite://"));
        assert_eq!(settings.webhooks.max_body_bytes, 1024 * 1024);
    }

    #[test]
    fn environment_overrides_defaults_and_cli_overrides_environment() {
        let settings = Settings::from_layers(
            &env(&[
                ("SYNCHUB_LISTEN", "0.0.0.0:9000"),
                ("SYNCHUB_WEBHOOKS__MAX_BODY_BYTES", "2048"),
                ("SYNCHUB_TRUSTED_PROXIES", "10.0.0.0/8, ::1/128"),
                ("DATABASE_URL", "postgres://localhost/x"),
            ]),
            &Overrides {
                listen: Some("127.0.0.1:0".into()),
                data_dir: None,
            },
        )
        .unwrap();
        assert_eq!(settings.listen.to_string(), "127.0.0.1:0");
        assert_eq!(settings.webhooks.max_body_bytes, 2048);
        assert_eq!(settings.trusted_proxies.len(), 2);
        assert_eq!(settings.effective_database_url(), "postgres://localhost/x");
    }

    #[test]
    fn production_refuses_to_start_without_a_master_key() {
        let err = Settings::from_layers(
            &env(&[("SYNCHUB_ENV", "production")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("SYNCHUB_MASTER_KEY"));
    }

    #[test]
    fn a_misspelt_variable_stops_start_up() {
        let err = Settings::from_layers(
            &env(&[("SYNCHUB_LISTN", "0.0.0.0:1")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("listn"), "{err:#}");
        assert!(
            Settings::from_layers(
                &env(&[("SYNCHUB_NEW_MASTER_KEY", "x")]),
                &Overrides::default()
            )
            .is_ok()
        );
    }

    /// Zero days would delete every event as it lands, and with it the deduplication of
    /// the platform's retries.
    #[test]
    fn webhook_retention_is_at_least_a_day() {
        let days = |value: &str| {
            Settings::from_layers(
                &env(&[("SYNCHUB_WEBHOOKS__RETENTION_DAYS", value)]),
                &Overrides::default(),
            )
        };
        let err = days("0").unwrap_err();
        assert!(
            format!("{err:#}").contains("webhooks.retention_days"),
            "{err:#}"
        );
        assert!(days("3651").is_err());
        assert_eq!(days("1").unwrap().webhooks.retention_days, 1);
        let defaults = Settings::from_layers(&[], &Overrides::default()).unwrap();
        assert_eq!(defaults.webhooks.retention_days, 30);
    }

    #[test]
    fn a_bad_value_names_its_key() {
        let err = Settings::from_layers(
            &env(&[("SYNCHUB_TRUSTED_PROXIES", "not-a-cidr")]),
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(format!("{err:#}").contains("trusted_proxies"), "{err:#}");
    }
}
