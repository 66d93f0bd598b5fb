use sea_orm::entity::prelude::*;

use crate::ids::{TenantId, TokenId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: TokenId,
    /// None for operator tokens.
    pub tenant_id: Option<TenantId>,
    pub name: String,
    /// SHA-256 (hex) of the token; the token itself is never stored.
    pub token_hash: String,
    /// The first characters of the token, so a person can tell tokens apart.
    pub prefix: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub scopes: Json,
    #[sea_orm(column_type = "JsonBinary")]
    pub allowed_cidrs: Json,
    pub expires_at: Option<DateTimeUtc>,
    pub revoked_at: Option<DateTimeUtc>,
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
