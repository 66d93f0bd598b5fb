//! Deployments of connector versions: the persisted state machine, its targets with the
//! snapshot taken before each switch, its timeline, and each tenant's deploy policy.

use sea_orm_migration::prelude::*;

use crate::columns::{at, at_or_null, id, json, text};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000008_deployments"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("deployments"))
                    .col(id("id").primary_key())
                    .col(id("tenant_id"))
                    .col(id("connector"))
                    .col(id("to_version"))
                    .col(id("strategy"))
                    .col(id("state"))
                    .col(json("steps"))
                    .col(json("gate"))
                    .col(ColumnDef::new(Alias::new("window")).json_binary().null())
                    .col(ColumnDef::new(Alias::new("forced")).boolean().not_null())
                    .col(
                        ColumnDef::new(Alias::new("current_step"))
                            .integer()
                            .not_null(),
                    )
                    .col(at_or_null("step_started_at"))
                    .col(at("next_action_at"))
                    .col(at_or_null("lease_until"))
                    .col(
                        ColumnDef::new(Alias::new("rollback_window_seconds"))
                            .big_integer()
                            .not_null(),
                    )
                    .col(at_or_null("promoted_at"))
                    .col(
                        ColumnDef::new(Alias::new("paused_from"))
                            .string_len(64)
                            .null(),
                    )
                    // Someone asked to promote the current step without waiting for its gate.
                    .col(
                        ColumnDef::new(Alias::new("promote_requested"))
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(text("changelog"))
                    .col(json("manifest_diff"))
                    .col(text("created_by"))
                    .col(ColumnDef::new(Alias::new("reason")).text().null())
                    .col(at("created_at"))
                    .col(at("updated_at"))
                    .col(at_or_null("finished_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deployments_due")
                    .table(Alias::new("deployments"))
                    .col(Alias::new("state"))
                    .col(Alias::new("next_action_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("deployment_targets"))
                    .col(id("deployment_id"))
                    .col(id("connection_id"))
                    .col(ColumnDef::new(Alias::new("position")).integer().not_null())
                    .col(ColumnDef::new(Alias::new("step")).integer().null())
                    .col(
                        ColumnDef::new(Alias::new("previous_version"))
                            .string_len(64)
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Alias::new("previous_pinned_by"))
                            .string_len(64)
                            .null(),
                    )
                    .col(ColumnDef::new(Alias::new("snapshot")).json_binary().null())
                    .col(id("state"))
                    .col(
                        ColumnDef::new(Alias::new("verification"))
                            .json_binary()
                            .null(),
                    )
                    .col(at_or_null("switched_at"))
                    .primary_key(
                        Index::create()
                            .col(Alias::new("deployment_id"))
                            .col(Alias::new("connection_id")),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("deployment_events"))
                    .col(id("id").primary_key())
                    .col(id("deployment_id"))
                    .col(id("tenant_id"))
                    .col(id("kind"))
                    .col(json("details"))
                    .col(at("at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_deployment_events_timeline")
                    .table(Alias::new("deployment_events"))
                    .col(Alias::new("deployment_id"))
                    .col(Alias::new("id"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("tenants"))
                    .add_column(
                        ColumnDef::new(Alias::new("deploy_policy"))
                            .json_binary()
                            .null(),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Alias::new("tenants"))
                    .drop_column(Alias::new("deploy_policy"))
                    .to_owned(),
            )
            .await?;
        for table in ["deployment_events", "deployment_targets", "deployments"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
