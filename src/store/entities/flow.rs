use sea_orm::entity::prelude::*;

use crate::ids::{ConnectionId, FlowId, TenantId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "flows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: FlowId,
    pub tenant_id: TenantId,
    pub name: String,
    pub stream: String,
    pub source_connection_id: ConnectionId,
    pub destination_connection_id: ConnectionId,
    /// The `ScheduleSpec` as given; None: runs only on webhooks or by hand.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub schedule: Option<Json>,
    /// The zone cron schedules are read in (the given one, or the tenant's at creation).
    pub timezone: String,
    pub on_webhook: bool,
    pub enabled: bool,
    /// After downtime, run a missed tick once (true) or skip it (false).
    pub catch_up: bool,
    pub max_attempts: i32,
    pub retry_base_seconds: i32,
    pub retry_cap_seconds: i32,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub cursor: Option<Json>,
    pub next_run_at: Option<DateTimeUtc>,
    pub consecutive_failures: i32,
    pub disabled_reason: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    pub fn find_in_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.clone()))
    }
}
