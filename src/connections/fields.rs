//! Checks settings and credentials against the fields a connector's manifest declares.

use serde_json::{Map, Value};

use crate::connectors::{FieldSpec, FieldType};
use crate::error::FieldError;
use crate::netpolicy::OutboundPolicy;
use crate::netpolicy::outbound::is_host_name;

const MAX_VALUE_LEN: usize = 8192;

/// Validates `values` in place (integers given as numeric strings become numbers) and
/// reports each problem with its path, e.g. `settings.shop_domain`.
pub fn validate(
    group: &str,
    specs: &[FieldSpec],
    values: &mut Map<String, Value>,
    outbound: &OutboundPolicy,
    errors: &mut Vec<FieldError>,
) {
    for name in values.keys() {
        if !specs.iter().any(|spec| &spec.name == name) {
            let known: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
            errors.push(FieldError::new(
                format!("{group}.{name}"),
                format!("unknown field; this connector takes: {}", known.join(", ")),
            ));
        }
    }
    for spec in specs {
        let path = format!("{group}.{}", spec.name);
        let Some(value) = values.get_mut(&spec.name) else {
            if spec.required {
                errors.push(FieldError::new(
                    path,
                    format!("is required: {}", spec.description),
                ));
            }
            continue;
        };
        if let Err(message) = check(spec, value, outbound) {
            errors.push(FieldError::new(path, message));
        }
    }
}

fn check(spec: &FieldSpec, value: &mut Value, outbound: &OutboundPolicy) -> Result<(), String> {
    match spec.field_type {
        FieldType::String | FieldType::Url | FieldType::Host | FieldType::Enum => {
            let text = value.as_str().ok_or("must be a string")?.trim().to_string();
            if text.is_empty() {
                return Err("must not be empty".into());
            }
            if text.len() > MAX_VALUE_LEN {
                return Err(format!("must be at most {MAX_VALUE_LEN} bytes"));
            }
            if let Some(suffix) = &spec.must_end_with
                && !text.to_ascii_lowercase().ends_with(suffix.as_str())
            {
                return Err(format!("must end with {suffix}{}", example(spec)));
            }
            if spec.field_type == FieldType::Enum && !spec.values.contains(&text) {
                return Err(format!("must be one of: {}", spec.values.join(", ")));
            }
            if spec.field_type == FieldType::Url {
                outbound.parse_url(&text)?;
            }
            // It is filled into a URL's host: a name, or it could choose any address, port
            // or path (`169.254.169.254:80/x?.myshopify.com` ends with the right suffix).
            if spec.field_type == FieldType::Host && !is_host_name(&text) {
                return Err(format!(
                    "must be a host name (letters, digits, dashes and dots, no port or path){}",
                    example(spec)
                ));
            }
            *value = Value::String(text);
        }
        FieldType::Integer => {
            let number = match value {
                Value::Number(n) => n.as_i64(),
                Value::String(s) => s.trim().parse::<i64>().ok(),
                _ => None,
            }
            .ok_or("must be an integer")?;
            *value = Value::from(number);
        }
        FieldType::Boolean => {
            value.as_bool().ok_or("must be true or false")?;
        }
        FieldType::StringList => {
            let items = value.as_array().ok_or("must be a list of strings")?;
            if items.is_empty() {
                return Err("must not be empty".into());
            }
            if items
                .iter()
                .any(|item| item.as_str().is_none_or(|s| s.trim().is_empty()))
            {
                return Err(format!(
                    "must be a list of non-empty strings{}",
                    example(spec)
                ));
            }
        }
    }
    Ok(())
}

fn example(spec: &FieldSpec) -> String {
    spec.example
        .as_ref()
        .map(|e| format!(" (e.g. {e})"))
        .unwrap_or_default()
}
