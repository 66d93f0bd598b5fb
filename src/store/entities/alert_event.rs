use sea_orm::entity::prelude::*;

use crate::ids::{AlertEventId, TenantId};

/// Something the product noticed that a rule may turn into an alert.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AlertEventId,
    pub tenant_id: TenantId,
    pub kind: String,
    pub severity: String,
    /// Identical events share it (kind and where): one alert a key.
    pub group_key: String,
    pub connection_id: Option<String>,
    pub flow_id: Option<String>,
    pub message: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub details: Json,
    pub processed: bool,
    /// An alerter is acting on it until then; one that dies leaves it to the next after.
    pub claimed_until: Option<DateTimeUtc>,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
