//! A deployment's timeline: each move as a typed event (what the ops alerts deliver) and,
//! for the deployer's own moves, a line in the audit log.

use sea_orm::{ActiveModelTrait, ConnectionTrait, Set};
use serde_json::{Value, json};

use crate::audit::{self, Actor, Entry};
use crate::error::Result;
use crate::ids::DeploymentEventId;
use crate::store::entities::{deployment, deployment_event};

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
