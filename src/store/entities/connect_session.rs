use sea_orm::entity::prelude::*;

use crate::ids::{ConnectSessionId, ConnectionId, TenantId};

/// A link that takes a seller through a platform's consent page and back. Only hashes of
/// the link's token and of the `state` sent to the platform are kept.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "connect_sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ConnectSessionId,
    pub tenant_id: TenantId,
    pub connector: String,
    pub environment: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub settings: Json,
    pub name: Option<String>,
    /// The connection this session authorises again, if any.
    pub connection_id: Option<ConnectionId>,
    /// Fixed at creation; the callback never reads a destination from the platform.
    pub return_url: String,
    pub token_hash: String,
    pub state_hash: Option<String>,
    pub state_expires_at: Option<DateTimeUtc>,
    pub status: SessionStatus,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    /// The connections the session created or authorised again.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub connection_ids: Option<Json>,
    /// The grants held (vaulted) while the seller picks one of several shops.
    pub pending_secret_id: Option<crate::ids::SecretId>,
    /// Who asked for the link (a token's name, or the credential keeper).
    pub created_by: String,
    pub expires_at: DateTimeUtc,
    pub created_at: DateTimeUtc,
    pub finished_at: Option<DateTimeUtc>,
}

text_enum!(
    /// Where a connect session stands; `expired` is shown, not stored.
    SessionStatus {
        /// The link was made; the seller has not reached the platform yet.
        Pending = "pending",
        /// The seller was sent to the platform with a state that is still open.
        Authorizing = "authorizing",
        /// The platform granted several shops; the seller picks one.
        ChoosingShop = "choosing_shop",
        Completed = "completed",
        Failed = "failed",
        Expired = "expired",
    }
);

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    pub fn find_in_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.clone()))
    }
}
