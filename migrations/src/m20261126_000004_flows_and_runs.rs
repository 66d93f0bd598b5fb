//! Flows (sync pipelines with their schedule and cursor) and runs (one execution each).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000004_flows_and_runs"
    }
}

fn col(name: &str) -> ColumnDef {
    ColumnDef::new(Alias::new(name))
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("flows"))
                    .col(col("id").string_len(40).not_null().primary_key())
                    .col(col("tenant_id").string_len(40).not_null())
                    .col(col("name").text().not_null())
                    .col(col("stream").text().not_null())
                    .col(col("source_connection_id").string_len(40).not_null())
                    .col(col("destination_connection_id").string_len(40).not_null())
                    .col(col("schedule").json_binary().null())
                    .col(col("timezone").text().not_null())
                    .col(col("on_webhook").boolean().not_null())
                    .col(col("enabled").boolean().not_null())
                    .col(col("catch_up").boolean().not_null())
                    .col(col("max_attempts").integer().not_null())
                    .col(col("retry_base_seconds").integer().not_null())
                    .col(col("retry_cap_seconds").integer().not_null())
                    .col(col("cursor").json_binary().null())
                    .col(col("next_run_at").timestamp_with_time_zone().null())
                    .col(col("consecutive_failures").integer().not_null().default(0))
                    .col(col("disabled_reason").text().null())
                    .col(col("created_at").timestamp_with_time_zone().not_null())
                    .col(col("updated_at").timestamp_with_time_zone().not_null())
                    .to_owned(),
            )
            .await?;
        // The scheduler's one query: enabled flows in order of their next run.
        manager
            .create_index(
                Index::create()
                    .name("ix_flows_due")
                    .table(Alias::new("flows"))
                    .col(Alias::new("enabled"))
                    .col(Alias::new("next_run_at"))
                    .to_owned(),
            )
            .await?;
        // Webhook ingress finds the flows a connection's events trigger.
        manager
            .create_index(
                Index::create()
                    .name("ix_flows_source")
                    .table(Alias::new("flows"))
                    .col(Alias::new("source_connection_id"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_flows_tenant")
                    .table(Alias::new("flows"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("id"))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Alias::new("runs"))
                    .col(col("id").string_len(40).not_null().primary_key())
                    .col(col("tenant_id").string_len(40).not_null())
                    .col(col("flow_id").string_len(40).not_null())
                    .col(col("trigger").text().not_null())
                    // What makes a run unique for its flow: the scheduled instant, the
                    // webhook burst, or the manual request.
                    .col(col("dedupe_key").text().not_null())
                    .col(col("scheduled_for").timestamp_with_time_zone().null())
                    .col(col("status").text().not_null())
                    .col(col("attempts").integer().not_null().default(0))
                    .col(col("records_read").big_integer().not_null().default(0))
                    .col(col("records_written").big_integer().not_null().default(0))
                    .col(col("error_class").text().null())
                    .col(col("error_message").text().null())
                    .col(col("connector_version").text().null())
                    .col(col("next_attempt_at").timestamp_with_time_zone().null())
                    // Where a run that died resumes: the next page and the cursor so far.
                    .col(col("checkpoint").json_binary().null())
                    // When the run was last handed to the job queue, and until when the worker
                    // executing it holds it (a dead worker's run is taken over after that).
                    .col(col("dispatched_at").timestamp_with_time_zone().null())
                    .col(col("lease_until").timestamp_with_time_zone().null())
                    .col(col("created_at").timestamp_with_time_zone().not_null())
                    .col(col("started_at").timestamp_with_time_zone().null())
                    .col(col("finished_at").timestamp_with_time_zone().null())
                    .to_owned(),
            )
            .await?;
        // A tick, a webhook burst or a manual request enqueues at most one run, whatever the
        // number of scheduler processes.
        manager
            .create_index(
                Index::create()
                    .name("ux_runs_flow_dedupe")
                    .table(Alias::new("runs"))
                    .col(Alias::new("flow_id"))
                    .col(Alias::new("dedupe_key"))
                    .unique()
                    .to_owned(),
            )
            .await?;
        // Unified records, upserted by (connection, kind, platform id) with a version check.
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("records"))
                    .col(col("tenant_id").string_len(40).not_null())
                    .col(col("connection_id").string_len(40).not_null())
                    .col(col("kind").string_len(32).not_null())
                    .col(col("platform_id").string_len(255).not_null())
                    .col(col("version").text().not_null())
                    .col(col("data").json_binary().not_null())
                    .col(col("synced_at").timestamp_with_time_zone().not_null())
                    .primary_key(
                        Index::create()
                            .col(Alias::new("connection_id"))
                            .col(Alias::new("kind"))
                            .col(Alias::new("platform_id")),
                    )
                    .to_owned(),
            )
            .await?;
        // The dispatcher's query: runs waiting for a worker, by status.
        manager
            .create_index(
                Index::create()
                    .name("ix_runs_status")
                    .table(Alias::new("runs"))
                    .col(Alias::new("status"))
                    .col(Alias::new("next_attempt_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_runs_flow")
                    .table(Alias::new("runs"))
                    .col(Alias::new("tenant_id"))
                    .col(Alias::new("flow_id"))
                    .col(Alias::new("id"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["records", "runs", "flows"] {
            manager
                .drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
