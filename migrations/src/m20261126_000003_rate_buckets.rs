//! Token buckets shared by every worker and process: one row per (account, operation group).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261126_000003_rate_buckets"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alias::new("rate_buckets"))
                    .col(
                        ColumnDef::new(Alias::new("bucket_key"))
                            .string_len(255)
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Alias::new("tokens")).double().not_null())
                    .col(
                        ColumnDef::new(Alias::new("refilled_at_ms"))
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Alias::new("rate")).double().not_null())
                    .col(ColumnDef::new(Alias::new("burst")).double().not_null())
                    .col(
                        ColumnDef::new(Alias::new("blocked_until_ms"))
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alias::new("rate_buckets")).to_owned())
            .await
    }
}
