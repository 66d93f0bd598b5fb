//! The series on `/metrics` that the Grafana dashboard and the Prometheus rules under
//! `deploy/` query: their descriptions, and a zero for every one with a known label set. The
//! metrics crate makes a series on its first use, and a counter that is absent until the
//! first failure hides that failure from `rate()` and `increase()` (they need two samples).

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};

/// The label values known at start, from the modules that count them: the built-in
/// connectors, the alert channel kinds, how webhooks and alert deliveries end.
pub struct KnownLabels<'a> {
    pub connectors: Vec<&'a str>,
    pub channel_kinds: Vec<&'a str>,
    pub webhook_outcomes: &'static [&'static str],
    pub delivery_outcomes: &'static [&'static str],
}

/// Where a connection's credentials stand: the `state` of `synchub_connections_credentials`.
pub const CREDENTIAL_STATES: [&str; 4] = [
    "valid",
    "expiring_within_24h",
    "expired",
    "reauthorization_required",
];

/// Describes every series and sets those with known labels to zero. Safe to call again (tests
/// start many apps in one process): it adds nothing.
pub fn register(known: &KnownLabels<'_>) {
    describe_counter!(
        "synchub_runs_total",
        "Run attempts ended, by connector, version and status (succeeded, retrying, dead)"
    );
    describe_histogram!(
        "synchub_run_duration_seconds",
        Unit::Seconds,
        "How long one run attempt took, by connector, version and status"
    );
    describe_counter!(
        "synchub_runs_deferred_total",
        "Runs put back because their connector version's worker slots were all in use"
    );
    describe_histogram!(
        "synchub_run_pickup_delay_seconds",
        Unit::Seconds,
        "From a run being due (queued, or its retry time) to a worker claiming it"
    );
    describe_gauge!(
        "synchub_runs_due",
        "Runs due and not claimed by a worker yet (the queue's depth), sampled from storage"
    );
    describe_gauge!(
        "synchub_runs_due_oldest_seconds",
        Unit::Seconds,
        "How long the oldest due run has waited for a worker (the queue's lag)"
    );
    describe_gauge!(
        "synchub_dead_letters",
        "Runs in the dead letters (failed for good, waiting for a replay)"
    );
    describe_counter!(
        "synchub_webhooks_total",
        "Inbound webhooks, by outcome (stored, or why they were refused)"
    );
    describe_histogram!(
        "synchub_webhook_commit_batch_size",
        "Webhooks committed in one transaction by the group committer"
    );
    describe_counter!(
        "synchub_platform_throttled_total",
        "429s (and Lingxing's rate refusals) from a platform, by connector"
    );
    describe_counter!(
        "synchub_rate_limit_wait_milliseconds_total",
        Unit::Milliseconds,
        "Time calls spent waiting for a slot in a shared platform rate limit"
    );
    describe_counter!(
        "synchub_concurrency_slots_handed_over_total",
        "Slots of a cap on requests in flight passed from one call to the next in this process, without the store"
    );
    describe_counter!(
        "synchub_scheduler_runs_enqueued_total",
        "Runs the scheduler queued for cron and interval flows"
    );
    describe_counter!(
        "synchub_scheduler_ticks_skipped_total",
        "Scheduled ticks not run because the flow's previous run was still going"
    );
    describe_counter!(
        "synchub_worker_restarts_total",
        "Times a run worker stopped or failed and was started again"
    );
    describe_counter!(
        "synchub_alert_deliveries_total",
        "Attempts to send an alert to an ops chat, by channel kind and outcome"
    );
    describe_gauge!(
        "synchub_alert_deliveries_pending",
        "Alert messages in the outbox, not delivered yet"
    );
    describe_gauge!(
        "synchub_alert_deliveries_oldest_pending_seconds",
        Unit::Seconds,
        "How long the oldest undelivered alert message has waited"
    );
    describe_gauge!(
        "synchub_connections_credentials",
        "Connections by connector and where their credentials stand"
    );
    describe_counter!(
        "synchub_sqlite_lock_waits_total",
        "Times a SQLite connection found the write lock taken and waited (0 on PostgreSQL): \
         climbs with writers contending"
    );
    describe_counter!(
        "synchub_http_requests_total",
        "API requests, by method, route and status"
    );
    describe_histogram!(
        "synchub_http_request_duration_seconds",
        Unit::Seconds,
        "API request latency, by method and route"
    );

    for name in [
        "synchub_concurrency_slots_handed_over_total",
        "synchub_rate_limit_wait_milliseconds_total",
        "synchub_scheduler_runs_enqueued_total",
        "synchub_scheduler_ticks_skipped_total",
        "synchub_worker_restarts_total",
    ] {
        metrics::counter!(name).increment(0);
    }
    // A histogram is served (all buckets at zero) from its first handle on.
    describe_histogram!(
        "synchub_run_write_batch_size",
        "Run claims, or run ends, committed in one transaction (SQLite groups those of all \
         workers)"
    );

    for name in [
        "synchub_webhook_commit_batch_size",
        "synchub_run_write_batch_size",
        "synchub_run_pickup_delay_seconds",
    ] {
        let _ = metrics::histogram!(name);
    }
    for &outcome in known.webhook_outcomes {
        metrics::counter!("synchub_webhooks_total", "outcome" => outcome).increment(0);
    }
    for &connector in &known.connectors {
        metrics::counter!("synchub_platform_throttled_total", "connector" => connector.to_string())
            .increment(0);
    }
    for &channel in &known.channel_kinds {
        for &outcome in known.delivery_outcomes {
            metrics::counter!("synchub_alert_deliveries_total", "channel" => channel.to_string(), "outcome" => outcome)
                .increment(0);
        }
    }
}
