//! Tenants, API tokens, the vault, connections, webhook events and the audit log.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000001_foundation"
    }
}

fn id(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .string_len(40)
        .not_null()
        .to_owned()
}
fn opt_id(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .string_len(40)
        .null()
        .to_owned()
}
fn text(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .text()
        .not_null()
        .to_owned()
}
fn opt_text(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name)).text().null().to_owned()
}
fn json(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .json_binary()
        .not_null()
        .to_owned()
}
fn at(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}
fn opt_at(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}
fn bytes(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
        .blob()
        .not_null()
        .to_owned()
}
fn index(name: &str, table: &str, columns: &[&str], unique: bool) -> IndexCreateStatement {
    let mut stmt = Index::create();
    stmt.name(name).table(Alias::new(table));
    for column in columns {
        stmt.col(Alias::new(*column));
    }
    if unique {
        stmt.unique();
    }
    stmt.to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("tenants"))
                    .col(id("id").primary_key())
                    .col(text("name"))
                    .col(text("timezone"))
                    .col(at("created_at"))
                    .to_owned(),
            )
            .await?;

        // tenant_id is NULL only for operator tokens.
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("api_tokens"))
                    .col(id("id").primary_key())
                    .col(opt_id("tenant_id"))
                    .col(text("name"))
                    .col(
                        ColumnDef::new(Alias::new("token_hash"))
                            .string_len(64)
                            .not_null(),
                    )
                    .col(text("prefix"))
                    .col(json("scopes"))
                    .col(json("allowed_cidrs"))
                    .col(opt_at("expires_at"))
                    .col(opt_at("revoked_at"))
                    .col(at("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_api_tokens_hash",
                "api_tokens",
                &["token_hash"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_api_tokens_tenant",
                "api_tokens",
                &["tenant_id", "id"],
                false,
            ))
            .await?;

        // One row per encrypted secret: the data key wrapped by the master key (key_id says which)
        // and the ciphertext under the data key. No plaintext column exists.
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("vault_secrets"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(
                        ColumnDef::new(Alias::new("key_id"))
                            .string_len(16)
                            .not_null(),
                    )
                    .col(bytes("wrapped_key"))
                    .col(bytes("ciphertext"))
                    .col(at("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_vault_secrets_tenant",
                "vault_secrets",
                &["tenant_id", "id"],
                false,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Alias::new("connections"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(text("name"))
                    .col(text("connector"))
                    .col(text("environment"))
                    .col(json("settings"))
                    .col(id("credentials_secret_id"))
                    .col(opt_id("webhook_secret_id"))
                    .col(opt_id("previous_webhook_secret_id"))
                    .col(opt_at("previous_webhook_secret_expires_at"))
                    .col(json("allowed_cidrs"))
                    .col(opt_text("timezone"))
                    .col(opt_text("version"))
                    .col(
                        ColumnDef::new(Alias::new("rejected_webhooks"))
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(at("created_at"))
                    .col(at("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ux_connections_tenant_name",
                "connections",
                &["tenant_id", "name"],
                true,
            ))
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Alias::new("webhook_events"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(id("connection_id"))
                    .col(text("dedupe_key"))
                    .col(opt_text("platform_event_id"))
                    .col(opt_text("topic"))
                    .col(opt_text("content_type"))
                    .col(bytes("body"))
                    .col(at("received_at"))
                    .to_owned(),
            )
            .await?;
        // The dedupe index is what makes "stored once" hold under concurrent retries.
        manager
            .create_index(index(
                "ux_webhook_events_dedupe",
                "webhook_events",
                &["connection_id", "dedupe_key"],
                true,
            ))
            .await?;
        manager
            .create_index(index(
                "ix_webhook_events_listing",
                "webhook_events",
                &["tenant_id", "connection_id", "id"],
                false,
            ))
            .await?;

        // tenant_id NULL: operator-level actions (creating tenants).
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("audit_events"))
                    .col(id("id").primary_key())
                    .col(opt_id("tenant_id"))
                    .col(opt_id("actor_token_id"))
                    .col(text("actor_name"))
                    .col(text("action"))
                    .col(text("resource_type"))
                    .col(text("resource_id"))
                    .col(json("details"))
                    .col(opt_text("request_id"))
                    .col(at("occurred_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(index(
                "ix_audit_events_tenant",
                "audit_events",
                &["tenant_id", "id"],
                false,
            ))
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "audit_events",
            "webhook_events",
            "connections",
            "vault_secrets",
            "api_tokens",
            "tenants",
        ] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
