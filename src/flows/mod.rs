//! Flows: a stream (orders, inventory, shipments) from a source connection to a destination,
//! on a schedule in the seller's time zone, on webhooks, or by hand; and their runs.

mod model;
mod service;

pub use model::{FlowPatch, FlowView, NewFlow, RetryPolicy, RunView, Stream};
pub use service::Flows;
