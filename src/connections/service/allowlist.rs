//! Who may send a connection's webhooks: its inbound CIDR allowlist.

use sea_orm::{ActiveModelTrait, Set};

use super::Connections;
use crate::audit::{self, Actor, Entry};
use crate::connections::model::AllowlistView;
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::netpolicy::{cidrs_from_json, cidrs_to_json, parse_cidrs};
use crate::store::entities::connection;

impl Connections {
    pub async fn allowlist(&self, tenant: &TenantId, id: &str) -> Result<AllowlistView> {
        let row = self.find(&self.db, tenant, id).await?;
        Ok(AllowlistView {
            cidrs: cidrs_from_json(&row.allowed_cidrs)
                .iter()
                .map(ToString::to_string)
                .collect(),
        })
    }

    pub async fn set_allowlist(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        input: AllowlistView,
    ) -> Result<AllowlistView> {
        let mut errors = Vec::new();
        let cidrs = parse_cidrs(&input.cidrs, "cidrs", &mut errors);
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        let before = row.allowed_cidrs.clone();
        let mut active: connection::ActiveModel = row.into();
        active.allowed_cidrs = Set(cidrs_to_json(&cidrs));
        active.updated_at = Set(self.clock.now());
        let updated = active.update(&txn).await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "connection.set_allowlist",
                resource_type: "connection",
                resource_id: updated.id.as_str(),
                details: serde_json::json!({ "before": before, "after": updated.allowed_cidrs }),
            },
        )
        .await?;
        txn.commit().await?;
        self.webhook_targets.invalidate(&updated.id);
        Ok(AllowlistView {
            cidrs: cidrs.iter().map(ToString::to_string).collect(),
        })
    }
}
