//! The sync engine against the simulator: orders from simulated Shopify into the simulated ERP.

use std::sync::Arc;

use serde_json::{Value, json};
use synchub::connectors::ConnectorRegistry;
use synchub::ids::RunId;
use synchub::sim::{Faults, Simulator};
use synchub::sync::SyncEngine;

use std::time::Duration;

use crate::helpers::{Backend, TestApp, eventually};
use crate::on_both_backends;

struct Setup {
    app: TestApp,
    shop: String,
    sim: Simulator,
    engine: SyncEngine,
    token: String,
    flow: String,
}

async fn setup(backend: Backend, seed_orders: usize) -> Setup {
    let sim = Simulator::start("127.0.0.1:0", seed_orders).unwrap();
    // The test drives the engine itself: no background scheduler or workers.
    let app = TestApp::spawn_quiet(backend).await;
    let engine = app.engine();
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let shop = app
        .connection(&token, json!({
            "name": "US store", "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": "acme.myshopify.com", "base_url": format!("{}/shopify/acme", sim.address)},
            "credentials": {"access_token": "shpat_simulated_0123456789"},
        }))
        .await;
    let erp = app
        .connection(
            &token,
            json!({
                "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
                "settings": {"base_url": format!("{}/erp/acme", sim.address)},
                "credentials": {"api_key": "erp-key-1"},
            }),
        )
        .await;
    let (status, flow) = app
        .post("/v1/flows", &token, json!({"name": "orders in", "stream": "orders", "source": shop["id"], "destination": erp["id"], "retry": {"max_attempts": 50, "base_seconds": 1, "cap_seconds": 2}}))
        .await;
    assert_eq!(status, 201, "{flow}");
    Setup {
        app,
        shop: shop["id"].as_str().unwrap().to_string(),
        sim,
        engine,
        token,
        flow: flow["id"].as_str().unwrap().to_string(),
    }
}

impl Setup {
    async fn queue_run(&self) -> RunId {
        let (status, run) = self
            .app
            .post(
                &format!("/v1/flows/{}/run", self.flow),
                &self.token,
                json!({}),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        RunId::parse(run["id"].as_str().unwrap()).unwrap()
    }

    async fn run(&self, id: &RunId) -> Value {
        self.app.get(&format!("/v1/runs/{id}"), &self.token).await.1
    }
}

/// Every order reaches the ERP once, through every page; later runs move only what changed.
async fn orders_reach_the_erp_exactly_once(backend: Backend) {
    let s = setup(backend, 600).await;
    let run = s.queue_run().await;
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(
        (
            report.status.as_str(),
            report.records_read,
            report.records_written
        ),
        ("succeeded", 600, 600),
        "{report:?}"
    );
    assert_eq!(s.sim.state.erp_orders("acme").len(), 600);
    let stats = s.sim.state.stats();
    assert_eq!(stats.orders_written, 600);
    assert_eq!(
        stats.requests,
        3 + 3,
        "three pages of up to 250, each delivered in one batch write"
    );
    let first = s.sim.state.erp_orders("acme").into_iter().next().unwrap();
    assert_eq!(first["source"], "shopify");
    assert!(
        first["lines"][0]["sku"]
            .as_str()
            .unwrap()
            .starts_with("SKU-")
    );
    let shown = s.run(&run).await;
    assert_eq!(shown["connector_version"], "1.0.0");
    assert_eq!(shown["attempts"], 1);

    let again = s.queue_run().await;
    let report = s.engine.execute(&again).await.unwrap().expect("claimed");
    assert_eq!(
        (report.records_written, report.status.as_str()),
        (0, "succeeded"),
        "nothing new: {report:?}"
    );
    assert!(
        report.records_read <= 1,
        "the cursor skips what was synced: {report:?}"
    );

    s.sim.state.add_orders("acme", 5);
    let third = s.queue_run().await;
    let report = s.engine.execute(&third).await.unwrap().expect("claimed");
    assert_eq!(report.records_written, 5);
    assert_eq!(s.sim.state.erp_orders("acme").len(), 605);
    assert_eq!(
        s.sim.state.stats().orders_written,
        605,
        "no order was written twice"
    );
    assert_eq!(s.app.drain_runs(&s.engine).await, 0, "no run left behind");
}
on_both_backends!(orders_reach_the_erp_exactly_once);

/// An outage mid-run: the attempt fails after the first page, is rescheduled in storage with
/// a backoff, and the next attempt resumes at the second page; every order is in the ERP once.
/// A failure of synchub's own database during a run (here the records table is out of
/// reach while the run writes) is transient: the run is retried with backoff, not sent to
/// the dead letters, and succeeds once the database is back.
async fn a_database_error_during_a_run_is_retried(backend: Backend) {
    use sea_orm::ConnectionTrait;
    let s = setup(backend, 30).await;
    s.app
        .db
        .execute_unprepared("ALTER TABLE records RENAME TO records_away")
        .await
        .unwrap();
    let run = s.queue_run().await;
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(
        (report.status.as_str(), report.error_class.as_deref()),
        ("retrying", Some("storage")),
        "{report:?}"
    );
    s.app
        .db
        .execute_unprepared("ALTER TABLE records_away RENAME TO records")
        .await
        .unwrap();
    s.app.advance_past_retry(&s.token, &run.to_string()).await;
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(
        (report.status.as_str(), report.records_written),
        ("succeeded", 30),
        "{report:?}"
    );
    let (_, dead) = s.app.get("/v1/dead-letters", &s.token).await;
    assert_eq!(dead["data"].as_array().unwrap().len(), 0, "{dead}");
    assert_eq!(s.app.drain_runs(&s.engine).await, 0, "no run left behind");
}
on_both_backends!(a_database_error_during_a_run_is_retried);

async fn failed_attempts_resume_from_their_checkpoint(backend: Backend) {
    let s = setup(backend, 600).await;
    // Page 1 and its batch write go through, and page 2 is read; the outage starts at
    // page 2's write.
    s.sim.state.set_faults(Faults {
        fail_after_requests: Some(3),
        ..Default::default()
    });
    let run = s.queue_run().await;
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(
        (report.status.as_str(), report.error_class.as_deref()),
        ("retrying", Some("server_error")),
        "{report:?}"
    );
    assert_eq!(report.records_read, 250, "page 1 is checkpointed");
    let reported = <synchub::store::entities::alert_event::Entity as sea_orm::EntityTrait>::find()
        .all(&s.app.db)
        .await
        .unwrap();
    assert!(
        reported.iter().any(|e| e.kind == "platform_errors"),
        "the failed attempt is an alert event: {reported:?}"
    );
    let shown = s.run(&run).await;
    let next: chrono::DateTime<chrono::Utc> =
        shown["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next <= chrono::Utc::now() + chrono::Duration::seconds(2),
        "within the flow's backoff cap"
    );
    assert_eq!(shown["status"], "retrying");

    s.sim.state.set_faults(Faults::default());
    let before = s.sim.state.stats().requests;
    // Claimed only once due: a backoff drawn near zero may already have passed.
    let early = s.engine.execute(&run).await.unwrap();
    assert!(
        early.is_none() || next <= s.app.time.clock().now(),
        "not before its time"
    );
    let report = match early {
        Some(report) => report,
        None => {
            s.app.advance_past(next);
            s.engine.execute(&run).await.unwrap().expect("claimed")
        }
    };
    assert_eq!(
        (
            report.status.as_str(),
            report.records_read,
            report.records_written
        ),
        ("succeeded", 600, 600),
        "{report:?}"
    );
    let requests = s.sim.state.stats().requests - before;
    assert_eq!(
        requests,
        2 + 2,
        "resumed at page 2: pages 2 and 3 and their two writes, page 1 not read again"
    );
    assert_eq!(s.run(&run).await["attempts"], 2);
    assert_eq!(s.sim.state.erp_orders("acme").len(), 600);
    assert_eq!(
        s.sim.state.stats().orders_written,
        600,
        "no order was written twice"
    );
    assert_eq!(s.app.drain_runs(&s.engine).await, 0, "no run left behind");
}
on_both_backends!(failed_attempts_resume_from_their_checkpoint);

/// A schema change is permanent: no retry, straight to the dead letters; five in a row
/// disable the flow and say why.
async fn permanent_errors_are_not_retried_and_disable_the_flow(backend: Backend) {
    let s = setup(backend, 10).await;
    s.sim.state.set_faults(Faults {
        schema_change: true,
        ..Default::default()
    });
    for _ in 0..5 {
        let run = s.queue_run().await;
        let report = s.engine.execute(&run).await.unwrap().expect("claimed");
        assert_eq!(
            (report.status.as_str(), report.error_class.as_deref()),
            ("dead", Some("schema_mismatch"))
        );
    }
    let (_, flow) = s.app.get(&format!("/v1/flows/{}", s.flow), &s.token).await;
    assert_eq!(flow["enabled"], false);
    assert!(
        flow["disabled_reason"]
            .as_str()
            .unwrap()
            .contains("schema_mismatch"),
        "{flow}"
    );
    assert_eq!(s.sim.state.erp_orders("acme").len(), 0);
}
on_both_backends!(permanent_errors_are_not_retried_and_disable_the_flow);

/// When the platform answers 429 the call waits out Retry-After and the run still succeeds.
async fn platform_throttling_is_waited_out(backend: Backend) {
    let s = setup(backend, 300).await;
    // Someone else spends the store's whole bucket just before the run starts.
    let client = reqwest::Client::new();
    for _ in 0..40 {
        let _ = client
            .get(format!(
                "{}/shopify/acme/admin/api/2025-07/orders.json?limit=1",
                s.sim.address
            ))
            .header("X-Shopify-Access-Token", "shpat_simulated_0123456789")
            .send()
            .await;
    }
    let run = s.queue_run().await;
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    assert!(
        s.sim.state.stats().throttled >= 1,
        "the simulator did throttle"
    );
    assert_eq!(
        s.run(&run).await["attempts"],
        1,
        "waited inside the attempt, not retried"
    );
    assert_eq!(s.sim.state.erp_orders("acme").len(), 300);
}
on_both_backends!(platform_throttling_is_waited_out);

/// The whole path in one process: a manual run is queued over the API, dispatched to the
/// apalis queue, executed by a worker, and every order lands in the ERP.
async fn workers_execute_queued_runs(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 120).unwrap();
    let app = TestApp::spawn_with(backend, &[("SYNCHUB_SCHEDULER__ENABLED", "false")]).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let shop = app
        .connection(&token, json!({
            "name": "US store", "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": "acme.myshopify.com", "base_url": format!("{}/shopify/acme", sim.address)},
            "credentials": {"access_token": "shpat_simulated_0123456789"},
        }))
        .await;
    let erp = app
        .connection(&token, json!({
            "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
            "settings": {"base_url": format!("{}/erp/acme", sim.address)}, "credentials": {"api_key": "erp-key-1"},
        }))
        .await;
    let (_, flow) = app.post("/v1/flows", &token, json!({"name": "orders", "stream": "orders", "source": shop["id"], "destination": erp["id"]})).await;
    let (_, run) = app
        .post(
            &format!("/v1/flows/{}/run", flow["id"].as_str().unwrap()),
            &token,
            json!({}),
        )
        .await;
    let run_id = run["id"].as_str().unwrap();
    let shown = eventually(
        "the workers finish the run",
        Duration::from_secs(30),
        || async {
            let (_, shown) = app.get(&format!("/v1/runs/{run_id}"), &token).await;
            if shown["status"] == "succeeded" {
                Ok(shown)
            } else {
                Err(shown)
            }
        },
    )
    .await;
    assert_eq!(shown["records_written"], 120);
    assert_eq!(sim.state.erp_orders("acme").len(), 120);
}
on_both_backends!(workers_execute_queued_runs);

/// A burst of verified webhooks from the source queues one incremental run; once that run
/// has started, the next webhook queues the next one.
async fn webhook_bursts_coalesce_into_one_run(backend: Backend) {
    let s = setup(backend, 20).await;
    let (status, _) = s
        .app
        .put(
            &format!("/v1/connections/{}/credentials", s.shop),
            &s.token,
            json!({"webhook_secret": "shopify-hook-secret"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .app
        .patch(
            &format!("/v1/flows/{}", s.flow),
            &s.token,
            json!({"on_webhook": true}),
        )
        .await;
    assert_eq!(status, 200);
    let send = |n: u32| {
        let body = format!("{{\"id\":{n}}}");
        s.app
            .client
            .post(s.app.url(&format!("/v1/hooks/{}", s.shop)))
            .header(
                "X-Shopify-Hmac-Sha256",
                synchub::webhooks::sign::shopify("shopify-hook-secret", body.as_bytes()),
            )
            .header("X-Shopify-Event-Id", format!("evt-{n}"))
            .header("X-Shopify-Topic", "orders/updated")
            .body(body)
            .send()
    };
    let statuses: Vec<u16> = futures_util::future::join_all((0..10).map(send))
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let runs = s
        .app
        .get(&format!("/v1/flows/{}/runs", s.flow), &s.token)
        .await
        .1["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(runs.len(), 1, "ten webhooks, one run: {runs:?}");
    assert_eq!(runs[0]["trigger"], "webhook");
    let run = RunId::parse(runs[0]["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        s.engine
            .execute(&run)
            .await
            .unwrap()
            .expect("claimed")
            .status
            .as_str(),
        "succeeded"
    );
    assert_eq!(send(11).await.unwrap().status().as_u16(), 200);
    let runs = s
        .app
        .get(&format!("/v1/flows/{}/runs", s.flow), &s.token)
        .await
        .1["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        runs.len(),
        2,
        "a webhook after the run started queues the next one"
    );
    assert_eq!(
        s.app.drain_runs(&s.engine).await,
        1,
        "that one run, and nothing else"
    );
}
on_both_backends!(webhook_bursts_coalesce_into_one_run);

/// A dead letter is listed, replayed once from where it stopped, and only by its tenant.
async fn dead_letters_are_listed_and_replayed(backend: Backend) {
    let s = setup(backend, 30).await;
    s.sim.state.set_faults(Faults {
        schema_change: true,
        ..Default::default()
    });
    let run = s.queue_run().await;
    assert_eq!(
        s.engine
            .execute(&run)
            .await
            .unwrap()
            .expect("claimed")
            .status
            .as_str(),
        "dead"
    );
    let (_, dead) = s.app.get("/v1/dead-letters", &s.token).await;
    assert_eq!(dead["data"][0]["id"], run.to_string());
    assert_eq!(dead["data"][0]["error_class"], "schema_mismatch");

    let (_, other) = s.app.tenant_with_token(&["write"]).await;
    assert_eq!(
        s.app
            .post(&format!("/v1/dead-letters/{run}/replay"), &other, json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        s.app.get("/v1/dead-letters", &other).await.1["data"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    s.sim.state.set_faults(Faults::default());
    let (status, replay) = s
        .app
        .post(
            &format!("/v1/dead-letters/{run}/replay"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["trigger"], "replay");
    let replay_id = RunId::parse(replay["id"].as_str().unwrap()).unwrap();
    assert_eq!(
        s.engine
            .execute(&replay_id)
            .await
            .unwrap()
            .expect("claimed")
            .status
            .as_str(),
        "succeeded"
    );
    assert_eq!(s.sim.state.erp_orders("acme").len(), 30);
    assert_eq!(
        s.app
            .post(
                &format!("/v1/dead-letters/{run}/replay"),
                &s.token,
                json!({})
            )
            .await
            .0,
        409,
        "replayed once"
    );
}
on_both_backends!(dead_letters_are_listed_and_replayed);

/// Upstream timeouts: the attempt fails as a timeout, is rescheduled in storage, and the next
/// attempt after the platform recovers delivers everything.
async fn upstream_timeouts_are_retried_from_storage(backend: Backend) {
    let mut s = setup(backend, 20).await;
    s.engine = s
        .engine
        .clone()
        .with_call_timeout(std::time::Duration::from_millis(300))
        .unwrap();
    s.sim.state.set_faults(Faults {
        timeout_rate: 1.0,
        ..Default::default()
    });
    let run = s.queue_run().await;
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(
        (report.status.as_str(), report.error_class.as_deref()),
        ("retrying", Some("timeout")),
        "{report:?}"
    );
    let next = report.next_attempt_at.expect("a retry is scheduled");
    let stored = s.run(&run).await;
    assert_eq!(
        stored["next_attempt_at"]
            .as_str()
            .map(|t| t.parse::<chrono::DateTime<chrono::Utc>>().unwrap()),
        Some(next),
        "read back from storage"
    );

    s.sim.state.set_faults(Faults::default());
    s.app.advance_past(next);
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(
        (report.status.as_str(), report.records_written),
        ("succeeded", 20),
        "{report:?}"
    );
    assert_eq!(s.app.drain_runs(&s.engine).await, 0, "no run left behind");
}
on_both_backends!(upstream_timeouts_are_retried_from_storage);

/// A generic ERP client on the simulator with these settings.
fn erp_client(s: &Setup, settings: Value) -> synchub::connectors::client::ConnectorClient {
    let manifest = ConnectorRegistry::built_in()
        .unwrap()
        .get("generic-rest-erp")
        .unwrap();
    let credentials = json!({"api_key": "erp-key-1"});
    synchub::connectors::client::ConnectorClient::new(
        manifest,
        "production",
        settings.as_object().cloned().unwrap(),
        credentials.as_object().cloned().unwrap(),
        "con_batch",
        synchub::ratelimit::RateLimiter::new(s.app.db.clone()),
        crate::helpers::local_client(),
    )
}

/// The connection's cap on requests in flight holds: six writes at once to an ERP that
/// takes 200 ms an answer, with `max_concurrent_requests = 2`, go two by two.
async fn the_connection_concurrency_cap_paces_requests(backend: Backend) {
    let s = setup(backend, 0).await;
    s.sim.state.set_faults(Faults {
        latency_ms: 200,
        ..Faults::default()
    });
    let client = Arc::new(erp_client(
        &s,
        json!({"base_url": format!("{}/erp/acme", s.sim.address), "max_concurrent_requests": "2"}),
    ));
    let started = std::time::Instant::now();
    let writes: Vec<_> = (0..6)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let order = json!({"source_connection": "con_shop", "platform_id": format!("{i}")});
                client.write("create_order", &order, &format!("k{i}")).await
            })
        })
        .collect();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(600),
        "three rounds of two: {elapsed:?}"
    );
    assert_eq!(s.sim.state.erp_orders("acme").len(), 6);
}
on_both_backends!(the_connection_concurrency_cap_paces_requests);

/// A batch sent again (a response lost on the way back) is recognised order by order by the
/// keys it carries: nothing is written twice.
async fn a_repeated_batch_writes_nothing_twice(backend: Backend) {
    let s = setup(backend, 0).await;
    let client = erp_client(
        &s,
        json!({"base_url": format!("{}/erp/acme", s.sim.address)}),
    );
    let batch: Vec<(Value, String)> = (0..3)
        .map(|i| {
            (
                json!({"source_connection": "con_shop", "platform_id": format!("{i}"), "number": format!("#{i}")}),
                format!("con_shop:{i}:v1"),
            )
        })
        .collect();
    let batch: Vec<(&Value, &str)> = batch.iter().map(|(o, k)| (o, k.as_str())).collect();
    let first = client.write_batch("create_orders", &batch).await.unwrap();
    let again = client.write_batch("create_orders", &batch).await.unwrap();
    assert_eq!(first, again, "the same outcome");
    assert!(first.refused.is_empty(), "{first:?}");
    let stats = s.sim.state.stats();
    assert_eq!((stats.orders_written, stats.duplicate_writes), (3, 3));
    assert_eq!(s.sim.state.erp_orders("acme").len(), 3);
}
on_both_backends!(a_repeated_batch_writes_nothing_twice);

/// A 429 storm shorter than a call's budget: every call is refused for 3 s. The client waits
/// out each `Retry-After` on the shared bucket instead of calling again at once (about one
/// 429 a second, not a hammering), spends no persisted retry, and the run finishes as soon
/// as the quota returns.
async fn a_short_429_storm_is_waited_out(backend: Backend) {
    let s = setup(backend, 600).await;
    s.sim.state.set_faults(Faults {
        storm_seconds: 3.0,
        ..Default::default()
    });
    let started = std::time::Instant::now();
    let run = s.queue_run().await;
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    assert!(started.elapsed() >= std::time::Duration::from_millis(2_500));
    let stats = s.sim.state.stats();
    assert!(
        (2..=4).contains(&stats.throttled),
        "about one call a second during the storm: {} 429s",
        stats.throttled
    );
    assert_eq!(
        stats.requests,
        6 + stats.throttled,
        "three pages and three writes, and nothing else but the refused calls"
    );
    assert_eq!(s.run(&run).await["attempts"], 1, "no persisted retry spent");
    assert_eq!(s.sim.state.erp_orders("acme").len(), 600);
}
on_both_backends!(a_short_429_storm_is_waited_out);

/// A 429 storm longer than a call's budget (five waits): the attempt stops after exactly
/// that many refusals, is rescheduled in storage as rate limited, and the next attempt,
/// after the storm, delivers every order once.
async fn a_long_429_storm_spends_the_budget_then_retries_from_storage(backend: Backend) {
    let s = setup(backend, 600).await;
    s.sim.state.set_faults(Faults {
        storm_seconds: 8.0,
        ..Default::default()
    });
    let run = s.queue_run().await;
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(
        (report.status.as_str(), report.error_class.as_deref()),
        ("retrying", Some("rate_limited")),
        "{report:?}"
    );
    assert_eq!(
        s.sim.state.stats().throttled,
        6,
        "the first call and its five waits, no more"
    );
    let next: chrono::DateTime<chrono::Utc> = s.run(&run).await["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // The storm passes, and the clock moves past the time the retry was scheduled for.
    s.sim.state.set_faults(Faults::default());
    s.app.advance_past(next);
    let report = s.engine.execute(&run).await.unwrap().expect("claimed");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    assert_eq!(s.run(&run).await["attempts"], 2);
    assert_eq!(s.sim.state.stats().orders_written, 600);
    assert_eq!(s.app.drain_runs(&s.engine).await, 0, "no run left behind");
}
on_both_backends!(a_long_429_storm_spends_the_budget_then_retries_from_storage);
