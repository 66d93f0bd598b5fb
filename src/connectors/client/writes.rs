//! Writes to a platform: one record, a templated call, or a batch.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ConnectorClient;
use super::errors::{CallError, ErrorClass};
use std::collections::{HashMap, HashSet};

use crate::connectors::spec::{BatchFormat, BatchSpec, ConfirmSpec, Method, RecordFormat};
use crate::connectors::template::Vars;
use crate::connectors::{lingxing, mabang};

impl ConnectorClient {
    /// A write with an idempotency key, so that a retried call is a no-op at the platform.
    pub async fn write(
        &self,
        operation: &str,
        body: &Value,
        idempotency_key: &str,
    ) -> Result<Value, CallError> {
        self.send_write(operation, &Vars::new(), Some(body), idempotency_key)
            .await
    }

    /// A write whose path, query and body come from the manifest's templates, filled with
    /// `vars` (a stock level, a shipment, the ids a lookup found).
    pub async fn write_templated(
        &self,
        operation: &str,
        vars: &Vars,
        idempotency_key: &str,
    ) -> Result<Value, CallError> {
        self.send_write(operation, vars, None, idempotency_key)
            .await
    }

    pub(super) async fn send_write(
        &self,
        operation: &str,
        vars: &Vars,
        body: Option<&Value>,
        idempotency_key: &str,
    ) -> Result<Value, CallError> {
        let op = self.operation(operation)?;
        let api_path = self.api_path(op, vars)?;
        let url = format!("{}{api_path}", self.base_url()?);
        let query = self.query(op, vars);
        let templated = match body {
            Some(record) if op.format == RecordFormat::MabangOrder => Some(mabang::order(record)),
            Some(_) => None,
            None => self.body(op, vars)?,
        };
        let body = templated.as_ref().or(body);
        let method = match op.method {
            Method::Get => reqwest::Method::POST,
            other => other.as_reqwest(),
        };
        let (_, response) = self
            .send(op, &api_path, || {
                let mut request = self.http.request(method.clone(), &url).query(&query);
                if let Some(body) = body {
                    request = request.json(body);
                }
                if let Some(header) = &op.idempotency_header {
                    request = request.header(header.as_str(), idempotency_key);
                }
                request
            })
            .await?;
        Ok(response)
    }

    /// How `operation`'s writes are confirmed, for platforms that carry them out later.
    pub fn confirm_spec(&self, operation: &str) -> Option<&ConfirmSpec> {
        self.manifest().operations.get(operation)?.confirm.as_ref()
    }

    /// Asks whether the platform has carried out the write of record `id` yet.
    pub async fn confirmed(&self, operation: &str, id: &str) -> Result<bool, CallError> {
        let confirm = self.confirm_spec(operation).ok_or_else(|| {
            CallError::new(
                ErrorClass::Config,
                format!("{operation} is not confirmed later"),
            )
        })?;
        let id = match self.operation(operation)?.format {
            RecordFormat::MabangOrder => mabang::platform_order_id(id),
            RecordFormat::Unified => id.to_string(),
        };
        let body = serde_json::json!({ confirm.id_field.clone(): id });
        let answer = self
            .send_write(&confirm.operation, &Vars::new(), Some(&body), "")
            .await?;
        Ok(confirm
            .done
            .iter()
            .find_map(|pointer| answer.pointer(pointer))
            .is_some_and(|value| {
                value == &confirm.done_value
                    || crate::connectors::template::as_text(value)
                        == crate::connectors::template::as_text(&confirm.done_value)
            }))
    }

    /// The batch shape of `operation`, if the connector declares one.
    pub fn batch_spec(&self, operation: &str) -> Option<&BatchSpec> {
        self.manifest().operations.get(operation)?.batch.as_ref()
    }

    /// How many calls of a write may be in flight at once from one run: the operation's
    /// own cap, else the connection's, else one.
    pub fn writes_in_flight(&self, operation: &str) -> usize {
        self.manifest()
            .operations
            .get(operation)
            .and_then(|op| op.concurrency)
            .or_else(|| self.concurrency_cap())
            .unwrap_or(1)
            .max(1) as usize
    }

    /// Writes records in one call of a batch operation. Each record carries its own key;
    /// the call's idempotency key covers the whole batch, so a retried batch is a replay.
    /// A platform that takes or refuses each record on its own (Lingxing) reports the
    /// refused ones in the outcome; the rest were delivered.
    pub async fn write_batch(
        &self,
        operation: &str,
        records: &[(&Value, &str)],
    ) -> Result<BatchOutcome, CallError> {
        let op = self.operation(operation)?;
        let batch = op.batch.as_ref().ok_or_else(|| {
            CallError::new(
                ErrorClass::Config,
                format!("{operation} is not a batch operation"),
            )
        })?;
        let mut digest = Sha256::new();
        for (_, key) in records {
            digest.update(key.as_bytes());
            digest.update([0u8]);
        }
        let key = hex::encode(digest.finalize());
        if batch.format == BatchFormat::LingxingOrders {
            return self.write_lingxing_orders(operation, records, &key).await;
        }
        let items: Vec<Value> = records
            .iter()
            .map(|(record, key)| {
                let mut record = (*record).clone();
                if let (Some(field), Some(object)) = (&batch.item_key, record.as_object_mut()) {
                    object.insert(field.clone(), Value::String(key.to_string()));
                }
                record
            })
            .collect();
        let body = serde_json::json!({ batch.field.clone(): items });
        self.write(operation, &body, &key).await?;
        Ok(BatchOutcome::default())
    }

    /// Orders into a Lingxing custom-platform store: the orders Lingxing refuses are
    /// looked up by their `platform_order_no` (`find_orders`), and those the store already
    /// holds (a retried call, a crash after the call) count as delivered; Lingxing does not
    /// document the wording of a duplicate's refusal, so the store is asked instead.
    async fn write_lingxing_orders(
        &self,
        operation: &str,
        records: &[(&Value, &str)],
        key: &str,
    ) -> Result<BatchOutcome, CallError> {
        let platform_code = self
            .setting("platform_code")
            .and_then(|code| code.parse::<i64>().ok())
            .unwrap_or(lingxing::CUSTOM_PLATFORM_CODE);
        let orders: Vec<Value> = records.iter().map(|(r, _)| lingxing::order(r)).collect();
        let body = serde_json::json!({
            "platform_code": platform_code,
            "store_id": self.required_setting("store_id")?,
            "orders": orders,
        });
        let answer = self.write(operation, &body, key).await?;
        let answer = lingxing::create_answer(&answer["data"])?;
        let number = |record: &Value| {
            record
                .get("platform_id")
                .and_then(crate::connectors::template::as_text)
                .unwrap_or_default()
        };
        let created: HashSet<&str> = answer.created.iter().map(String::as_str).collect();
        let mut unconfirmed: Vec<String> = records
            .iter()
            .map(|(r, _)| number(r))
            .filter(|n| !created.contains(n.as_str()))
            .collect();
        if unconfirmed.is_empty() {
            return Ok(BatchOutcome::default());
        }
        let held = match self.manifest().operations.contains_key(FIND_ORDERS) {
            true => {
                let page = self
                    .list_page(
                        FIND_ORDERS,
                        &Vars::new().with("platform_order_nos", unconfirmed.clone()),
                        None,
                    )
                    .await?;
                lingxing::listed_order_numbers(&page.records)
            }
            false => HashSet::new(),
        };
        unconfirmed.retain(|n| !held.contains(n));
        let why: HashMap<&str, &str> = answer
            .refused
            .iter()
            .map(|(n, m)| (n.as_str(), m.as_str()))
            .collect();
        let refused = records
            .iter()
            .enumerate()
            .filter_map(|(i, (record, _))| {
                let n = number(record);
                unconfirmed.contains(&n).then(|| {
                    let message = why
                        .get(n.as_str())
                        .copied()
                        .unwrap_or("missing from Lingxing's answer");
                    (i, message.to_string())
                })
            })
            .collect();
        Ok(BatchOutcome { refused })
    }
}

/// The operation that finds orders a Lingxing store holds by platform order number.
const FIND_ORDERS: &str = "find_orders";

/// What a batch write did with its records: the ones the platform refused (by position in
/// the batch, with its reason); every other record was delivered.
#[derive(Debug, Default, PartialEq)]
pub struct BatchOutcome {
    pub refused: Vec<(usize, String)>,
}
