//! Unified records: what every connector maps its platform records onto.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::connectors::client::{CallError, ErrorClass};
use crate::connectors::spec::OrderMapping;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    pub price: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    pub platform_id: String,
    pub number: String,
    pub status: String,
    pub currency: String,
    pub total: String,
    pub created_at: String,
    /// UTC, RFC 3339 with seconds: also the record's version.
    pub updated_at: String,
    pub lines: Vec<OrderLine>,
}

fn text(record: &Value, pointer: &str) -> Option<String> {
    match record.pointer(pointer)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Normalises a platform timestamp to UTC so versions compare as text.
pub fn utc_version(raw: &str) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(raw).ok()?;
    Some(
        parsed
            .with_timezone(&chrono::Utc)
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string(),
    )
}

pub fn map_order(record: &Value, mapping: &OrderMapping) -> Result<Order, CallError> {
    let missing = |field: &str, pointer: &str| {
        CallError::new(
            ErrorClass::SchemaMismatch,
            format!("order field {field} is not at {pointer}"),
        )
    };
    let get =
        |field: &str, pointer: &str| text(record, pointer).ok_or_else(|| missing(field, pointer));
    let updated_raw = get("updated_at", &mapping.updated_at)?;
    let updated_at = utc_version(&updated_raw).ok_or_else(|| {
        CallError::new(
            ErrorClass::SchemaMismatch,
            format!("updated_at {updated_raw:?} is not RFC 3339"),
        )
    })?;
    let lines = record
        .pointer(&mapping.lines)
        .and_then(Value::as_array)
        .ok_or_else(|| missing("lines", &mapping.lines))?
        .iter()
        .map(|line| {
            Ok(OrderLine {
                sku: text(line, &mapping.line_sku)
                    .ok_or_else(|| missing("line.sku", &mapping.line_sku))?,
                quantity: line
                    .pointer(&mapping.line_quantity)
                    .and_then(Value::as_i64)
                    .ok_or_else(|| missing("line.quantity", &mapping.line_quantity))?,
                price: text(line, &mapping.line_price)
                    .ok_or_else(|| missing("line.price", &mapping.line_price))?,
            })
        })
        .collect::<Result<Vec<_>, CallError>>()?;
    Ok(Order {
        platform_id: get("id", &mapping.id)?,
        number: get("number", &mapping.number)?,
        status: get("status", &mapping.status)?,
        currency: get("currency", &mapping.currency)?,
        total: get("total", &mapping.total)?,
        created_at: get("created_at", &mapping.created_at)?,
        updated_at,
        lines,
    })
}
