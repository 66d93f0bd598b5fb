//! The deployer: a loop in every worker process that moves due deployments along their
//! state machine. Every state is in the database and each move is leased, so a restart or a
//! second process picks a deployment up where it was.
//!
//! pending / waiting_for_window -> (window open) verification of every target with the new
//! version -> switch of the first step -> in_progress -> (gate passes) next step ...
//! -> promoted (watched for the rollback window) -> completed. A failed verification ends
//! in `failed` with nothing switched; a failed gate, or a promoted version failing within
//! its rollback window, rolls back on its own.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::gate::gate_of;
use super::gate::{self, Sample, Verdict};
use super::model::Strategy;
use super::service::tenant_policy;
use super::switching::{rollback, switch};
use super::timeline::record_move;
use super::window::{self, Decision, DeployWindow};
use crate::audit::Actor;
use crate::connections::Connections;
use crate::error::Result;
use crate::ids::ConnectionId;
use crate::store::entities::{deployment, deployment_target, flow, run};

pub use crate::runtime::Clock;

const LEASE: chrono::Duration = chrono::Duration::seconds(120);

#[derive(Clone)]
pub struct Deployer {
    db: DatabaseConnection,
    connections: Connections,
    clock: Clock,
}

impl Deployer {
    pub fn new(db: DatabaseConnection, connections: Connections) -> Self {
        Self {
            db,
            connections,
            clock: Clock::system(),
        }
    }

    /// The deployer's time now: timeline entries carry when they happened, not when the
    /// tick began.
    fn at(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        crate::runtime::repeat("deployer", every, shutdown, || self.tick()).await
    }

    /// Advances every due deployment once; returns how many moved.
    pub async fn tick(&self) -> Result<usize> {
        let now = self.clock.now();
        let due = deployment::Entity::find()
            .filter(deployment::Column::State.is_in(deployment::DeploymentState::DUE))
            .filter(deployment::Column::NextActionAt.lte(now))
            .all(&self.db)
            .await?;
        let mut moved = 0;
        for row in due {
            let leased = deployment::Entity::update_many()
                .col_expr(deployment::Column::LeaseUntil, Some(now + LEASE).into())
                .filter(deployment::Column::Id.eq(row.id.clone()))
                .filter(
                    sea_orm::Condition::any()
                        .add(deployment::Column::LeaseUntil.is_null())
                        .add(deployment::Column::LeaseUntil.lt(now)),
                )
                .exec(&self.db)
                .await?;
            if leased.rows_affected == 0 {
                continue;
            }
            let outcome = self.advance(row.clone(), now).await;
            deployment::Entity::update_many()
                .col_expr(
                    deployment::Column::LeaseUntil,
                    Option::<DateTime<Utc>>::None.into(),
                )
                .filter(deployment::Column::Id.eq(row.id.clone()))
                .exec(&self.db)
                .await?;
            outcome?;
            moved += 1;
        }
        Ok(moved)
    }

    async fn advance(&self, row: deployment::Model, now: DateTime<Utc>) -> Result<()> {
        match row.state {
            deployment::DeploymentState::Pending
            | deployment::DeploymentState::WaitingForWindow => self.start(row, now).await,
            deployment::DeploymentState::InProgress => self.gate(row, now).await,
            deployment::DeploymentState::Promoted => self.watch(row, now).await,
            _ => Ok(()),
        }
    }

    async fn set(
        &self,
        row: &deployment::Model,
        update: impl FnOnce(&mut deployment::ActiveModel),
    ) -> Result<deployment::Model> {
        let mut active: deployment::ActiveModel = row.clone().into();
        update(&mut active);
        active.updated_at = Set(Utc::now());
        Ok(active.update(&self.db).await?)
    }

    /// Waits for the window, verifies every target, switches the first step.
    async fn start(&self, row: deployment::Model, now: DateTime<Utc>) -> Result<()> {
        if !row.forced {
            let (policy, zone) = tenant_policy(&self.db, &row.tenant_id).await?;
            let windows: Vec<DeployWindow> = match &row.window {
                Some(w) => serde_json::from_value(w.clone()).into_iter().collect(),
                None => policy.windows.clone(),
            };
            let wait = match window::decide(&windows, &policy.freezes, zone, now) {
                Decision::Open => None,
                Decision::WaitUntil(at) => Some((at, json!({"opens_at": at}))),
                // A freeze that began while waiting: look again in an hour.
                Decision::Frozen { reason } => {
                    Some((now + chrono::Duration::hours(1), json!({"frozen": reason})))
                }
            };
            if let Some((until, details)) = wait {
                let first = row.state != deployment::DeploymentState::WaitingForWindow;
                let row = self
                    .set(&row, |a| {
                        a.state = Set(deployment::DeploymentState::WaitingForWindow);
                        a.next_action_at = Set(until);
                    })
                    .await?;
                if first {
                    record_move(&self.db, &row, "waiting_for_window", details, self.at()).await?;
                }
                return Ok(());
            }
        }
        if !self.verify(&row, now).await? {
            return Ok(());
        }
        let steps: Vec<usize> = serde_json::from_value(row.steps.clone()).unwrap_or_default();
        self.switch_step(row, 0, &steps, now).await
    }

    /// Runs the connectivity checks of every target with the new version. False (and the
    /// deployment failed, nothing switched) when any fails.
    async fn verify(&self, row: &deployment::Model, now: DateTime<Utc>) -> Result<bool> {
        let actor = Actor::system(&format!("deployer ({})", row.created_by));
        let targets = deployment_target::Entity::find()
            .filter(deployment_target::Column::DeploymentId.eq(row.id.clone()))
            .filter(deployment_target::Column::State.eq(deployment_target::TargetState::Pending))
            .all(&self.db)
            .await?;
        let mut failed = Vec::new();
        for target in targets {
            let report = self
                .connections
                .check(
                    &actor,
                    &row.tenant_id,
                    target.connection_id.as_str(),
                    Some(&row.to_version),
                )
                .await?;
            // Blue-green also reads the same window with both versions and compares.
            let shadow = if report.passed && row.strategy == Strategy::BlueGreen.as_str() {
                Some(
                    self.connections
                        .compare_reads(
                            &row.tenant_id,
                            target.connection_id.as_str(),
                            &row.to_version,
                        )
                        .await?,
                )
            } else {
                None
            };
            let passed = report.passed && shadow.as_ref().is_none_or(|s| s.passed);
            if !passed {
                let mut checks: Vec<&str> = report
                    .checks
                    .iter()
                    .filter(|c| c.status == crate::connectors::checks::CheckStatus::Failed)
                    .map(|c| c.name)
                    .collect();
                if shadow.as_ref().is_some_and(|s| !s.passed) {
                    checks.push("shadow_read");
                }
                failed.push(json!({"connection": target.connection_id.to_string(), "failed_checks": checks}));
            }
            let mut update: deployment_target::ActiveModel = target.into();
            update.state = Set(if passed {
                deployment_target::TargetState::Verified
            } else {
                deployment_target::TargetState::VerificationFailed
            });
            update.verification = Set(Some(json!({"checks": report, "shadow": shadow})));
            update.update(&self.db).await?;
        }
        if failed.is_empty() {
            record_move(
                &self.db,
                row,
                "verification_passed",
                json!({"version": row.to_version}),
                self.at(),
            )
            .await?;
            return Ok(true);
        }
        let reason = format!(
            "verification failed for {} connection(s); nothing was switched",
            failed.len()
        );
        let row = self
            .set(row, |a| {
                a.state = Set(deployment::DeploymentState::Failed);
                a.reason = Set(Some(reason.clone()));
                a.finished_at = Set(Some(now));
            })
            .await?;
        record_move(
            &self.db,
            &row,
            "verification_failed",
            json!({"connections": failed}),
            self.at(),
        )
        .await?;
        Ok(false)
    }

    /// Switches step `step` (all targets up to its count) and moves to its gate, or to
    /// promoted after the last step.
    async fn switch_step(
        &self,
        row: deployment::Model,
        step: usize,
        steps: &[usize],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let upto = steps.get(step).copied().unwrap_or(usize::MAX);
        let expected = row.state;
        let switched = switch(&self.db, &row, expected, step as i32, upto, now).await?;
        let last = step + 1 >= steps.len();
        let gate = gate_of(&row);
        let row = self
            .set(&row, |a| {
                a.current_step = Set(step as i32);
                a.step_started_at = Set(Some(now));
                if last {
                    a.state = Set(deployment::DeploymentState::Promoted);
                    a.promoted_at = Set(Some(now));
                    a.next_action_at =
                        Set(now + chrono::Duration::seconds(gate.interval_seconds.min(60)));
                } else {
                    a.state = Set(deployment::DeploymentState::InProgress);
                    a.next_action_at = Set(now + chrono::Duration::seconds(gate.interval_seconds));
                }
            })
            .await?;
        let ids: Vec<String> = switched.iter().map(ToString::to_string).collect();
        record_move(&self.db, &row, "step_promoted", json!({"step": step, "switched": ids, "switched_so_far": upto.min(steps.last().copied().unwrap_or(0))}), self.at()).await?;
        if last {
            record_move(&self.db, &row, "promoted", json!({"version": row.to_version, "rollback_window_seconds": row.rollback_window_seconds}), self.at()).await?;
        }
        Ok(())
    }

    /// Connections by switch state: (on the new version, not yet).
    async fn groups(
        &self,
        row: &deployment::Model,
    ) -> Result<(Vec<ConnectionId>, Vec<ConnectionId>)> {
        let targets = deployment_target::Entity::find()
            .filter(deployment_target::Column::DeploymentId.eq(row.id.clone()))
            .all(&self.db)
            .await?;
        Ok(targets
            .into_iter()
            .fold((Vec::new(), Vec::new()), |(mut on, mut off), t| {
                if t.state == deployment_target::TargetState::Switched {
                    on.push(t.connection_id);
                } else {
                    off.push(t.connection_id);
                }
                (on, off)
            }))
    }

    /// Runs since `since` of the flows the connections take part in: finished ones, and
    /// failed attempts waiting for their retry.
    async fn samples(
        &self,
        connections: &[ConnectionId],
        since: DateTime<Utc>,
    ) -> Result<Vec<Sample>> {
        if connections.is_empty() {
            return Ok(Vec::new());
        }
        let flows: Vec<_> = flow::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(flow::Column::SourceConnectionId.is_in(connections.to_vec()))
                    .add(flow::Column::DestinationConnectionId.is_in(connections.to_vec())),
            )
            .all(&self.db)
            .await?
            .into_iter()
            .map(|f| f.id)
            .collect();
        if flows.is_empty() {
            return Ok(Vec::new());
        }
        let runs = run::Entity::find()
            .filter(run::Column::FlowId.is_in(flows))
            .filter(run::Column::StartedAt.gte(since))
            .filter(run::Column::Status.is_in([
                run::RunStatus::Succeeded,
                run::RunStatus::Dead,
                run::RunStatus::Retrying,
            ]))
            .all(&self.db)
            .await?;
        Ok(runs
            .into_iter()
            .map(|r| Sample {
                succeeded: r.status == run::RunStatus::Succeeded,
                error_class: r.error_class,
                duration_ms: r
                    .finished_at
                    .zip(r.started_at)
                    .map(|(end, start)| (end - start).num_milliseconds()),
            })
            .collect())
    }

    /// The health gate after a step: promote the next step, wait, or roll back.
    async fn gate(&self, row: deployment::Model, now: DateTime<Utc>) -> Result<()> {
        let spec = gate_of(&row);
        let since = row.step_started_at.unwrap_or(row.created_at);
        let (on, off) = self.groups(&row).await?;
        let canary = self.samples(&on, since).await?;
        let baseline = self.samples(&off, since).await?;
        let waited = (now - since).num_seconds();
        let manual = row.promote_requested;
        let (verdict, figures) = gate::evaluate(&spec, &canary, &baseline, waited);
        let verdict = if manual && verdict == Verdict::Wait {
            Verdict::Promote
        } else {
            verdict
        };
        let decision = match &verdict {
            Verdict::Promote => "promote",
            Verdict::Wait => "wait",
            Verdict::RollBack(_) => "roll_back",
        };
        if verdict != Verdict::Wait {
            record_move(&self.db, &row, "gate_evaluated", json!({"step": row.current_step, "decision": decision, "figures": figures, "manual": manual}), self.at()).await?;
        }
        match verdict {
            Verdict::Wait => {
                let poll = (spec.interval_seconds / 4).clamp(1, 60);
                self.set(&row, |a| {
                    a.next_action_at = Set(now + chrono::Duration::seconds(poll))
                })
                .await?;
                Ok(())
            }
            Verdict::RollBack(reason) => {
                rollback(
                    &self.db,
                    &row,
                    &format!("gate failed at step {}: {reason}", row.current_step),
                    false,
                    true,
                    now,
                )
                .await?;
                Ok(())
            }
            Verdict::Promote => {
                let row = self.set(&row, |a| a.promote_requested = Set(false)).await?;
                let steps: Vec<usize> =
                    serde_json::from_value(row.steps.clone()).unwrap_or_default();
                let next = row.current_step as usize + 1;
                self.switch_step(row, next, &steps, now).await
            }
        }
    }

    /// A promoted version is watched through its rollback window and rolled back on its
    /// own if its runs fail the gate's success rate; then the deployment completes.
    async fn watch(&self, row: deployment::Model, now: DateTime<Utc>) -> Result<()> {
        let promoted_at = row.promoted_at.unwrap_or(row.updated_at);
        if now >= promoted_at + chrono::Duration::seconds(row.rollback_window_seconds) {
            let row = self
                .set(&row, |a| {
                    a.state = Set(deployment::DeploymentState::Completed);
                    a.finished_at = Set(Some(now));
                })
                .await?;
            record_move(
                &self.db,
                &row,
                "completed",
                json!({"version": row.to_version}),
                self.at(),
            )
            .await?;
            return Ok(());
        }
        let spec = gate_of(&row);
        let (on, _) = self.groups(&row).await?;
        let samples = self.samples(&on, promoted_at).await?;
        let failures = samples.iter().filter(|s| !s.succeeded).count();
        // Over at least min_runs: one early failure among few runs is judged as the gate
        // would judge it.
        let rate = 1.0 - failures as f64 / samples.len().max(spec.min_runs.max(1) as usize) as f64;
        if failures > 0 && rate < spec.min_success_rate {
            let reason = format!(
                "the promoted version failed {failures} of {} runs within its rollback window",
                samples.len()
            );
            rollback(&self.db, &row, &reason, false, true, now).await?;
            return Ok(());
        }
        let poll = (spec.interval_seconds / 4).clamp(1, 60);
        let until = (now + chrono::Duration::seconds(poll))
            .min(promoted_at + chrono::Duration::seconds(row.rollback_window_seconds));
        self.set(&row, |a| a.next_action_at = Set(until)).await?;
        Ok(())
    }
}
