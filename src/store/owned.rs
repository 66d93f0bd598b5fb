//! Tenancy in one place for lookups by id: every row of these entities belongs to one
//! tenant, and `find_owned` is the only way a service turns a raw id from a request into a
//! row. Another tenant's id, a malformed id and a missing row are the same 404.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use super::entities::{
    alert_channel, alert_delivery, api_token, connect_session, connection, deployment, flow, run,
};
use crate::error::{Error, Result};
use crate::ids::{
    AlertChannelId, AlertDeliveryId, ConnectSessionId, ConnectionId, DeploymentId, FlowId, RunId,
    TenantId, TokenId,
};

/// An entity whose rows each belong to one tenant and are found by a typed id.
pub trait TenantOwned: EntityTrait {
    /// What a 404 calls it ("connection").
    const NOUN: &'static str;
    type Id: Into<sea_orm::Value>;
    fn parse_id(raw: &str) -> Option<Self::Id>;
    fn id_column() -> Self::Column;
    fn tenant_column() -> Self::Column;
}

/// The tenant's row with this raw id, or 404.
pub async fn find_owned<E: TenantOwned>(
    db: &impl ConnectionTrait,
    tenant: &TenantId,
    raw: &str,
) -> Result<E::Model> {
    let id = E::parse_id(raw).ok_or(Error::NotFound(E::NOUN))?;
    E::find()
        .filter(E::tenant_column().eq(tenant.clone()))
        .filter(E::id_column().eq(id))
        .one(db)
        .await?
        .ok_or(Error::NotFound(E::NOUN))
}

macro_rules! tenant_owned {
    ($module:ident, $id:ty, $noun:literal) => {
        impl TenantOwned for $module::Entity {
            const NOUN: &'static str = $noun;
            type Id = $id;
            fn parse_id(raw: &str) -> Option<$id> {
                <$id>::parse(raw)
            }
            fn id_column() -> $module::Column {
                $module::Column::Id
            }
            fn tenant_column() -> $module::Column {
                $module::Column::TenantId
            }
        }
    };
}

tenant_owned!(connection, ConnectionId, "connection");
tenant_owned!(connect_session, ConnectSessionId, "connect session");
tenant_owned!(flow, FlowId, "flow");
tenant_owned!(run, RunId, "run");
tenant_owned!(deployment, DeploymentId, "deployment");
tenant_owned!(alert_channel, AlertChannelId, "alert channel");
tenant_owned!(alert_delivery, AlertDeliveryId, "alert delivery");
tenant_owned!(api_token, TokenId, "token");
