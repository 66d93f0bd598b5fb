//! Connectors: what kind of external system a connection talks to, described by a declarative
//! manifest: fields, webhook scheme, environments, auth, rate limits, operations with their
//! templates and pagination, mappings onto unified records, and how records are written.

pub mod checks;
pub mod client;
pub mod lingxing;
mod lint;
pub mod lwa;
pub mod mabang;
mod manifest;
mod registry;
pub mod spec;
pub mod template;
pub mod token_refresh;
pub mod unified;
pub mod versions;

pub use manifest::{
    ConnectorKind, FieldSpec, FieldType, Manifest, SignatureEncoding, WebhookScheme, WebhookSpec,
};
pub use registry::{ConnectorRegistry, ConnectorSummary};
