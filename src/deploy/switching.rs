//! The switch and the rollback: each one transaction over the targets' pins (with a
//! snapshot of each connection's pin, settings and flow cursors), shared by the API and the
//! deployer.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set,
};
use serde_json::{Value, json};

use super::timeline::{record_event, record_move};
use crate::error::Result;
use crate::ids::{ConnectionId, DeploymentId};
use crate::store::entities::{connection, deployment, deployment_target, flow};

/// A connection pinned by a deployment says which.
pub fn pinned_by(id: &DeploymentId) -> String {
    format!("deployment:{id}")
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
