use sea_orm::entity::prelude::*;

use crate::ids::{FlowId, RunId, TenantId};

text_enum! {
    /// Where a run is in its life: queued (waiting for a worker), running (held under a lease),
    /// retrying (a transient failure, waiting for its next attempt), succeeded, or dead (in the
    /// dead letters). Stored as its snake_case name.
    RunStatus {
        Queued = "queued",
        Running = "running",
        Retrying = "retrying",
        Succeeded = "succeeded",
        Dead = "dead",
    }
}

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: RunId,
    pub tenant_id: TenantId,
    pub flow_id: FlowId,
    /// schedule, manual, webhook or replay.
    pub trigger: String,
    pub dedupe_key: String,
    pub scheduled_for: Option<DateTimeUtc>,
    pub status: RunStatus,
    pub attempts: i32,
    pub records_read: i64,
    pub records_written: i64,
    pub error_class: Option<String>,
    pub error_message: Option<String>,
    pub connector_version: Option<String>,
    pub next_attempt_at: Option<DateTimeUtc>,
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub checkpoint: Option<Json>,
    pub dispatched_at: Option<DateTimeUtc>,
    pub lease_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

impl Entity {
    pub fn find_in_tenant(tenant: &TenantId) -> Select<Entity> {
        Self::find().filter(Column::TenantId.eq(tenant.clone()))
    }
}

/// A run handed to the queue and not picked up within this is handed over again.
pub const REDISPATCH_AFTER: chrono::Duration = chrono::Duration::seconds(60);

impl Entity {
    /// The one "due" predicate, shared by the dispatcher (what to hand to the queue) and the
    /// claim (what a worker may take): queued, retrying whose next attempt has come, or
    /// running under a lease that ran out (its worker died).
    pub fn due(now: DateTimeUtc) -> sea_orm::Condition {
        sea_orm::Condition::any()
            .add(Column::Status.eq(RunStatus::Queued))
            .add(
                sea_orm::Condition::all()
                    .add(Column::Status.eq(RunStatus::Retrying))
                    .add(Column::NextAttemptAt.lte(now)),
            )
            .add(
                sea_orm::Condition::all()
                    .add(Column::Status.eq(RunStatus::Running))
                    .add(Column::LeaseUntil.lt(now)),
            )
    }
}
