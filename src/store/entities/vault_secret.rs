use sea_orm::entity::prelude::*;

use crate::ids::{SecretId, TenantId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "vault_secrets")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SecretId,
    pub tenant_id: TenantId,
    /// Which master key wrapped `wrapped_key` (a fingerprint, not the key).
    pub key_id: String,
    /// nonce || AES-256-GCM(master key, data key)
    pub wrapped_key: Vec<u8>,
    /// nonce || AES-256-GCM(data key, plaintext)
    pub ciphertext: Vec<u8>,
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
