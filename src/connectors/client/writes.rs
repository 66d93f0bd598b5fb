//! Writes to a platform: one record, a templated call, or a batch.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::ConnectorClient;
use super::errors::{CallError, ErrorClass};
use crate::connectors::spec::{BatchSpec, Method};
use crate::connectors::template::Vars;

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
            Some(_) => None,
            None => self.body(op, vars)?,
        };
        let body = body.or(templated.as_ref());
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

    /// The batch shape of `operation`, if the connector declares one.
    pub fn batch_spec(&self, operation: &str) -> Option<&BatchSpec> {
        self.manifest().operations.get(operation)?.batch.as_ref()
    }

    /// Writes records in one call of a batch operation. Each record carries its own key;
    /// the call's idempotency key covers the whole batch, so a retried batch is a replay.
    pub async fn write_batch(
        &self,
        operation: &str,
        records: &[(&Value, &str)],
    ) -> Result<Value, CallError> {
        let op = self.operation(operation)?;
        let batch = op.batch.as_ref().ok_or_else(|| {
            CallError::new(
                ErrorClass::Config,
                format!("{operation} is not a batch operation"),
            )
        })?;
        let mut digest = Sha256::new();
        let items: Vec<Value> = records
            .iter()
            .map(|(record, key)| {
                digest.update(key.as_bytes());
                digest.update([0u8]);
                let mut record = (*record).clone();
                if let (Some(field), Some(object)) = (&batch.item_key, record.as_object_mut()) {
                    object.insert(field.clone(), Value::String(key.to_string()));
                }
                record
            })
            .collect();
        let body = serde_json::json!({ batch.field.clone(): items });
        let key = hex::encode(digest.finalize());
        self.write(operation, &body, &key).await
    }
}
