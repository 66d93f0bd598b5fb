//! `synchub api` and `synchub worker` as separate processes over one database.

use std::process::Stdio;
use std::time::Duration;

use synchub::sim::{Faults, Simulator};

use crate::durability::{free_port, start_role};
use crate::helpers::{Backend, RemoteTenant, TestDatabase, eventually, metrics_at};
use crate::on_both_backends;

/// Polls a run until `done` says so, failing with `what` after `limit`.
async fn wait_for(
    remote: &RemoteTenant,
    run: &str,
    limit: Duration,
    what: impl Fn() -> String,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    eventually(&what(), limit, || async {
        let shown = remote.get(run).await;
        if done(&shown) { Ok(shown) } else { Err(shown) }
    })
    .await
}

/// The API process queues a run; the worker process, which serves no API, executes it.
async fn api_and_worker_processes_split_the_work(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 50).unwrap();
    let database = TestDatabase::create(&backend).await;
    let (api_port, worker_port) = (free_port(), free_port());
    let _api = start_role(&database, api_port, "api", &[], Stdio::null()).await;
    let _worker = start_role(&database, worker_port, "worker", &[], Stdio::null()).await;
    let remote = RemoteTenant::create(api_port).await;
    let run = remote.queue_orders_run(&sim).await;
    wait_for(
        &remote,
        &run,
        Duration::from_secs(60),
        || "the worker never ran it".into(),
        |r| r["status"] == "succeeded",
    )
    .await;
    assert_eq!(sim.state.erp_orders("acme").len(), 50);

    let worker = format!("http://127.0.0.1:{worker_port}");
    let on_worker = remote
        .client
        .get(format!("{worker}/v1/connections"))
        .bearer_auth(&remote.token)
        .send()
        .await
        .unwrap();
    assert_eq!(on_worker.status().as_u16(), 404, "the worker serves no API");
    let metrics = metrics_at(&remote.client, &worker).await;
    assert!(
        metrics.contains("synchub_runs_total"),
        "the worker reports its runs"
    );
}
on_both_backends!(api_and_worker_processes_split_the_work);

/// Kill a worker with SIGKILL mid-run: another worker takes the run over when its lease
/// runs out, resumes from the checkpoint, and every order reaches the ERP exactly once.
async fn a_killed_workers_run_resumes_elsewhere(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 400).unwrap();
    // Slow enough that the run is caught between its two pages (a read and a batch write
    // each).
    sim.state.set_faults(Faults {
        latency_ms: 300,
        ..Default::default()
    });
    let database = TestDatabase::create(&backend).await;
    let short_lease = [("SYNCHUB_WORKERS__LEASE_SECONDS", "2")];
    let api_port = free_port();
    let _api = start_role(&database, api_port, "api", &[], Stdio::null()).await;
    let worker_log = database.data_dir.path().join("worker.log");
    let log_file = std::fs::File::create(&worker_log).unwrap();
    let mut first_worker = start_role(
        &database,
        free_port(),
        "worker",
        &short_lease,
        log_file.into(),
    )
    .await;
    let remote = RemoteTenant::create(api_port).await;
    let run = remote.queue_orders_run(&sim).await;

    let log = || std::fs::read_to_string(&worker_log).unwrap_or_default();
    let shown = wait_for(
        &remote,
        &run,
        Duration::from_secs(60),
        || format!("the first page never finished; worker log:\n{}", log()),
        |r| r["records_written"].as_i64().unwrap_or(0) >= 250,
    )
    .await;
    assert_eq!(shown["status"], "running", "caught between pages: {shown}");
    first_worker.0.kill().expect("SIGKILL");
    let _ = first_worker.0.wait();
    let _second_worker = start_role(
        &database,
        free_port(),
        "worker",
        &short_lease,
        Stdio::null(),
    )
    .await;

    let shown = wait_for(
        &remote,
        &run,
        Duration::from_secs(60),
        || "the run was never taken over".into(),
        |r| r["status"] == "succeeded",
    )
    .await;
    assert_eq!(shown["attempts"], 2, "one attempt per worker");
    assert_eq!(sim.state.erp_orders("acme").len(), 400);
    assert_eq!(
        sim.state.stats().orders_written,
        400,
        "no order was written twice"
    );
}
on_both_backends!(a_killed_workers_run_resumes_elsewhere);

/// On PostgreSQL a run queued by the API process wakes the worker process at once (NOTIFY),
/// though both poll only every 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(synchub_postgres_tests),
    ignore = "SYNCHUB_TEST_DATABASE_URL is not set"
)]
async fn a_run_queued_in_one_process_wakes_the_workers_of_another() {
    let backend = Backend::postgres();
    let sim = Simulator::start("127.0.0.1:0", 5).unwrap();
    let database = TestDatabase::create(&backend).await;
    let slow_poll = [("SYNCHUB_WORKERS__POLL_MILLIS", "30000")];
    let api_port = free_port();
    let _api = start_role(&database, api_port, "api", &slow_poll, Stdio::null()).await;
    let _worker = start_role(&database, free_port(), "worker", &slow_poll, Stdio::null()).await;
    let remote = RemoteTenant::create(api_port).await;
    // Past the worker's start-up polls.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let run = remote.queue_orders_run(&sim).await;
    wait_for(
        &remote,
        &run,
        Duration::from_secs(5),
        || "the worker process did not wake up for the run".into(),
        |r| r["status"] == "succeeded",
    )
    .await;
}
