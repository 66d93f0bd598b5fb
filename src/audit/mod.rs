//! The audit log: every write records who did it, what, to which resource, and from which
//! request. Entries are written in the same transaction as the change they describe.

use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::Serialize;

use crate::error::Result;
use crate::ids::{AuditId, TenantId, TokenId};
use crate::pagination::{Direction, Page, PageRequest, page_query};
use crate::store::entities::audit_event;

/// Who is acting: the token, its tenant (None for the operator) and the request it came in.
#[derive(Debug, Clone)]
pub struct Actor {
    pub token_id: Option<TokenId>,
    pub tenant_id: Option<TenantId>,
    pub name: String,
    pub request_id: Option<String>,
}

impl Actor {
    /// Actions taken by the service itself (start-up bootstrap, CLI commands).
    pub fn system(name: &str) -> Self {
        Self {
            token_id: None,
            tenant_id: None,
            name: name.to_string(),
            request_id: None,
        }
    }
}

pub struct Entry<'a> {
    pub tenant_id: Option<&'a TenantId>,
    pub action: &'a str,
    pub resource_type: &'a str,
    pub resource_id: &'a str,
    pub details: serde_json::Value,
}

pub async fn record<C: ConnectionTrait>(db: &C, actor: &Actor, entry: Entry<'_>) -> Result<()> {
    audit_event::ActiveModel {
        id: Set(AuditId::generate()),
        tenant_id: Set(entry.tenant_id.cloned()),
        actor_token_id: Set(actor.token_id.clone()),
        actor_name: Set(actor.name.clone()),
        action: Set(entry.action.to_string()),
        resource_type: Set(entry.resource_type.to_string()),
        resource_id: Set(entry.resource_id.to_string()),
        details: Set(entry.details),
        request_id: Set(actor.request_id.clone()),
        occurred_at: Set(chrono::Utc::now()),
    }
    .insert(db)
    .await?;
    Ok(())
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    pub id: String,
    pub tenant_id: Option<String>,
    pub actor_token_id: Option<String>,
    pub actor_name: String,
    pub action: String,
    pub resource_type: String,
    pub resource_id: String,
    pub details: serde_json::Value,
    pub request_id: Option<String>,
    pub occurred_at: chrono::DateTime<chrono::Utc>,
}

impl From<audit_event::Model> for AuditEntry {
    fn from(m: audit_event::Model) -> Self {
        Self {
            id: m.id.to_string(),
            tenant_id: m.tenant_id.map(|t| t.to_string()),
            actor_token_id: m.actor_token_id.map(|t| t.to_string()),
            actor_name: m.actor_name,
            action: m.action,
            resource_type: m.resource_type,
            resource_id: m.resource_id,
            details: m.details,
            request_id: m.request_id,
            occurred_at: m.occurred_at,
        }
    }
}

/// Newest first. A tenant sees only its own entries; the operator (None) sees the
/// operator-level entries and, when it names one, a tenant's.
pub async fn list<C: ConnectionTrait>(
    db: &C,
    tenant: Option<&TenantId>,
    page: &PageRequest,
) -> Result<Page<AuditEntry>> {
    let mut query = audit_event::Entity::find();
    query = match tenant {
        Some(t) => query.filter(audit_event::Column::TenantId.eq(t.clone())),
        None => query.filter(audit_event::Column::TenantId.is_null()),
    };
    let rows = page_query(query, audit_event::Column::Id, page, Direction::NewestFirst)
        .all(db)
        .await?;
    Ok(Page::from_rows(
        rows,
        page.limit,
        |m| m.id.to_string(),
        AuditEntry::from,
    ))
}
