//! Alerting: the events the product emits, the tenant's rules, alerts grouped by key, and
//! the delivery outbox (at least once, retried, dead-lettered).

use sea_orm_migration::prelude::*;

use crate::columns::{at, at_or_null, id, id_or_null, integer, json};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000010_alerts"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("alert_events"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(id("kind"))
                    .col(id("severity"))
                    .col(
                        ColumnDef::new(Alias::new("group_key"))
                            .string_len(255)
                            .not_null(),
                    )
                    .col(id_or_null("connection_id"))
                    .col(id_or_null("flow_id"))
                    .col(ColumnDef::new(Alias::new("message")).text().not_null())
                    .col(json("details"))
                    .col(ColumnDef::new(Alias::new("processed")).boolean().not_null())
                    .col(at("at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_alert_events_unprocessed")
                    .table(Alias::new("alert_events"))
                    .col(Alias::new("processed"))
                    .col(Alias::new("id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("alert_rules"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(
                        ColumnDef::new(Alias::new("name"))
                            .string_len(255)
                            .not_null(),
                    )
                    .col(json("kinds"))
                    .col(id_or_null("connection_id"))
                    .col(id_or_null("flow_id"))
                    .col(integer("threshold_count"))
                    .col(integer("window_seconds"))
                    .col(id("severity"))
                    .col(json("channels"))
                    .col(
                        ColumnDef::new(Alias::new("quiet_hours"))
                            .json_binary()
                            .null(),
                    )
                    .col(integer("throttle_seconds"))
                    .col(at("created_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("alerts"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(id("rule_id"))
                    .col(
                        ColumnDef::new(Alias::new("group_key"))
                            .string_len(255)
                            .not_null(),
                    )
                    .col(id("state"))
                    .col(integer("count"))
                    .col(integer("notified_count"))
                    .col(ColumnDef::new(Alias::new("last_message")).text().not_null())
                    .col(at("first_at"))
                    .col(at("last_at"))
                    .col(at_or_null("last_notified_at"))
                    .index(
                        Index::create()
                            .name("uq_alerts_rule_key")
                            .col(Alias::new("rule_id"))
                            .col(Alias::new("group_key"))
                            .unique(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("alert_deliveries"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(id("alert_id"))
                    .col(id("channel_id"))
                    .col(json("message"))
                    .col(id("status"))
                    .col(integer("attempts"))
                    .col(at("next_attempt_at"))
                    .col(ColumnDef::new(Alias::new("last_answer")).text().null())
                    .col(at("created_at"))
                    .col(at_or_null("delivered_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_alert_deliveries_due")
                    .table(Alias::new("alert_deliveries"))
                    .col(Alias::new("status"))
                    .col(Alias::new("next_attempt_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["alert_deliveries", "alerts", "alert_rules", "alert_events"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
