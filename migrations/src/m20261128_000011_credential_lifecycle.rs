//! What the credential keeper needs: when each credential of a connection expires, when the
//! keeper should look at the connection next (refresh or remind), and how many refreshes in
//! a row failed (for its backoff). Alert rules that fire only on a condition that lasts, and
//! alert events claimed for a while rather than marked done before they are acted on.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

fn add(table: &str, column: ColumnDef) -> TableAlterStatement {
    Table::alter()
        .table(Alias::new(table))
        .add_column(column)
        .to_owned()
}

fn drop(table: &str, column: &str) -> TableAlterStatement {
    Table::alter()
        .table(Alias::new(table))
        .drop_column(Alias::new(column))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column a statement: SQLite alters one at a time.
        manager
            .alter_table(add(
                "connections",
                ColumnDef::new(Alias::new("credential_expiry"))
                    .json_binary()
                    .null()
                    .to_owned(),
            ))
            .await?;
        manager
            .alter_table(add(
                "connections",
                ColumnDef::new(Alias::new("credentials_due_at"))
                    .timestamp_with_time_zone()
                    .null()
                    .to_owned(),
            ))
            .await?;
        manager
            .alter_table(add(
                "connections",
                ColumnDef::new(Alias::new("credential_refresh_failures"))
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ))
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_connections_credentials_due")
                    .table(Alias::new("connections"))
                    .col(Alias::new("credentials_due_at"))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(add(
                "alert_rules",
                ColumnDef::new(Alias::new("for_seconds"))
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ))
            .await?;
        manager
            .alter_table(add(
                "alert_events",
                ColumnDef::new(Alias::new("claimed_until"))
                    .timestamp_with_time_zone()
                    .null()
                    .to_owned(),
            ))
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(drop("alert_rules", "for_seconds"))
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_connections_credentials_due")
                    .table(Alias::new("connections"))
                    .to_owned(),
            )
            .await?;
        for column in [
            "credential_refresh_failures",
            "credentials_due_at",
            "credential_expiry",
        ] {
            manager.alter_table(drop("connections", column)).await?;
        }
        Ok(())
    }
}
