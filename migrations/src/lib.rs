//! Schema migrations for SQLite and PostgreSQL alike (sea-query builds the dialect).

pub use sea_orm_migration::prelude::*;

mod columns;

mod m20261126_000001_foundation;
mod m20261126_000002_idempotency;
mod m20261126_000003_rate_buckets;
mod m20261126_000004_flows_and_runs;
mod m20261127_000005_run_wakeups;
mod m20261127_000006_concurrency_slots;
mod m20261127_000007_connector_versions;
mod m20261127_000008_deployments;
mod m20261127_000009_alert_channels;
mod m20261127_000010_alerts;
mod m20261128_000011_credential_lifecycle;
mod m20261202_000012_connect;
mod m20261206_000013_runs_by_flow_and_status;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_foundation::Migration),
            Box::new(m20261126_000002_idempotency::Migration),
            Box::new(m20261126_000003_rate_buckets::Migration),
            Box::new(m20261126_000004_flows_and_runs::Migration),
            Box::new(m20261127_000005_run_wakeups::Migration),
            Box::new(m20261127_000006_concurrency_slots::Migration),
            Box::new(m20261127_000007_connector_versions::Migration),
            Box::new(m20261127_000008_deployments::Migration),
            Box::new(m20261127_000009_alert_channels::Migration),
            Box::new(m20261127_000010_alerts::Migration),
            Box::new(m20261128_000011_credential_lifecycle::Migration),
            Box::new(m20261202_000012_connect::Migration),
            Box::new(m20261206_000013_runs_by_flow_and_status::Migration),
        ]
    }
}

/// The versions the database records as applied, read without creating anything: the check
/// of a process that leaves migrating to `synchub migrate`.
pub async fn applied_versions(db: &sea_orm::DatabaseConnection) -> Result<Vec<String>, DbErr> {
    use sea_orm::EntityTrait;
    use sea_orm_migration::seaql_migrations;
    if !SchemaManager::new(db).has_table("seaql_migrations").await? {
        return Ok(Vec::new());
    }
    Ok(seaql_migrations::Entity::find()
        .all(db)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect())
}
