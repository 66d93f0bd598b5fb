//! The records table as the engine uses it: what a page delivers is committed with its
//! checkpoint and counts in one transaction, the versions already delivered are looked up
//! before writing, and the platform ids a lookup found are cached for a day.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, ExprTrait, InsertStatement, OnConflict, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, QueryFilter, QuerySelect, Set,
};
use serde_json::{Map, Value};

use super::engine::{SyncEngine, storage};
use super::streams::Item;
use crate::connectors::client::{CallError, ConnectorClient, ErrorClass};
use crate::connectors::spec::LookupSpec;
use crate::error::Result;
use crate::runs::Checkpoint;
use crate::store::entities::{connection, record, run};

/// How long the platform ids a lookup found are trusted.
const LOOKUP_CACHE_AGE: chrono::Duration = chrono::Duration::hours(24);

/// True when a run's written count passed 1,000, 4,000, 16,000, ... records: a big first
/// sync refreshes the records table's statistics as it grows, a small run never.
fn statistics_stale(before: i64, after: i64) -> bool {
    let mut threshold = 1_000i64;
    while threshold <= after {
        if threshold > before {
            return true;
        }
        threshold = threshold.saturating_mul(4);
    }
    false
}

/// PostgreSQL's statement for `known_versions_on_postgres`: the versions of `ids` among a
/// connection's records of `kind`, one primary-key probe an id.
fn known_versions_statement(connection: &str, kind: &str, ids: &[String]) -> sea_orm::Statement {
    let rows = (3..ids.len() + 3)
        .map(|n| format!("(${n})"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        r#"SELECT "r"."platform_id", "r"."version" FROM (VALUES {rows}) AS "ids" ("id")
           CROSS JOIN LATERAL (SELECT "platform_id", "version" FROM "records"
           WHERE "connection_id" = $1 AND "kind" = $2 AND "platform_id" = "ids"."id"
           LIMIT 1) AS "r""#
    );
    let mut values: Vec<sea_orm::Value> = vec![connection.into(), kind.into()];
    values.extend(ids.iter().map(|id| id.clone().into()));
    sea_orm::Statement::from_sql_and_values(DatabaseBackend::Postgres, sql, values)
}

/// Ids a statement of `known_versions_on_postgres` asks for (PostgreSQL takes 65,535
/// parameters; pages are 250 records or so).
const KNOWN_VERSIONS_PER_STATEMENT: usize = 5_000;

impl SyncEngine {
    /// The platform ids a write needs for `item`, from the lookup operation (or from the
    /// day-old cache in the records table). None when the platform does not know the item.
    pub(super) async fn lookup(
        &self,
        destination: &ConnectorClient,
        lookup: &LookupSpec,
        owner: &connection::Model,
        kind: &str,
        item: &Item,
    ) -> Result<Option<Map<String, Value>>, CallError> {
        let cache_kind = format!("lookup:{kind}");
        if lookup.cache {
            let cached = record::Entity::find()
                .filter(record::Column::ConnectionId.eq(owner.id.clone()))
                .filter(record::Column::Kind.eq(cache_kind.clone()))
                .filter(record::Column::PlatformId.eq(item.platform_id.clone()))
                .filter(record::Column::SyncedAt.gt(self.clock.now() - LOOKUP_CACHE_AGE))
                .one(&self.db)
                .await
                .map_err(storage)?;
            if let Some(Value::Object(fields)) = cached.map(|c| c.data) {
                return Ok(Some(fields));
            }
        }
        let page = match destination
            .list_page(&lookup.operation, &item.vars, None)
            .await
        {
            Err(e) if e.class == ErrorClass::NotFound => return Ok(None),
            other => other?,
        };
        let Some(first) = page.records.iter().find(|record| {
            lookup
                .only
                .iter()
                .all(|(pointer, value)| record.pointer(pointer) == Some(value))
        }) else {
            return Ok(None);
        };
        let mut fields = Map::new();
        for (name, pointer) in &lookup.fields {
            let value = first.pointer(pointer).cloned().ok_or_else(|| {
                CallError::new(
                    ErrorClass::SchemaMismatch,
                    format!("the {} answer has no {name} at {pointer}", lookup.operation),
                )
            })?;
            fields.insert(name.clone(), value);
        }
        if lookup.cache {
            let row = record::ActiveModel {
                tenant_id: Set(owner.tenant_id.clone()),
                connection_id: Set(owner.id.clone()),
                kind: Set(cache_kind),
                platform_id: Set(item.platform_id.clone()),
                version: Set(String::new()),
                data: Set(Value::Object(fields.clone())),
                synced_at: Set(self.clock.now()),
            };
            record::Entity::insert(row)
                .on_conflict(
                    OnConflict::columns([
                        record::Column::ConnectionId,
                        record::Column::Kind,
                        record::Column::PlatformId,
                    ])
                    .update_columns([record::Column::Data, record::Column::SyncedAt])
                    .to_owned(),
                )
                .exec_without_returning(&self.db)
                .await
                .map_err(storage)?;
        }
        Ok(Some(fields))
    }

    /// PostgreSQL plans the known-versions lookup from table statistics; during a first
    /// sync that loads 100,000 orders in minutes they still say "empty", and the lookup
    /// filters the whole connection instead of seeking each id (measured: 300 ms a page at
    /// 30,000 rows instead of 0.1 ms). Autovacuum would catch up only a minute later.
    pub(super) async fn refresh_statistics_as_it_grows(&self, before: i64, after: i64) {
        if !statistics_stale(before, after)
            || self.db.get_database_backend() != sea_orm::DatabaseBackend::Postgres
        {
            return;
        }
        // The key columns only: sampling the JSON documents would cost 0.4 s at 30,000 rows.
        let analyze = "ANALYZE records (connection_id, kind, platform_id)";
        if let Err(err) = self.db.execute_unprepared(analyze).await {
            tracing::warn!(error = %err, "could not refresh the records table's statistics");
        }
    }

    pub(super) async fn known_versions(
        &self,
        owner: &connection::Model,
        kind: &str,
        items: &[Item],
    ) -> Result<HashMap<String, String>> {
        if items.is_empty() {
            return Ok(HashMap::new());
        }
        let ids: Vec<String> = items.iter().map(|i| i.platform_id.clone()).collect();
        if self.db.get_database_backend() == DatabaseBackend::Postgres {
            return self.known_versions_on_postgres(owner, kind, ids).await;
        }
        let rows: Vec<(String, String)> = record::Entity::find()
            .select_only()
            .column(record::Column::PlatformId)
            .column(record::Column::Version)
            .filter(record::Column::ConnectionId.eq(owner.id.clone()))
            .filter(record::Column::Kind.eq(kind))
            .filter(record::Column::PlatformId.is_in(ids))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().collect())
    }

    /// `known_versions` on PostgreSQL: one primary-key probe an id, whatever the planner
    /// knows. As `platform_id IN (...)` the ids became a filter over every record of the
    /// connection whenever the table had no statistics yet (a new or fast-growing one,
    /// before autovacuum analyses it), each row checked against each id: 55-97 ms a page
    /// of 250 against 20,000 records, most of a run's time in `bench latency`. A VALUES
    /// list joined LATERAL with LIMIT 1 cannot be flattened into that: 0.6 ms with or
    /// without statistics (EXPLAIN ANALYZE, generic plan).
    async fn known_versions_on_postgres(
        &self,
        owner: &connection::Model,
        kind: &str,
        ids: Vec<String>,
    ) -> Result<HashMap<String, String>> {
        let mut known = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(KNOWN_VERSIONS_PER_STATEMENT) {
            let statement = known_versions_statement(&owner.id.to_string(), kind, chunk);
            for row in self.db.query_all_raw(statement).await? {
                known.insert(
                    row.try_get::<String>("", "platform_id")?,
                    row.try_get::<String>("", "version")?,
                );
            }
        }
        Ok(known)
    }

    /// The records a page delivered and the checkpoint after it, in one transaction.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn commit_page(
        &self,
        owner: &connection::Model,
        kind: &str,
        run: &run::Model,
        delivered: Vec<Item>,
        checkpoint: &Checkpoint,
        read: i64,
        written: i64,
    ) -> Result<()> {
        let backend = self.db.get_database_backend();
        let now = self.clock.now();
        // Each document is serialised once, here: bound as a JSON value, sea-orm would copy
        // the whole tree twice on its way to the driver (measured: 6 % of a sync's CPU).
        let rows: Vec<(String, String, String)> = delivered
            .into_iter()
            .map(|item| (item.platform_id, item.version, item.stored.to_string()))
            .collect();
        // SQLite allows 32,766 bound values a statement: 7 a row.
        let size = |(_, _, text): &(String, String, String)| text.len() + 160;
        let mut inserts = Vec::new();
        for chunk in crate::store::statement_chunks(rows, backend, 1_000, size) {
            let mut insert = upsert_records();
            for (platform_id, version, text) in chunk {
                insert
                    .values([
                        Expr::val(owner.tenant_id.clone()),
                        Expr::val(owner.id.clone()),
                        Expr::val(kind),
                        Expr::val(platform_id),
                        Expr::val(version),
                        json_text(backend, text),
                        Expr::val(now),
                    ])
                    .map_err(|e| sea_orm::DbErr::Custom(e.to_string()))?;
            }
            inserts.push(insert);
        }
        // Built before the transaction: on SQLite it holds the write lock from its start.
        let txn = crate::store::begin_write(&self.db).await?;
        for insert in &inserts {
            txn.execute(insert).await?;
        }
        run::Entity::update_many()
            .col_expr(
                run::Column::Checkpoint,
                Some(serde_json::to_value(checkpoint).unwrap_or_default()).into(),
            )
            .col_expr(run::Column::RecordsRead, read.into())
            .col_expr(run::Column::RecordsWritten, written.into())
            .filter(run::Column::Id.eq(run.id.clone()))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        Ok(())
    }
}

/// An INSERT of records that replaces the version and document of one already there.
fn upsert_records() -> InsertStatement {
    Query::insert()
        .into_table(record::Entity)
        .columns([
            record::Column::TenantId,
            record::Column::ConnectionId,
            record::Column::Kind,
            record::Column::PlatformId,
            record::Column::Version,
            record::Column::Data,
            record::Column::SyncedAt,
        ])
        .on_conflict(
            OnConflict::columns([
                record::Column::ConnectionId,
                record::Column::Kind,
                record::Column::PlatformId,
            ])
            .update_columns([
                record::Column::Version,
                record::Column::Data,
                record::Column::SyncedAt,
            ])
            .to_owned(),
        )
        .to_owned()
}

/// A serialised JSON document as the `data` column takes it: SQLite keeps JSON as text;
/// PostgreSQL's jsonb column is given text cast to jsonb (the driver binds text as text).
fn json_text(backend: DatabaseBackend, text: String) -> Expr {
    match backend {
        DatabaseBackend::Postgres => Expr::val(text).cast_as("jsonb"),
        _ => Expr::val(text),
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{ConnectionTrait, DatabaseBackend};

    use super::{known_versions_statement, statistics_stale};
    use crate::bench::fixture::{explain, on_each_database};

    /// On PostgreSQL the lookup of a page's known versions probes the primary key once an id
    /// on a table never analysed (a new or fast-growing one), where `platform_id IN (...)`
    /// scanned every record of the connection and checked each against every id (a Filter
    /// in its plan); and it answers the known ids only.
    #[tokio::test]
    async fn known_versions_probe_the_primary_key_without_statistics() {
        on_each_database(|db, url| async move {
            if db.get_database_backend() != DatabaseBackend::Postgres {
                return;
            }
            db.execute_unprepared(
                "INSERT INTO records SELECT 'ten_1', 'con_1', 'orders', g::text, \
                 'v' || g::text, '{}', now() FROM generate_series(1, 5000) g",
            )
            .await
            .unwrap();
            let ids: Vec<String> = (4_900..5_150).map(|n| n.to_string()).collect();
            let lookup = known_versions_statement("con_1", "orders", &ids);
            let explained = explain(&db, &lookup).await;
            assert!(
                explained.contains("Index Cond") && explained.contains("platform_id"),
                "{url}: {explained}"
            );
            assert!(!explained.contains("Filter"), "{url}: {explained}");

            let mut asked = ids.clone();
            asked.push("4900".into());
            let known = db
                .query_all_raw(known_versions_statement("con_1", "orders", &asked))
                .await
                .unwrap();
            assert_eq!(
                known.len(),
                102,
                "4,900-5,000 once each, and 4,900 asked twice"
            );
        })
        .await;
    }

    #[test]
    fn statistics_are_refreshed_as_a_big_sync_grows_and_never_for_a_small_one() {
        assert!(!statistics_stale(0, 999));
        assert!(statistics_stale(750, 1_000));
        assert!(!statistics_stale(1_000, 3_999));
        assert!(statistics_stale(3_750, 4_000));
        assert!(statistics_stale(15_900, 16_150));
        assert!(!statistics_stale(16_150, 63_000));
        assert!(statistics_stale(0, 100_000));
    }
}
