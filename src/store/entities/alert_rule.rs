use sea_orm::entity::prelude::*;

use crate::ids::{AlertRuleId, TenantId};

/// Which events alert whom: kinds, scope, a threshold in a window, channels, quiet hours.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_rules")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AlertRuleId,
    pub tenant_id: TenantId,
    pub name: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub kinds: Json,
    pub connection_id: Option<String>,
    pub flow_id: Option<String>,
    pub threshold_count: i64,
    pub window_seconds: i64,
    pub severity: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub channels: Json,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub quiet_hours: Option<Json>,
    pub throttle_seconds: i64,
    /// Fires only once matching events have kept coming (no gap longer than the window)
    /// for this long; 0 fires on the threshold alone.
    pub for_seconds: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
