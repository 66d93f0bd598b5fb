//! Flows: a stream (orders, inventory, shipments) from a source connection to a destination,
//! on a schedule in the seller's time zone, on webhooks, or by hand; and their runs.

mod model;
mod service;

pub use model::{FlowPatch, FlowView, NewFlow, RetryPolicy, RunView, Stream};
pub use service::{Flows, enqueue_run, enqueue_runs, parse_flow_schedule, queued_run};

/// The dedupe key of the webhook-triggered run that has not started yet; the engine renames it
/// when it starts the run, so the next webhook queues a new one.
pub const WEBHOOK_PENDING: &str = "webhook:pending";
