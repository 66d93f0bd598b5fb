//! What fired and where it went: alerts with each delivery's status, and replay of a dead
//! delivery.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Set,
};
use serde::Serialize;

use crate::audit::{self, Actor, Entry};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::store::entities::alert_delivery::DeliveryStatus;
use crate::store::entities::{alert, alert_delivery};

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub channel_id: String,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: chrono::DateTime<chrono::Utc>,
    pub last_answer: Option<String>,
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AlertView {
    pub id: String,
    pub rule_id: String,
    pub group_key: String,
    pub state: String,
    pub count: i64,
    pub first_at: chrono::DateTime<chrono::Utc>,
    pub last_at: chrono::DateTime<chrono::Utc>,
    pub last_message: String,
    pub deliveries: Vec<DeliveryView>,
}

fn delivery_view(row: alert_delivery::Model) -> DeliveryView {
    DeliveryView {
        id: row.id.to_string(),
        channel_id: row.channel_id.to_string(),
        status: row.status,
        attempts: row.attempts,
        next_attempt_at: row.next_attempt_at,
        last_answer: row.last_answer,
        delivered_at: row.delivered_at,
    }
}

/// The tenant's latest 100 alerts, newest first.
pub async fn alerts(db: &DatabaseConnection, tenant: &TenantId) -> Result<Vec<AlertView>> {
    let rows = alert::Entity::find()
        .filter(alert::Column::TenantId.eq(tenant.clone()))
        .order_by_desc(alert::Column::LastAt)
        .limit(100)
        .all(db)
        .await?;
    let mut views = Vec::with_capacity(rows.len());
    for row in rows {
        let deliveries = alert_delivery::Entity::find()
            .filter(alert_delivery::Column::AlertId.eq(row.id.clone()))
            .order_by_asc(alert_delivery::Column::Id)
            .all(db)
            .await?
            .into_iter()
            .map(delivery_view)
            .collect();
        views.push(AlertView {
            id: row.id.to_string(),
            rule_id: row.rule_id.to_string(),
            group_key: row.group_key,
            state: row.state,
            count: row.count,
            first_at: row.first_at,
            last_at: row.last_at,
            last_message: row.last_message,
            deliveries,
        });
    }
    Ok(views)
}

pub async fn replay(
    db: &DatabaseConnection,
    actor: &Actor,
    tenant: &TenantId,
    id: &str,
) -> Result<DeliveryView> {
    let row = crate::store::find_owned::<alert_delivery::Entity>(db, tenant, id).await?;
    if row.status != DeliveryStatus::Dead {
        return Err(Error::Conflict(format!(
            "delivery {} is {}: only dead ones are replayed",
            row.id, row.status
        )));
    }
    let mut active: alert_delivery::ActiveModel = row.into();
    active.status = Set(DeliveryStatus::Pending);
    active.attempts = Set(0);
    active.next_attempt_at = Set(chrono::Utc::now());
    let row = active.update(db).await?;
    audit::record(
        db,
        actor,
        Entry {
            tenant_id: Some(tenant),
            action: "alert_delivery.replay",
            resource_type: "alert_delivery",
            resource_id: row.id.as_str(),
            details: serde_json::json!({"channel_id": row.channel_id.to_string()}),
        },
    )
    .await?;
    Ok(delivery_view(row))
}
