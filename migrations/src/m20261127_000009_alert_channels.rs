//! Ops-chat channels alerts go to: the URL (it carries the robot's token) and the signing
//! secret live in the vault.

use sea_orm_migration::prelude::*;

use crate::columns::id;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000009_alert_channels"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("alert_channels"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(
                        ColumnDef::new(Alias::new("name"))
                            .string_len(255)
                            .not_null(),
                    )
                    .col(id("kind"))
                    .col(id("url_secret_id"))
                    .col(
                        ColumnDef::new(Alias::new("secret_id"))
                            .string_len(64)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("url_hint"))
                            .string_len(255)
                            .not_null(),
                    )
                    .col(id("language"))
                    .col(
                        ColumnDef::new(Alias::new("created_at"))
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("alert_channels")).to_owned())
            .await
    }
}
