//! Connect links: the platform apps a tenant (or the operator, for every tenant) registered
//! with a marketplace, the short-lived sessions that take a seller through the platform's
//! consent page and back, and on each connection who authorised it and when.

use sea_orm_migration::prelude::*;

use crate::columns::{at, at_or_null, id, id_or_null, json, json_or_null, text, text_or_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn added_to_connections() -> Vec<ColumnDef> {
    vec![
        at_or_null("authorized_at"),
        text_or_null("authorized_by"),
        text_or_null("authorization_status"),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("platform_apps"))
                    .col(id("id").primary_key())
                    // A tenant's id, or the operator's reserved one for the default app.
                    .col(id("tenant_id"))
                    .col(text("connector"))
                    .col(json("fields"))
                    .col(id("secret_id"))
                    .col(at("created_at"))
                    .col(at("updated_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_platform_apps_owner_connector")
                    .table(Alias::new("platform_apps"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("connector"))
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Alias::new("connect_sessions"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(text("connector"))
                    .col(text("environment"))
                    .col(json("settings"))
                    .col(text_or_null("name"))
                    .col(id_or_null("connection_id"))
                    .col(text("return_url"))
                    // SHA-256 of the link's token and of the current state: never the values.
                    .col(id("token_hash"))
                    .col(id_or_null("state_hash"))
                    .col(at_or_null("state_expires_at"))
                    .col(text("status"))
                    .col(text_or_null("error_code"))
                    .col(text_or_null("error_message"))
                    .col(json_or_null("connection_ids"))
                    // Tokens held while the seller picks one of several shops (vaulted).
                    .col(id_or_null("pending_secret_id"))
                    .col(text("created_by"))
                    .col(at("expires_at"))
                    .col(at("created_at"))
                    .col(at_or_null("finished_at"))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("ux_connect_sessions_token", "token_hash"),
            ("ux_connect_sessions_state", "state_hash"),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(Alias::new("connect_sessions"))
                        .col(Alias::new(column))
                        .unique()
                        .to_owned(),
                )
                .await?;
        }
        // One column a statement: SQLite alters one at a time.
        for mut column in added_to_connections() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("connections"))
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in added_to_connections().into_iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new("connections"))
                        .drop_column(Alias::new(column.get_column_name()))
                        .to_owned(),
                )
                .await?;
        }
        for table in ["connect_sessions", "platform_apps"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
