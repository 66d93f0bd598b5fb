use sea_orm::{ActiveModelTrait, ConnectionTrait, DatabaseConnection, EntityTrait, Set};
use serde::{Deserialize, Serialize};

use crate::audit::{self, Actor, Entry};
use crate::error::{Error, FieldError, Result};
use crate::ids::TenantId;
use crate::store::entities::tenant;
use crate::timezone::parse_timezone;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Seller account name, 1 to 200 characters.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: String,
    /// IANA time zone of the seller (e.g. Asia/Shanghai); schedules default to it.
    #[serde(default = "default_timezone")]
    pub timezone: String,
}

fn default_timezone() -> String {
    "UTC".into()
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TenantView {
    pub id: String,
    pub name: String,
    pub timezone: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<tenant::Model> for TenantView {
    fn from(m: tenant::Model) -> Self {
        Self {
            id: m.id.to_string(),
            name: m.name,
            timezone: m.timezone,
            created_at: m.created_at,
        }
    }
}

pub async fn create_tenant(
    db: &DatabaseConnection,
    actor: &Actor,
    input: NewTenant,
) -> Result<TenantView> {
    let mut errors = Vec::new();
    let name = input.name.trim().to_string();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    if let Err(message) = parse_timezone(&input.timezone) {
        errors.push(FieldError::new("timezone", message));
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors));
    }
    let txn = crate::store::begin_write(db).await?;
    let model = tenant::ActiveModel {
        id: Set(TenantId::generate()),
        name: Set(name),
        timezone: Set(input.timezone),
        deploy_policy: Set(None),
        created_at: Set(chrono::Utc::now()),
    }
    .insert(&txn)
    .await?;
    audit::record(
        &txn,
        actor,
        Entry {
            tenant_id: None,
            action: "tenant.create",
            resource_type: "tenant",
            resource_id: model.id.as_str(),
            details: serde_json::json!({ "name": model.name, "timezone": model.timezone }),
        },
    )
    .await?;
    txn.commit().await?;
    Ok(model.into())
}

pub async fn ensure_tenant_exists<C: ConnectionTrait>(
    db: &C,
    id: &TenantId,
) -> Result<tenant::Model> {
    tenant::Entity::find_by_id(id.clone())
        .one(db)
        .await?
        .ok_or(Error::NotFound("tenant"))
}
