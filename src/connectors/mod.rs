//! Connectors: what kind of external system a connection talks to, described by a declarative
//! manifest. This part holds the metadata (fields, webhook scheme); operations, pagination and
//! rate limits join it with the sync engine.

pub mod client;
mod lwa;
mod manifest;
mod registry;
pub mod signing;
pub mod spec;

pub use manifest::{
    ConnectorKind, FieldSpec, FieldType, Manifest, SignatureEncoding, WebhookScheme, WebhookSpec,
};
pub use registry::{ConnectorRegistry, ConnectorSummary};
