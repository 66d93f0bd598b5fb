//! The job layer: runs are picked up on a wake-up, not on the next poll, and finished jobs
//! do not pile up in the queue.

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::json;
use synchub::sim::{Faults, Simulator};

use crate::helpers::{Backend, TestApp, eventually};
use crate::on_both_backends;

/// A poll far longer than any test waits: only a wake-up can start a run in time.
const SLOW_POLL: [(&str, &str); 2] = [
    ("SYNCHUB_SCHEDULER__ENABLED", "false"),
    ("SYNCHUB_WORKERS__POLL_MILLIS", "30000"),
];

async fn orders_flow(app: &TestApp, sim: &Simulator, token: &str) -> String {
    let shop = app
        .connection(token, json!({
            "name": "US store", "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": "acme.myshopify.com", "base_url": format!("{}/shopify/acme", sim.address)},
            "credentials": {"access_token": "shpat_simulated_0123456789"},
        }))
        .await;
    let erp = app
        .connection(token, json!({
            "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
            "settings": {"base_url": format!("{}/erp/acme", sim.address)}, "credentials": {"api_key": "k"},
        }))
        .await;
    let (status, flow) = app
        .post("/v1/flows", token, json!({"name": "orders", "stream": "orders", "source": shop["id"], "destination": erp["id"]}))
        .await;
    assert_eq!(status, 201, "{flow}");
    flow["id"].as_str().expect("flow id").to_string()
}

async fn run_until_done(app: &TestApp, token: &str, flow: &str, limit: Duration) -> Duration {
    let (status, run) = app
        .post(&format!("/v1/flows/{flow}/run"), token, json!({}))
        .await;
    assert_eq!(status, 202, "{run}");
    let started = Instant::now();
    let path = format!("/v1/runs/{}", run["id"].as_str().expect("run id"));
    eventually("the run is picked up and succeeds", limit, || async {
        let (_, shown) = app.get(&path, token).await;
        if shown["status"] == "succeeded" {
            Ok(())
        } else {
            Err(shown)
        }
    })
    .await;
    started.elapsed()
}

/// Queuing a run wakes the dispatcher and the workers: with a 30 s poll, every run of an
/// idle queue still finishes within a couple of seconds.
async fn a_queued_run_is_picked_up_without_waiting_for_the_poll(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 3).unwrap();
    let app = TestApp::spawn_with(backend, &SLOW_POLL).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let flow = orders_flow(&app, &sim, &token).await;
    // Idle long enough for the start-up polls to be over: from here only a wake-up can
    // start a run within the 30 s poll.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for _ in 0..3 {
        run_until_done(&app, &token, &flow, Duration::from_secs(5)).await;
    }
    assert_eq!(sim.state.erp_orders("acme").len(), 3);
}
on_both_backends!(a_queued_run_is_picked_up_without_waiting_for_the_poll);

async fn jobs_in_queue(db: &sea_orm::DatabaseConnection) -> i64 {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => "SELECT COUNT(*) AS n FROM apalis.jobs WHERE job_type = $1",
        _ => "SELECT COUNT(*) AS n FROM Jobs WHERE job_type = ?",
    };
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [synchub::runtime::QUEUE.into()],
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

/// Finished jobs are deleted from the queue (the runs table keeps the history), so the
/// queue's queries stay as fast on the millionth run as on the first.
async fn finished_jobs_are_pruned_from_the_queue(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 2).unwrap();
    let app = TestApp::spawn_with(backend, &[("SYNCHUB_SCHEDULER__ENABLED", "false")]).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let flow = orders_flow(&app, &sim, &token).await;
    for _ in 0..3 {
        run_until_done(&app, &token, &flow, Duration::from_secs(30)).await;
    }
    assert!(
        jobs_in_queue(&app.queue_db).await >= 1,
        "the jobs went through the queue"
    );
    // The dispatcher prunes jobs finished more than a few seconds ago; prune now instead.
    eventually(
        "finished jobs leave the queue",
        Duration::from_secs(10),
        || async {
            synchub::runtime::prune_finished(&app.queue_db, Duration::ZERO)
                .await
                .unwrap();
            match jobs_in_queue(&app.queue_db).await {
                0 => Ok(()),
                left => Err(left),
            }
        },
    )
    .await;
    // A later run still goes through.
    run_until_done(&app, &token, &flow, Duration::from_secs(30)).await;
}
on_both_backends!(finished_jobs_are_pruned_from_the_queue);

/// A store and the ERP on the simulator, and an orders flow between them; returns the flow
/// and the store's connection id.
async fn store_flow(app: &TestApp, sim: &Simulator, token: &str, shop: &str) -> (String, String) {
    let store = app
        .connection(token, json!({
            "name": shop, "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": format!("{shop}.myshopify.com"), "base_url": format!("{}/shopify/{shop}", sim.address)},
            "credentials": {"access_token": "shpat_simulated_0123456789"},
        }))
        .await;
    let erp = app
        .connection(token, json!({
            "name": format!("ERP for {shop}"), "connector": "generic-rest-erp", "environment": "production",
            "settings": {"base_url": format!("{}/erp/{shop}", sim.address)}, "credentials": {"api_key": "k"},
        }))
        .await;
    let (status, flow) = app
        .post("/v1/flows", token, json!({"name": format!("orders of {shop}"), "stream": "orders", "source": store["id"], "destination": erp["id"]}))
        .await;
    assert_eq!(status, 201, "{flow}");
    (
        flow["id"].as_str().expect("flow id").to_string(),
        store["id"].as_str().expect("store id").to_string(),
    )
}

/// A canary version whose every call hangs holds no more than its share of the worker
/// slots: with six runs on it queued first, the stable version's runs still finish in
/// seconds, and the run metrics tell the two versions apart. Without the share, the four
/// slots all wait on the canary's 30 s call timeouts.
async fn a_hanging_canary_leaves_the_stable_versions_runs_on_time(backend: Backend) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use synchub::store::entities::{connection, run};
    let sim = Simulator::start("127.0.0.1:0", 5).unwrap();
    // The canary calls an Admin API version that never answers.
    sim.state.set_faults(Faults {
        hang_path: Some("/admin/api/2099-01/".into()),
        ..Default::default()
    });
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SYNCHUB_SCHEDULER__ENABLED", "false"),
            ("SYNCHUB_WORKERS__CONCURRENCY", "4"),
        ],
    )
    .await;
    let (_, token) = app.tenant_with_token(&["write", "deploy"]).await;
    let canary = include_str!("../../connectors/shopify.toml")
        .replace("version = \"1.0.0\"", "version = \"1.3.0\"")
        .replace("default = \"2025-07\"", "default = \"2099-01\"");
    let (status, body) = app
        .post(
            "/v1/connectors/shopify/versions",
            &token,
            json!({"manifest": canary, "changelog": "calls an API version that hangs"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Six stores on the canary (a flow runs one run at a time), one run queued for each.
    let mut canary_flows = Vec::new();
    for i in 0..6 {
        let (flow, store) = store_flow(&app, &sim, &token, &format!("canary{i}")).await;
        // The canary step of a deployment pins the store to the new version.
        connection::Entity::update_many()
            .col_expr(
                connection::Column::Version,
                Some("1.3.0".to_string()).into(),
            )
            .filter(connection::Column::Id.eq(store.as_str()))
            .exec(&app.db)
            .await
            .unwrap();
        canary_flows.push(flow);
    }
    let (stable_flow, _) = store_flow(&app, &sim, &token, "stable").await;
    for flow in &canary_flows {
        let (status, _) = app
            .post(&format!("/v1/flows/{flow}/run"), &token, json!({}))
            .await;
        assert_eq!(status, 202);
    }
    let running = || async {
        run::Entity::find()
            .filter(run::Column::Status.eq(run::RunStatus::Running))
            .all(&app.db)
            .await
            .unwrap()
            .len()
    };
    eventually(
        "the canary's runs take their slots",
        Duration::from_secs(10),
        || async {
            match running().await {
                n if n >= 3 => Ok(()),
                n => Err(n),
            }
        },
    )
    .await;

    let started = Instant::now();
    for _ in 0..3 {
        run_until_done(&app, &token, &stable_flow, Duration::from_secs(15)).await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "the stable version's runs were held up: {:?}",
        started.elapsed()
    );
    assert_eq!(
        running().await,
        3,
        "the canary still holds three slots, no more"
    );

    let metrics = app.metrics().await;
    let line = |name: &str, version: &str| {
        metrics.lines().any(|l| {
            l.starts_with(name)
                && l.contains("connector=\"shopify\"")
                && l.contains(&format!("version=\"{version}\""))
        })
    };
    assert!(line("synchub_runs_total", "1.0.0"), "{metrics}");
    assert!(line("synchub_runs_deferred_total", "1.3.0"), "{metrics}");
}
on_both_backends!(a_hanging_canary_leaves_the_stable_versions_runs_on_time);

/// One run of a flow at a time: two would read from the same cursor and write the same
/// records twice (`bench latency` saw it with webhook runs queued behind a running one). The
/// second waits, is handed out the moment the first ends, and a dead worker's run, its lease
/// run out, holds nobody up.
async fn a_flows_second_run_waits_for_the_first(backend: Backend) {
    use synchub::store::entities::run;
    let sim = Simulator::start("127.0.0.1:0", 1).unwrap();
    let app = TestApp::spawn_with(
        backend,
        &[
            ("SYNCHUB_SCHEDULER__ENABLED", "false"),
            ("SYNCHUB_WORKERS__ENABLED", "false"),
        ],
    )
    .await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let flow = orders_flow(&app, &sim, &token).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let (status, run) = app
            .post(&format!("/v1/flows/{flow}/run"), &token, json!({}))
            .await;
        assert_eq!(status, 202, "{run}");
        ids.push(synchub::ids::RunId::parse(run["id"].as_str().unwrap()).unwrap());
    }
    let lease = chrono::Duration::seconds(120);
    let now = app.time.clock().now();
    let first = synchub::runs::claim(&app.db, &ids[0], lease, now)
        .await
        .unwrap()
        .expect("the first run is claimed");
    assert!(
        synchub::runs::claim(&app.db, &ids[1], lease, now)
            .await
            .unwrap()
            .is_none(),
        "a second run of the flow must not start while the first runs"
    );
    let row = |id: synchub::ids::RunId| {
        let db = app.db.clone();
        async move {
            <run::Entity as sea_orm::EntityTrait>::find_by_id(id)
                .one(&db)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let waiting: run::Model = row(ids[1].clone()).await;
    assert_eq!(waiting.status, run::RunStatus::Queued);
    assert_eq!(waiting.attempts, 0, "waiting is no attempt");
    assert!(
        waiting.dispatched_at.is_some(),
        "put back, not handed out in a loop"
    );

    let report = synchub::runs::succeed(&app.db, &first.flow, &ids[0], now)
        .await
        .unwrap();
    assert!(
        report.released_next,
        "the first run's end releases the next"
    );
    let released: run::Model = row(ids[1].clone()).await;
    assert!(released.dispatched_at.is_none(), "handed out again at once");
    let second = synchub::runs::claim(&app.db, &ids[1], lease, now)
        .await
        .unwrap()
        .expect("the second run starts once the first has ended");
    assert_eq!(second.run.attempts, 1);

    // Its worker dies: past the lease, the third run is not held up by it.
    app.time.advance(chrono::Duration::seconds(121));
    let later = app.time.clock().now();
    assert!(
        synchub::runs::claim(&app.db, &ids[2], lease, later)
            .await
            .unwrap()
            .is_some(),
        "a run whose lease ran out holds up no other"
    );
}
on_both_backends!(a_flows_second_run_waits_for_the_first);
