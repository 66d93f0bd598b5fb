use std::sync::Arc;
use std::time::Duration;

use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};

use super::slots::{VersionKey, VersionSlots};
use super::streams::{Item, Plan};
use crate::connectors::ConnectorRegistry;

use crate::connectors::client::{
    CallError, ConnectorClient, ErrorClass, ListPage, NextPage, TokenFault, Vars,
};
use crate::connectors::spec::WriteSpec;
use crate::connectors::versions::Versions;
use crate::error::{Error, Result};
use crate::flows::Stream;
use crate::ids::RunId;
use crate::netpolicy::{OutboundClient, OutboundPolicy};
use crate::ratelimit::RateLimiter;
use crate::runs::{self, Checkpoint, Claimed, RunReport};
use crate::store::entities::{connection, flow, run};
use crate::vault::Vault;

use super::delivery::{Delivery, SINGLE_WRITE, await_confirmed, deliver_orders, submit_confirmed};

/// How long a run waits before it is handed over again when its version's slots are busy.
const DEFER_WHILE_BUSY: chrono::Duration = chrono::Duration::seconds(1);

/// The runtime's workers hand each delivered run to the engine.
impl crate::runtime::RunExecutor for SyncEngine {
    async fn execute(&self, id: RunId) {
        match SyncEngine::execute(self, &id).await {
            Ok(Some(report)) => {
                tracing::info!(run_id = %id, status = %report.status, read = report.records_read, written = report.records_written, "run attempt finished");
            }
            Ok(None) => tracing::debug!(run_id = %id, "run not claimable; skipped"),
            Err(err) => tracing::error!(run_id = %id, error = %err, "run could not be executed"),
        }
    }
}

/// An internal failure during a run. synchub's own database failing (busy, a dropped
/// connection) is transient, retried with backoff like a platform's 5xx; it never sends a
/// run to the dead letters on its first try. Anything else is a configuration problem.
fn internal(err: Error) -> CallError {
    let class = match &err {
        Error::Internal(inner) if inner.downcast_ref::<sea_orm::DbErr>().is_some() => {
            ErrorClass::Storage
        }
        Error::Unavailable(_) => ErrorClass::Storage,
        _ => ErrorClass::Config,
    };
    CallError::new(class, err.to_string())
}

pub(super) fn storage(err: sea_orm::DbErr) -> CallError {
    internal(err.into())
}

#[derive(Clone)]
pub struct SyncEngine {
    pub(super) db: DatabaseConnection,
    /// Claims and lease renewals commit here without waiting for the disk
    /// (`store::connect_relaxed`); the same pool as `db` unless given.
    pub(super) relaxed: DatabaseConnection,
    pub(super) vault: Vault,
    pub(super) versions: Versions,
    pub(super) limiter: RateLimiter,
    pub(super) http: OutboundClient,
    pub(super) lease: chrono::Duration,
    /// Claims, leases, backoff and the lookup cache's age are judged by it.
    pub(super) clock: crate::clock::Clock,
    /// Each connector version's share of this process's worker slots.
    pub(super) slots: VersionSlots,
    /// Wakes this process's dispatcher when a run's end releases its flow's next run.
    pub(super) runs: crate::runtime::RunsSignal,
    /// Where runs are claimed and ended (those arriving together in one transaction).
    pub(super) writer: runs::RunWriter,
}

impl SyncEngine {
    /// How long one platform call may take before it counts as a timeout (default 30 s).
    pub fn with_call_timeout(mut self, timeout: Duration) -> anyhow::Result<Self> {
        self.http = OutboundClient::new(
            self.http.policy().clone(),
            timeout.min(Duration::from_secs(10)),
            timeout,
        )?;
        Ok(self)
    }

    /// Where claims and lease renewals commit: a pool that skips the flush to disk.
    pub fn with_relaxed_store(mut self, relaxed: DatabaseConnection) -> Self {
        self.writer = runs::RunWriter::new(self.db.clone(), relaxed.clone());
        self.relaxed = relaxed;
        self
    }

    /// Where rate-limit buckets and concurrency slots live (the database by default).
    pub fn with_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = limiter;
        self
    }

    /// How long a claim lasts between checkpoints (`workers.lease_seconds`).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = chrono::Duration::from_std(lease).unwrap_or(self.lease);
        self
    }

    pub fn new(
        db: DatabaseConnection,
        vault: Vault,
        registry: Arc<ConnectorRegistry>,
        outbound: OutboundPolicy,
    ) -> anyhow::Result<Self> {
        let http = OutboundClient::new(outbound, Duration::from_secs(10), Duration::from_secs(30))?;
        let writer = runs::RunWriter::new(db.clone(), db.clone());
        Ok(Self {
            limiter: RateLimiter::new(db.clone()),
            versions: Versions::new(db.clone(), registry),
            relaxed: db.clone(),
            db,
            vault,
            http,
            lease: chrono::Duration::from_std(runs::DEFAULT_LEASE).unwrap_or_default(),
            clock: crate::clock::Clock::system(),
            slots: VersionSlots::for_concurrency(4),
            runs: crate::runtime::RunsSignal::new(),
            writer,
        })
    }

    /// Each connector version's share of the worker slots (`workers.per_version_slots`).
    pub fn with_slots(mut self, slots: VersionSlots) -> Self {
        self.slots = slots;
        self
    }

    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The signal this process's dispatcher waits on.
    pub fn with_runs_signal(mut self, runs: crate::runtime::RunsSignal) -> Self {
        self.runs = runs;
        self
    }

    /// A client for the connection, on `version` when given (the run's own), else on the
    /// connection's pin.
    async fn client(
        &self,
        row: &connection::Model,
        version: Option<&str>,
    ) -> Result<ConnectorClient> {
        let version = version.or(row.version.as_deref());
        let manifest = self
            .versions
            .manifest(&row.tenant_id, &row.connector, version)
            .await?
            .ok_or_else(|| {
                Error::Internal(anyhow::anyhow!(
                    "connector {} {} is not installed",
                    row.connector,
                    version.unwrap_or("(built in)")
                ))
            })?;
        let deps = crate::connections::ClientDeps {
            db: &self.db,
            clock: &self.clock,
            vault: &self.vault,
            limiter: &self.limiter,
            http: &self.http,
        };
        crate::connections::client_for(&deps, row, manifest).await
    }

    /// Executes one attempt of a run and records its outcome: succeeded, retrying (a transient
    /// error with attempts left, rescheduled in storage), or dead (the dead letters).
    /// Returns None when the run is not this worker's to execute (finished, not due yet, or
    /// held by another worker whose lease is still good): job delivery is at-least-once.
    pub async fn execute(&self, run_id: &RunId) -> Result<Option<RunReport>> {
        let Some(key) = self.version_key(run_id).await? else {
            return Ok(None);
        };
        let Some(_slot) = self.slots.try_take(&key) else {
            runs::defer(&self.db, run_id, self.clock.now(), DEFER_WHILE_BUSY).await?;
            metrics::counter!("synchub_runs_deferred_total", "connector" => key.connector.clone(), "version" => key.version.clone())
                .increment(1);
            tracing::debug!(run_id = %run_id, version = %key, "the version's worker slots are in use; run put back");
            return Ok(None);
        };
        let started = std::time::Instant::now();
        let report = self.attempt(run_id).await?;
        if report.as_ref().is_some_and(|r| r.released_next) {
            self.runs.notify();
        }
        if let Some(report) = &report {
            // Every ending of the version counted, the others by zero: the first dead run
            // of a version must be an increase, not a new series (`increase()` misses those).
            for status in [
                run::RunStatus::Succeeded,
                run::RunStatus::Retrying,
                run::RunStatus::Dead,
            ] {
                metrics::counter!("synchub_runs_total", "connector" => key.connector.clone(), "version" => key.version.clone(), "status" => status.as_str())
                    .increment(u64::from(status == report.status));
            }
            metrics::counter!("synchub_runs_deferred_total", "connector" => key.connector.clone(), "version" => key.version.clone())
                .increment(0);
            metrics::histogram!("synchub_run_duration_seconds", "connector" => key.connector.clone(), "version" => key.version.clone(), "status" => report.status.as_str())
                .record(started.elapsed().as_secs_f64());
        }
        Ok(report)
    }

    /// The connector version a run calls: the marketplace end of its flow, at the version
    /// the run started on, else the connection's pin, else the built-in one. None when the
    /// run or its flow is gone.
    async fn version_key(&self, run_id: &RunId) -> Result<Option<VersionKey>> {
        let Some(run) = run::Entity::find_by_id(run_id.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let Some(flow) = flow::Entity::find_by_id(run.flow_id.clone())
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let marketplace = match Stream::parse(&flow.stream) {
            Some(Stream::Orders) => flow.source_connection_id,
            _ => flow.destination_connection_id,
        };
        let Some(connection) = connection::Entity::find_by_id(marketplace)
            .one(&self.db)
            .await?
        else {
            // The attempt reports the missing connection.
            return Ok(Some(VersionKey {
                connector: "unknown".into(),
                version: "unknown".into(),
            }));
        };
        let version = run
            .connector_version
            .or(connection.version)
            .or_else(|| self.versions.built_in_version(&connection.connector))
            .unwrap_or_else(|| "unknown".into());
        Ok(Some(VersionKey {
            connector: connection.connector,
            version,
        }))
    }

    async fn attempt(&self, run_id: &RunId) -> Result<Option<RunReport>> {
        let Some(Claimed { run, flow }) = self
            .writer
            .claim(run_id, self.lease, self.clock.now())
            .await?
        else {
            return Ok(None);
        };
        // Keep the lease while the attempt is alive, however long a page takes.
        let heartbeat = runs::keep_lease(
            self.relaxed.clone(),
            run_id.clone(),
            self.lease,
            self.clock.clone(),
        );
        let mut used = Vec::new();
        let mut outcome = self.sync(&flow, &run, &mut used).await;
        // The platform refused a token the credential keeper has replaced meanwhile (Shopify
        // revokes the old token when it issues a new one): once more with the new
        // credentials, from the page the run had reached.
        // A token synchub obtains itself (Lingxing's) that the platform calls expired is
        // renewed first, under the connection's token lock, so two workers spend one refresh.
        if let Err(e) = &outcome
            && e.class == ErrorClass::Auth
            && (self.credentials_replaced(&used).await || self.renew_refused(&used, e).await)
            && let Some(latest) = run::Entity::find_by_id(run.id.clone())
                .one(&self.db)
                .await
                .ok()
                .flatten()
        {
            tracing::info!(run_id = %run.id, "credentials were refreshed during the run; resuming with the new ones");
            outcome = self.sync(&flow, &latest, &mut Vec::new()).await;
        }
        heartbeat.abort();
        match outcome {
            Ok(()) => self
                .writer
                .succeed(&flow, run_id, self.clock.now())
                .await
                .map(Some),
            Err(failure) => self
                .writer
                .fail(&flow, run_id, &failure, self.clock.now())
                .await
                .map(Some),
        }
    }

    /// After the platform refused a token that synchub obtains itself: renews the tokens of
    /// the connections whose scheme keeps them (true when they changed), or, when another
    /// application took the token over, tells ops and leaves it (false).
    async fn renew_refused(&self, used: &[connection::Model], error: &CallError) -> bool {
        let Some(fault) = error.token_fault else {
            return false;
        };
        let keeper = match crate::connections::keeper::CredentialKeeper::new(
            self.db.clone(),
            self.vault.clone(),
            self.versions.clone(),
            self.limiter.clone(),
            Default::default(),
            self.http.policy().clone(),
        ) {
            Ok(keeper) => keeper.with_clock(self.clock.clone()),
            Err(err) => {
                tracing::warn!(error = %err, "no credential keeper for the renewal");
                return false;
            }
        };
        let mut renewed = false;
        for row in used {
            let keeps = self
                .versions
                .manifest(&row.tenant_id, &row.connector, row.version.as_deref())
                .await
                .ok()
                .flatten()
                .and_then(|m| m.auth.as_ref().map(|a| a.keeps_tokens()))
                .unwrap_or(false);
            if !keeps {
                continue;
            }
            let done = match fault {
                TokenFault::Expired => keeper.renew_now(&row.id, &row.credentials_secret_id).await,
                TokenFault::TakenOver => keeper.report_taken_over(row, error).await.map(|_| false),
            };
            match done {
                Ok(done) => renewed |= done,
                Err(err) => {
                    tracing::warn!(connection = %row.id, error = %err, "renewing a refused token")
                }
            }
        }
        renewed
    }

    /// Whether any of these connections' credentials changed since they were read.
    async fn credentials_replaced(&self, used: &[connection::Model]) -> bool {
        for row in used {
            let now = connection::Entity::find_by_id(row.id.clone())
                .one(&self.db)
                .await
                .ok()
                .flatten();
            if now.is_some_and(|n| n.credentials_secret_id != row.credentials_secret_id) {
                return true;
            }
        }
        false
    }

    /// One pass over the flow's pages from the run's checkpoint; `used` gets the connections
    /// as read, so a refused token can be told from one replaced meanwhile.
    async fn sync(
        &self,
        flow: &flow::Model,
        run: &run::Model,
        used: &mut Vec<connection::Model>,
    ) -> Result<(), CallError> {
        let source = connection::Entity::find_by_id(flow.source_connection_id.clone())
            .one(&self.db)
            .await
            .map_err(|e| internal(e.into()))?
            .ok_or_else(|| CallError::new(ErrorClass::Config, "the source connection is gone"))?;
        let destination = connection::Entity::find_by_id(flow.destination_connection_id.clone())
            .one(&self.db)
            .await
            .map_err(|e| internal(e.into()))?
            .ok_or_else(|| {
                CallError::new(ErrorClass::Config, "the destination connection is gone")
            })?;
        used.extend([source.clone(), destination.clone()]);
        let stream = Stream::parse(&flow.stream).ok_or_else(|| {
            CallError::new(
                ErrorClass::Config,
                format!("unknown stream {}", flow.stream),
            )
        })?;
        // The marketplace's connector is the one a deployment changes under a flow. A run
        // keeps the version its first attempt used: a switch-over (or a rollback) while it
        // is in flight changes what later runs use, never this one.
        let (source_pin, destination_pin) = match stream {
            Stream::Orders => (run.connector_version.as_deref(), None),
            _ => (None, run.connector_version.as_deref()),
        };
        let source_client = self.client(&source, source_pin).await.map_err(internal)?;
        let destination_client = self
            .client(&destination, destination_pin)
            .await
            .map_err(internal)?;
        let plan = Plan::new(stream, &source_client, &destination_client)?;
        let owner = plan.owner(&source, &destination);
        if run.connector_version.is_none() {
            let versioned = if owner.id == source.id {
                &source_client
            } else {
                &destination_client
            };
            let _ = run::Entity::update_many()
                .col_expr(
                    run::Column::ConnectorVersion,
                    Some(versioned.manifest().version.clone()).into(),
                )
                .filter(run::Column::Id.eq(run.id.clone()))
                .exec(&self.db)
                .await;
        }

        let mut checkpoint = Checkpoint::of(run);
        let mut vars = Vars::new();
        if let Some(cursor) = flow
            .cursor
            .as_ref()
            .and_then(|c| c[crate::runs::CURSOR_KEY].as_str())
        {
            vars.set("cursor", cursor);
        }
        let (mut read, mut written) = (run.records_read, run.records_written);
        let mut ahead: Option<Result<(ListPage, Vec<Item>), CallError>> = None;
        let ends = (&source, &destination);
        // The previous page's commit, still running while this page is written: the calls in
        // flight need not idle through a commit either. Each commit ends before the next
        // one starts, so the checkpoint only moves forward. A crash between them re-sends
        // a page, and a record on two pages in a row may be sent twice (the next page is
        // checked against the records before the last commit lands): the destination's
        // idempotency keys absorb both, as after any crash between a write and its commit.
        let mut committing: Option<Commit<'_>> = None;
        let confirmed =
            plan.write().is_none() && destination_client.confirm_spec(SINGLE_WRITE).is_some();
        loop {
            let fetched = match ahead.take() {
                Some(fetched) => fetched,
                None => {
                    read_page(&plan, &source_client, &vars, checkpoint.next.as_ref(), ends).await
                }
            };
            let (page, items) = match fetched {
                Ok(read) => read,
                Err(error) => {
                    settle(committing.take()).await?;
                    return Err(error);
                }
            };
            let page_read = items.len() as i64;
            let by_content = plan.versions_by_content();
            for item in items.iter().filter(|_| !by_content) {
                if checkpoint
                    .max_version
                    .as_deref()
                    .is_none_or(|v| v < item.version.as_str())
                {
                    checkpoint.max_version = Some(item.version.clone());
                }
            }
            if confirmed {
                // That path commits inside its delivery: never beside an older commit.
                settle(committing.take()).await?;
            }
            let delivery = async {
                let known = self
                    .known_versions(owner, plan.kind(), &items)
                    .await
                    .map_err(internal)?;
                // Moved, not copied: the bodies are the page's largest allocation.
                let fresh: Vec<Item> = items
                    .into_iter()
                    .filter(|item| match known.get(&item.platform_id) {
                        None => true,
                        Some(v) if by_content => v != &item.version,
                        Some(v) => v.as_str() < item.version.as_str(),
                    })
                    .collect();
                Ok::<_, CallError>(match plan.write() {
                    None if confirmed => {
                        // Created later by the platform: what was sent is kept in the checkpoint
                        // first, so a restart polls for it instead of sending it again.
                        match submit_confirmed(&destination_client, fresh, &mut checkpoint).await {
                            Err(stopped) => stopped,
                            Ok((awaiting, sent)) => {
                                if sent {
                                    self.commit_page(
                                        owner,
                                        plan.kind(),
                                        run,
                                        Vec::new(),
                                        &checkpoint,
                                        read,
                                        written,
                                    )
                                    .await
                                    .map_err(internal)?;
                                }
                                await_confirmed(&destination_client, awaiting, &mut checkpoint)
                                    .await
                            }
                        }
                    }
                    None => deliver_orders(&destination_client, fresh).await,
                    Some(write) => Delivery::of(
                        self.deliver_templated(
                            &destination_client,
                            write,
                            owner,
                            plan.kind(),
                            fresh,
                        )
                        .await,
                    ),
                })
            };
            // The next page is read while this one is written: the destination's calls in
            // flight need not idle through the source's answer.
            let read_ahead = async {
                match &page.next {
                    Some(next) => {
                        Some(read_page(&plan, &source_client, &vars, Some(next), ends).await)
                    }
                    None => None,
                }
            };
            let (previous, delivery, read_ahead) =
                tokio::join!(settle(committing.take()), delivery, read_ahead);
            previous?;
            let Delivery { delivered, stopped } = delivery?;
            ahead = read_ahead;
            // A page that stopped is read again by the retry, which writes only what is not
            // in the records table yet: it counts as read then, and nothing is committed
            // now unless part of it was delivered.
            match &stopped {
                None => {
                    read += page_read;
                    checkpoint.next = page.next.clone();
                }
                Some(error) if delivered.is_empty() => return Err(error.clone()),
                Some(_) => {}
            }
            let before = written;
            written += delivered.len() as i64;
            let commit: Commit<'_> = Box::pin({
                let (kind, checkpoint) = (plan.kind(), checkpoint.clone());
                async move {
                    self.commit_page(owner, kind, run, delivered, &checkpoint, read, written)
                        .await
                        .map_err(internal)?;
                    self.refresh_statistics_as_it_grows(before, written).await;
                    Ok(())
                }
            });
            if let Some(error) = stopped {
                commit.await?;
                return Err(error);
            }
            if page.next.is_none() {
                return commit.await;
            }
            committing = Some(commit);
        }
    }

    /// Writes stock levels or shipments one call each, after looking up the platform's own
    /// ids where the manifest says so. A record the lookup does not find (a SKU not listed on
    /// this marketplace, an order it does not have) is skipped and reported, not failed: it
    /// must not hold back the rest. Returns what was written.
    async fn deliver_templated(
        &self,
        destination: &ConnectorClient,
        write: &WriteSpec,
        owner: &connection::Model,
        kind: &str,
        items: Vec<Item>,
    ) -> Result<Vec<Item>, CallError> {
        let mut delivered = Vec::with_capacity(items.len());
        let mut skipped = Vec::new();
        for mut item in items {
            if let Some(lookup) = &write.lookup {
                let found = self.lookup(destination, lookup, owner, kind, &item).await?;
                let Some(found) = found else {
                    skipped.push(item.platform_id);
                    continue;
                };
                for (name, value) in found {
                    item.vars.set(&name, value);
                }
            }
            destination
                .write_templated(&write.operation, &item.vars, &item.key)
                .await?;
            delivered.push(item);
        }
        if !skipped.is_empty() {
            tracing::warn!(
                connection = %owner.id,
                kind,
                count = skipped.len(),
                first = %skipped[0],
                "records the destination does not know were skipped"
            );
        }
        Ok(delivered)
    }
}

/// A page's commit, running beside the next page's writes.
type Commit<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), CallError>> + Send + 'a>>;

/// Waits for a commit still running, if any.
async fn settle(commit: Option<Commit<'_>>) -> Result<(), CallError> {
    match commit {
        Some(commit) => commit.await,
        None => Ok(()),
    }
}

/// One page of the flow's source list (the whole list where the plan sums it), with what
/// the plan completes each record with, and its records mapped for the destination: the
/// next page is mapped while this one is written.
async fn read_page(
    plan: &Plan,
    source: &ConnectorClient,
    vars: &Vars,
    next: Option<&NextPage>,
    (from, to): (&connection::Model, &connection::Model),
) -> Result<(ListPage, Vec<Item>), CallError> {
    let mut page = if plan.reads_whole_list() {
        ListPage {
            records: source.list_all(plan.list_operation(), vars).await?,
            next: None,
        }
    } else {
        source.list_page(plan.list_operation(), vars, next).await?
    };
    plan.complete(source, &mut page.records).await?;
    let items = plan.items(&page.records, from, to, source.zone())?;
    Ok((page, items))
}
