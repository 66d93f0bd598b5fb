use sea_orm::entity::prelude::*;

use crate::ids::{PlatformAppId, SecretId, TenantId};

/// A tenant's app registration on a platform, or (owned by [`TenantId::operator`]) the
/// operator's default for every tenant. Public fields here, secrets in the vault.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "platform_apps")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: PlatformAppId,
    pub tenant_id: TenantId,
    pub connector: String,
    /// Client id, scopes, redirect URL...: what may be shown.
    #[sea_orm(column_type = "JsonBinary")]
    pub fields: Json,
    /// The app's secrets, as one vaulted JSON object.
    pub secret_id: SecretId,
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
