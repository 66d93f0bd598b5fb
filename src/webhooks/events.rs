//! Listing received events of one connection, newest first.

use base64::Engine;
use sea_orm::{ColumnTrait, ConnectionTrait, QueryFilter};
use serde::Serialize;

use crate::error::Result;
use crate::ids::{ConnectionId, TenantId};
use crate::pagination::{Direction, Page, PageRequest, page_query};
use crate::store::entities::webhook_event;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EventView {
    pub id: String,
    pub connection_id: String,
    pub platform_event_id: Option<String>,
    pub topic: Option<String>,
    pub content_type: Option<String>,
    /// The body as JSON when it parses, else as text, else base64 in `body_base64`.
    pub body: Option<serde_json::Value>,
    pub body_base64: Option<String>,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl From<webhook_event::Model> for EventView {
    fn from(m: webhook_event::Model) -> Self {
        let (body, body_base64) = match serde_json::from_slice::<serde_json::Value>(&m.body) {
            Ok(json) => (Some(json), None),
            Err(_) => match String::from_utf8(m.body) {
                Ok(text) => (Some(serde_json::Value::String(text)), None),
                Err(raw) => (
                    None,
                    Some(base64::engine::general_purpose::STANDARD.encode(raw.into_bytes())),
                ),
            },
        };
        Self {
            id: m.id.to_string(),
            connection_id: m.connection_id.to_string(),
            platform_event_id: m.platform_event_id,
            topic: m.topic,
            content_type: m.content_type,
            body,
            body_base64,
            received_at: m.received_at,
        }
    }
}

/// The caller must have checked that the connection belongs to the tenant; the tenant filter
/// here holds even if it did not.
pub async fn list_events<C: ConnectionTrait>(
    db: &C,
    tenant: &TenantId,
    connection: &ConnectionId,
    page: &PageRequest,
) -> Result<Page<EventView>> {
    let query = webhook_event::Entity::find_in_tenant(tenant)
        .filter(webhook_event::Column::ConnectionId.eq(connection.clone()));
    let rows = page_query(
        query,
        webhook_event::Column::Id,
        page,
        Direction::NewestFirst,
    )
    .all(db)
    .await?;
    Ok(Page::from_rows(
        rows,
        page.limit,
        |m| m.id.to_string(),
        EventView::from,
    ))
}
