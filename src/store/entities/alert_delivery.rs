use sea_orm::entity::prelude::*;

use crate::ids::{AlertChannelId, AlertDeliveryId, AlertId, TenantId};

text_enum! {
    /// Where one message to one channel is: pending (in the outbox), delivered (the
    /// platform took it) or dead (refused for good; a replay makes it pending again).
    DeliveryStatus {
        Pending = "pending",
        Delivered = "delivered",
        Dead = "dead",
    }
}

/// One message to one channel: the outbox row, until the platform took it or it is dead.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_deliveries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AlertDeliveryId,
    pub tenant_id: TenantId,
    pub alert_id: AlertId,
    pub channel_id: AlertChannelId,
    #[sea_orm(column_type = "JsonBinary")]
    pub message: Json,
    pub status: DeliveryStatus,
    pub attempts: i64,
    pub next_attempt_at: DateTimeUtc,
    pub last_answer: Option<String>,
    pub created_at: DateTimeUtc,
    pub delivered_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
