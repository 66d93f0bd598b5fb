//! What the credential keeper needs: when each credential of a connection expires, when the
//! keeper should look at the connection next (refresh or remind), and how many refreshes in
//! a row failed (for its backoff). Alert rules that fire only on a condition that lasts, and
//! alert events claimed for a while rather than marked done before they are acted on.

use sea_orm_migration::prelude::*;

use crate::columns::{at_or_null, counter, json_or_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn added() -> Vec<(&'static str, ColumnDef)> {
    vec![
        ("connections", json_or_null("credential_expiry")),
        ("connections", at_or_null("credentials_due_at")),
        ("connections", counter("credential_refresh_failures")),
        ("alert_rules", counter("for_seconds")),
        ("alert_events", at_or_null("claimed_until")),
    ]
}

const DUE_INDEX: &str = "idx_connections_credentials_due";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column a statement: SQLite alters one at a time.
        for (table, mut column) in added() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name(DUE_INDEX)
                    .table(Alias::new("connections"))
                    .col(Alias::new("credentials_due_at"))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(DUE_INDEX)
                    .table(Alias::new("connections"))
                    .to_owned(),
            )
            .await?;
        for (table, column) in added().into_iter().rev() {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new(column.get_column_name()))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
