//! Job layer: how fast queued runs are drained, and how soon one run on an idle queue is
//! picked up, through synchub's runtime (runs outbox, dispatcher, tuned apalis queue,
//! wake-ups) and through stock apalis measured the same way.
//!
//! Both sides execute the same run: nothing (the queue alone), or the run's real state
//! machine without a sync in between (the claim under a lease, then the end, through
//! `runs::RunWriter` as the engine does), so
//! the figures compare the queues and not the work. The runs belong to many flows, one
//! each by default, as ticks and webhooks queue them: a flow runs one run at a time.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use apalis::prelude::*;
use apalis_postgres::PostgresStorage;
use apalis_sqlite::SqliteStorage;
use futures_util::future::BoxFuture;
use sea_orm::{DatabaseBackend, DatabaseConnection, EntityTrait, TransactionTrait};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::fixture::{ApiSession, ScratchDatabase, copy_flow};
use crate::ids::{FlowId, RunId};
use crate::runtime::{RunExecutor, RunJob, RunsSignal, RuntimeOptions};
use crate::sim::Simulator;
use crate::startup::Role;
use crate::store::entities::flow;

#[derive(Debug, Clone, clap::Args)]
pub struct JobsBenchArgs {
    /// sqlite or postgres.
    #[arg(long, default_value = "sqlite")]
    database: String,
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    postgres_url: String,
    /// Queued runs drained by synchub's runtime.
    #[arg(long, default_value_t = 20_000)]
    jobs: usize,
    /// Flows the runs belong to, round robin (0: one flow a run).
    #[arg(long, default_value_t = 0)]
    flows: usize,
    /// Queued jobs drained by stock apalis (0 skips it; stock SQLite manages about 80/s).
    #[arg(long, default_value_t = 2_000)]
    stock_jobs: usize,
    /// Single runs timed from commit to pick-up on an idle queue.
    #[arg(long, default_value_t = 200)]
    samples: usize,
    /// Pick-up samples for stock apalis (each can wait for a poll).
    #[arg(long, default_value_t = 20)]
    stock_samples: usize,
    /// Worker slots, both sides.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The fallback poll, both sides (synchub's `workers.poll_millis`).
    #[arg(long, default_value_t = 200)]
    poll_millis: u64,
}

/// Reports when a run started and, if `commit`, claims it and ends it succeeded.
#[derive(Clone)]
struct NoopExecutor {
    writer: crate::runs::RunWriter,
    started: mpsc::UnboundedSender<(String, Instant)>,
    done: Arc<AtomicUsize>,
    commit: bool,
    times: Arc<HandlerTimes>,
}

/// Where a committing handler's time went, summed over its runs: the claim and the end each
/// wait for their writer's commit, which shows how the runs' writes keep up.
#[derive(Default)]
struct HandlerTimes {
    claim_micros: AtomicU64,
    end_micros: AtomicU64,
}

impl HandlerTimes {
    /// Mean milliseconds of claims and of ends over `runs`.
    fn means(&self, runs: usize) -> (f64, f64) {
        let mean =
            |sum: &AtomicU64| sum.load(Ordering::Relaxed) as f64 / 1000.0 / runs.max(1) as f64;
        (mean(&self.claim_micros), mean(&self.end_micros))
    }
}

impl NoopExecutor {
    async fn finish(&self, id: &str) {
        let _ = self.started.send((id.to_string(), Instant::now()));
        if !self.commit {
            self.done.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(id) = RunId::parse(id) else {
            return;
        };
        match self.claim_and_succeed(&id).await {
            Ok(true) => {
                self.done.fetch_add(1, Ordering::Relaxed);
            }
            Ok(false) => {}
            Err(err) => eprintln!("run {id}: {err}"),
        }
    }

    /// What the engine does around a sync: claim under a lease, then succeed. False when the
    /// delivery had nothing to claim.
    async fn claim_and_succeed(&self, id: &RunId) -> crate::error::Result<bool> {
        let lease = chrono::Duration::from_std(crate::runs::DEFAULT_LEASE).unwrap_or_default();
        let asked = Instant::now();
        let claimed = self.writer.claim(id, lease, chrono::Utc::now()).await?;
        let claimed_at = Instant::now();
        let Some(claimed) = claimed else {
            return Ok(false);
        };
        self.writer
            .succeed(&claimed.flow, id, chrono::Utc::now())
            .await?;
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.times
            .claim_micros
            .fetch_add(micros(claimed_at - asked), Ordering::Relaxed);
        self.times
            .end_micros
            .fetch_add(micros(claimed_at.elapsed()), Ordering::Relaxed);
        Ok(true)
    }
}

impl RunExecutor for NoopExecutor {
    async fn execute(&self, id: RunId) {
        self.finish(id.as_str()).await;
    }
}

pub async fn run(args: JobsBenchArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    println!(
        "\njob layer on {} ({} worker slots, {} ms fallback poll; release build expected)\n",
        args.database, args.concurrency, args.poll_millis
    );
    let mut rows = Vec::new();
    for commit in [false, true] {
        let handler = if commit { "commits the run" } else { "empty" };
        rows.push((
            format!("synchub runtime, {handler} handler"),
            measure_ours(&args, commit).await?,
        ));
        if args.stock_jobs > 0 {
            rows.push((
                format!("stock apalis 1.0, {handler} handler"),
                measure_stock(&args, commit).await?,
            ));
        }
    }
    println!(
        "| queue | jobs drained | jobs/s | pick-up p50 ms | pick-up p99 ms | max ms | claim ms (mean) | end ms (mean) |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for (name, figures) in rows {
        figures.print(&name);
    }
    Ok(())
}

struct Figures {
    drained: usize,
    per_second: f64,
    pickup: hdrhistogram::Histogram<u64>,
    /// Mean claim and end, in ms, when the handler commits.
    handler: Option<(f64, f64)>,
}

impl Figures {
    fn print(&self, name: &str) {
        let ms = |q: f64| self.pickup.value_at_quantile(q) as f64 / 1000.0;
        let (claim, end) = match self.handler {
            Some((claim, end)) => (format!("{claim:.2}"), format!("{end:.2}")),
            None => ("-".to_string(), "-".to_string()),
        };
        println!(
            "| {name} | {} | {:.0} | {:.1} | {:.1} | {:.1} | {claim} | {end} |",
            self.drained,
            self.per_second,
            ms(0.5),
            ms(0.99),
            self.pickup.max() as f64 / 1000.0
        );
    }
}

/// A scratch database with a tenant and its flows, and a way to queue runs of them.
struct Setup {
    database: ScratchDatabase,
    db: DatabaseConnection,
    relaxed: DatabaseConnection,
    /// The queue's own pool, as the service opens it (`store::connect_queue`).
    queue: Option<DatabaseConnection>,
    flows: Vec<flow::Model>,
    _sim: Simulator,
    _api: ApiSession,
}

impl Setup {
    /// The no-op executor on this database, the starts it reports, and its done count.
    fn executor(
        &self,
        commit: bool,
    ) -> (
        NoopExecutor,
        mpsc::UnboundedReceiver<(String, Instant)>,
        Arc<AtomicUsize>,
    ) {
        let (started, reports) = mpsc::unbounded_channel();
        let done = Arc::new(AtomicUsize::new(0));
        let executor = NoopExecutor {
            writer: crate::runs::RunWriter::new(self.db.clone(), self.relaxed.clone()),
            started,
            done: done.clone(),
            commit,
            times: Arc::default(),
        };
        (executor, reports, done)
    }

    /// Removes the scratch database and returns the figures.
    async fn finish(
        self,
        drained: usize,
        per_second: f64,
        pickup: hdrhistogram::Histogram<u64>,
        handler: Option<(f64, f64)>,
    ) -> anyhow::Result<Figures> {
        self.db.clone().close().await?;
        self.relaxed.clone().close().await?;
        if let Some(queue) = &self.queue {
            queue.clone().close().await?;
        }
        self.database.remove().await?;
        Ok(Figures {
            drained,
            per_second,
            pickup,
            handler,
        })
    }

    async fn new(args: &JobsBenchArgs, runs: usize) -> anyhow::Result<Self> {
        let database = ScratchDatabase::create(&args.database, &args.postgres_url).await?;
        let sim = Simulator::start("127.0.0.1:0", 0)?;
        let api = ApiSession::start(&database, Role::Api, &[]).await?;
        let flow_id = api
            .orders_flow(&sim.address, "jobs", serde_json::json!({}))
            .await?;
        let db = database.connect().await?;
        let template = flow::Entity::find_by_id(FlowId::parse(&flow_id).context("flow id")?)
            .one(&db)
            .await?
            .context("the flow just created")?;
        let count = if args.flows == 0 { runs } else { args.flows }.max(1);
        let mut flows = vec![template.clone()];
        flows.extend(
            copy_flow(&db, &template, 1..count, |i, row| {
                Some(flow::Model {
                    id: FlowId::generate(),
                    name: format!("jobs {i}"),
                    ..row
                })
            })
            .await?,
        );
        let relaxed = database.connect_relaxed().await?;
        let queue = crate::store::connect_queue(&database.settings(&[])?, &db).await?;
        Ok(Self {
            database,
            db,
            relaxed,
            queue,
            flows,
            _sim: sim,
            _api: api,
        })
    }

    /// Queues `count` runs, round robin over the flows, in one transaction; returns their ids.
    async fn queue_runs(&self, count: usize) -> anyhow::Result<Vec<RunId>> {
        let now = chrono::Utc::now();
        let mut ids = Vec::with_capacity(count);
        let mut rows = Vec::with_capacity(count);
        for i in 0..count {
            let id = RunId::generate();
            let flow = &self.flows[i % self.flows.len()];
            rows.push(crate::runs::queued_run(
                flow,
                id.clone(),
                "manual",
                format!("bench:{id}"),
                None,
                now,
            ));
            ids.push(id);
        }
        let txn = self.db.begin().await?;
        crate::runs::enqueue_runs(&txn, rows).await?;
        txn.commit().await?;
        Ok(ids)
    }

    /// Queues one run and returns its id when committed.
    async fn queue_one(&self, sample: usize) -> anyhow::Result<RunId> {
        let id = RunId::generate();
        crate::runs::enqueue_run(
            &self.db,
            &self.flows[sample % self.flows.len()],
            id.clone(),
            "manual",
            format!("bench:{id}"),
            None,
            chrono::Utc::now(),
        )
        .await?;
        Ok(id)
    }
}

async fn wait_for(done: &AtomicUsize, target: usize, limit: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    while done.load(Ordering::Relaxed) < target {
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {} of {target} jobs done after {limit:?}",
            done.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(())
}

/// Times single runs: commit, then wait for the executor to report the start.
async fn pickup_delays<F, Fut>(
    samples: usize,
    started: &mut mpsc::UnboundedReceiver<(String, Instant)>,
    mut queue_one: F,
) -> anyhow::Result<hdrhistogram::Histogram<u64>>
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(String, Instant)>>,
{
    let mut histogram = hdrhistogram::Histogram::<u64>::new(3)?;
    while started.try_recv().is_ok() {}
    for sample in 0..samples {
        // Idle between samples, so each one meets a quiet queue.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (id, committed) = queue_one(sample).await?;
        let mut pending: HashMap<String, Instant> = HashMap::new();
        let picked = loop {
            let (got, at) = tokio::time::timeout(Duration::from_secs(60), started.recv())
                .await
                .context("a run was not picked up within 60 s")?
                .context("the executor stopped")?;
            if got == id {
                break at;
            }
            pending.insert(got, at);
        };
        histogram.record(picked.duration_since(committed).as_micros() as u64)?;
    }
    Ok(histogram)
}

async fn measure_ours(args: &JobsBenchArgs, commit: bool) -> anyhow::Result<Figures> {
    let setup = Setup::new(args, args.jobs).await?;
    let ids = setup.queue_runs(args.jobs).await?;
    let (executor, mut started, done) = setup.executor(commit);
    let times = executor.times.clone();
    let signal = RunsSignal::new();
    let shutdown = CancellationToken::new();
    let options = RuntimeOptions {
        concurrency: args.concurrency,
        poll: Duration::from_millis(args.poll_millis),
        clock: crate::clock::Clock::system(),
        relaxed: Some(setup.relaxed.clone()),
        queue: setup.queue.clone(),
    };
    let began = Instant::now();
    let runtime = tokio::spawn(crate::runtime::run(
        setup.db.clone(),
        executor,
        signal.clone(),
        options,
        shutdown.clone(),
    ));
    wait_for(&done, ids.len(), Duration::from_secs(600)).await?;
    let per_second = ids.len() as f64 / began.elapsed().as_secs_f64();
    let handler = commit.then(|| times.means(ids.len()));
    let pickup = pickup_delays(args.samples, &mut started, |sample| {
        let (setup, signal) = (&setup, &signal);
        async move {
            let id = setup.queue_one(sample).await?;
            let committed = Instant::now();
            // What the API does after committing a run.
            signal.notify();
            Ok((id.to_string(), committed))
        }
    })
    .await?;
    shutdown.cancel();
    let _ = runtime.await;
    setup.finish(ids.len(), per_second, pickup, handler).await
}

/// Stock apalis: default configuration on the same pool, jobs pushed straight to the queue,
/// the same poll interval (stock has none and would look only on its 30 s heartbeat).
async fn measure_stock(args: &JobsBenchArgs, commit: bool) -> anyhow::Result<Figures> {
    let setup = Setup::new(args, args.stock_jobs).await?;
    let ids = setup.queue_runs(args.stock_jobs).await?;
    let (executor, mut started, done) = setup.executor(commit);
    let times = executor.times.clone();
    let jobs: Vec<RunJob> = ids
        .iter()
        .map(|id| RunJob {
            v: 1,
            run_id: id.to_string(),
        })
        .collect();
    let poll = Duration::from_millis(args.poll_millis);
    // The two backends differ only in their storage types: one body serves both, yielding
    // the worker and a way to push one job.
    macro_rules! stock_worker {
        ($storage:expr) => {{
            let mut storage = $storage;
            storage
                .push_bulk(jobs)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let worker = WorkerBuilder::new("stock")
                .backend(storage.clone().poll_with_interval(poll))
                .data(executor.clone())
                .concurrency(args.concurrency)
                .build(stock_noop);
            let push: Pusher = Box::new(move |job| {
                let mut storage = storage.clone();
                Box::pin(async move { storage.push(job).await.map_err(|e| anyhow::anyhow!("{e}")) })
            });
            let worker: BoxFuture<'static, ()> = Box::pin(async move {
                let _ = worker.run().await;
            });
            (worker, push)
        }};
    }
    let (worker, push) = match setup.db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let pool = setup.db.get_postgres_connection_pool().clone();
            PostgresStorage::setup(&pool).await?;
            stock_worker!(PostgresStorage::<RunJob>::new(&pool))
        }
        _ => {
            let pool = setup.db.get_sqlite_connection_pool().clone();
            SqliteStorage::setup(&pool).await?;
            stock_worker!(SqliteStorage::<RunJob>::new(&pool))
        }
    };
    let began = Instant::now();
    let worker = tokio::spawn(worker);
    wait_for(&done, ids.len(), Duration::from_secs(1800)).await?;
    let per_second = ids.len() as f64 / began.elapsed().as_secs_f64();
    let handler = commit.then(|| times.means(ids.len()));
    let pickup = pickup_delays(args.stock_samples, &mut started, |sample| {
        let setup = &setup;
        let push = &push;
        async move {
            let id = setup.queue_one(sample).await?;
            push(RunJob {
                v: 1,
                run_id: id.to_string(),
            })
            .await?;
            Ok((id.to_string(), Instant::now()))
        }
    })
    .await?;
    worker.abort();
    setup.finish(ids.len(), per_second, pickup, handler).await
}

type Pusher = Box<dyn Fn(RunJob) -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

async fn stock_noop(job: RunJob, executor: Data<NoopExecutor>) -> Result<(), BoxDynError> {
    executor.finish(&job.run_id).await;
    Ok(())
}
