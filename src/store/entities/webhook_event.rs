use sea_orm::entity::prelude::*;

use crate::ids::{ConnectionId, EventId, TenantId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: EventId,
    pub tenant_id: TenantId,
    pub connection_id: ConnectionId,
    /// The platform's event id, or a hash of the body where the platform sends none.
    pub dedupe_key: String,
    pub platform_event_id: Option<String>,
    pub topic: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub received_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    pub fn find_in_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.clone()))
    }
}
