//! What every handler can reach: the domain services, built once by `startup` and shared.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;

use crate::config::Settings;
use crate::connections::Connections;
use crate::connectors::ConnectorRegistry;
use crate::flows::Flows;
use crate::vault::Vault;
use crate::webhooks::IngestService;

pub struct AppState {
    pub db: DatabaseConnection,
    pub settings: Arc<Settings>,
    /// Seals the responses kept for idempotency replays.
    pub vault: Vault,
    pub registry: Arc<ConnectorRegistry>,
    pub versions: crate::connectors::versions::Versions,
    pub connections: Connections,
    pub connect: crate::connect::Connect,
    pub deployments: crate::deploy::Deployments,
    pub alert_channels: crate::alerts::AlertChannels,
    pub flows: Flows,
    pub ingest: IngestService,
    pub metrics: PrometheusHandle,
    /// The time every request-level decision reads (token expiry, idempotency windows).
    pub clock: crate::clock::Clock,
}
