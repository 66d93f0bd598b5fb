//! Deployments as the API sees them: create (validated, one active per connector and
//! connection), read with targets and timeline, pause, resume, promote, roll back; the deploy
//! policy. The switch and the rollback live here too: both are one transaction over the
//! targets' pins, shared by the API and the deployer.

use std::collections::BTreeSet;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::gate::GateSpec;
use super::model::{DeploymentView, NewDeployment, RollbackRequest, Strategy};
use super::window::{self, Decision, DeployPolicy};
use crate::audit::{self, Actor, Entry};
use crate::connectors::Manifest;
use crate::connectors::versions::Versions;
use crate::error::{Error, FieldError, Result};
use crate::ids::{ConnectionId, DeploymentEventId, DeploymentId, TenantId};
use crate::store::entities::{
    connection, deployment, deployment_event, deployment_target, flow, tenant,
};

/// A connection pinned by a deployment says which.
pub fn pinned_by(id: &DeploymentId) -> String {
    format!("deployment:{id}")
}

#[derive(Clone)]
pub struct Deployments {
    db: DatabaseConnection,
    versions: Versions,
    /// Windows, freezes and timeline stamps are judged by it.
    clock: crate::clock::Clock,
}

/// Records one timeline entry (the typed event the ops alerts will deliver) and, for the
/// deployer's own moves, its line in the audit log with the versions it moves between
/// (moves made through the API are audited under the caller's name instead).
pub async fn record_event(
    db: &impl ConnectionTrait,
    row: &deployment::Model,
    kind: &str,
    details: Value,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    record(db, row, kind, details, at, false).await
}

/// A move the deployer made on its own: on the timeline and in the audit log.
pub async fn record_move(
    db: &impl ConnectionTrait,
    row: &deployment::Model,
    kind: &str,
    details: Value,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<()> {
    record(db, row, kind, details, at, true).await
}

async fn record(
    db: &impl ConnectionTrait,
    row: &deployment::Model,
    kind: &str,
    details: Value,
    at: chrono::DateTime<chrono::Utc>,
    audited: bool,
) -> Result<()> {
    let audit_details = json!({
        "connector": row.connector, "from_version": row.manifest_diff["from_version"],
        "to_version": row.to_version, "strategy": row.strategy, "details": details,
    });
    deployment_event::ActiveModel {
        id: Set(DeploymentEventId::generate()),
        deployment_id: Set(row.id.clone()),
        tenant_id: Set(row.tenant_id.clone()),
        kind: Set(kind.to_string()),
        details: Set(details),
        at: Set(at),
    }
    .insert(db)
    .await?;
    let severity = match kind {
        "verification_failed" | "rolled_back" => Some(crate::alerts::message::Severity::Critical),
        "waiting_for_window" | "step_promoted" | "promoted" => {
            Some(crate::alerts::message::Severity::Info)
        }
        _ => None,
    };
    if let Some(severity) = severity {
        crate::alerts::events::emit(
            db,
            crate::alerts::events::Event {
                at,
                tenant: &row.tenant_id,
                kind: &format!("deployment.{kind}"),
                severity,
                group_key: row.id.to_string(),
                connection_id: None,
                flow_id: None,
                message: format!(
                    "deployment {} of {} {}: {kind}",
                    row.id, row.connector, row.to_version
                ),
                details: json!({"deployment_id": row.id.to_string(), "reason": row.reason}),
            },
        )
        .await?;
    }
    if !audited {
        return Ok(());
    }
    audit::record(
        db,
        &Actor::system(&format!("deployer for {}", row.created_by)),
        Entry {
            tenant_id: Some(&row.tenant_id),
            action: &format!("deployment.{kind}"),
            resource_type: "deployment",
            resource_id: row.id.as_str(),
            details: audit_details,
        },
    )
    .await?;
    Ok(())
}

/// Cumulative connection counts per step: canary percentages, rolling batches, or all at once.
fn step_counts(
    strategy: Strategy,
    percents: Option<&[u32]>,
    batch: Option<u32>,
    targets: usize,
) -> Result<Vec<usize>> {
    let counts = match strategy {
        Strategy::Immediate | Strategy::BlueGreen => vec![targets],
        Strategy::Canary => {
            let percents = percents.unwrap_or(&[1, 10, 50, 100]);
            if percents.is_empty()
                || percents.last() != Some(&100)
                || percents.windows(2).any(|w| w[0] >= w[1])
                || percents.iter().any(|p| *p == 0 || *p > 100)
            {
                return Err(Error::invalid(
                    "steps",
                    "rising percentages from 1 to 100, ending at 100",
                ));
            }
            let mut counts: Vec<usize> = percents
                .iter()
                .map(|p| ((targets * *p as usize).div_ceil(100)).max(1))
                .collect();
            counts.dedup();
            counts
        }
        Strategy::Rolling => {
            let batch = batch.unwrap_or(1);
            if batch == 0 {
                return Err(Error::invalid("batch_size", "at least 1"));
            }
            (1..=targets.div_ceil(batch as usize))
                .map(|i| (i * batch as usize).min(targets))
                .collect()
        }
    };
    Ok(counts)
}

/// Which top-level sections of the manifest change, and how many operations.
fn manifest_diff(from: &Manifest, to: &Manifest) -> Value {
    let (from, to) = (
        serde_json::to_value(from).unwrap_or_default(),
        serde_json::to_value(to).unwrap_or_default(),
    );
    let keys: BTreeSet<&String> = from
        .as_object()
        .into_iter()
        .chain(to.as_object())
        .flat_map(|o| o.keys())
        .collect();
    let changed: Vec<&String> = keys
        .into_iter()
        .filter(|k| from.get(k.as_str()) != to.get(k.as_str()))
        .collect();
    let operations = |v: &Value| -> BTreeSet<String> {
        v["operations"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let (before, after) = (operations(&from), operations(&to));
    json!({
        "from_version": from["version"],
        "changed_sections": changed,
        "operations_added": after.difference(&before).collect::<Vec<_>>(),
        "operations_removed": before.difference(&after).collect::<Vec<_>>(),
        "operations_changed": before.intersection(&after).filter(|op| from["operations"][op.as_str()] != to["operations"][op.as_str()]).collect::<Vec<_>>(),
    })
}

/// A stable order for switching: sandbox connections first, then by a hash of the id.
fn position_key(row: &connection::Model) -> (bool, [u8; 32]) {
    (
        row.environment != "sandbox",
        Sha256::digest(row.id.as_str().as_bytes()).into(),
    )
}

pub async fn tenant_policy(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
) -> Result<(DeployPolicy, chrono_tz::Tz)> {
    let row = tenant::Entity::find_by_id(tenant.clone())
        .one(db)
        .await?
        .ok_or(Error::NotFound("tenant"))?;
    let policy = row
        .deploy_policy
        .and_then(|p| serde_json::from_value(p).ok())
        .unwrap_or_default();
    let zone = crate::timezone::parse_timezone(&row.timezone).unwrap_or(chrono_tz::UTC);
    Ok((policy, zone))
}

impl Deployments {
    pub fn new(db: DatabaseConnection, versions: Versions) -> Self {
        Self {
            db,
            versions,
            clock: crate::clock::Clock::system(),
        }
    }

    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub async fn create(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        input: NewDeployment,
    ) -> Result<DeploymentView> {
        let now = self.clock.now();
        let mut errors = Vec::new();
        let gate = input.gate.clone().unwrap_or_default();
        gate.validate(&mut errors);
        if let Some(window) = &input.window {
            window::check_window(window, "window", &mut errors);
        }
        let rollback_window = input.rollback_window_seconds.unwrap_or(3600);
        if !(0..=7 * 86_400).contains(&rollback_window) {
            errors.push(FieldError::new("rollback_window_seconds", "0 to 604800"));
        }
        let target = self
            .versions
            .manifest(tenant, &input.connector, Some(&input.version))
            .await?;
        if target.is_none() {
            errors.push(FieldError::new(
                "version",
                format!(
                    "{} has no version {:?} this tenant can run",
                    input.connector, input.version
                ),
            ));
        }
        let mut rows = Vec::new();
        if input.connections.is_empty() {
            rows = connection::Entity::find_in_tenant(tenant)
                .filter(connection::Column::Connector.eq(input.connector.clone()))
                .all(&self.db)
                .await?;
        }
        for (i, raw) in input.connections.iter().enumerate() {
            let found = match ConnectionId::parse(raw) {
                Some(id) => {
                    connection::Entity::find_in_tenant(tenant)
                        .filter(connection::Column::Id.eq(id))
                        .one(&self.db)
                        .await?
                }
                None => None,
            };
            match found {
                Some(row) if row.connector == input.connector => rows.push(row),
                Some(_) => errors.push(FieldError::new(
                    format!("connections[{i}]"),
                    format!("is not a {} connection", input.connector),
                )),
                None => errors.push(FieldError::new(
                    format!("connections[{i}]"),
                    "no such connection",
                )),
            }
        }
        if rows.is_empty() && errors.is_empty() {
            errors.push(FieldError::new(
                "connections",
                format!("no {} connection to deploy to", input.connector),
            ));
        }
        let steps = match step_counts(
            input.strategy,
            input.steps.as_deref(),
            input.batch_size,
            rows.len(),
        ) {
            Ok(steps) => steps,
            Err(Error::Invalid(mut problems)) => {
                errors.append(&mut problems);
                Vec::new()
            }
            Err(other) => return Err(other),
        };
        let Some(target) = target.filter(|_| errors.is_empty()) else {
            return Err(Error::Invalid(errors));
        };
        let (policy, zone) = tenant_policy(&self.db, tenant).await?;
        if let Decision::Frozen { reason } = window::decide(&[], &policy.freezes, zone, now)
            && !input.force
        {
            return Err(Error::Conflict(format!(
                "deployments are frozen today ({reason}); pass force to deploy anyway"
            )));
        }
        rows.sort_by_key(position_key);
        let from = self
            .versions
            .manifest(tenant, &input.connector, rows[0].version.as_deref())
            .await?
            .unwrap_or_else(|| target.clone());

        let txn = crate::store::begin_write(&self.db).await?;
        let ids: Vec<ConnectionId> = rows.iter().map(|r| r.id.clone()).collect();
        let busy = deployment_target::Entity::find()
            .filter(deployment_target::Column::ConnectionId.is_in(ids.clone()))
            .all(&txn)
            .await?;
        let busy_deployments: Vec<DeploymentId> =
            busy.iter().map(|t| t.deployment_id.clone()).collect();
        if !busy_deployments.is_empty() {
            let active = deployment::Entity::find_in_tenant(tenant)
                .filter(deployment::Column::Id.is_in(busy_deployments))
                .filter(deployment::Column::Connector.eq(input.connector.clone()))
                .filter(deployment::Column::State.is_in(deployment::DeploymentState::ACTIVE))
                .one(&txn)
                .await?;
            if let Some(active) = active {
                return Err(Error::Conflict(format!(
                    "deployment {} is still rolling {} out to some of these connections",
                    active.id, active.connector
                )));
            }
        }
        let changelog = self
            .versions
            .list(tenant, &input.connector)
            .await?
            .into_iter()
            .find(|v| v.version == input.version)
            .map(|v| v.changelog)
            .unwrap_or_default();
        let row = deployment::ActiveModel {
            id: Set(DeploymentId::generate()),
            tenant_id: Set(tenant.clone()),
            connector: Set(input.connector.clone()),
            to_version: Set(input.version.clone()),
            strategy: Set(input.strategy.as_str().into()),
            state: Set(deployment::DeploymentState::Pending),
            steps: Set(json!(steps)),
            gate: Set(serde_json::to_value(&gate).unwrap_or_default()),
            window: Set(input
                .window
                .as_ref()
                .and_then(|w| serde_json::to_value(w).ok())),
            forced: Set(input.force),
            current_step: Set(0),
            step_started_at: Set(None),
            next_action_at: Set(now),
            lease_until: Set(None),
            rollback_window_seconds: Set(rollback_window),
            promoted_at: Set(None),
            paused_from: Set(None),
            promote_requested: Set(false),
            changelog: Set(changelog),
            manifest_diff: Set(manifest_diff(&from, &target)),
            created_by: Set(actor.name.clone()),
            reason: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            finished_at: Set(None),
        }
        .insert(&txn)
        .await?;
        for (position, target_row) in rows.iter().enumerate() {
            deployment_target::ActiveModel {
                deployment_id: Set(row.id.clone()),
                connection_id: Set(target_row.id.clone()),
                position: Set(position as i32),
                step: Set(None),
                previous_version: Set(None),
                previous_pinned_by: Set(None),
                snapshot: Set(None),
                state: Set(deployment_target::TargetState::Pending),
                verification: Set(None),
                switched_at: Set(None),
            }
            .insert(&txn)
            .await?;
        }
        let details = json!({"to_version": row.to_version, "strategy": row.strategy, "connections": ids.iter().map(|i| i.to_string()).collect::<Vec<_>>(), "steps": steps, "forced": row.forced, "manifest_diff": row.manifest_diff});
        record_event(&txn, &row, "created", details.clone(), now).await?;
        audit::record(&txn, actor, Entry {
            tenant_id: Some(tenant),
            action: if input.force { "deployment.create.forced" } else { "deployment.create" },
            resource_type: "deployment",
            resource_id: row.id.as_str(),
            details: json!({"connector": row.connector, "from_version": from.version, "to_version": row.to_version, "changelog": row.changelog, "details": details}),
        })
        .await?;
        txn.commit().await?;
        self.get(tenant, row.id.as_str()).await
    }

    async fn find(
        &self,
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        id: &str,
    ) -> Result<deployment::Model> {
        crate::store::find_owned::<deployment::Entity>(db, tenant, id).await
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<DeploymentView> {
        let row = self.find(&self.db, tenant, id).await?;
        view(&self.db, row).await
    }

    /// The tenant's latest deployments, newest first.
    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<DeploymentView>> {
        let rows = deployment::Entity::find_in_tenant(tenant)
            .order_by_desc(deployment::Column::Id)
            .limit(50)
            .all(&self.db)
            .await?;
        let mut views = Vec::with_capacity(rows.len());
        for row in rows {
            views.push(view(&self.db, row).await?);
        }
        Ok(views)
    }

    /// Pause, resume or promote (skip the rest of the gate's wait): a state change with
    /// its timeline entry and audit record.
    pub async fn act(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        action: &str,
    ) -> Result<DeploymentView> {
        let now = self.clock.now();
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        let mut active: deployment::ActiveModel = row.clone().into();
        match (action, row.state) {
            ("pause", state)
                if state.is_active() && state != deployment::DeploymentState::Paused =>
            {
                active.paused_from = Set(Some(row.state));
                active.state = Set(deployment::DeploymentState::Paused);
            }
            ("resume", deployment::DeploymentState::Paused) => {
                active.state = Set(row
                    .paused_from
                    .unwrap_or(deployment::DeploymentState::Pending));
                active.paused_from = Set(None);
                active.next_action_at = Set(now);
            }
            ("promote", deployment::DeploymentState::InProgress) => {
                // The gate's wait is skipped once: the next step switches on the deployer's
                // next tick (a failing gate still rolls back).
                active.next_action_at = Set(now);
                active.promote_requested = Set(true);
            }
            (action, state) => {
                return Err(Error::Conflict(format!(
                    "cannot {action} a deployment that is {state}"
                )));
            }
        }
        active.updated_at = Set(now);
        let updated = active.update(&txn).await?;
        let kind = match action {
            "pause" => "paused",
            "resume" => "resumed",
            _ => "promoted_by_hand",
        };
        record_event(&txn, &updated, kind, json!({"by": actor.name}), now).await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: &format!("deployment.{action}"),
                resource_type: "deployment",
                resource_id: updated.id.as_str(),
                details: json!({"from_state": row.state, "to_state": updated.state}),
            },
        )
        .await?;
        txn.commit().await?;
        view(&self.db, updated).await
    }

    /// Manual rollback, at any time before the deployment is over.
    pub async fn rollback(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        request: RollbackRequest,
    ) -> Result<DeploymentView> {
        let row = self.find(&self.db, tenant, id).await?;
        let reason = request
            .reason
            .unwrap_or_else(|| format!("rolled back by {}", actor.name));
        let rolled = rollback(
            &self.db,
            &row,
            &reason,
            request.restore_cursors,
            false,
            self.clock.now(),
        )
        .await?;
        if !rolled {
            return Err(Error::Conflict(format!(
                "deployment {} is {}: nothing to roll back",
                row.id, row.state
            )));
        }
        audit::record(
            &self.db,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "deployment.rollback",
                resource_type: "deployment",
                resource_id: row.id.as_str(),
                details: json!({"reason": reason, "restore_cursors": request.restore_cursors}),
            },
        )
        .await?;
        self.get(tenant, id).await
    }

    pub async fn policy(&self, tenant: &TenantId) -> Result<DeployPolicy> {
        Ok(tenant_policy(&self.db, tenant).await?.0)
    }

    pub async fn set_policy(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        policy: DeployPolicy,
    ) -> Result<DeployPolicy> {
        let problems = window::validate(&policy, "policy");
        if !problems.is_empty() {
            return Err(Error::Invalid(problems));
        }
        let txn = crate::store::begin_write(&self.db).await?;
        let row = tenant::Entity::find_by_id(tenant.clone())
            .one(&txn)
            .await?
            .ok_or(Error::NotFound("tenant"))?;
        let mut active: tenant::ActiveModel = row.into();
        active.deploy_policy = Set(serde_json::to_value(&policy).ok());
        active.update(&txn).await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "deploy_policy.update",
                resource_type: "tenant",
                resource_id: tenant.as_str(),
                details: serde_json::to_value(&policy).unwrap_or_default(),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(policy)
    }
}

pub async fn view(db: &impl ConnectionTrait, row: deployment::Model) -> Result<DeploymentView> {
    let targets = deployment_target::Entity::find()
        .filter(deployment_target::Column::DeploymentId.eq(row.id.clone()))
        .order_by_asc(deployment_target::Column::Position)
        .all(db)
        .await?;
    let events = deployment_event::Entity::find()
        .filter(deployment_event::Column::DeploymentId.eq(row.id.clone()))
        .order_by_asc(deployment_event::Column::Id)
        .all(db)
        .await?;
    Ok(DeploymentView::new(row, targets, events))
}

/// Flows a connection takes part in: their cursors go into the snapshot.
async fn flows_of(
    db: &impl ConnectionTrait,
    connection: &ConnectionId,
) -> Result<Vec<flow::Model>> {
    Ok(flow::Entity::find()
        .filter(
            sea_orm::Condition::any()
                .add(flow::Column::SourceConnectionId.eq(connection.clone()))
                .add(flow::Column::DestinationConnectionId.eq(connection.clone())),
        )
        .all(db)
        .await?)
}

/// Switches the first `upto` targets not switched yet to the new version, in one
/// transaction, after a snapshot of each one's pin, settings and flow cursors; only while
/// the deployment is still in `expected_state` (a rollback in between wins).
pub async fn switch(
    db: &DatabaseConnection,
    row: &deployment::Model,
    expected_state: deployment::DeploymentState,
    step: i32,
    upto: usize,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<ConnectionId>> {
    let txn = crate::store::begin_write(db).await?;
    let still = deployment::Entity::update_many()
        .col_expr(deployment::Column::UpdatedAt, now.into())
        .filter(deployment::Column::Id.eq(row.id.clone()))
        .filter(deployment::Column::State.eq(expected_state))
        .exec(&txn)
        .await?;
    if still.rows_affected == 0 {
        return Ok(Vec::new());
    }
    let targets = deployment_target::Entity::find()
        .filter(deployment_target::Column::DeploymentId.eq(row.id.clone()))
        .filter(deployment_target::Column::Position.lt(upto as i32))
        .filter(deployment_target::Column::State.eq(deployment_target::TargetState::Verified))
        .all(&txn)
        .await?;
    let mut switched = Vec::with_capacity(targets.len());
    for target in targets {
        let Some(connection_row) = connection::Entity::find_by_id(target.connection_id.clone())
            .one(&txn)
            .await?
        else {
            continue;
        };
        let cursors: serde_json::Map<String, Value> = flows_of(&txn, &connection_row.id)
            .await?
            .into_iter()
            .map(|f| (f.id.to_string(), f.cursor.unwrap_or(Value::Null)))
            .collect();
        let snapshot = json!({
            "version": connection_row.version, "pinned_by": connection_row.pinned_by,
            "settings": connection_row.settings, "flow_cursors": cursors,
        });
        let mut target_update: deployment_target::ActiveModel = target.clone().into();
        target_update.previous_version = Set(connection_row.version.clone());
        target_update.previous_pinned_by = Set(connection_row.pinned_by.clone());
        target_update.snapshot = Set(Some(snapshot));
        target_update.state = Set(deployment_target::TargetState::Switched);
        target_update.step = Set(Some(step));
        target_update.switched_at = Set(Some(now));
        target_update.update(&txn).await?;
        let mut pin: connection::ActiveModel = connection_row.into();
        pin.version = Set(Some(row.to_version.clone()));
        pin.pinned_by = Set(Some(pinned_by(&row.id)));
        pin.updated_at = Set(now);
        pin.update(&txn).await?;
        switched.push(target.connection_id);
    }
    txn.commit().await?;
    Ok(switched)
}

/// Restores the previous pins of every switched target (and, if asked, the flows' cursors)
/// in one transaction, and ends the deployment as rolled back. False when the deployment
/// was over already.
pub async fn rollback(
    db: &DatabaseConnection,
    row: &deployment::Model,
    reason: &str,
    restore_cursors: bool,
    automatic: bool,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    let txn = crate::store::begin_write(db).await?;
    let ended = deployment::Entity::update_many()
        .col_expr(
            deployment::Column::State,
            deployment::DeploymentState::RolledBack.into(),
        )
        .col_expr(deployment::Column::Reason, Some(reason.to_string()).into())
        .col_expr(deployment::Column::FinishedAt, Some(now).into())
        .col_expr(deployment::Column::UpdatedAt, now.into())
        .filter(deployment::Column::Id.eq(row.id.clone()))
        .filter(deployment::Column::State.is_in(deployment::DeploymentState::ACTIVE))
        .exec(&txn)
        .await?;
    if ended.rows_affected == 0 {
        return Ok(false);
    }
    let targets = deployment_target::Entity::find()
        .filter(deployment_target::Column::DeploymentId.eq(row.id.clone()))
        .filter(deployment_target::Column::State.eq(deployment_target::TargetState::Switched))
        .all(&txn)
        .await?;
    let mut restored = Vec::new();
    for target in targets {
        // Only a pin this deployment set is put back: a later hand pin stays.
        connection::Entity::update_many()
            .col_expr(
                connection::Column::Version,
                target.previous_version.clone().into(),
            )
            .col_expr(
                connection::Column::PinnedBy,
                target.previous_pinned_by.clone().into(),
            )
            .col_expr(connection::Column::UpdatedAt, now.into())
            .filter(connection::Column::Id.eq(target.connection_id.clone()))
            .filter(connection::Column::PinnedBy.eq(pinned_by(&row.id)))
            .exec(&txn)
            .await?;
        if restore_cursors
            && let Some(cursors) = target
                .snapshot
                .as_ref()
                .and_then(|s| s["flow_cursors"].as_object())
        {
            for (flow_id, cursor) in cursors {
                flow::Entity::update_many()
                    .col_expr(
                        flow::Column::Cursor,
                        Some(cursor.clone()).filter(|c| !c.is_null()).into(),
                    )
                    .filter(flow::Column::Id.eq(flow_id.as_str()))
                    .exec(&txn)
                    .await?;
            }
        }
        restored.push(target.connection_id.to_string());
        let mut update: deployment_target::ActiveModel = target.into();
        update.state = Set(deployment_target::TargetState::RolledBack);
        update.update(&txn).await?;
    }
    let details = json!({"automatic": automatic, "reason": reason, "connections": restored, "restore_cursors": restore_cursors});
    if automatic {
        record_move(&txn, row, "rolled_back", details, now).await?;
    } else {
        record_event(&txn, row, "rolled_back", details, now).await?;
    }
    txn.commit().await?;
    Ok(true)
}

/// The gate settings of a deployment row.
pub fn gate_of(row: &deployment::Model) -> GateSpec {
    serde_json::from_value(row.gate.clone()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_count_connections_cumulatively() {
        let canary = |p: &[u32], n| step_counts(Strategy::Canary, Some(p), None, n).unwrap();
        assert_eq!(canary(&[1, 10, 50, 100], 1000), vec![10, 100, 500, 1000]);
        assert_eq!(
            canary(&[1, 10, 50, 100], 4),
            vec![1, 2, 4],
            "tiny steps merge"
        );
        assert_eq!(
            step_counts(Strategy::Rolling, None, Some(3), 7).unwrap(),
            vec![3, 6, 7]
        );
        assert_eq!(
            step_counts(Strategy::BlueGreen, None, None, 5).unwrap(),
            vec![5]
        );
        assert!(step_counts(Strategy::Canary, Some(&[10, 50]), None, 5).is_err());
        assert!(step_counts(Strategy::Canary, Some(&[50, 10, 100]), None, 5).is_err());
        assert!(step_counts(Strategy::Rolling, None, Some(0), 5).is_err());
    }
}
