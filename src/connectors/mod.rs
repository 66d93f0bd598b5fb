//! Connectors: what kind of external system a connection talks to, described by a declarative
//! manifest. This part holds the metadata (fields, webhook scheme); operations, pagination and
//! rate limits join it with the sync engine.

mod manifest;
mod registry;

pub use manifest::{
    ConnectorKind, FieldSpec, FieldType, Manifest, SignatureEncoding, WebhookScheme, WebhookSpec,
};
pub use registry::{ConnectorRegistry, ConnectorSummary};
