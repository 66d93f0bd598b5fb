//! Filling a manifest's templates: placeholders from the call, the cursor and the
//! connection's settings, into the base URL, the path (each value a path segment) and the body.

use serde_json::Value;

use super::ConnectorClient;
use super::errors::{CallError, ErrorClass};
use crate::connectors::spec::{DEFAULT_LOCAL_ZONE, OperationSpec, TIMEZONE_SETTING};
use crate::connectors::template;
use crate::connectors::template::Vars;

impl ConnectorClient {
    pub(super) fn setting(&self, name: &str) -> Option<String> {
        match self.settings.get(name) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            // A list goes out comma-separated (Amazon's MarketplaceIds).
            Some(Value::Array(items)) => Some(
                items
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(","),
            ),
            _ => self
                .manifest
                .settings
                .iter()
                .find(|f| f.name == name)
                .and_then(|f| f.default.clone()),
        }
    }

    /// A placeholder's value: the call's own values first (cursor, record fields), then the
    /// derived `{cursor_unix}` and `{now_unix}`, then the connection's settings.
    pub(super) fn resolve(&self, name: &str, vars: &Vars) -> Option<String> {
        if let Some(value) = vars.text(name) {
            return Some(value);
        }
        match name {
            // The cursor as Unix seconds; a first run looks back 15 days, the longest
            // window Shopee's time-ranged lists take.
            "cursor_unix" => Some(
                vars.text("cursor")
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok())
                    .map(|c| c.timestamp())
                    .unwrap_or_else(|| {
                        (chrono::Utc::now() - chrono::Duration::days(15)).timestamp()
                    })
                    .to_string(),
            ),
            "now_unix" => Some(chrono::Utc::now().timestamp().to_string()),
            // Days in the connection's zone, for lists filtered by date (Lingxing's
            // `Y-m-d`); a first run looks back 30 days, what Lingxing lists by default.
            "cursor_date" => Some(
                vars.text("cursor")
                    .and_then(|c| chrono::DateTime::parse_from_rfc3339(&c).ok())
                    .map(|c| c.with_timezone(&chrono::Utc))
                    .unwrap_or_else(|| self.clock.now() - chrono::Duration::days(30))
                    .with_timezone(&self.zone())
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            "now_date" => Some(
                self.clock
                    .now()
                    .with_timezone(&self.zone())
                    .format("%Y-%m-%d")
                    .to_string(),
            ),
            _ => self.setting(name),
        }
    }

    /// Fills `{name}` placeholders; a missing value is a configuration error naming it.
    pub(super) fn fill(&self, template: &str, vars: &Vars) -> Result<String, CallError> {
        template::fill_text(template, &|name| self.resolve(name, vars)).map_err(missing)
    }

    /// The operation's path with its placeholders filled, each value encoded as a path
    /// segment (a SKU may hold a slash or a space).
    pub(super) fn api_path(&self, op: &OperationSpec, vars: &Vars) -> Result<String, CallError> {
        template::fill_text(&op.path, &|name| {
            self.resolve(name, vars).map(|v| encode_segment(&v))
        })
        .map_err(missing)
    }

    /// The operation's JSON body with its placeholders filled, values keeping their types.
    pub(super) fn body(&self, op: &OperationSpec, vars: &Vars) -> Result<Option<Value>, CallError> {
        let Some(template) = &op.body else {
            return Ok(None);
        };
        template::fill_value(template, &|name| match vars.get(name) {
            Some(value) => Some(value.clone()),
            // Timestamps go out as numbers, settings as text.
            None if name.ends_with("_unix") => self
                .resolve(name, vars)
                .and_then(|t| t.parse::<i64>().ok())
                .map(Value::from),
            None => self.resolve(name, vars).map(Value::String),
        })
        .map(Some)
        .map_err(missing)
    }

    /// The zone the platform's local times are in: the `timezone` setting, else
    /// Asia/Shanghai (ERPs hosted in China that state no zone).
    pub fn zone(&self) -> chrono_tz::Tz {
        self.setting(TIMEZONE_SETTING)
            .and_then(|name| name.parse().ok())
            .unwrap_or(DEFAULT_LOCAL_ZONE)
    }

    pub fn base_url(&self) -> Result<String, CallError> {
        if let Some(url) = self.setting("base_url") {
            return Ok(url.trim_end_matches('/').to_string());
        }
        let template = self
            .manifest
            .environments
            .get(&self.environment)
            .ok_or_else(|| {
                CallError::new(
                    ErrorClass::Config,
                    format!(
                        "{} has no {} environment",
                        self.manifest.name, self.environment
                    ),
                )
            })?;
        self.fill(template, &Vars::new())
            .map(|url| url.trim_end_matches('/').to_string())
    }
}
pub(super) fn missing(name: String) -> CallError {
    CallError::new(
        ErrorClass::Config,
        format!("no value for the placeholder {{{name}}}"),
    )
}

/// Percent-encodes a value for one path segment (RFC 3986 unreserved characters stay).
pub(super) fn encode_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
