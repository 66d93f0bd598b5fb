//! Refused webhooks (bad signature, a sender not on the allowlist) are counted in memory and
//! written on a timer: at most one alert event and one counter update per connection per
//! interval, so what an attacker's flood costs the database does not grow with its rate.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use crate::ids::ConnectionId;
use crate::store::entities::connection;

type Counts = Mutex<HashMap<ConnectionId, i64>>;

/// Cheap to clone; the flushing task ends when the last handle is dropped. The map holds
/// only connections that exist (a webhook is refused after its connection is found).
#[derive(Clone)]
pub struct RejectionTally {
    counts: Arc<Counts>,
}

impl RejectionTally {
    pub fn start(db: DatabaseConnection, every: Duration, clock: crate::clock::Clock) -> Self {
        let counts = Arc::new(Counts::default());
        tokio::spawn(flush_loop(db, Arc::downgrade(&counts), every, clock));
        Self { counts }
    }

    /// Counts one refusal; never blocks on the database.
    pub fn count(&self, id: &ConnectionId) {
        if let Ok(mut counts) = self.counts.lock() {
            *counts.entry(id.clone()).or_default() += 1;
        }
    }
}

async fn flush_loop(
    db: DatabaseConnection,
    counts: Weak<Counts>,
    every: Duration,
    clock: crate::clock::Clock,
) {
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(counts) = counts.upgrade() else {
            return;
        };
        let taken = match counts.lock() {
            Ok(mut counts) => std::mem::take(&mut *counts),
            Err(_) => return,
        };
        drop(counts);
        if taken.is_empty() {
            continue;
        }
        if let Err(err) = flush(&db, &taken, clock.now()).await {
            tracing::warn!(error = %err, connections = taken.len(), "could not record refused webhooks");
        }
    }
}

async fn flush(
    db: &DatabaseConnection,
    counts: &HashMap<ConnectionId, i64>,
    now: chrono::DateTime<chrono::Utc>,
) -> crate::error::Result<()> {
    let txn = crate::store::begin_write(db).await?;
    for (id, count) in counts {
        let Some(row) = connection::Entity::find_by_id(id.clone()).one(&txn).await? else {
            continue;
        };
        tracing::info!(connection_id = %id, count, "webhooks refused");
        crate::alerts::events::emit(
            &txn,
            crate::alerts::events::Event {
                at: now,
                tenant: &row.tenant_id,
                kind: "webhook_rejected",
                severity: crate::alerts::message::Severity::Warning,
                group_key: row.id.to_string(),
                connection_id: Some(row.id.to_string()),
                flow_id: None,
                message: format!(
                    "{count} webhook(s) to {} refused: bad signature or a sender not on the allowlist",
                    row.name
                ),
                details: serde_json::json!({"count": count}),
            },
        )
        .await?;
        connection::Entity::update_many()
            .col_expr(
                connection::Column::RejectedWebhooks,
                Expr::col(connection::Column::RejectedWebhooks).add(*count),
            )
            .filter(connection::Column::Id.eq(id.clone()))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(())
}
