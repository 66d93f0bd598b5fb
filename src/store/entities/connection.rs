use sea_orm::entity::prelude::*;

use crate::ids::{ConnectionId, SecretId, TenantId};

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "connections")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: ConnectionId,
    pub tenant_id: TenantId,
    pub name: String,
    pub connector: String,
    pub environment: String,
    #[sea_orm(column_type = "JsonBinary")]
    pub settings: Json,
    pub credentials_secret_id: SecretId,
    pub webhook_secret_id: Option<SecretId>,
    pub previous_webhook_secret_id: Option<SecretId>,
    pub previous_webhook_secret_expires_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary")]
    pub allowed_cidrs: Json,
    pub timezone: Option<String>,
    /// The pinned connector version; None follows the built-in one.
    pub version: Option<String>,
    /// Why the connection runs `version`: "hand", or "deployment:<id>".
    pub pinned_by: Option<String>,
    /// Webhooks refused for a bad signature or a foreign source address (bodies are not kept).
    pub rejected_webhooks: i64,
    /// When each credential expires, where known: `{"access_token": "2026-…Z", …}`.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub credential_expiry: Option<Json>,
    /// When the credential keeper looks next: a refresh ahead of expiry, or a reminder.
    pub credentials_due_at: Option<DateTimeUtc>,
    /// Token refreshes that failed in a row (the keeper's backoff).
    pub credential_refresh_failures: i64,
    /// When a seller last authorised this connection through a connect link, and who sent it.
    pub authorized_at: Option<DateTimeUtc>,
    pub authorized_by: Option<String>,
    /// None: credentials pasted by hand; else an [`AuthorizationStatus`].
    pub authorization_status: Option<AuthorizationStatus>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

text_enum!(
    /// Where a connection's authorisation stands.
    AuthorizationStatus {
        /// Credentials that came from the platform's consent flow and still refresh.
        Authorized = "authorized",
        /// The platform refused a refresh: only the seller authorising again helps.
        ReauthorizationRequired = "reauthorization_required",
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
