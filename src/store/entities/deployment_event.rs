use sea_orm::entity::prelude::*;

use crate::ids::{DeploymentEventId, DeploymentId, TenantId};

/// One entry of a deployment's timeline, and a typed event for the ops alerts.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "deployment_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: DeploymentEventId,
    pub deployment_id: DeploymentId,
    pub tenant_id: TenantId,
    pub kind: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub details: Json,
    pub at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
