//! Unified records: what every connector maps its platform records onto.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::{CallError, ErrorClass};
use super::spec::{AddressMapping, OrderMapping, ShipmentMapping, StockMapping, TimeFormat};
use super::template::as_text;
use chrono_tz::Tz;

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
    /// Where the order goes, for an ERP that ships it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping: Option<Address>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub country_code: String,
    pub city: String,
    pub address_line1: String,
    pub address_line2: String,
    pub state: String,
    pub postal_code: String,
    pub phone: String,
}

/// A SKU's sellable quantity, as the ERP's warehouse reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StockLevel {
    pub sku: String,
    pub quantity: i64,
    /// UTC, RFC 3339: also the record's version.
    pub updated_at: String,
}

/// A marketplace order's shipment: carrier and tracking number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: String,
    pub order_id: String,
    pub connection: Option<String>,
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: String,
    pub updated_at: String,
}

fn text(record: &Value, pointer: &str) -> Option<String> {
    select(record, pointer).and_then(as_text)
}

/// A JSON pointer whose segments may pick an array's element by a field of it:
/// `/district_info[address_level_name=City]/address_name` is the `address_name` of the
/// first element whose `address_level_name` is `City` (TikTok Shop lists an address's
/// state and city that way, in no fixed order). A plain pointer is a plain lookup.
fn select<'a>(record: &'a Value, pointer: &str) -> Option<&'a Value> {
    if !pointer.contains('[') {
        return record.pointer(pointer);
    }
    let mut at = record;
    for segment in pointer.split('/').skip(1) {
        let (name, wanted) = match segment.split_once('[') {
            Some((name, rest)) => (name, Some(rest.strip_suffix(']')?.split_once('=')?)),
            None => (segment, None),
        };
        at = at.pointer(&format!("/{name}"))?;
        if let Some((field, value)) = wanted {
            at = at
                .as_array()?
                .iter()
                .find(|element| element.get(field).and_then(as_text).as_deref() == Some(value))?;
        }
    }
    Some(at)
}

fn integer(record: &Value, pointer: &str) -> Option<i64> {
    match record.pointer(pointer)? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

const VERSION_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

/// Normalises a platform timestamp to UTC so versions compare as text.
pub fn utc_version(raw: &str) -> Option<String> {
    let parsed = chrono::DateTime::parse_from_rfc3339(raw).ok()?;
    Some(
        parsed
            .with_timezone(&chrono::Utc)
            .format(VERSION_FORMAT)
            .to_string(),
    )
}

/// A timestamp in the platform's format, as UTC RFC 3339 text; `zone` is where a local date
/// and time without an offset was written.
fn timestamp(record: &Value, pointer: &str, format: TimeFormat, zone: Tz) -> Option<String> {
    match format {
        TimeFormat::Rfc3339 => utc_version(&text(record, pointer)?),
        TimeFormat::LocalDateTime => {
            let raw = text(record, pointer)?;
            let local =
                chrono::NaiveDateTime::parse_from_str(raw.trim(), "%Y-%m-%d %H:%M:%S").ok()?;
            // A time that a DST change skipped or repeated: its earlier reading.
            let at = local.and_local_timezone(zone).earliest()?;
            Some(
                at.with_timezone(&chrono::Utc)
                    .format(VERSION_FORMAT)
                    .to_string(),
            )
        }
        TimeFormat::UnixSeconds => {
            let seconds = integer(record, pointer)?;
            let at = chrono::DateTime::<chrono::Utc>::from_timestamp(seconds, 0)?;
            Some(at.format(VERSION_FORMAT).to_string())
        }
    }
}

fn missing(field: &str, pointer: &str) -> CallError {
    CallError::new(
        ErrorClass::SchemaMismatch,
        format!("field {field} is not at {pointer}"),
    )
}

/// The price of one unit when a platform gives the line's price for all its units (Amazon's
/// ItemPrice): exact decimal division, rounded half up at the price's own precision (at
/// least cents).
pub fn unit_price(line_total: &str, quantity: i64) -> Option<String> {
    if quantity <= 0 {
        return None;
    }
    let total = line_total.trim();
    let (negative, digits) = match total.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, total),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    if whole.is_empty() && fraction.is_empty()
        || !whole
            .chars()
            .chain(fraction.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let scale = fraction.len().max(2);
    let padded = format!("{whole}{fraction:0<scale$}");
    let mantissa: i128 = padded.parse().ok()?;
    let quantity = i128::from(quantity);
    let rounded = (mantissa * 2 + quantity) / (quantity * 2);
    let unit = 10i128.checked_pow(scale as u32)?;
    let sign = if negative && rounded != 0 { "-" } else { "" };
    Some(format!(
        "{sign}{}.{:0scale$}",
        rounded / unit,
        rounded % unit,
        scale = scale
    ))
}

fn map_address(record: &Value, mapping: &AddressMapping) -> Address {
    let part = |pointer: &str| text(record, pointer).unwrap_or_default();
    let optional = |pointer: &Option<String>| pointer.as_deref().map(part).unwrap_or_default();
    Address {
        name: part(&mapping.name),
        country_code: part(&mapping.country_code),
        city: part(&mapping.city),
        address_line1: part(&mapping.address_line1),
        address_line2: optional(&mapping.address_line2),
        state: optional(&mapping.state),
        postal_code: optional(&mapping.postal_code),
        phone: optional(&mapping.phone),
    }
}

pub fn map_order(record: &Value, mapping: &OrderMapping, zone: Tz) -> Result<Order, CallError> {
    let optional = |field: &str| mapping.optional.iter().any(|f| f == field);
    let get = |field: &str, pointer: &str| match text(record, pointer) {
        Some(value) => Ok(value),
        None if optional(field) => Ok(String::new()),
        None => Err(missing(field, pointer)),
    };
    let updated_at =
        timestamp(record, &mapping.updated_at, mapping.timestamps, zone).ok_or_else(|| {
            CallError::new(
                ErrorClass::SchemaMismatch,
                format!(
                    "updated_at at {} is missing or not a {:?} timestamp",
                    mapping.updated_at, mapping.timestamps
                ),
            )
        })?;
    let created_at = timestamp(record, &mapping.created_at, mapping.timestamps, zone)
        .ok_or_else(|| missing("created_at", &mapping.created_at))?;
    let mut lines: Vec<OrderLine> = Vec::new();
    for line in record
        .pointer(&mapping.lines)
        .and_then(Value::as_array)
        .ok_or_else(|| missing("lines", &mapping.lines))?
    {
        let sku =
            text(line, &mapping.line_sku).ok_or_else(|| missing("line.sku", &mapping.line_sku))?;
        let price = text(line, &mapping.line_price)
            .ok_or_else(|| missing("line.price", &mapping.line_price))?;
        let Some(quantity_pointer) = &mapping.line_quantity else {
            // One line per unit: count the units of each SKU at each price.
            match lines.iter_mut().find(|l| l.sku == sku && l.price == price) {
                Some(existing) => existing.quantity += 1,
                None => lines.push(OrderLine {
                    sku,
                    quantity: 1,
                    price,
                }),
            }
            continue;
        };
        let quantity = integer(line, quantity_pointer)
            .ok_or_else(|| missing("line.quantity", quantity_pointer))?;
        let price = if mapping.line_price_covers_quantity && quantity > 0 {
            unit_price(&price, quantity).ok_or_else(|| {
                CallError::new(
                    ErrorClass::SchemaMismatch,
                    format!("line price {price:?} is not a decimal"),
                )
            })?
        } else {
            price
        };
        lines.push(OrderLine {
            sku,
            quantity,
            price,
        });
    }
    Ok(Order {
        platform_id: get("id", &mapping.id)?,
        number: get("number", &mapping.number)?,
        status: get("status", &mapping.status)?,
        currency: get("currency", &mapping.currency)?,
        total: get("total", &mapping.total)?,
        created_at,
        updated_at,
        lines,
        shipping: mapping.shipping.as_ref().map(|m| map_address(record, m)),
    })
}

/// A stock level; without an `updated_at` mapping its version is empty (the engine then
/// compares quantities).
pub fn map_stock(
    record: &Value,
    mapping: &StockMapping,
    zone: Tz,
) -> Result<StockLevel, CallError> {
    let updated_at = match &mapping.updated_at {
        Some(pointer) => timestamp(record, pointer, mapping.timestamps, zone)
            .ok_or_else(|| missing("updated_at", pointer))?,
        None => String::new(),
    };
    Ok(StockLevel {
        sku: text(record, &mapping.sku).ok_or_else(|| missing("sku", &mapping.sku))?,
        quantity: integer(record, &mapping.quantity)
            .ok_or_else(|| missing("quantity", &mapping.quantity))?,
        updated_at,
    })
}

pub fn map_shipment(
    record: &Value,
    mapping: &ShipmentMapping,
    zone: Tz,
) -> Result<Shipment, CallError> {
    let get =
        |field: &str, pointer: &str| text(record, pointer).ok_or_else(|| missing(field, pointer));
    Ok(Shipment {
        id: get("id", &mapping.id)?,
        order_id: get("order_id", &mapping.order_id)?,
        connection: mapping.connection.as_deref().and_then(|p| text(record, p)),
        carrier: get("carrier", &mapping.carrier)?,
        tracking_number: get("tracking_number", &mapping.tracking_number)?,
        shipped_at: timestamp(record, &mapping.shipped_at, mapping.timestamps, zone)
            .ok_or_else(|| missing("shipped_at", &mapping.shipped_at))?,
        updated_at: timestamp(record, &mapping.updated_at, mapping.timestamps, zone)
            .ok_or_else(|| missing("updated_at", &mapping.updated_at))?,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_pointer_picks_an_array_element_by_a_field() {
        let address = json!({"district_info": [
            {"address_level_name": "State", "address_name": "NY"},
            {"address_level_name": "City", "address_name": "New York"}]});
        let city = "/district_info[address_level_name=City]/address_name";
        assert_eq!(text(&address, city).as_deref(), Some("New York"));
        let state = "/district_info[address_level_name=State]/address_name";
        assert_eq!(text(&address, state).as_deref(), Some("NY"));
        assert_eq!(
            text(
                &address,
                "/district_info[address_level_name=Town]/address_name"
            ),
            None
        );
        assert_eq!(
            text(&address, "/district_info[address_level_name]/address_name"),
            None
        );
        assert_eq!(
            text(&address, "/district_info/1/address_name").as_deref(),
            Some("New York")
        );
        assert_eq!(
            text(&json!({"district_info": "x"}), city),
            None,
            "not an array"
        );
    }

    fn mapping() -> OrderMapping {
        OrderMapping {
            id: "/id".into(),
            number: "/id".into(),
            status: "/status".into(),
            currency: "/cur".into(),
            total: "/total".into(),
            created_at: "/at".into(),
            updated_at: "/at".into(),
            timestamps: TimeFormat::UnixSeconds,
            lines: "/lines".into(),
            line_sku: "/sku".into(),
            line_quantity: None,
            line_price: "/price".into(),
            line_price_covers_quantity: false,
            optional: vec!["total".into()],
            detail: None,
            shipping: None,
        }
    }

    #[test]
    fn unit_prices_divide_exactly_and_round_half_up() {
        assert_eq!(unit_price("39.98", 2).as_deref(), Some("19.99"));
        assert_eq!(unit_price("10", 3).as_deref(), Some("3.33"));
        assert_eq!(unit_price("20", 3).as_deref(), Some("6.67"));
        assert_eq!(unit_price("1000", 1).as_deref(), Some("1000.00"));
        assert_eq!(unit_price("0.005", 1).as_deref(), Some("0.005"));
        assert_eq!(unit_price("-5.00", 2).as_deref(), Some("-2.50"));
        assert_eq!(unit_price("abc", 2), None);
        assert_eq!(unit_price("5", 0), None);
    }

    #[test]
    fn one_line_per_unit_is_counted_by_sku_and_unix_times_become_utc() {
        let record = json!({"id": "577", "status": "AWAITING_SHIPMENT", "cur": "USD", "at": 1_700_000_000,
            "lines": [{"sku": "A", "price": "5.00"}, {"sku": "B", "price": "2.00"}, {"sku": "A", "price": "5.00"}]});
        let order = map_order(&record, &mapping(), Tz::UTC).unwrap();
        assert_eq!(order.updated_at, "2023-11-14T22:13:20.000Z");
        assert_eq!(order.total, "", "an optional field left out maps to empty");
        assert_eq!(
            order.lines,
            vec![
                OrderLine {
                    sku: "A".into(),
                    quantity: 2,
                    price: "5.00".into()
                },
                OrderLine {
                    sku: "B".into(),
                    quantity: 1,
                    price: "2.00".into()
                },
            ]
        );
    }

    /// Lingxing writes `2021-12-16 20:02:19` in no stated zone: read in the connection's.
    #[test]
    fn local_date_times_are_read_in_the_zone_given() {
        let record = json!({"at": "2021-12-16 20:02:19", "bad": "2021-12-16T20:02:19"});
        let shanghai = chrono_tz::Asia::Shanghai;
        assert_eq!(
            timestamp(&record, "/at", TimeFormat::LocalDateTime, shanghai).as_deref(),
            Some("2021-12-16T12:02:19.000Z")
        );
        assert_eq!(
            timestamp(&record, "/bad", TimeFormat::LocalDateTime, shanghai),
            None
        );
        // 02:30 on 2026-03-29 does not exist in Berlin; 02:30 on 2026-10-25 happens twice.
        let berlin = chrono_tz::Europe::Berlin;
        let repeated = json!({"at": "2026-10-25 02:30:00"});
        assert_eq!(
            timestamp(&repeated, "/at", TimeFormat::LocalDateTime, berlin).as_deref(),
            Some("2026-10-25T00:30:00.000Z"),
            "the earlier of the two"
        );
        let skipped = json!({"at": "2026-03-29 02:30:00"});
        assert_eq!(
            timestamp(&skipped, "/at", TimeFormat::LocalDateTime, berlin),
            None
        );
    }

    #[test]
    fn a_required_field_left_out_is_a_schema_mismatch() {
        let record = json!({"id": "577", "cur": "USD", "at": 1_700_000_000, "lines": []});
        let err = map_order(&record, &mapping(), Tz::UTC).unwrap_err();
        assert_eq!(err.class, ErrorClass::SchemaMismatch);
        assert!(err.message.contains("status"), "{}", err.message);
    }
}
