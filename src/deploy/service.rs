//! Deployments as the API sees them: create (validated, one active per connector and
//! connection), read with targets and timeline, pause, resume, promote, roll back; the deploy
//! policy.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde_json::json;

use super::model::{DeploymentView, NewDeployment, RollbackRequest};
use super::window::{self, Decision, DeployPolicy};
use crate::audit::{self, Actor, Entry};
use crate::connectors::versions::Versions;
use crate::error::{Error, FieldError, Result};
use crate::ids::{ConnectionId, DeploymentId, TenantId};
use crate::store::entities::{connection, deployment, deployment_event, deployment_target, tenant};

use super::plan::{manifest_diff, position_key, step_counts};
use super::switching::rollback;
use super::timeline::record_event;

#[derive(Clone)]
pub struct Deployments {
    db: DatabaseConnection,
    versions: Versions,
    /// Windows, freezes and timeline stamps are judged by it.
    clock: crate::clock::Clock,
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
