use sea_orm::entity::prelude::*;

use crate::ids::{ConnectionId, TenantId};

/// A unified record as last delivered: the platform's version of it and its unified form.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "records")]
pub struct Model {
    pub tenant_id: TenantId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub connection_id: ConnectionId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub kind: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub platform_id: String,
    /// The record's `updated_at` in UTC, RFC 3339 with fixed precision, so it sorts as text.
    pub version: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub data: Json,
    pub synced_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
