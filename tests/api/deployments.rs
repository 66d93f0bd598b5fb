//! Deployments end to end: the API creates them, a deployer (the one the worker runs, here
//! driven tick by tick, with a clock the test controls where windows matter) moves them, the
//! sync engine runs flows on whatever version each connection is pinned to.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use synchub::connections::Connections;
use synchub::connectors::ConnectorRegistry;
use synchub::deploy::Deployer;
use synchub::ids::RunId;
use synchub::sim::{Faults, Simulator};
use synchub::sync::{RunReport, SyncEngine};

use crate::helpers::{Backend, TestApp, eventually};
use crate::on_both_backends;

const SHOPIFY: &str = include_str!("../../connectors/shopify.toml");

/// 1.1.0 maps order lines from a field the simulator never sends: every run fails with
/// schema_mismatch, though every connectivity check passes.
fn broken() -> String {
    SHOPIFY
        .replace("version = \"1.0.0\"", "version = \"1.1.0\"")
        .replace("lines = \"/line_items\"", "lines = \"/lineItems\"")
}

/// 1.2.0 works and can be told apart: the order number is the id.
fn working() -> String {
    SHOPIFY
        .replace("version = \"1.0.0\"", "version = \"1.2.0\"")
        .replace("number = \"/name\"", "number = \"/id\"")
}

struct Setup {
    app: TestApp,
    sim: Simulator,
    engine: SyncEngine,
    connections: Connections,
    token: String,
    erp: String,
    /// (connection id, orders flow id) per store.
    stores: Vec<(String, String)>,
}

const ORDERS: usize = 20;

async fn setup(backend: Backend, stores: usize) -> Setup {
    let sim = Simulator::start("127.0.0.1:0", ORDERS).unwrap();
    let app = TestApp::spawn_quiet(backend).await;
    let engine = app.engine();
    let connections = Connections::new(
        app.db.clone(),
        app.vault(),
        Arc::new(ConnectorRegistry::built_in().unwrap()),
        &app.settings(),
    )
    .unwrap()
    .with_clock(app.time.clock());
    let (_, token) = app.tenant_with_token(&["write", "deploy"]).await;
    let erp = app
        .connection(&token, json!({
            "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
            "settings": {"base_url": format!("{}/erp/acme", sim.address)}, "credentials": {"api_key": "erp-key"}}))
        .await;
    let erp = erp["id"].as_str().unwrap().to_string();
    let mut created = Vec::new();
    for i in 0..stores {
        let shop = app
            .connection(&token, json!({
                "name": format!("store {i}"), "connector": "shopify", "environment": "production",
                "settings": {"shop_domain": format!("store{i}.myshopify.com"), "base_url": format!("{}/shopify/store{i}", sim.address)},
                "credentials": {"access_token": format!("shpat_simulated_store_{i}")}}))
            .await;
        let shop = shop["id"].as_str().unwrap().to_string();
        let (status, flow) = app
            .post("/v1/flows", &token, json!({"name": format!("orders {i}"), "stream": "orders", "source": shop, "destination": erp, "retry": {"max_attempts": 1, "base_seconds": 1, "cap_seconds": 1}}))
            .await;
        assert_eq!(status, 201, "{flow}");
        created.push((shop, flow["id"].as_str().unwrap().to_string()));
    }
    Setup {
        app,
        sim,
        engine,
        connections,
        token,
        erp,
        stores: created,
    }
}

impl Setup {
    fn deployer(&self) -> Deployer {
        Deployer::new(self.app.db.clone(), self.connections.clone())
            .with_clock(self.app.time.clock())
    }

    async fn publish(&self, manifest: &str) {
        let (status, body) = self
            .app
            .post(
                "/v1/connectors/shopify/versions",
                &self.token,
                json!({"manifest": manifest, "changelog": "test version"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }

    async fn deploy(&self, body: Value) -> Value {
        let (status, deployment) = self.app.post("/v1/deployments", &self.token, body).await;
        assert_eq!(status, 201, "{deployment}");
        deployment
    }

    async fn deployment(&self, id: &Value) -> Value {
        let (status, body) = self
            .app
            .get(
                &format!("/v1/deployments/{}", id.as_str().unwrap()),
                &self.token,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    async fn connection(&self, id: &str) -> Value {
        self.app
            .get(&format!("/v1/connections/{id}"), &self.token)
            .await
            .1
    }

    async fn queue(&self, flow: &str) -> RunId {
        let (status, run) = self
            .app
            .post(&format!("/v1/flows/{flow}/run"), &self.token, json!({}))
            .await;
        assert_eq!(status, 202, "{run}");
        RunId::parse(run["id"].as_str().unwrap()).unwrap()
    }

    async fn run(&self, flow: &str) -> (RunId, RunReport) {
        let id = self.queue(flow).await;
        let report = self.engine.execute(&id).await.unwrap().expect("claimed");
        (id, report)
    }

    async fn run_view(&self, id: &RunId) -> Value {
        self.app.get(&format!("/v1/runs/{id}"), &self.token).await.1
    }
}

fn kinds(deployment: &Value) -> Vec<String> {
    deployment["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Ticks until the deployment leaves `state` or the deadline passes.
async fn tick_until_not(s: &Setup, deployer: &Deployer, id: &Value, state: &str) -> Value {
    eventually(
        "the deployment moves on",
        Duration::from_secs(20),
        || async {
            deployer.tick().await.unwrap();
            let current = s.deployment(id).await;
            if current["state"] != state {
                Ok(current)
            } else {
                Err(current)
            }
        },
    )
    .await
}

/// A canary of a broken version (its mapping reads a field the platform does not send) is
/// rolled back on its own at the first gate; the runs that used it are visible, and once
/// they run again on the old version every order is in the ERP once.
async fn a_broken_canary_rolls_back_at_the_first_gate(backend: Backend) {
    let s = setup(backend, 4).await;
    s.publish(&broken()).await;
    let deployer = s.deployer();
    let deployment = s
        .deploy(json!({"connector": "shopify", "version": "1.1.0", "strategy": "canary", "steps": [25, 100],
                       "gate": {"min_runs": 1, "interval_seconds": 1, "max_wait_seconds": 30}}))
        .await;
    let id = &deployment["id"];
    let current = tick_until_not(&s, &deployer, id, "pending").await;
    assert_eq!(current["state"], "in_progress", "{current}");
    let canary: Vec<String> = current["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["state"] == "switched")
        .map(|t| t["connection_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(canary.len(), 1, "25% of four stores");
    let pinned = s.connection(&canary[0]).await;
    assert_eq!(pinned["version"], "1.1.0");
    assert!(
        pinned["pinned_by"]
            .as_str()
            .unwrap()
            .starts_with("deployment:")
    );

    let mut broken_runs = Vec::new();
    for (shop, flow) in &s.stores {
        let (run, report) = s.run(flow).await;
        if shop == &canary[0] {
            assert_eq!(report.status.as_str(), "dead", "{report:?}");
            assert_eq!(report.error_class.as_deref(), Some("schema_mismatch"));
            broken_runs.push(run);
        } else {
            assert_eq!(report.status.as_str(), "succeeded");
        }
    }
    // Past the gate's one-second interval.
    s.app.time.advance(chrono::Duration::milliseconds(1_100));
    let current = tick_until_not(&s, &deployer, id, "in_progress").await;
    assert_eq!(current["state"], "rolled_back", "{current}");
    assert!(
        current["reason"].as_str().unwrap().contains("gate failed"),
        "{current}"
    );
    let timeline = kinds(&current);
    for kind in [
        "created",
        "verification_passed",
        "step_promoted",
        "gate_evaluated",
        "rolled_back",
    ] {
        assert!(
            timeline.contains(&kind.to_string()),
            "{kind} in {timeline:?}"
        );
    }
    let gate = current["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "gate_evaluated")
        .unwrap();
    assert_eq!(gate["details"]["decision"], "roll_back");
    assert_eq!(gate["details"]["figures"]["canary_runs"], 1);
    let (_, audit) = s.app.get("/v1/audit?limit=100", &s.token).await;
    for action in [
        "deployment.create",
        "deployment.step_promoted",
        "deployment.gate_evaluated",
        "deployment.rolled_back",
    ] {
        assert!(
            audit.to_string().contains(action),
            "{action} in the audit log"
        );
    }
    let restored = s.connection(&canary[0]).await;
    assert_eq!(
        (restored["version"].as_str(), restored["pinned_by"].as_str()),
        (Some("1.0.0"), Some("default"))
    );
    // Both became alert events: the failed run and the automatic rollback.
    let kinds_emitted: Vec<String> =
        <synchub::store::entities::alert_event::Entity as sea_orm::EntityTrait>::find()
            .all(&s.app.db)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.kind)
            .collect();
    for kind in [
        "run_failed",
        "deployment.step_promoted",
        "deployment.rolled_back",
    ] {
        assert!(
            kinds_emitted.contains(&kind.to_string()),
            "{kind} in {kinds_emitted:?}"
        );
    }
    // The runs that used the broken version say so.
    assert_eq!(
        s.run_view(&broken_runs[0]).await["connector_version"],
        "1.1.0"
    );

    // The dead run is replayed on the old version: every order of every store, once.
    let (status, dead) = s.app.get("/v1/dead-letters", &s.token).await;
    assert_eq!(status, 200);
    let dead_id = dead["data"][0]["id"].as_str().unwrap();
    let (status, replay) = s
        .app
        .post(
            &format!("/v1/dead-letters/{dead_id}/replay"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 202, "{replay}");
    let replayed = RunId::parse(replay["id"].as_str().unwrap()).unwrap();
    let report = s.engine.execute(&replayed).await.unwrap().expect("claimed");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    assert_eq!(s.run_view(&replayed).await["connector_version"], "1.0.0");
    assert_eq!(
        s.sim.state.erp_orders("acme").len(),
        4 * ORDERS,
        "no order lost"
    );
    assert_eq!(
        s.sim.state.stats().duplicate_writes,
        0,
        "no order written twice"
    );
    s.app.drain_runs(&s.engine).await;
}
on_both_backends!(a_broken_canary_rolls_back_at_the_first_gate);

/// Blue-green: one connection failing verification keeps every connection on the old
/// version; when all pass they switch together.
async fn blue_green_switches_all_or_none(backend: Backend) {
    let s = setup(backend, 2).await;
    s.publish(&working()).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let unreachable = s
        .app
        .connection(&s.token, json!({
            "name": "unreachable", "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": "gone.myshopify.com", "base_url": format!("http://127.0.0.1:{port}/shopify/gone")},
            "credentials": {"access_token": "shpat_simulated_gone"}}))
        .await;
    let deployer = s.deployer();
    let all = s
        .deploy(json!({"connector": "shopify", "version": "1.2.0", "strategy": "blue_green"}))
        .await;
    let current = tick_until_not(&s, &deployer, &all["id"], "pending").await;
    assert_eq!(current["state"], "failed", "{current}");
    assert!(kinds(&current).contains(&"verification_failed".to_string()));
    for (shop, _) in &s.stores {
        assert_eq!(
            s.connection(shop).await["version"],
            "1.0.0",
            "none switched"
        );
    }
    let failed_target = current["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["connection_id"] == unreachable["id"])
        .unwrap();
    assert_eq!(failed_target["state"], "verification_failed");

    let healthy: Vec<&str> = s.stores.iter().map(|(shop, _)| shop.as_str()).collect();
    // A version whose checks pass but whose reads do not map: the shadow read stops it.
    s.publish(&broken()).await;
    let unmappable = s
        .deploy(json!({"connector": "shopify", "version": "1.1.0", "strategy": "blue_green", "connections": healthy}))
        .await;
    let current = tick_until_not(&s, &deployer, &unmappable["id"], "pending").await;
    assert_eq!(current["state"], "failed", "{current}");
    let target = &current["targets"][0];
    assert_eq!(target["verification"]["checks"]["passed"], true);
    assert_eq!(target["verification"]["shadow"]["passed"], false);
    assert!(
        target["verification"]["shadow"]["error"]
            .as_str()
            .unwrap()
            .contains("schema_mismatch")
    );

    let deployment = s
        .deploy(json!({"connector": "shopify", "version": "1.2.0", "strategy": "blue_green", "connections": healthy}))
        .await;
    let current = tick_until_not(&s, &deployer, &deployment["id"], "pending").await;
    assert_eq!(current["state"], "promoted", "{current}");
    let switched: Vec<&Value> = current["targets"].as_array().unwrap().iter().collect();
    assert!(
        switched
            .iter()
            .all(|t| t["state"] == "switched" && t["step"] == 0)
    );
    assert_eq!(
        switched[0]["switched_at"], switched[1]["switched_at"],
        "one switch"
    );
    for shop in healthy {
        assert_eq!(s.connection(shop).await["version"], "1.2.0");
    }
    // Only one active deployment per connector and connection set.
    let (status, body) = s
        .app
        .post("/v1/deployments", &s.token, json!({"connector": "shopify", "version": "1.2.0", "strategy": "immediate", "connections": [s.stores[0].0]}))
        .await;
    assert_eq!(status, 409, "{body}");
}
on_both_backends!(blue_green_switches_all_or_none);

/// A deployment asked for outside its window waits, and starts when the window opens (the
/// deployer's clock is the test's); a freeze date refuses it unless forced, which the audit
/// log records.
async fn windows_hold_deployments_and_freezes_refuse_them(backend: Backend) {
    let s = setup(backend, 1).await;
    s.publish(&working()).await;
    let now = Utc::now();
    let clock = Arc::new(Mutex::new(now));
    let read = clock.clone();
    let deployer = s
        .deployer()
        .with_clock(synchub::clock::Clock::from_fn(move || {
            *read.lock().unwrap()
        }));
    // A window every day, opening two hours from now (UTC), for an hour.
    let opens = now + chrono::Duration::hours(2);
    let window = json!({"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "start": opens.format("%H:%M").to_string(), "end": (opens + chrono::Duration::hours(1)).format("%H:%M").to_string(), "timezone": "UTC"});
    let deployment = s
        .deploy(json!({"connector": "shopify", "version": "1.2.0", "strategy": "immediate", "window": window}))
        .await;
    *clock.lock().unwrap() = Utc::now();
    deployer.tick().await.unwrap();
    let current = s.deployment(&deployment["id"]).await;
    assert_eq!(current["state"], "waiting_for_window", "{current}");
    *clock.lock().unwrap() = now + chrono::Duration::hours(1);
    deployer.tick().await.unwrap();
    assert_eq!(
        s.deployment(&deployment["id"]).await["state"],
        "waiting_for_window"
    );
    assert_eq!(s.connection(&s.stores[0].0).await["version"], "1.0.0");
    let at_opening: DateTime<Utc> = opens
        .date_naive()
        .and_time(
            chrono::NaiveTime::parse_from_str(&opens.format("%H:%M").to_string(), "%H:%M").unwrap(),
        )
        .and_utc();
    *clock.lock().unwrap() = at_opening + chrono::Duration::seconds(30);
    deployer.tick().await.unwrap();
    let current = s.deployment(&deployment["id"]).await;
    assert_eq!(current["state"], "promoted", "{current}");
    assert_eq!(s.connection(&s.stores[0].0).await["version"], "1.2.0");

    let today = Utc::now()
        .with_timezone(&chrono_tz::Asia::Shanghai)
        .date_naive();
    let (status, policy) = s
        .app
        .put(
            "/v1/deploy-policy",
            &s.token,
            json!({"freezes": [{"from": today, "to": today, "reason": "Singles' Day"}]}),
        )
        .await;
    assert_eq!(status, 200, "{policy}");
    let request = json!({"connector": "shopify", "version": "1.0.0", "strategy": "immediate"});
    let (status, refused) = s
        .app
        .post("/v1/deployments", &s.token, request.clone())
        .await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused.to_string().contains("Singles' Day"));
    let mut forced = request;
    forced["force"] = json!(true);
    // The first deployment still watches its rollback window: it holds the connection.
    let (_, first) = s
        .app
        .post(
            &format!(
                "/v1/deployments/{}/rollback",
                deployment["id"].as_str().unwrap()
            ),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(first["state"], "rolled_back", "{first}");
    let (status, created) = s.app.post("/v1/deployments", &s.token, forced).await;
    assert_eq!(status, 201, "{created}");
    let (_, audit) = s.app.get("/v1/audit", &s.token).await;
    assert!(audit.to_string().contains("deployment.create.forced"));
}
on_both_backends!(windows_hold_deployments_and_freezes_refuse_them);

/// The deployer keeps nothing in memory: a new one (a restarted process) resumes a canary
/// where the last one left it.
async fn a_restart_mid_canary_resumes(backend: Backend) {
    let s = setup(backend, 2).await;
    s.publish(&working()).await;
    let deployment = s
        .deploy(json!({"connector": "shopify", "version": "1.2.0", "strategy": "canary", "steps": [50, 100],
                       "gate": {"min_runs": 1, "interval_seconds": 1, "max_wait_seconds": 30}}))
        .await;
    let first = s.deployer();
    let current = tick_until_not(&s, &first, &deployment["id"], "pending").await;
    assert_eq!(current["state"], "in_progress");
    drop(first);
    for (_, flow) in &s.stores {
        assert_eq!(s.run(flow).await.1.status.as_str(), "succeeded");
    }
    // Past the gate's one-second interval.
    s.app.time.advance(chrono::Duration::milliseconds(1_100));
    let restarted = s.deployer();
    let current = tick_until_not(&s, &restarted, &deployment["id"], "in_progress").await;
    assert_eq!(current["state"], "promoted", "{current}");
    assert_eq!(current["current_step"], 1);
    for (shop, _) in &s.stores {
        assert_eq!(s.connection(shop).await["version"], "1.2.0");
    }
}
on_both_backends!(a_restart_mid_canary_resumes);

/// A manual rollback while a run is in flight: that run finishes on the version it started
/// with; the next run uses the restored pin.
async fn in_flight_runs_finish_on_their_version(backend: Backend) {
    let s = setup(backend, 1).await;
    s.publish(&working()).await;
    let deployer = s.deployer();
    let deployment = s
        .deploy(json!({"connector": "shopify", "version": "1.2.0", "strategy": "immediate"}))
        .await;
    assert_eq!(
        tick_until_not(&s, &deployer, &deployment["id"], "pending").await["state"],
        "promoted"
    );
    s.sim.state.set_faults(Faults {
        latency_ms: 400,
        ..Faults::default()
    });
    let (shop, flow) = &s.stores[0];
    let in_flight = s.queue(flow).await;
    let engine = s.engine.clone();
    let running = {
        let id = in_flight.clone();
        tokio::spawn(async move { engine.execute(&id).await })
    };
    // In flight: claimed, and its version read (the first page is on its way, 400 ms).
    eventually("the run is claimed", Duration::from_secs(10), || async {
        let shown = s.run_view(&in_flight).await;
        if shown["connector_version"].is_null() {
            Err(shown)
        } else {
            Ok(())
        }
    })
    .await;
    let (status, rolled) = s
        .app
        .post(
            &format!(
                "/v1/deployments/{}/rollback",
                deployment["id"].as_str().unwrap()
            ),
            &s.token,
            json!({"reason": "bad numbers"}),
        )
        .await;
    assert_eq!(status, 200, "{rolled}");
    assert_eq!(rolled["state"], "rolled_back");
    assert_eq!(s.connection(shop).await["version"], "1.0.0");
    let report = running.await.unwrap().unwrap().expect("claimed");
    assert_eq!(report.status.as_str(), "succeeded");
    assert_eq!(
        s.run_view(&in_flight).await["connector_version"],
        "1.2.0",
        "finished on its version"
    );
    let first = s.sim.state.erp_orders("acme").into_iter().next().unwrap();
    assert_eq!(first["number"], first["platform_id"], "1.2.0's mapping");
    s.sim.state.set_faults(Faults::default());
    s.sim.state.add_orders("store0", 1);
    let (next, _) = s.run(flow).await;
    assert_eq!(
        s.run_view(&next).await["connector_version"],
        "1.0.0",
        "the restored pin"
    );
    let _ = &s.erp;
}
on_both_backends!(in_flight_runs_finish_on_their_version);

/// A promoted version that fails within its rollback window is rolled back on its own.
async fn a_promoted_version_failing_in_its_window_rolls_back(backend: Backend) {
    let s = setup(backend, 1).await;
    s.publish(&broken()).await;
    let deployer = s.deployer();
    let deployment = s
        .deploy(
            json!({"connector": "shopify", "version": "1.1.0", "strategy": "immediate",
                       "gate": {"min_runs": 1, "interval_seconds": 1, "max_wait_seconds": 30}}),
        )
        .await;
    let current = tick_until_not(&s, &deployer, &deployment["id"], "pending").await;
    assert_eq!(current["state"], "promoted", "{current}");
    let (_, report) = s.run(&s.stores[0].1).await;
    assert_eq!(report.status.as_str(), "dead");
    let current = tick_until_not(&s, &deployer, &deployment["id"], "promoted").await;
    assert_eq!(current["state"], "rolled_back", "{current}");
    assert!(
        current["reason"]
            .as_str()
            .unwrap()
            .contains("rollback window")
    );
    let rolled = current["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "rolled_back")
        .unwrap();
    assert_eq!(rolled["details"]["automatic"], true);
    assert_eq!(s.connection(&s.stores[0].0).await["version"], "1.0.0");
    s.app.drain_runs(&s.engine).await;
}
on_both_backends!(a_promoted_version_failing_in_its_window_rolls_back);

/// Pause holds a deployment where it is; promote skips the rest of a gate's wait (a gate
/// that would wait for runs), and the timeline says it was by hand.
async fn pause_resume_and_promote_by_hand(backend: Backend) {
    let s = setup(backend, 2).await;
    s.publish(&working()).await;
    let deployer = s.deployer();
    let deployment = s
        .deploy(json!({"connector": "shopify", "version": "1.2.0", "strategy": "canary", "steps": [50, 100],
                       "gate": {"min_runs": 5, "interval_seconds": 1, "max_wait_seconds": 3600}}))
        .await;
    let id = deployment["id"].as_str().unwrap();
    assert_eq!(
        tick_until_not(&s, &deployer, &deployment["id"], "pending").await["state"],
        "in_progress"
    );
    let (status, paused) = s
        .app
        .post(&format!("/v1/deployments/{id}/pause"), &s.token, json!({}))
        .await;
    assert_eq!((status, paused["state"].as_str()), (200, Some("paused")));
    // Past the gate's one-second interval.
    s.app.time.advance(chrono::Duration::milliseconds(1_100));
    deployer.tick().await.unwrap();
    assert_eq!(
        s.deployment(&deployment["id"]).await["state"],
        "paused",
        "a paused deployment does not move"
    );
    let (status, _) = s
        .app
        .post(
            &format!("/v1/deployments/{id}/promote"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "nothing to promote while paused");
    let (_, resumed) = s
        .app
        .post(&format!("/v1/deployments/{id}/resume"), &s.token, json!({}))
        .await;
    assert_eq!(resumed["state"], "in_progress");
    deployer.tick().await.unwrap();
    assert_eq!(
        s.deployment(&deployment["id"]).await["state"],
        "in_progress",
        "the gate waits for five runs"
    );
    let (status, _) = s
        .app
        .post(
            &format!("/v1/deployments/{id}/promote"),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    deployer.tick().await.unwrap();
    let current = s.deployment(&deployment["id"]).await;
    assert_eq!(current["state"], "promoted", "{current}");
    let timeline = kinds(&current);
    for kind in ["paused", "resumed", "promoted_by_hand", "promoted"] {
        assert!(
            timeline.contains(&kind.to_string()),
            "{kind} in {timeline:?}"
        );
    }
    let gate = current["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "gate_evaluated")
        .unwrap();
    assert_eq!(gate["details"]["manual"], true);
}
on_both_backends!(pause_resume_and_promote_by_hand);
