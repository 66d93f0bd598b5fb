//! Logs: JSON lines (or text) through tracing, filtered by RUST_LOG. Secrets never reach a
//! log line: they travel as `SecretString`, whose Debug output is redacted, and request
//! headers and bodies are not logged. Metrics: the Prometheus recorder, the series the
//! dashboards under `deploy/` query (`series`), and the gauges sampled from storage
//! (`gauges`).

pub mod gauges;
pub mod series;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;

pub fn init_logging(json: bool) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests start many apps in one process) is harmless: keep the first.
    let _ = if json {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        // Colour only for a person at a terminal: a file or a pipe gets plain text.
        builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .try_init()
    };
}

/// The process-wide Prometheus recorder (metrics has one global recorder per process).
pub fn metrics_handle() -> anyhow::Result<PrometheusHandle> {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    // One installer at a time: two apps starting at once in one process (tests) would
    // otherwise both find no handle and the second would fail to install its recorder.
    static INSTALLING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let _installing = INSTALLING
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    // Each histogram by its full name: the exporter gives no order among overlapping matchers.
    const LATENCY: &[f64] = &[
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    ];
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("synchub_http_request_duration_seconds".into()),
            LATENCY,
        )?
        // Runs last from milliseconds (nothing new) to many minutes (a first full import).
        .set_buckets_for_metric(
            Matcher::Full("synchub_run_duration_seconds".into()),
            &[
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
            ],
        )?
        // A due run should be picked up in well under a second; minutes mean a backlog.
        .set_buckets_for_metric(
            Matcher::Full("synchub_run_pickup_delay_seconds".into()),
            &[
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ],
        )?
        .set_buckets_for_metric(
            Matcher::Full("synchub_webhook_commit_batch_size".into()),
            &[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
            ],
        )?
        .build_recorder();
    let handle = recorder.handle();
    if metrics::set_global_recorder(recorder).is_err() {
        anyhow::bail!("another metrics recorder is installed");
    }
    let _ = HANDLE.set(handle.clone());
    Ok(handle)
}
