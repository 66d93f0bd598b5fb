use sea_orm::entity::prelude::*;

use crate::ids::{FlowId, RunId, TenantId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: RunId,
    pub tenant_id: TenantId,
    pub flow_id: FlowId,
    /// schedule, manual, webhook or replay.
    pub trigger: String,
    pub dedupe_key: String,
    pub scheduled_for: Option<DateTimeUtc>,
    /// queued, running, retrying, succeeded, failed or dead.
    pub status: String,
    pub attempts: i32,
    pub records_read: i64,
    pub records_written: i64,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub connector_version: Option<String>,
    pub next_attempt_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub checkpoint: Option<Json>,
    pub dispatched_at: Option<DateTimeUtc>,
    pub lease_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    pub fn find_in_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.clone()))
    }
}
