use sea_orm::entity::prelude::*;

use crate::ids::{AlertId, AlertRuleId, TenantId};

/// Identical events under one rule and key: one alert, counted, notified at most once per
/// throttle interval.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AlertId,
    pub tenant_id: TenantId,
    pub rule_id: AlertRuleId,
    pub group_key: String,
    pub state: String,
    pub count: i64,
    /// How many of `count` the last message covered.
    pub notified_count: i64,
    pub last_message: String,
    pub first_at: DateTimeUtc,
    pub last_at: DateTimeUtc,
    pub last_notified_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
