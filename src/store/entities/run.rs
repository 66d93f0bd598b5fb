use sea_orm::entity::prelude::*;
use sea_orm::sea_query::ExprTrait;

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
        Self::due_by(Expr::col((Entity, Column::Status)), now)
    }

    /// `due`, for a statement that picks its runs by id. SQLite's planner, with no
    /// statistics (a table not analysed since a backlog grew), judged an IN list of 16 ids
    /// dearer than the status terms and read every queued run through `ix_runs_status`: a
    /// claim group of 16 among 20,000 queued runs held the write lock 10.8 ms instead of
    /// 0.16. On SQLite the status terms here carry a unary `+`, which keeps a term out of
    /// the choice of index and changes nothing else ("Disqualifying WHERE Clause Terms
    /// Using Unary-+", in SQLite's query optimizer overview). PostgreSQL has no unary `+`
    /// for text, and its statements probe the primary key (`runs::together`).
    pub fn due_by_key(now: DateTimeUtc, backend: sea_orm::DatabaseBackend) -> sea_orm::Condition {
        if backend != sea_orm::DatabaseBackend::Sqlite {
            return Self::due(now);
        }
        Self::due_by(Expr::cust(r#"+"runs"."status""#), now)
    }

    fn due_by(status: Expr, now: DateTimeUtc) -> sea_orm::Condition {
        sea_orm::Condition::any()
            .add(ExprTrait::eq(status.clone(), RunStatus::Queued))
            .add(
                sea_orm::Condition::all()
                    .add(ExprTrait::eq(status.clone(), RunStatus::Retrying))
                    .add(Column::NextAttemptAt.lte(now)),
            )
            .add(
                sea_orm::Condition::all()
                    .add(ExprTrait::eq(status, RunStatus::Running))
                    .add(Column::LeaseUntil.lt(now)),
            )
    }
}
