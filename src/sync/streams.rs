//! What each stream reads, how its records are keyed and versioned, and where they are
//! written: orders from a marketplace into the ERP; stock levels and shipments from the ERP
//! out to a marketplace.

use std::collections::HashMap;

use serde_json::{Value, json};

use crate::connectors::client::{CallError, ConnectorClient, ErrorClass, Vars};
use crate::connectors::spec::{DetailSpec, OrderMapping, ShipmentMapping, StockMapping, WriteSpec};
use crate::connectors::unified::{Order, StockLevel, map_order, map_shipment, map_stock};
use crate::flows::Stream;
use crate::store::entities::connection;
use chrono_tz::Tz;

/// One record on its way: its key and version in the records table, what is stored there,
/// the values its write takes and the write's idempotency key.
#[derive(Debug, Clone)]
pub(super) struct Item {
    pub platform_id: String,
    pub version: String,
    pub stored: Value,
    pub vars: Vars,
    pub key: String,
}

/// A stream bound to its two connectors.
pub(super) enum Plan {
    /// Boxed: an order mapping is much the largest.
    Orders(Box<OrderMapping>),
    Stock(StockMapping, WriteSpec),
    Shipments(ShipmentMapping, WriteSpec),
}

fn unsupported(connector: &str, what: &str) -> CallError {
    CallError::new(ErrorClass::Config, format!("{connector} {what}"))
}

impl Plan {
    pub fn new(
        stream: Stream,
        source: &ConnectorClient,
        destination: &ConnectorClient,
    ) -> Result<Self, CallError> {
        let (from, to) = (source.manifest(), destination.manifest());
        let write = |kind: &str| {
            to.writes
                .get(kind)
                .cloned()
                .ok_or_else(|| unsupported(&to.name, &format!("takes no {kind} writes")))
        };
        Ok(match stream {
            Stream::Orders => Self::Orders(Box::new(
                from.mappings
                    .order
                    .clone()
                    .ok_or_else(|| unsupported(&from.name, "maps no orders"))?,
            )),
            Stream::Inventory => Self::Stock(
                from.mappings
                    .stock
                    .clone()
                    .ok_or_else(|| unsupported(&from.name, "maps no stock levels"))?,
                write("stock")?,
            ),
            Stream::Shipments => Self::Shipments(
                from.mappings
                    .shipment
                    .clone()
                    .ok_or_else(|| unsupported(&from.name, "maps no shipments"))?,
                write("shipment")?,
            ),
        })
    }

    pub fn list_operation(&self) -> &'static str {
        match self {
            Self::Orders(_) => "list_orders",
            Self::Stock(..) => "list_stock",
            Self::Shipments(..) => "list_shipments",
        }
    }

    /// The records table's kind for this stream.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Orders(_) => "order",
            Self::Stock(..) => "stock",
            Self::Shipments(..) => "shipment",
        }
    }

    /// Whose records these are: an order belongs to the marketplace it came from; a stock
    /// level or shipment to the marketplace it was written to (one ERP feeds many).
    pub fn owner<'a>(
        &self,
        source: &'a connection::Model,
        destination: &'a connection::Model,
    ) -> &'a connection::Model {
        match self {
            Self::Orders(_) => source,
            _ => destination,
        }
    }

    /// The write, for streams written through a manifest's templates.
    pub fn write(&self) -> Option<&WriteSpec> {
        match self {
            Self::Orders(_) => None,
            Self::Stock(_, write) | Self::Shipments(_, write) => Some(write),
        }
    }

    /// Completes the listed records where the source lists less than it maps (Amazon's
    /// order items, Shopee's order detail).
    pub async fn complete(
        &self,
        source: &ConnectorClient,
        records: &mut [Value],
    ) -> Result<(), CallError> {
        match self {
            Self::Orders(mapping) => match &mapping.detail {
                Some(detail) => complete(source, detail, records).await,
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// Whether a record's version is its content rather than a change time: stock levels
    /// of an ERP that states none (Lingxing) are written when their quantity differs from
    /// the one last written, and move no cursor.
    pub fn versions_by_content(&self) -> bool {
        matches!(self, Self::Stock(mapping, _) if mapping.updated_at.is_none())
    }

    /// Whether the list is read whole before anything is written: a SKU listed once per
    /// warehouse is summed across pages.
    pub fn reads_whole_list(&self) -> bool {
        matches!(self, Self::Stock(mapping, _) if mapping.sum_by_sku)
    }

    /// The page's records as items; `zone` is where the source's local times were written.
    pub fn items(
        &self,
        records: &[Value],
        source: &connection::Model,
        destination: &connection::Model,
        zone: Tz,
    ) -> Result<Vec<Item>, CallError> {
        match self {
            Self::Orders(mapping) => records
                .iter()
                .map(|record| {
                    let order = map_order(record, mapping, zone)?;
                    Ok(Item {
                        key: format!("{}:{}:{}", source.id, order.platform_id, order.updated_at),
                        stored: erp_order(source, &order),
                        platform_id: order.platform_id,
                        version: order.updated_at,
                        vars: Vars::new(),
                    })
                })
                .collect(),
            Self::Stock(mapping, _) => {
                let mut levels: Vec<StockLevel> = Vec::with_capacity(records.len());
                let mut position: HashMap<String, usize> = HashMap::new();
                for record in records {
                    let level = map_stock(record, mapping, zone)?;
                    match position.get(&level.sku).filter(|_| mapping.sum_by_sku) {
                        Some(&at) => {
                            let same = &mut levels[at];
                            same.quantity += level.quantity;
                            if level.updated_at > same.updated_at {
                                same.updated_at = level.updated_at;
                            }
                        }
                        None => {
                            position.insert(level.sku.clone(), levels.len());
                            levels.push(level);
                        }
                    }
                }
                Ok(levels
                    .into_iter()
                    .map(|mut level| {
                        if mapping.updated_at.is_none() {
                            level.updated_at = format!("quantity:{}", level.quantity);
                        }
                        Item {
                            key: format!("{}:{}:{}", destination.id, level.sku, level.updated_at),
                            vars: Vars::new()
                                .with("sku", level.sku.as_str())
                                .with("quantity", level.quantity),
                            stored: json!({"sku": level.sku, "quantity": level.quantity}),
                            platform_id: level.sku,
                            version: level.updated_at,
                        }
                    })
                    .collect())
            }
            Self::Shipments(mapping, _) => {
                let mut items = Vec::new();
                for record in records {
                    let shipment = map_shipment(record, mapping, zone)?;
                    // The ERP ships every marketplace's orders; this flow takes its own.
                    if shipment
                        .connection
                        .as_deref()
                        .is_some_and(|c| c != destination.id.as_str())
                    {
                        continue;
                    }
                    items.push(Item {
                        key: format!("{}:{}:{}", destination.id, shipment.id, shipment.updated_at),
                        vars: Vars::new()
                            .with("order_id", shipment.order_id.as_str())
                            .with("carrier", shipment.carrier.as_str())
                            .with("tracking_number", shipment.tracking_number.as_str())
                            .with("shipped_at", shipment.shipped_at.as_str()),
                        stored: serde_json::to_value(&shipment).unwrap_or_default(),
                        platform_id: shipment.id,
                        version: shipment.updated_at,
                    });
                }
                Ok(items)
            }
        }
    }
}

/// The unified order as the ERP receives it.
fn erp_order(source: &connection::Model, order: &Order) -> Value {
    let mut stored = json!({
        "source": source.connector,
        "source_connection": source.id,
        "platform_id": order.platform_id,
        "number": order.number,
        "status": order.status,
        "currency": order.currency,
        "total": order.total,
        "created_at": order.created_at,
        "updated_at": order.updated_at,
        "lines": order.lines,
    });
    if let (Some(shipping), Some(object)) = (&order.shipping, stored.as_object_mut()) {
        object.insert("shipping".into(), json!(shipping));
    }
    stored
}

fn id_of(record: &Value, pointer: &str) -> Option<String> {
    record
        .pointer(pointer)
        .and_then(crate::connectors::template::as_text)
}

/// Runs the detail operation for the listed records and merges what it returns.
async fn complete(
    source: &ConnectorClient,
    detail: &DetailSpec,
    records: &mut [Value],
) -> Result<(), CallError> {
    let no_id = || {
        CallError::new(
            ErrorClass::SchemaMismatch,
            format!("a listed record has no id at {}", detail.id),
        )
    };
    if detail.per_call <= 1 {
        for record in records.iter_mut() {
            let id = id_of(record, &detail.id).ok_or_else(no_id)?;
            let found = source
                .list_all(&detail.operation, &Vars::new().with("id", id))
                .await?;
            merge(record, found, detail);
        }
        return Ok(());
    }
    for chunk in records.chunks_mut(detail.per_call) {
        let ids = chunk
            .iter()
            .map(|r| id_of(r, &detail.id).ok_or_else(no_id))
            .collect::<Result<Vec<_>, _>>()?;
        let found = source
            .list_all(&detail.operation, &Vars::new().with("ids", ids.join(",")))
            .await?;
        let mut by_id: HashMap<String, Value> = found
            .into_iter()
            .filter_map(|d| Some((id_of(&d, &detail.id)?, d)))
            .collect();
        for (record, id) in chunk.iter_mut().zip(ids) {
            if let Some(found) = by_id.remove(&id) {
                merge(record, vec![found], detail);
            }
        }
    }
    Ok(())
}

fn merge(record: &mut Value, mut found: Vec<Value>, detail: &DetailSpec) {
    match (&detail.attach, record.as_object_mut()) {
        (Some(field), Some(object)) => {
            object.insert(field.clone(), Value::Array(found));
        }
        _ => {
            if !found.is_empty() {
                *record = found.swap_remove(0);
            }
        }
    }
}
