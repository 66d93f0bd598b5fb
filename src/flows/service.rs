use std::sync::Arc;

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
    Set,
};

use super::model::{FlowPatch, FlowView, NewFlow, RetryPolicy, RunView, Stream};
use crate::audit::{self, Actor, Entry};
use crate::connectors::{ConnectorKind, ConnectorRegistry, Manifest};
use crate::error::{Error, FieldError, Result};
use crate::ids::{ConnectionId, FlowId, RunId, TenantId};
use crate::pagination::{Direction, Page, PageRequest, page_query};
use crate::runtime::RunsSignal;
use crate::schedule::{Schedule, ScheduleSpec};
use crate::store::entities::{connection, flow, run};
use crate::tenancy::ensure_tenant_exists;

#[derive(Clone)]
pub struct Flows {
    db: DatabaseConnection,
    registry: Arc<ConnectorRegistry>,
    runs: RunsSignal,
    /// Next scheduled instants are computed from it.
    clock: crate::clock::Clock,
}

/// One end of a flow as given, and what kind of system the stream needs there.
struct Endpoint<'a> {
    field: &'static str,
    raw: &'a str,
    wanted: ConnectorKind,
    stream: Stream,
}

fn retry_of(row: &flow::Model) -> RetryPolicy {
    RetryPolicy {
        max_attempts: row.max_attempts,
        base_seconds: row.retry_base_seconds,
        cap_seconds: row.retry_cap_seconds,
    }
}

fn check_retry(retry: &RetryPolicy, errors: &mut Vec<FieldError>) {
    if !(1..=50).contains(&retry.max_attempts) {
        errors.push(FieldError::new(
            "retry.max_attempts",
            "must be between 1 and 50",
        ));
    }
    if !(1..=3600).contains(&retry.base_seconds) {
        errors.push(FieldError::new(
            "retry.base_seconds",
            "must be between 1 and 3600",
        ));
    }
    if !(retry.base_seconds..=86_400).contains(&retry.cap_seconds) {
        errors.push(FieldError::new(
            "retry.cap_seconds",
            "must be between base_seconds and 86400",
        ));
    }
}

fn check_name(name: &str, errors: &mut Vec<FieldError>) -> String {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        errors.push(FieldError::new("name", "must be 1 to 200 characters"));
    }
    name.to_string()
}

fn view(row: flow::Model) -> FlowView {
    let local = row.next_run_at.and_then(|at| {
        let zone = crate::timezone::parse_timezone(&row.timezone).ok()?;
        Some(at.with_timezone(&zone).to_rfc3339())
    });
    FlowView {
        id: row.id.to_string(),
        name: row.name.clone(),
        stream: row.stream.clone(),
        source: row.source_connection_id.to_string(),
        destination: row.destination_connection_id.to_string(),
        schedule: row
            .schedule
            .clone()
            .and_then(|s| serde_json::from_value(s).ok()),
        timezone: row.timezone.clone(),
        on_webhook: row.on_webhook,
        enabled: row.enabled,
        catch_up: row.catch_up,
        retry: retry_of(&row),
        next_run_at: row.next_run_at,
        next_run_at_local: local,
        consecutive_failures: row.consecutive_failures,
        disabled_reason: row.disabled_reason,
        cursor: row.cursor,
        created_at: row.created_at,
        updated_at: row.updated_at,
    }
}

impl Flows {
    pub fn new(db: DatabaseConnection, registry: Arc<ConnectorRegistry>, runs: RunsSignal) -> Self {
        Self {
            db,
            registry,
            runs,
            clock: crate::clock::Clock::system(),
        }
    }

    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    async fn find(
        &self,
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        id: &str,
    ) -> Result<flow::Model> {
        crate::store::find_owned::<flow::Entity>(db, tenant, id).await
    }

    /// Resolves a connection of the tenant and checks it can play its part in the stream.
    /// (An unknown connector is reported by the kind check.)
    async fn endpoint(
        &self,
        db: &impl ConnectionTrait,
        tenant: &TenantId,
        end: Endpoint<'_>,
        errors: &mut Vec<FieldError>,
    ) -> Result<Option<ConnectionId>> {
        let Some(id) = ConnectionId::parse(end.raw) else {
            errors.push(FieldError::new(end.field, "is not a connection id"));
            return Ok(None);
        };
        let Some(row) = connection::Entity::find_in_tenant(tenant)
            .filter(connection::Column::Id.eq(id.clone()))
            .one(db)
            .await?
        else {
            errors.push(FieldError::new(end.field, "no such connection"));
            return Ok(None);
        };
        let manifest = self.registry.get(&row.connector);
        let kind = manifest.as_ref().map(|m| m.kind);
        if kind == Some(end.wanted)
            && let Some(missing) = manifest.as_ref().and_then(|m| unsupported(m, &end))
        {
            errors.push(FieldError::new(
                end.field,
                format!("{} {missing}", row.connector),
            ));
        }
        if kind != Some(end.wanted) {
            let wanted = match end.wanted {
                ConnectorKind::Marketplace => "a marketplace",
                ConnectorKind::Erp => "an ERP",
            };
            errors.push(FieldError::new(
                end.field,
                format!(
                    "{} flows need {wanted} here; {} is not one",
                    end.stream.as_str(),
                    row.name
                ),
            ));
        }
        Ok(Some(id))
    }

    pub async fn create(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        input: NewFlow,
    ) -> Result<FlowView> {
        let txn = crate::store::begin_write(&self.db).await?;
        let tenant_row = ensure_tenant_exists(&txn, tenant).await?;
        let mut errors = Vec::new();
        let name = check_name(&input.name, &mut errors);
        let (source_kind, destination_kind) = match input.stream {
            Stream::Orders => (ConnectorKind::Marketplace, ConnectorKind::Erp),
            Stream::Inventory | Stream::Shipments => {
                (ConnectorKind::Erp, ConnectorKind::Marketplace)
            }
        };
        let source = Endpoint {
            field: "source",
            raw: &input.source,
            wanted: source_kind,
            stream: input.stream,
        };
        let source = self.endpoint(&txn, tenant, source, &mut errors).await?;
        let destination = Endpoint {
            field: "destination",
            raw: &input.destination,
            wanted: destination_kind,
            stream: input.stream,
        };
        let destination = self
            .endpoint(&txn, tenant, destination, &mut errors)
            .await?;
        let retry = input.retry.unwrap_or_default();
        check_retry(&retry, &mut errors);
        let (timezone, schedule) =
            self.check_schedule(input.schedule.as_ref(), &tenant_row.timezone, &mut errors);
        let (Some(source), Some(destination)) = (source, destination) else {
            return Err(Error::Invalid(errors));
        };
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        let now = self.clock.now();
        let next_run_at = if input.enabled {
            schedule.as_ref().and_then(|s| s.next_after(now))
        } else {
            None
        };
        let row = flow::ActiveModel {
            id: Set(FlowId::generate()),
            tenant_id: Set(tenant.clone()),
            name: Set(name),
            stream: Set(input.stream.as_str().to_string()),
            source_connection_id: Set(source),
            destination_connection_id: Set(destination),
            schedule: Set(input
                .schedule
                .as_ref()
                .map(|s| serde_json::to_value(s).unwrap_or_default())),
            timezone: Set(timezone),
            on_webhook: Set(input.on_webhook),
            enabled: Set(input.enabled),
            catch_up: Set(input.catch_up),
            max_attempts: Set(retry.max_attempts),
            retry_base_seconds: Set(retry.base_seconds),
            retry_cap_seconds: Set(retry.cap_seconds),
            cursor: Set(None),
            next_run_at: Set(next_run_at),
            consecutive_failures: Set(0),
            disabled_reason: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&txn)
        .await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "flow.create",
                resource_type: "flow",
                resource_id: row.id.as_str(),
                details: serde_json::json!({ "name": row.name, "stream": row.stream, "schedule": row.schedule, "timezone": row.timezone }),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(view(row))
    }

    /// Validates a schedule; returns the zone it is read in and the parsed schedule.
    fn check_schedule(
        &self,
        spec: Option<&ScheduleSpec>,
        tenant_zone: &str,
        errors: &mut Vec<FieldError>,
    ) -> (String, Option<Schedule>) {
        let zone = match spec {
            Some(ScheduleSpec::Cron {
                timezone: Some(zone),
                ..
            }) => zone.clone(),
            _ => tenant_zone.to_string(),
        };
        let schedule = spec.and_then(|spec| match Schedule::parse(spec, tenant_zone) {
            Ok(schedule) => Some(schedule),
            Err((field, message)) => {
                errors.push(FieldError::new(field, message));
                None
            }
        });
        (zone, schedule)
    }

    pub async fn get(&self, tenant: &TenantId, id: &str) -> Result<FlowView> {
        Ok(view(self.find(&self.db, tenant, id).await?))
    }

    pub async fn list(&self, tenant: &TenantId, page: &PageRequest) -> Result<Page<FlowView>> {
        let query = flow::Entity::find_in_tenant(tenant);
        let rows = page_query(query, flow::Column::Id, page, Direction::OldestFirst)
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(
            rows,
            page.limit,
            |m| m.id.to_string(),
            view,
        ))
    }

    pub async fn update(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        id: &str,
        patch: FlowPatch,
    ) -> Result<FlowView> {
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        let tenant_row = ensure_tenant_exists(&txn, tenant).await?;
        let mut errors = Vec::new();
        let mut active: flow::ActiveModel = row.clone().into();
        let mut changed = Vec::new();
        if let Some(name) = &patch.name {
            active.name = Set(check_name(name, &mut errors));
            changed.push("name");
        }
        if let Some(retry) = &patch.retry {
            check_retry(retry, &mut errors);
            active.max_attempts = Set(retry.max_attempts);
            active.retry_base_seconds = Set(retry.base_seconds);
            active.retry_cap_seconds = Set(retry.cap_seconds);
            changed.push("retry");
        }
        if let Some(on_webhook) = patch.on_webhook {
            active.on_webhook = Set(on_webhook);
            changed.push("on_webhook");
        }
        if let Some(catch_up) = patch.catch_up {
            active.catch_up = Set(catch_up);
            changed.push("catch_up");
        }
        let mut schedule_spec = row.schedule.clone();
        let mut timezone = row.timezone.clone();
        if let Some(spec) = &patch.schedule {
            let (zone, _) = self.check_schedule(spec.as_ref(), &tenant_row.timezone, &mut errors);
            timezone = zone;
            schedule_spec = spec
                .as_ref()
                .map(|s| serde_json::to_value(s).unwrap_or_default());
            active.schedule = Set(schedule_spec.clone());
            active.timezone = Set(timezone.clone());
            changed.push("schedule");
        }
        let enabled = patch.enabled.unwrap_or(row.enabled);
        if let Some(enable) = patch.enabled {
            active.enabled = Set(enable);
            if enable && !row.enabled {
                active.disabled_reason = Set(None);
                active.consecutive_failures = Set(0);
            }
            changed.push("enabled");
        }
        if !errors.is_empty() {
            return Err(Error::Invalid(errors));
        }
        if changed.is_empty() {
            return Err(Error::invalid("body", "name at least one field to change"));
        }
        if patch.schedule.is_some() || patch.enabled.is_some() {
            let probe = flow::Model {
                schedule: schedule_spec,
                timezone,
                ..row.clone()
            };
            let next = if enabled {
                crate::scheduler::flow_schedule(&probe).and_then(|s| s.next_after(self.clock.now()))
            } else {
                None
            };
            active.next_run_at = Set(next);
        }
        active.updated_at = Set(self.clock.now());
        let updated = active.update(&txn).await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "flow.update",
                resource_type: "flow",
                resource_id: updated.id.as_str(),
                details: serde_json::json!({ "changed": changed, "schedule": updated.schedule, "enabled": updated.enabled }),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(view(updated))
    }

    pub async fn delete(&self, actor: &Actor, tenant: &TenantId, id: &str) -> Result<()> {
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        run::Entity::delete_many()
            .filter(run::Column::TenantId.eq(tenant.clone()))
            .filter(run::Column::FlowId.eq(row.id.clone()))
            .exec(&txn)
            .await?;
        flow::Entity::delete_by_id(row.id.clone())
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "flow.delete",
                resource_type: "flow",
                resource_id: row.id.as_str(),
                details: serde_json::json!({ "name": row.name }),
            },
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Queues a run now (POST /v1/flows/{id}/run).
    pub async fn trigger(&self, actor: &Actor, tenant: &TenantId, id: &str) -> Result<RunView> {
        let txn = crate::store::begin_write(&self.db).await?;
        let row = self.find(&txn, tenant, id).await?;
        let run_id = RunId::generate();
        let run = crate::runs::enqueue_run(
            &txn,
            &row,
            run_id.clone(),
            "manual",
            format!("manual:{run_id}"),
            None,
            self.clock.now(),
        )
        .await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "flow.run",
                resource_type: "flow",
                resource_id: row.id.as_str(),
                details: serde_json::json!({ "run_id": run_id }),
            },
        )
        .await?;
        txn.commit().await?;
        self.runs.notify();
        run.map(RunView::from)
            .ok_or_else(|| Error::Conflict("this run is queued already".into()))
    }

    pub async fn runs(
        &self,
        tenant: &TenantId,
        id: &str,
        page: &PageRequest,
    ) -> Result<Page<RunView>> {
        let row = self.find(&self.db, tenant, id).await?;
        let query = run::Entity::find_in_tenant(tenant).filter(run::Column::FlowId.eq(row.id));
        let rows = page_query(query, run::Column::Id, page, Direction::NewestFirst)
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(
            rows,
            page.limit,
            |m| m.id.to_string(),
            RunView::from,
        ))
    }

    /// Runs that ended in the dead letters (permanent error or attempts exhausted), newest first.
    pub async fn dead_letters(
        &self,
        tenant: &TenantId,
        page: &PageRequest,
    ) -> Result<Page<RunView>> {
        let query = run::Entity::find_in_tenant(tenant)
            .filter(run::Column::Status.eq(run::RunStatus::Dead));
        let rows = page_query(query, run::Column::Id, page, Direction::NewestFirst)
            .all(&self.db)
            .await?;
        Ok(Page::from_rows(
            rows,
            page.limit,
            |m| m.id.to_string(),
            RunView::from,
        ))
    }

    /// Queues a new run for a dead letter's flow, from where the dead run's checkpoint left
    /// it. A dead letter is replayed once; asking again returns 409.
    pub async fn replay(&self, actor: &Actor, tenant: &TenantId, id: &str) -> Result<RunView> {
        let txn = crate::store::begin_write(&self.db).await?;
        // Any run but a dead one is no dead letter: the same 404 as a missing id.
        let dead = match crate::store::find_owned::<run::Entity>(&txn, tenant, id).await {
            Ok(run) if run.status == run::RunStatus::Dead => run,
            Ok(_) | Err(Error::NotFound(_)) => return Err(Error::NotFound("dead letter")),
            Err(err) => return Err(err),
        };
        let dead_id = dead.id.clone();
        let flow = flow::Entity::find_by_id(dead.flow_id.clone())
            .one(&txn)
            .await?
            .ok_or(Error::NotFound("flow"))?;
        let run_id = RunId::generate();
        let replay = crate::runs::enqueue_run(
            &txn,
            &flow,
            run_id.clone(),
            "replay",
            format!("replay:{dead_id}"),
            None,
            self.clock.now(),
        )
        .await?
        .ok_or_else(|| Error::Conflict("this dead letter was replayed already".into()))?;
        run::Entity::update_many()
            .col_expr(run::Column::Checkpoint, dead.checkpoint.clone().into())
            .filter(run::Column::Id.eq(run_id.clone()))
            .exec(&txn)
            .await?;
        audit::record(
            &txn,
            actor,
            Entry {
                tenant_id: Some(tenant),
                action: "dead_letter.replay",
                resource_type: "run",
                resource_id: dead_id.as_str(),
                details: serde_json::json!({ "replay_run_id": run_id, "flow_id": flow.id }),
            },
        )
        .await?;
        txn.commit().await?;
        self.runs.notify();
        Ok(RunView::from(replay))
    }

    pub async fn run(&self, tenant: &TenantId, id: &str) -> Result<RunView> {
        crate::store::find_owned::<run::Entity>(&self.db, tenant, id)
            .await
            .map(RunView::from)
    }
}

/// What a connector lacks to play its end of a stream, if anything.
fn unsupported(manifest: &Manifest, end: &Endpoint<'_>) -> Option<&'static str> {
    let (supported, lack) = match (end.stream, end.field == "source") {
        (Stream::Orders, true) => (manifest.mappings.order.is_some(), "does not read orders"),
        (Stream::Orders, false) => (
            ["create_order", "create_orders"]
                .iter()
                .any(|op| manifest.operations.contains_key(*op)),
            "does not take orders",
        ),
        (Stream::Inventory, true) => (
            manifest.mappings.stock.is_some(),
            "does not read stock levels",
        ),
        (Stream::Inventory, false) => (
            manifest.writes.contains_key("stock"),
            "does not take stock levels",
        ),
        (Stream::Shipments, true) => (
            manifest.mappings.shipment.is_some(),
            "does not read shipments",
        ),
        (Stream::Shipments, false) => (
            manifest.writes.contains_key("shipment"),
            "does not take shipments",
        ),
    };
    (!supported).then_some(lack)
}
