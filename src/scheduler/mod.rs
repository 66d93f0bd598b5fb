//! The scheduler: schedules are data, not timers. Each process runs one loop that claims the
//! flows whose `next_run_at` has come (row locks with SKIP LOCKED on PostgreSQL), enqueues a
//! run keyed by (flow, scheduled instant) so that no second process can enqueue the same tick,
//! and moves `next_run_at` on in the flow's zone with a compare-and-set.
//!
//! Missed ticks (the service was down): a flow with `catch_up` runs the oldest missed tick
//! once and then continues from now; without it, missed ticks are skipped.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::LockBehavior;
use sea_orm::sea_query::LockType;
use sea_orm::{
    ColumnTrait, DatabaseBackend, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use tokio_util::sync::CancellationToken;

use crate::error::Result;
use crate::ids::{FlowId, RunId};
use crate::runs::{enqueue_runs, queued_run};
use crate::runtime::RunsSignal;
use crate::schedule::{Schedule, ScheduleSpec};
use crate::store::entities::flow;

/// How many due flows one transaction claims.
const CLAIM_BATCH: u64 = 500;

/// A tick later than this counts as missed (the service was down), not merely late.
pub const MISFIRE_GRACE: chrono::Duration = chrono::Duration::seconds(60);

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TickReport {
    /// Runs enqueued by this call.
    pub enqueued: usize,
    /// Ticks already enqueued by another process.
    pub duplicates: usize,
    /// Missed ticks skipped (flows without catch-up).
    pub skipped: usize,
}

/// A flow's move from this tick to its next one (none when the schedule has no more).
type Advance = (DateTime<Utc>, Option<DateTime<Utc>>);

/// The schedule a stored flow runs on, if any.
pub fn flow_schedule(row: &flow::Model) -> Option<Schedule> {
    let spec: ScheduleSpec = serde_json::from_value(row.schedule.clone()?).ok()?;
    Schedule::parse(&spec, &row.timezone).ok()
}

#[derive(Clone)]
pub struct Scheduler {
    db: DatabaseConnection,
    runs: RunsSignal,
    clock: crate::clock::Clock,
}

impl Scheduler {
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            runs: RunsSignal::new(),
            clock: crate::clock::Clock::system(),
        }
    }

    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Wakes this process's dispatcher when a tick queued runs.
    pub fn with_signal(mut self, runs: RunsSignal) -> Self {
        self.runs = runs;
        self
    }

    /// Enqueues every tick due at `now`; returns what it did. Safe to call from any number
    /// of processes at once.
    pub async fn tick(&self, now: DateTime<Utc>) -> Result<TickReport> {
        let mut report = TickReport::default();
        loop {
            let claimed = self.claim_batch(now, &mut report).await?;
            if report.enqueued > 0 {
                self.runs.notify();
            }
            if claimed < CLAIM_BATCH as usize {
                return Ok(report);
            }
        }
    }

    async fn claim_batch(&self, now: DateTime<Utc>, report: &mut TickReport) -> Result<usize> {
        let txn = crate::store::begin_write(&self.db).await?;
        let mut query = flow::Entity::find()
            .filter(flow::Column::Enabled.eq(true))
            .filter(flow::Column::NextRunAt.lte(now))
            .order_by_asc(flow::Column::NextRunAt)
            .limit(CLAIM_BATCH);
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            query = query.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let due = query.all(&txn).await?;
        // One insert for the batch's runs; then the flows' next ticks, compare-and-set, one
        // statement per (this tick, next tick) pair: flows due together mostly move together.
        let mut runs = Vec::with_capacity(due.len());
        let mut advances: HashMap<Advance, Vec<FlowId>> = HashMap::new();
        for row in &due {
            let Some(scheduled) = row.next_run_at else {
                continue;
            };
            let missed = now - scheduled > MISFIRE_GRACE;
            if missed && !row.catch_up {
                report.skipped += 1;
            } else {
                let key = format!("schedule:{}", scheduled.to_rfc3339());
                runs.push(queued_run(
                    row,
                    RunId::generate(),
                    "schedule",
                    key,
                    Some(scheduled),
                    now,
                ));
            }
            // On time: the next tick after this one. After downtime: the next one after now.
            let from = if missed { now } else { scheduled };
            let next = flow_schedule(row).and_then(|s| s.next_after(from));
            advances
                .entry((scheduled, next))
                .or_default()
                .push(row.id.clone());
        }
        let wanted = runs.len();
        let enqueued = enqueue_runs(&txn, runs).await? as usize;
        report.enqueued += enqueued;
        report.duplicates += wanted - enqueued.min(wanted);
        let backend = self.db.get_database_backend();
        for ((scheduled, next), ids) in advances {
            // About 40 bytes an id as sent.
            for ids in crate::store::statement_chunks(ids, backend, 500, |_| 40) {
                flow::Entity::update_many()
                    .col_expr(flow::Column::NextRunAt, next.into())
                    .filter(flow::Column::Id.is_in(ids))
                    .filter(flow::Column::NextRunAt.eq(scheduled))
                    .exec(&txn)
                    .await?;
            }
        }
        txn.commit().await?;
        Ok(due.len())
    }

    /// Ticks every `interval` until cancelled. Errors (a busy database) are logged and the
    /// next tick tries again; nothing is lost, because due rows stay due.
    pub async fn run(self, interval: Duration, shutdown: CancellationToken) {
        let mut timer = tokio::time::interval(interval);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = timer.tick() => {}
            }
            match self.tick(self.clock.now()).await {
                Ok(report) if report.enqueued + report.skipped > 0 => {
                    metrics::counter!("synchub_scheduler_runs_enqueued_total")
                        .increment(report.enqueued as u64);
                    metrics::counter!("synchub_scheduler_ticks_skipped_total")
                        .increment(report.skipped as u64);
                    tracing::debug!(
                        enqueued = report.enqueued,
                        skipped = report.skipped,
                        "scheduler tick"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "scheduler tick failed; retrying"),
            }
        }
    }
}
