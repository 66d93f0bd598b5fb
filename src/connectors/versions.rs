//! Connector versions: the built-in manifests register as versions at start-up; a tenant
//! publishes new ones (linted, semver, immutable, content-hashed, with a changelog and its
//! publisher). A connection runs the version it is pinned to, or the built-in one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use sea_orm::{ColumnTrait, Condition, DatabaseConnection, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{ConnectorRegistry, Manifest};
use crate::audit::{self, Actor, Entry};
use crate::error::{Error, FieldError, Result};
use crate::ids::TenantId;
use crate::store::entities::connector_version;

/// The scope of built-in versions, visible to every tenant.
const BUILT_IN: &str = "";

/// `POST /v1/connectors/{name}/versions`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVersion {
    /// The manifest, as TOML text (the format of `connectors/*.toml`).
    pub manifest: String,
    /// Must equal the manifest's own `version` when given.
    pub version: Option<String>,
    /// What changed and why, for whoever deploys it.
    pub changelog: String,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct VersionView {
    pub connector: String,
    pub version: String,
    /// Shipped with synchub, visible to every tenant.
    pub built_in: bool,
    pub content_hash: String,
    pub changelog: String,
    pub publisher: String,
    pub published_at: chrono::DateTime<chrono::Utc>,
}

impl From<connector_version::Model> for VersionView {
    fn from(row: connector_version::Model) -> Self {
        Self {
            built_in: row.scope == BUILT_IN,
            connector: row.connector,
            version: row.version,
            content_hash: row.content_hash,
            changelog: row.changelog,
            publisher: row.publisher,
            published_at: row.published_at,
        }
    }
}

/// SHA-256 of the manifest's canonical JSON (maps are ordered, so it is stable).
pub fn content_hash(manifest: &Manifest) -> String {
    let json = serde_json::to_vec(manifest).unwrap_or_default();
    hex::encode(Sha256::digest(json))
}

type CacheKey = (String, String, String);

#[derive(Clone)]
pub struct Versions {
    db: DatabaseConnection,
    registry: Arc<ConnectorRegistry>,
    /// Published manifests never change, so a loaded one is kept for good.
    cache: Arc<Mutex<HashMap<CacheKey, Arc<Manifest>>>>,
}

/// Versions a tenant may see: the built-in ones and its own.
fn visible_to(tenant: &TenantId) -> Condition {
    Condition::any()
        .add(connector_version::Column::Scope.eq(BUILT_IN))
        .add(connector_version::Column::Scope.eq(tenant.as_str()))
}

impl Versions {
    pub fn new(db: DatabaseConnection, registry: Arc<ConnectorRegistry>) -> Self {
        Self {
            db,
            registry,
            cache: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Records each built-in manifest as a version, once. A built-in manifest whose content
    /// changed without a new version number is reported: the recorded version stays what
    /// connections pinned to it ran.
    pub async fn register_built_ins(&self) -> Result<()> {
        for summary in self.registry.summaries() {
            let Some(manifest) = self.registry.get(&summary.name) else {
                continue;
            };
            let hash = content_hash(&manifest);
            let row = connector_version::ActiveModel {
                scope: Set(BUILT_IN.into()),
                connector: Set(manifest.name.clone()),
                version: Set(manifest.version.clone()),
                manifest: Set(serde_json::to_value(&*manifest).unwrap_or_default()),
                content_hash: Set(hash.clone()),
                changelog: Set("Built in.".into()),
                publisher: Set("synchub".into()),
                published_at: Set(chrono::Utc::now()),
            };
            connector_version::Entity::insert(row)
                .on_conflict_do_nothing_on([
                    connector_version::Column::Scope,
                    connector_version::Column::Connector,
                    connector_version::Column::Version,
                ])
                .exec(&self.db)
                .await?;
            let recorded = connector_version::Entity::find_by_id((
                BUILT_IN.to_string(),
                manifest.name.clone(),
                manifest.version.clone(),
            ))
            .one(&self.db)
            .await?;
            if recorded.is_some_and(|r| r.content_hash != hash) {
                tracing::warn!(
                    connector = %manifest.name,
                    version = %manifest.version,
                    "the built-in manifest changed without a new version number"
                );
            }
        }
        Ok(())
    }

    pub async fn publish(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        connector: &str,
        input: NewVersion,
    ) -> Result<VersionView> {
        let Some(built_in) = self.registry.get(connector) else {
            return Err(Error::NotFound("connector"));
        };
        let manifest = Manifest::parse(&input.manifest).map_err(|problems| {
            Error::Invalid(
                problems
                    .into_iter()
                    .map(|p| FieldError::new(format!("manifest.{}", p.field), p.message))
                    .collect(),
            )
        })?;
        let mut errors = Vec::new();
        if manifest.name != connector {
            errors.push(FieldError::new(
                "manifest.name",
                format!("must be {connector}, the connector published to"),
            ));
        }
        if manifest.kind != built_in.kind {
            errors.push(FieldError::new(
                "manifest.kind",
                "a new version cannot change the connector's kind",
            ));
        }
        if input
            .version
            .as_deref()
            .is_some_and(|v| v != manifest.version)
        {
            errors.push(FieldError::new(
                "version",
                format!("the manifest says {}", manifest.version),
            ));
        }
        if input.changelog.trim().is_empty() || input.changelog.len() > 10_000 {
            errors.push(FieldError::new("changelog", "1 to 10,000 characters"));
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let txn = crate::store::begin_write(&self.db).await?;
        let taken = connector_version::Entity::find()
            .filter(visible_to(tenant))
            .filter(connector_version::Column::Connector.eq(connector))
            .filter(connector_version::Column::Version.eq(manifest.version.clone()))
            .one(&txn)
            .await?;
        if taken.is_some() {
            return Err(Error::Conflict(format!(
                "{connector} {} is published already; versions are immutable",
                manifest.version
            )));
        }
        let row = connector_version::ActiveModel {
            scope: Set(tenant.to_string()),
            connector: Set(connector.to_string()),
            version: Set(manifest.version.clone()),
            manifest: Set(serde_json::to_value(&manifest).unwrap_or_default()),
            content_hash: Set(content_hash(&manifest)),
            changelog: Set(input.changelog.trim().to_string()),
            publisher: Set(actor.name.clone()),
            published_at: Set(chrono::Utc::now()),
        };
        let row = connector_version::Entity::insert(row)
            .exec_with_returning(&txn)
            .await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "connector.version.publish",
                resource_type: "connector",
                resource_id: connector,
                details: serde_json::json!({
                    "version": row.version, "content_hash": row.content_hash, "changelog": row.changelog,
                }),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(row.into())
    }

    /// The versions of a connector the tenant may use, newest first.
    pub async fn list(&self, tenant: &TenantId, connector: &str) -> Result<Vec<VersionView>> {
        if self.registry.get(connector).is_none() {
            return Err(Error::NotFound("connector"));
        }
        let mut rows: Vec<VersionView> = connector_version::Entity::find()
            .filter(visible_to(tenant))
            .filter(connector_version::Column::Connector.eq(connector))
            .all(&self.db)
            .await?
            .into_iter()
            .map(VersionView::from)
            .collect();
        rows.sort_by(|a, b| {
            let parse = |v: &str| semver::Version::parse(v).ok();
            parse(&b.version).cmp(&parse(&a.version))
        });
        Ok(rows)
    }

    /// The manifest a connection runs: its pinned version, or the built-in one. None when
    /// the tenant cannot see that version.
    /// The version a connection without a pin runs: the built-in manifest's.
    pub fn built_in_version(&self, connector: &str) -> Option<String> {
        self.registry.get(connector).map(|m| m.version.clone())
    }

    pub async fn manifest(
        &self,
        tenant: &TenantId,
        connector: &str,
        version: Option<&str>,
    ) -> Result<Option<Arc<Manifest>>> {
        let Some(built_in) = self.registry.get(connector) else {
            return Ok(None);
        };
        let Some(version) = version.filter(|v| *v != built_in.version) else {
            return Ok(Some(built_in));
        };
        let key = (
            tenant.to_string(),
            connector.to_string(),
            version.to_string(),
        );
        if let Some(manifest) = self.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
            return Ok(Some(manifest));
        }
        let row = connector_version::Entity::find()
            .filter(visible_to(tenant))
            .filter(connector_version::Column::Connector.eq(connector))
            .filter(connector_version::Column::Version.eq(version))
            .one(&self.db)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let manifest: Manifest = serde_json::from_value(row.manifest).map_err(|e| {
            Error::Internal(anyhow::anyhow!(
                "stored manifest {connector} {version}: {e}"
            ))
        })?;
        let manifest = Arc::new(manifest);
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, manifest.clone());
        }
        Ok(Some(manifest))
    }
}
