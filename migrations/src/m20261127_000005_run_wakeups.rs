//! On PostgreSQL, every committed insert into `runs` notifies `synchub_runs`, so dispatchers in
//! other processes (an `api` process queues, a `worker` process dispatches) wake at once
//! instead of on their next poll. NOTIFY is delivered at commit, never before.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DatabaseBackend;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261127_000005_run_wakeups"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE OR REPLACE FUNCTION synchub_notify_runs() RETURNS trigger AS $$
             BEGIN
                 PERFORM pg_notify('synchub_runs', '');
                 RETURN NULL;
             END;
             $$ LANGUAGE plpgsql",
        )
        .await?;
        db.execute_unprepared(
            "CREATE TRIGGER runs_notify AFTER INSERT ON runs
             FOR EACH STATEMENT EXECUTE FUNCTION synchub_notify_runs()",
        )
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DatabaseBackend::Postgres {
            return Ok(());
        }
        let db = manager.get_connection();
        db.execute_unprepared("DROP TRIGGER IF EXISTS runs_notify ON runs")
            .await?;
        db.execute_unprepared("DROP FUNCTION IF EXISTS synchub_notify_runs()")
            .await?;
        Ok(())
    }
}
