//! Gauges read from storage, for what no single process sees by itself: the run queue's depth
//! and lag, the dead letters, the alert outbox and where connections' credentials stand.
//! Every process that runs workers samples them; each reports the same values, so the rules
//! under `deploy/` take `max` across processes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::error::Result;
use crate::store::entities::alert_delivery::{self, DeliveryStatus};
use crate::store::entities::connection::{self, AuthorizationStatus};
use crate::store::entities::run::{self, RunStatus};
use crate::telemetry::series::CREDENTIAL_STATES;

/// A credential that expires within this is "expiring" (the keeper normally refreshes it
/// well before; one still expiring this close is one it could not refresh).
const EXPIRING_WITHIN: chrono::Duration = chrono::Duration::hours(24);

/// What one sample read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Sample {
    pub runs_due: i64,
    /// Seconds the oldest due run has waited; 0 with none due.
    pub runs_due_oldest_seconds: f64,
    pub dead_letters: i64,
    pub deliveries_pending: i64,
    pub deliveries_oldest_pending_seconds: f64,
    /// Connections by connector, then by credential state.
    pub credentials: BTreeMap<String, BTreeMap<&'static str, i64>>,
}

/// Reads the gauges' values at `now`.
pub async fn sample(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<Sample> {
    // Due since: a queued run since it was made (or its retry time, once it has one), a retry
    // since its time came, a dead worker's run since its lease ran out.
    let queued = count_and_oldest(
        db,
        run::Column::CreatedAt,
        Condition::all().add(run::Column::Status.eq(RunStatus::Queued)),
    )
    .await?;
    let retrying = count_and_oldest(
        db,
        run::Column::NextAttemptAt,
        Condition::all()
            .add(run::Column::Status.eq(RunStatus::Retrying))
            .add(run::Column::NextAttemptAt.lte(now)),
    )
    .await?;
    let abandoned = count_and_oldest(
        db,
        run::Column::LeaseUntil,
        Condition::all()
            .add(run::Column::Status.eq(RunStatus::Running))
            .add(run::Column::LeaseUntil.lt(now)),
    )
    .await?;
    let (dead_letters, _) = count_and_oldest(
        db,
        run::Column::CreatedAt,
        Condition::all().add(run::Column::Status.eq(RunStatus::Dead)),
    )
    .await?;
    let (deliveries_pending, oldest_delivery) = alert_delivery::Entity::find()
        .filter(alert_delivery::Column::Status.eq(DeliveryStatus::Pending))
        .select_only()
        .column_as(
            Expr::expr(Func::count(Expr::col(alert_delivery::Column::Id))),
            "n",
        )
        .column_as(
            Expr::expr(Func::min(Expr::col(alert_delivery::Column::CreatedAt))),
            "oldest",
        )
        .into_tuple::<(i64, Option<DateTime<Utc>>)>()
        .one(db)
        .await?
        .unwrap_or((0, None));

    let oldest_due = [queued.1, retrying.1, abandoned.1]
        .into_iter()
        .flatten()
        .min();
    Ok(Sample {
        runs_due: queued.0 + retrying.0 + abandoned.0,
        runs_due_oldest_seconds: age(oldest_due, now),
        dead_letters,
        deliveries_pending,
        deliveries_oldest_pending_seconds: age(oldest_delivery, now),
        credentials: credential_states(db, now).await?,
    })
}

/// How many runs match, and the earliest `since` among them.
async fn count_and_oldest(
    db: &DatabaseConnection,
    since: run::Column,
    matching: Condition,
) -> Result<(i64, Option<DateTime<Utc>>)> {
    Ok(run::Entity::find()
        .filter(matching)
        .select_only()
        .column_as(Expr::expr(Func::count(Expr::col(run::Column::Id))), "n")
        .column_as(Expr::expr(Func::min(Expr::col(since))), "oldest")
        .into_tuple::<(i64, Option<DateTime<Utc>>)>()
        .one(db)
        .await?
        .unwrap_or((0, None)))
}

fn age(since: Option<DateTime<Utc>>, now: DateTime<Utc>) -> f64 {
    since.map_or(0.0, |since| {
        ((now - since).num_milliseconds().max(0) as f64) / 1000.0
    })
}

/// Connections by connector and credential state: re-authorisation required (the platform
/// refused a refresh), expired, expiring within a day, or valid (no known expiry counts).
async fn credential_states(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
) -> Result<BTreeMap<String, BTreeMap<&'static str, i64>>> {
    let rows = connection::Entity::find()
        .select_only()
        .column(connection::Column::Connector)
        .column(connection::Column::AuthorizationStatus)
        .column(connection::Column::CredentialExpiry)
        .into_tuple::<(String, Option<AuthorizationStatus>, Option<Value>)>()
        .all(db)
        .await?;
    let mut states: BTreeMap<String, BTreeMap<&'static str, i64>> = BTreeMap::new();
    for (connector, authorization, expiry) in rows {
        let soonest = expiry
            .and_then(|v| serde_json::from_value::<BTreeMap<String, DateTime<Utc>>>(v).ok())
            .and_then(|expiries| expiries.into_values().min());
        let state = if authorization == Some(AuthorizationStatus::ReauthorizationRequired) {
            "reauthorization_required"
        } else {
            match soonest {
                Some(at) if at <= now => "expired",
                Some(at) if at - now <= EXPIRING_WITHIN => "expiring_within_24h",
                _ => "valid",
            }
        };
        *states
            .entry(connector)
            .or_default()
            .entry(state)
            .or_default() += 1;
    }
    Ok(states)
}

/// Samples every `every` until shut down and sets the gauges. `connectors` are reported even
/// with no connection (a zero, not a missing series).
pub async fn run(
    db: DatabaseConnection,
    clock: Clock,
    connectors: Vec<String>,
    every: Duration,
    shutdown: CancellationToken,
) {
    // Connectors reported once stay reported (at zero when their last connection goes).
    let mut reported: BTreeSet<String> = connectors.into_iter().collect();
    loop {
        match sample(&db, clock.now()).await {
            Ok(sample) => {
                reported.extend(sample.credentials.keys().cloned());
                publish(&sample, &reported);
            }
            Err(err) => tracing::warn!(error = %err, "sampling the storage gauges failed"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

fn publish(sample: &Sample, connectors: &BTreeSet<String>) {
    metrics::gauge!("synchub_runs_due").set(sample.runs_due as f64);
    metrics::gauge!("synchub_runs_due_oldest_seconds").set(sample.runs_due_oldest_seconds);
    metrics::gauge!("synchub_dead_letters").set(sample.dead_letters as f64);
    metrics::gauge!("synchub_alert_deliveries_pending").set(sample.deliveries_pending as f64);
    metrics::gauge!("synchub_alert_deliveries_oldest_pending_seconds")
        .set(sample.deliveries_oldest_pending_seconds);
    for connector in connectors {
        let counts = sample.credentials.get(connector);
        for state in CREDENTIAL_STATES {
            let n = counts.and_then(|c| c.get(state)).copied().unwrap_or(0);
            metrics::gauge!("synchub_connections_credentials", "connector" => connector.clone(), "state" => state)
                .set(n as f64);
        }
    }
}
