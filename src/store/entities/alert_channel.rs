use sea_orm::entity::prelude::*;

use crate::ids::{AlertChannelId, SecretId, TenantId};

/// An ops-chat channel: where alerts go and how they are signed.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "alert_channels")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: AlertChannelId,
    pub tenant_id: TenantId,
    pub name: String,
    pub kind: String,
    /// The URL carries the robot's token: it is a secret.
    pub url_secret_id: SecretId,
    pub secret_id: Option<SecretId>,
    /// The URL's scheme and host, to show.
    pub url_hint: String,
    pub language: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    pub fn find_in_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.clone()))
    }
}
