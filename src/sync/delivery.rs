//! Writing a page's orders: batches in flight side by side, orders refused one by one, and
//! writes the platform carries out later (Mabang), confirmed by polling with what was sent
//! kept in the run's checkpoint.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use super::streams::Item;
use crate::connectors::client::{BatchOutcome, CallError, ConnectorClient, ErrorClass};
use crate::runs::Checkpoint;

/// The destination operations an orders flow writes with: the batch one where declared.
pub(super) const BATCH_WRITE: &str = "create_orders";
pub(super) const SINGLE_WRITE: &str = "create_order";

/// How often, and how many times in one attempt, a write carried out later is asked after.
const CONFIRM_EVERY: Duration = Duration::from_millis(250);
const CONFIRM_ROUNDS: u32 = 240;

/// What a page's write delivered, and the error that stopped the rest of it.
pub(super) struct Delivery {
    pub delivered: Vec<Item>,
    pub stopped: Option<CallError>,
}

impl Delivery {
    pub fn of(written: Result<Vec<Item>, CallError>) -> Self {
        match written {
            Ok(delivered) => Self {
                delivered,
                stopped: None,
            },
            Err(error) => Self {
                delivered: Vec::new(),
                stopped: Some(error),
            },
        }
    }
}

/// Writes orders to the destination: in batches where its connector has a batch operation
/// (as many calls in flight as the operation allows), one call per order otherwise. Every
/// order carries its idempotency key either way. Orders the destination refused one by one,
/// and whole calls that failed, stop the page: what was delivered is committed, and the
/// retry sends only the rest.
pub(super) async fn deliver_orders(destination: &ConnectorClient, orders: Vec<Item>) -> Delivery {
    let Some(batch) = destination.batch_spec(BATCH_WRITE) else {
        let mut delivered = Vec::with_capacity(orders.len());
        for item in orders {
            if let Err(error) = destination
                .write(SINGLE_WRITE, &item.stored, &item.key)
                .await
            {
                return Delivery {
                    delivered,
                    stopped: Some(error),
                };
            }
            delivered.push(item);
        }
        return Delivery {
            delivered,
            stopped: None,
        };
    };
    let size = batch.max.max(1);
    let mut chunks = Vec::with_capacity(orders.len().div_ceil(size));
    let mut orders = orders.into_iter().peekable();
    while orders.peek().is_some() {
        chunks.push(orders.by_ref().take(size).collect::<Vec<Item>>());
    }
    let outcomes: Vec<(Vec<Item>, Result<BatchOutcome, CallError>)> =
        futures_util::stream::iter(chunks.into_iter().map(|chunk| async move {
            let outcome = {
                // Borrowed: the batch call copies each body once, to add its key.
                let records: Vec<(&Value, &str)> = chunk
                    .iter()
                    .map(|item| (&item.stored, item.key.as_str()))
                    .collect();
                destination.write_batch(BATCH_WRITE, &records).await
            };
            (chunk, outcome)
        }))
        // One more than the cap: a call waiting for a slot takes the one freed here at once,
        // with no trip to the limiter's store (`RateLimiter::release`).
        .buffer_unordered(destination.writes_in_flight(BATCH_WRITE) + 1)
        .collect()
        .await;
    let mut delivered = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    let mut stopped = None;
    for (chunk, outcome) in outcomes {
        match outcome {
            Ok(outcome) => {
                let refused_at: std::collections::HashMap<usize, String> =
                    outcome.refused.into_iter().collect();
                for (i, item) in chunk.into_iter().enumerate() {
                    match refused_at.get(&i) {
                        Some(why) => refused.push((item.platform_id, why.clone())),
                        None => delivered.push(item),
                    }
                }
            }
            Err(error) => stopped = stopped.or(Some(error)),
        }
    }
    if stopped.is_none() && !refused.is_empty() {
        stopped = Some(refusal(destination, &refused, delivered.len()));
    }
    Delivery { delivered, stopped }
}

/// The orders a destination refused, each by its id with the reason: worth retrying (a SKU
/// the ERP learns, a store that was busy), so a transient class; the run's retries send
/// only these.
fn refusal(
    destination: &ConnectorClient,
    refused: &[(String, String)],
    delivered: usize,
) -> CallError {
    let listed: Vec<String> = refused
        .iter()
        .take(20)
        .map(|(id, why)| format!("{id} ({why})"))
        .collect();
    let more = refused.len().saturating_sub(listed.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    CallError::new(
        ErrorClass::ServerError,
        format!(
            "{} refused {} order(s): {}{more}; {delivered} other(s) were delivered, and the retry sends only the refused ones",
            destination.manifest().display_name,
            refused.len(),
            listed.join(", "),
        ),
    )
}

/// Sends the orders not sent yet (the checkpoint's `awaiting` lists those sent before a
/// restart) and notes each in the checkpoint. Returns the orders to wait for and whether
/// any was sent now (the checkpoint then needs committing before the wait).
pub(super) async fn submit_confirmed(
    destination: &ConnectorClient,
    orders: Vec<Item>,
    checkpoint: &mut Checkpoint,
) -> Result<(Vec<Item>, bool), Delivery> {
    let stop = |error| Delivery {
        delivered: Vec::new(),
        stopped: Some(error),
    };
    let mut awaiting = Vec::with_capacity(orders.len());
    let mut sent = false;
    for item in orders {
        if !checkpoint.awaiting.contains(&item.platform_id) {
            if let Err(error) = destination
                .write(SINGLE_WRITE, &item.stored, &item.key)
                .await
            {
                // Refused: taken before a crash that lost the checkpoint? The platform knows.
                if error.class.is_transient()
                    || destination
                        .confirmed(SINGLE_WRITE, &item.platform_id)
                        .await
                        .is_err()
                {
                    return Err(stop(error));
                }
            }
            checkpoint.awaiting.push(item.platform_id.clone());
            sent = true;
        }
        awaiting.push(item);
    }
    Ok((awaiting, sent))
}

/// Asks after the sent orders until each is done; those not done within the attempt stay
/// in the checkpoint, and the retry asks again.
pub(super) async fn await_confirmed(
    destination: &ConnectorClient,
    mut awaiting: Vec<Item>,
    checkpoint: &mut Checkpoint,
) -> Delivery {
    let mut delivered = Vec::with_capacity(awaiting.len());
    let mut stopped = None;
    for round in 0..CONFIRM_ROUNDS {
        let mut still = Vec::new();
        for item in awaiting {
            match destination.confirmed(SINGLE_WRITE, &item.platform_id).await {
                Ok(true) => delivered.push(item),
                Ok(false) => still.push(item),
                Err(error) => {
                    stopped.get_or_insert(error);
                    still.push(item);
                }
            }
        }
        awaiting = still;
        if awaiting.is_empty() || stopped.is_some() {
            break;
        }
        if round + 1 < CONFIRM_ROUNDS {
            tokio::time::sleep(CONFIRM_EVERY).await;
        }
    }
    checkpoint
        .awaiting
        .retain(|id| !delivered.iter().any(|item| &item.platform_id == id));
    if stopped.is_none() && !awaiting.is_empty() {
        stopped = Some(CallError::new(
            ErrorClass::ServerError,
            format!(
                "{} has not finished creating {} order(s) (first {}); the retry asks again without sending them twice",
                destination.manifest().display_name,
                awaiting.len(),
                awaiting[0].platform_id
            ),
        ));
    }
    Delivery { delivered, stopped }
}
