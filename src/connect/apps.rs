//! Platform apps: a tenant's registration of its own app on a platform, or the operator's,
//! which every tenant without its own uses. Public fields are stored as they are, secrets as
//! one vaulted JSON object; reads mask the secrets, and a change of secret is audited as a
//! rotation.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::platforms::{AppField, FieldKind, Platform};
use crate::audit::{self, Actor, Entry};
use crate::clock::Clock;
use crate::error::{Error, FieldError, Result};
use crate::ids::{PlatformAppId, TenantId};
use crate::secret::mask;
use crate::store::entities::platform_app;
use crate::vault::Vault;

const MAX_FIELD_LEN: usize = 4096;

#[derive(Clone)]
pub struct PlatformApps {
    db: DatabaseConnection,
    vault: Vault,
    public_url: String,
    clock: Clock,
}

/// Who registered the app: the tenant itself, or the operator for every tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AppOwner {
    Tenant,
    Operator,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PlatformAppView {
    pub connector: String,
    pub owner: AppOwner,
    /// The app's public fields (client id, scopes...).
    #[schema(value_type = Object)]
    pub fields: Map<String, Value>,
    /// Each secret masked; left out when a tenant reads the operator's app.
    #[schema(value_type = Option<Object>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Map<String, Value>>,
    /// The redirect URL to register with the platform.
    pub redirect_url: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

/// An app as a connect flow uses it: every field, secrets open.
pub struct ResolvedApp {
    pub fields: Map<String, Value>,
    pub secrets: Map<String, Value>,
    pub redirect_url: String,
}

impl ResolvedApp {
    /// A field or secret as text (integers too: Shopee's partner id).
    pub fn text(&self, name: &str) -> Option<String> {
        self.fields
            .get(name)
            .or_else(|| self.secrets.get(name))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
    }

    pub fn flag(&self, name: &str) -> bool {
        self.fields.get(name).and_then(Value::as_bool) == Some(true)
    }
}

/// Splits the input into public fields and secrets, checked against the platform's list.
fn check(
    platform: Platform,
    input: &Map<String, Value>,
) -> Result<(Map<String, Value>, Map<String, Value>)> {
    let specs = platform.app_fields();
    let mut errors = Vec::new();
    for name in input.keys() {
        if !specs.iter().any(|f| f.name == name) {
            let known: Vec<&str> = specs.iter().map(|f| f.name).collect();
            errors.push(FieldError::new(
                name.clone(),
                format!(
                    "unknown field; this platform's app takes: {}",
                    known.join(", ")
                ),
            ));
        }
    }
    let (mut fields, mut secrets) = (Map::new(), Map::new());
    for spec in specs {
        let Some(value) = input.get(spec.name) else {
            if spec.required {
                errors.push(FieldError::new(
                    spec.name,
                    format!("is required: {}", spec.description),
                ));
            }
            continue;
        };
        match check_value(spec, value) {
            Ok(value) if spec.secret => {
                secrets.insert(spec.name.into(), value);
            }
            Ok(value) => {
                fields.insert(spec.name.into(), value);
            }
            Err(message) => errors.push(FieldError::new(spec.name, message)),
        }
    }
    if errors.is_empty() {
        Ok((fields, secrets))
    } else {
        Err(Error::Invalid(errors))
    }
}

fn check_value(spec: &AppField, value: &Value) -> std::result::Result<Value, String> {
    let text = |v: &Value| -> std::result::Result<String, String> {
        let s = v.as_str().ok_or("must be a string")?.trim().to_string();
        if s.is_empty() || s.len() > MAX_FIELD_LEN {
            return Err(format!("must be 1 to {MAX_FIELD_LEN} bytes"));
        }
        if s.chars().any(char::is_control) {
            return Err("must not hold control characters".into());
        }
        Ok(s)
    };
    match spec.kind {
        FieldKind::Text => text(value).map(Value::String),
        FieldKind::Integer => value
            .as_u64()
            .or_else(|| value.as_str().and_then(|s| s.trim().parse().ok()))
            .map(Value::from)
            .ok_or_else(|| "must be a positive integer".to_string()),
        FieldKind::Flag => value
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| "must be true or false".to_string()),
        FieldKind::List => {
            let items = value.as_array().ok_or("must be a list of strings")?;
            if items.is_empty() {
                return Err("must not be empty".into());
            }
            let items = items
                .iter()
                .map(text)
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if items
                .iter()
                .any(|s| s.contains(',') || s.contains(char::is_whitespace))
            {
                return Err("each item is one scope, without commas or spaces".into());
            }
            Ok(json!(items))
        }
        FieldKind::Url => {
            let s = text(value)?;
            let url = url::Url::parse(&s).map_err(|_| "must be an absolute URL".to_string())?;
            if url.scheme() != "https" && url.scheme() != "http" {
                return Err("must be an http or https URL".into());
            }
            Ok(Value::String(s))
        }
    }
}

impl PlatformApps {
    pub fn new(db: DatabaseConnection, vault: Vault, public_url: String, clock: Clock) -> Self {
        Self {
            db,
            vault,
            public_url,
            clock,
        }
    }

    /// Where the platform sends the seller back, unless the app registered another URL.
    pub fn default_redirect_url(&self, platform: Platform) -> String {
        format!(
            "{}/v1/oauth/callback/{}",
            self.public_url,
            platform.connector()
        )
    }

    async fn row(
        &self,
        db: &impl ConnectionTrait,
        owner: &TenantId,
        connector: &str,
    ) -> Result<Option<platform_app::Model>> {
        Ok(platform_app::Entity::find_in_tenant(owner)
            .filter(platform_app::Column::Connector.eq(connector))
            .one(db)
            .await?)
    }

    /// Creates or replaces `owner`'s app on `connector`'s platform.
    pub async fn put(
        &self,
        actor: &Actor,
        owner: &TenantId,
        connector: &str,
        input: &Map<String, Value>,
    ) -> Result<PlatformAppView> {
        let platform = Platform::from_connector(connector)?;
        let (fields, secrets) = check(platform, input)?;
        let txn = crate::store::begin_write(&self.db).await?;
        let now = self.clock.now();
        let existing = self.row(&txn, owner, platform.connector()).await?;
        let previous = match &existing {
            Some(row) => Some(self.secrets(&txn, row).await?),
            None => None,
        };
        let secret_id = self
            .vault
            .store(&txn, owner, &Value::Object(secrets.clone()).to_string())
            .await?;
        let row = match existing {
            Some(row) => {
                self.vault.delete(&txn, owner, &row.secret_id).await?;
                let mut active: platform_app::ActiveModel = row.into();
                active.fields = Set(Value::Object(fields));
                active.secret_id = Set(secret_id);
                active.updated_at = Set(now);
                active.update(&txn).await?
            }
            None => {
                platform_app::ActiveModel {
                    id: Set(PlatformAppId::generate()),
                    tenant_id: Set(owner.clone()),
                    connector: Set(platform.connector().to_string()),
                    fields: Set(Value::Object(fields)),
                    secret_id: Set(secret_id),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&txn)
                .await?
            }
        };
        // Names only: which secrets changed, never their values.
        let rotated: Vec<&String> = match &previous {
            Some(old) => secrets
                .keys()
                .filter(|k| old.get(*k) != secrets.get(*k))
                .collect(),
            None => Vec::new(),
        };
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: audited_tenant(owner),
                action: if previous.is_none() {
                    "platform_app.create"
                } else if rotated.is_empty() {
                    "platform_app.update"
                } else {
                    "platform_app.rotate_secret"
                },
                resource_type: "platform_app",
                resource_id: row.id.as_str(),
                details: json!({"connector": row.connector, "fields": row.fields, "secrets_rotated": rotated}),
            },
        )
        .await?;
        txn.commit().await?;
        self.view(row, owner_of(owner), true).await
    }

    /// The app a tenant's connect links use: its own, else the operator's.
    pub async fn get(&self, tenant: &TenantId, connector: &str) -> Result<PlatformAppView> {
        let platform = Platform::from_connector(connector)?;
        if let Some(row) = self.row(&self.db, tenant, platform.connector()).await? {
            return self.view(row, owner_of(tenant), true).await;
        }
        match self
            .row(&self.db, &TenantId::operator(), platform.connector())
            .await?
        {
            // A tenant learns which app its sellers will see, not the operator's secrets.
            Some(row) => self.view(row, AppOwner::Operator, false).await,
            None => Err(Error::NotFound("platform app")),
        }
    }

    pub async fn delete(&self, actor: &Actor, owner: &TenantId, connector: &str) -> Result<()> {
        let platform = Platform::from_connector(connector)?;
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self
            .row(&txn, owner, platform.connector())
            .await?
            .ok_or(Error::NotFound("platform app"))?;
        self.vault.delete(&txn, owner, &row.secret_id).await?;
        platform_app::Entity::delete_by_id(row.id.clone())
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: audited_tenant(owner),
                action: "platform_app.delete",
                resource_type: "platform_app",
                resource_id: row.id.as_str(),
                details: json!({"connector": row.connector}),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The app a tenant's connect flow on this platform uses, secrets open.
    pub async fn resolve(
        &self,
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        platform: Platform,
    ) -> Result<Option<ResolvedApp>> {
        let row = match self.row(db, tenant, platform.connector()).await? {
            Some(row) => row,
            None => match self
                .row(db, &TenantId::operator(), platform.connector())
                .await?
            {
                Some(row) => row,
                None => return Ok(None),
            },
        };
        let secrets = self.secrets(db, &row).await?;
        let fields = row.fields.as_object().cloned().unwrap_or_default();
        let redirect_url =
            redirect_of(&fields).unwrap_or_else(|| self.default_redirect_url(platform));
        Ok(Some(ResolvedApp {
            fields,
            secrets,
            redirect_url,
        }))
    }

    async fn secrets(
        &self,
        db: &impl ConnectionTrait,
        row: &platform_app::Model,
    ) -> Result<Map<String, Value>> {
        let text = self.vault.load(db, &row.tenant_id, &row.secret_id).await?;
        serde_json::from_str(text.expose())
            .map_err(|e| Error::Internal(anyhow::anyhow!("platform app secrets unreadable: {e}")))
    }

    async fn view(
        &self,
        row: platform_app::Model,
        owner: AppOwner,
        with_secrets: bool,
    ) -> Result<PlatformAppView> {
        let secrets = if with_secrets {
            let open = self.secrets(&self.db, &row).await?;
            Some(
                open.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Value::String(mask(v.as_str().unwrap_or_default())),
                        )
                    })
                    .collect(),
            )
        } else {
            None
        };
        let fields = row.fields.as_object().cloned().unwrap_or_default();
        let platform = Platform::from_connector(&row.connector)?;
        Ok(PlatformAppView {
            redirect_url: redirect_of(&fields)
                .unwrap_or_else(|| self.default_redirect_url(platform)),
            connector: row.connector,
            owner,
            fields,
            secrets,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

/// The tenant an audit line belongs to: none for the operator's default apps.
fn audited_tenant(owner: &TenantId) -> Option<&TenantId> {
    (owner != &TenantId::operator()).then_some(owner)
}

fn owner_of(owner: &TenantId) -> AppOwner {
    if owner == &TenantId::operator() {
        AppOwner::Operator
    } else {
        AppOwner::Tenant
    }
}

fn redirect_of(fields: &Map<String, Value>) -> Option<String> {
    fields
        .get("redirect_url")
        .and_then(Value::as_str)
        .map(String::from)
}
