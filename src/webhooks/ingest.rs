//! The ingress pipeline for one webhook: find the connection, check the sender's address,
//! verify the signature, then hand the event to the group-commit writer and wait for it.

use std::net::IpAddr;
use std::time::Duration;

use sea_orm::{DatabaseConnection, Set};
use sha2::{Digest, Sha256};

use super::rejections::RejectionTally;
use super::schemes::{self, Headers};
use super::writer::EventWriter;
use crate::config::WebhookSettings;
use crate::connections::{Connections, Target, Unavailable};
use crate::error::{Error, Result};
use crate::ids::{ConnectionId, EventId};
use crate::runtime::RunsSignal;
use crate::store::entities::webhook_event;

pub struct InboundWebhook<'a> {
    pub connection_id: &'a str,
    pub source_ip: IpAddr,
    pub headers: &'a dyn Headers,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Acknowledged {
    /// Always `stored`: the event is committed (or was already, as a duplicate).
    pub status: &'static str,
    /// The platform's event id, or the body hash used to recognise duplicates.
    pub dedupe_key: String,
}

#[derive(Clone)]
pub struct IngestService {
    /// Owns what each connection's webhooks are verified against.
    connections: Connections,
    writer: EventWriter,
    rejections: RejectionTally,
}

impl IngestService {
    /// `event_store` is the group commit's own connection (`store::connect_event_writer`).
    pub fn start(
        db: DatabaseConnection,
        event_store: crate::store::EventStore,
        connections: Connections,
        settings: &WebhookSettings,
        runs: RunsSignal,
    ) -> Self {
        let rejections = RejectionTally::start(
            db.clone(),
            Duration::from_millis(settings.rejection_flush_millis),
            connections.clock().clone(),
        );
        let writer = EventWriter::start(
            event_store,
            settings.max_batch,
            Duration::from_micros(settings.batch_linger_micros),
            runs,
            connections.clock().clone(),
        );
        Self {
            connections,
            writer,
            rejections,
        }
    }

    /// The `outcome` label of `synchub_webhooks_total`: stored, or why refused (the match
    /// below names each; start-up sets them all to zero).
    pub const OUTCOMES: [&'static str; 6] = [
        "stored",
        "unknown_connection",
        "forbidden_source",
        "bad_signature",
        "invalid",
        "error",
    ];

    pub async fn ingest(&self, inbound: InboundWebhook<'_>) -> Result<Acknowledged> {
        let outcome = self.ingest_inner(&inbound).await;
        let label = match &outcome {
            Ok(_) => "stored",
            Err(Error::NotFound(_)) => "unknown_connection",
            Err(Error::SourceNotAllowed(_)) => "forbidden_source",
            Err(Error::BadSignature(_)) => "bad_signature",
            Err(Error::Invalid(_)) => "invalid",
            Err(_) => "error",
        };
        metrics::counter!("synchub_webhooks_total", "outcome" => label).increment(1);
        outcome
    }

    async fn ingest_inner(&self, inbound: &InboundWebhook<'_>) -> Result<Acknowledged> {
        let id = ConnectionId::parse(inbound.connection_id).ok_or(Error::NotFound("connection"))?;
        let target = match self.connections.webhook_target(&id).await? {
            Ok(target) => target,
            Err(Unavailable::NotFound) => return Err(Error::NotFound("connection")),
            Err(Unavailable::NoWebhooks(why)) => return Err(Error::invalid("connection", why)),
        };
        if !crate::netpolicy::allows(&target.allowlist, inbound.source_ip) {
            self.rejections.count(&target.connection_id);
            return Err(Error::SourceNotAllowed(inbound.source_ip.to_string()));
        }
        let now = self.connections.clock().now();
        let secrets = target.valid_secrets(now.timestamp());
        if let Err(rejection) = schemes::verify(
            &target.scheme,
            inbound.headers,
            inbound.body,
            &secrets,
            now.timestamp(),
        ) {
            self.rejections.count(&target.connection_id);
            // Debug only: the tally logs once per connection and interval, whatever the rate.
            tracing::debug!(connection_id = %target.connection_id, reason = rejection.reason(), "webhook rejected");
            return Err(Error::BadSignature(rejection.reason()));
        }
        let event = build_event(&target, inbound, now);
        let dedupe_key = match &event.dedupe_key {
            sea_orm::ActiveValue::Set(key) => key.clone(),
            _ => String::new(),
        };
        self.writer
            .insert(event)
            .await
            .map_err(|e| Error::Unavailable(format!("the event could not be stored: {e}")))?;
        Ok(Acknowledged {
            status: "stored",
            dedupe_key,
        })
    }
}

fn build_event(
    target: &Target,
    inbound: &InboundWebhook<'_>,
    now: chrono::DateTime<chrono::Utc>,
) -> webhook_event::ActiveModel {
    let spec = &target.spec;
    let needs_json = spec.event_id_pointer.is_some()
        || spec.topic_pointer.is_some()
        || target.scheme.scheme == crate::connectors::WebhookScheme::StandardWebhooks;
    let json: Option<serde_json::Value> = needs_json
        .then(|| serde_json::from_slice(inbound.body).ok())
        .flatten();
    let from_json = |pointer: &Option<String>| -> Option<String> {
        let value = json.as_ref()?.pointer(pointer.as_deref()?)?;
        Some(match value {
            // Text columns on PostgreSQL hold no NUL; a platform's id with one is still kept,
            // marked, rather than failing the commit of a verified webhook.
            serde_json::Value::String(s) => s.replace('\0', "\u{FFFD}"),
            other => other.to_string(),
        })
    };
    let header = |name: &Option<String>| -> Option<String> {
        inbound
            .headers
            .get(name.as_deref()?)
            .map(|v| v.trim().to_string())
    };
    let standard = target.scheme.scheme == crate::connectors::WebhookScheme::StandardWebhooks;
    let platform_event_id = if standard {
        inbound.headers.get("webhook-id").map(str::to_string)
    } else {
        header(&spec.event_id_header).or_else(|| from_json(&spec.event_id_pointer))
    }
    .filter(|id| !id.is_empty() && id.len() <= 256);
    let topic = if standard {
        from_json(&Some("/type".into()))
    } else {
        header(&spec.topic_header).or_else(|| from_json(&spec.topic_pointer))
    }
    .map(|t| t.chars().take(256).collect::<String>());
    // Without an event id, an identical body is the same event.
    let dedupe_key = match &platform_event_id {
        Some(id) => format!("id:{id}"),
        None => format!("sha256:{}", hex::encode(Sha256::digest(inbound.body))),
    };
    webhook_event::ActiveModel {
        id: Set(EventId::generate()),
        tenant_id: Set(target.tenant_id.clone()),
        connection_id: Set(target.connection_id.clone()),
        dedupe_key: Set(dedupe_key),
        platform_event_id: Set(platform_event_id),
        topic: Set(topic),
        content_type: Set(inbound.content_type.map(|c| c.chars().take(128).collect())),
        body: Set(inbound.body.to_vec()),
        received_at: Set(now),
    }
}
