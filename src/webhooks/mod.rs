//! Webhook ingress: verify the platform's signature on the raw body, check the sender's
//! address, then commit the event (group commit) before the 2xx. Duplicates are stored once.

mod events;
mod ingest;
mod rejections;
pub(crate) mod schemes;
mod writer;

pub use events::{EventView, list_events};
pub use ingest::{Acknowledged, InboundWebhook, IngestService};
pub use schemes::{Headers, Rejection, sign, verify};
pub use writer::EventWriter;
