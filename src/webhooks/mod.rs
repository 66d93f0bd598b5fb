//! Webhook ingress: verify the platform's signature on the raw body, check the sender's
//! address, then commit the event (group commit) before the 2xx. Duplicates are stored once;
//! events are kept `webhooks.retention_days` (`retention`).

mod events;
mod ingest;
mod rejections;
pub mod retention;
pub(crate) mod schemes;
mod writer;

pub use events::{EventView, list_events};
pub use ingest::{Acknowledged, InboundWebhook, IngestService};
pub use schemes::{Headers, Rejection, sign, verify};
pub use writer::EventWriter;
