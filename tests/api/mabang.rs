//! Mabang through the simulated gateway: the body signature and its ten minutes, orders
//! created asynchronously and confirmed by polling (resumed after a worker dies mid-wait,
//! without sending them twice), stock levels out to Shopify.

use serde_json::{Value, json};
use synchub::ids::RunId;
use synchub::sim::{MabangSwitches, Simulator};

use crate::helpers::{Backend, TestApp, local_client};
use crate::on_both_backends;

const APP_KEY: &str = "201501";
const SECRET: &str = "2c11c34624d660dfae3ba7aa42e5cde2";

struct Setup {
    app: TestApp,
    sim: Simulator,
    token: String,
    mabang: String,
    shop: String,
}

async fn setup(backend: Backend, seed_orders: usize) -> Setup {
    let sim = Simulator::start("127.0.0.1:0", seed_orders).unwrap();
    let mut apps = crate::helpers::sim_apps();
    apps.mabang.insert(APP_KEY.into(), SECRET.into());
    sim.state.register_apps(apps);
    let app = TestApp::spawn_quiet(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let mabang = app
        .connection(
            &token,
            json!({"name": "Mabang", "connector": "mabang", "environment": "production",
            "settings": {"base_url": format!("{}/mabang", sim.address)},
            "credentials": {"app_key": APP_KEY, "app_secret": SECRET}}),
        )
        .await;
    let shop = app
        .connection(&token, json!({"name": "acme", "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": "acme.myshopify.com", "location_id": "gid://shopify/Location/655441491",
                         "base_url": format!("{}/shopify/acme", sim.address)},
            "credentials": {"access_token": "shpat_simulated_0123456789"}}))
        .await;
    Setup {
        app,
        sim,
        token,
        mabang: mabang["id"].as_str().unwrap().to_string(),
        shop: shop["id"].as_str().unwrap().to_string(),
    }
}

impl Setup {
    async fn flow(&self, stream: &str, source: &str, destination: &str) -> RunId {
        let (status, flow) = self
            .app
            .post("/v1/flows", &self.token, json!({"name": stream, "stream": stream, "source": source, "destination": destination}))
            .await;
        assert_eq!(status, 201, "{flow}");
        let (status, run) = self
            .app
            .post(
                &format!("/v1/flows/{}/run", flow["id"].as_str().unwrap()),
                &self.token,
                json!({}),
            )
            .await;
        assert_eq!(status, 202, "{run}");
        RunId::parse(run["id"].as_str().unwrap()).unwrap()
    }
}

/// A signed envelope sent as is, or with one byte of the body changed after signing.
async fn call(sim: &Simulator, timestamp: i64, tamper: bool) -> Value {
    let mut body =
        synchub::connectors::mabang::envelope("sys-get-shop-list", APP_KEY, json!({}), timestamp);
    let sign = synchub::signing::erp::mabang(SECRET, &body);
    if tamper {
        let at = body.len() - 3;
        body[at] = if body[at] == b'1' { b'2' } else { b'1' };
    }
    local_client()
        .post(format!("{}/mabang/api/v2", sim.address))
        .header("authorization", sign)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn signed_bodies_pass_and_forged_or_stale_ones_do_not() {
    let sim = Simulator::start("127.0.0.1:0", 0).unwrap();
    let mut apps = synchub::sim::signed::AppRegistration::default();
    apps.mabang.insert(APP_KEY.into(), SECRET.into());
    sim.state.register_apps(apps);
    let now = chrono::Utc::now().timestamp();
    assert_eq!(call(&sim, now, false).await["code"], "200");
    let forged = call(&sim, now, true).await;
    assert_ne!(forged["code"], "200", "{forged}");
    let stale = call(&sim, now - 11 * 60, false).await;
    assert_ne!(stale["code"], "200", "{stale}");
    let stats = sim.state.mabang_stats();
    assert_eq!((stats.refused_signatures, stats.stale_timestamps), (1, 1));
}

/// The check signs its probe: it passes with the secret, fails as auth without it.
async fn the_check_proves_the_signature(backend: Backend) {
    let s = setup(backend, 0).await;
    let (status, report) = s
        .app
        .post(
            &format!("/v1/connections/{}/check", s.mabang),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(report["passed"], true, "{report}");
    let wrong = s
        .app
        .connection(
            &s.token,
            json!({"name": "wrong", "connector": "mabang", "environment": "production",
            "settings": {"base_url": format!("{}/mabang", s.sim.address)},
            "credentials": {"app_key": APP_KEY, "app_secret": "not-the-secret"}}),
        )
        .await;
    let (_, report) = s
        .app
        .post(
            &format!("/v1/connections/{}/check", wrong["id"].as_str().unwrap()),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(report["passed"], false, "{report}");
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "failed")
        .unwrap();
    assert_eq!(failed["error_class"], "auth", "{failed}");
    assert!(
        failed["remedy"]
            .as_str()
            .unwrap()
            .contains("developer secret"),
        "{failed}"
    );
}
on_both_backends!(the_check_proves_the_signature);

/// Orders are created asynchronously: each is confirmed after three polls, and the run
/// succeeds only then.
async fn orders_are_confirmed_after_three_polls(backend: Backend) {
    let s = setup(backend, 3).await;
    let run = s.flow("orders", &s.shop, &s.mabang).await;
    let report = s
        .app
        .engine()
        .execute(&run)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    assert_eq!(report.records_written, 3);
    let stats = s.sim.state.mabang_stats();
    assert_eq!(
        (stats.creates, stats.checks, stats.duplicates),
        (3, 9, 0),
        "{stats:?}"
    );
    let orders = s.sim.state.mabang_orders(APP_KEY);
    assert!(orders.iter().all(|(_, created)| *created));
    assert_eq!(orders[0].0["countryCode"], "US");
    assert!(
        orders[0].0["orderItems"][0]["platformSku"]
            .as_str()
            .unwrap()
            .starts_with("SKU-")
    );
}
on_both_backends!(orders_are_confirmed_after_three_polls);

/// A worker dies while it waits for Mabang: the orders it sent are in the run's checkpoint,
/// so the next worker asks after them and sends none again.
async fn a_restart_resumes_the_polling(backend: Backend) {
    let s = setup(backend, 3).await;
    s.sim.state.set_mabang(MabangSwitches {
        polls: Some(10_000),
        ..Default::default()
    });
    let run = s.flow("orders", &s.shop, &s.mabang).await;
    let killed = s.app.engine();
    let waiting = async {
        while s.sim.state.mabang_stats().checks == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        done = killed.execute(&run) => panic!("the run ended before it was killed: {done:?}"),
        () = waiting => {}
    }
    assert_eq!(s.sim.state.mabang_stats().creates, 3);
    s.sim.state.set_mabang(MabangSwitches {
        polls: Some(3),
        ..Default::default()
    });
    s.app.time.advance(chrono::Duration::minutes(10));
    let report = s
        .app
        .engine()
        .execute(&run)
        .await
        .unwrap()
        .expect("claimed after the lease");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    let stats = s.sim.state.mabang_stats();
    assert_eq!(
        (stats.creates, stats.duplicates),
        (3, 0),
        "nothing sent twice: {stats:?}"
    );
    assert!(
        s.sim
            .state
            .mabang_orders(APP_KEY)
            .iter()
            .all(|(_, created)| *created)
    );
}
on_both_backends!(a_restart_resumes_the_polling);

/// Stock that changed today goes out to Shopify.
async fn stock_flows_from_mabang(backend: Backend) {
    let s = setup(backend, 0).await;
    s.sim
        .state
        .set_erp_stock(APP_KEY, &[("SKU-1".into(), 12), ("SKU-2".into(), 0)]);
    let run = s.flow("inventory", &s.mabang, &s.shop).await;
    let report = s
        .app
        .engine()
        .execute(&run)
        .await
        .unwrap()
        .expect("claimed");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    assert_eq!(report.records_written, 2);
    let stock = s.sim.state.marketplace_stock("shopify", "acme");
    assert_eq!((stock["SKU-1"], stock["SKU-2"]), (12, 0));
}
on_both_backends!(stock_flows_from_mabang);
