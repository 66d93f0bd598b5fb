//! Lingxing at the end of every flow, through the simulator: orders pushed into a
//! custom-platform store under its in-flight cap of 10 by two worker processes at once, partial
//! refusals retried alone, a killed worker resumed without duplicates; stock and shipments
//! back to Shopify and Shopee; the token renewed once when it expires under two workers, a
//! second tool taking over the AppID named in the alert; the IP whitelist in the check.

use serde_json::{Value, json};
use synchub::ids::RunId;
use synchub::sim::{LingxingSwitches, Simulator};
use synchub::sync::{RunReport, SyncEngine};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

const APP_ID: &str = "ak_SIMLINGXING01";
const APP_SECRET: &str = "lingxing+secret/=&1";
const STORE: &str = "110283406273996288";

struct Setup {
    app: TestApp,
    sim: Simulator,
    token: String,
    lingxing: String,
}

async fn setup(backend: Backend, seed_orders: usize) -> Setup {
    let sim = Simulator::start("127.0.0.1:0", seed_orders).unwrap();
    let mut apps = crate::helpers::sim_apps();
    apps.lingxing.insert(APP_ID.into(), APP_SECRET.into());
    sim.state.register_apps(apps);
    let app = TestApp::spawn_quiet(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let lingxing = app
        .connection(
            &token,
            json!({"name": "Lingxing", "connector": "lingxing", "environment": "production",
                   "settings": {"base_url": format!("{}/lingxing", sim.address), "store_id": STORE},
                   "credentials": {"app_id": APP_ID, "app_secret": APP_SECRET}}),
        )
        .await;
    Setup {
        app,
        sim,
        token,
        lingxing: lingxing["id"].as_str().unwrap().to_string(),
    }
}

impl Setup {
    async fn shopify(&self, shop: &str) -> String {
        let connection = self
            .app
            .connection(&self.token, json!({"name": shop, "connector": "shopify", "environment": "production",
                "settings": {"shop_domain": format!("{shop}.myshopify.com"), "location_id": "gid://shopify/Location/655441491",
                             "base_url": format!("{}/shopify/{shop}", self.sim.address)},
                "credentials": {"access_token": "shpat_simulated_0123456789"}}))
            .await;
        connection["id"].as_str().unwrap().to_string()
    }

    async fn shopee(&self) -> String {
        let connection = self
            .app
            .connection(&self.token, json!({"name": "shopee", "connector": "shopee", "environment": "production",
                "settings": {"partner_id": 2001887, "shop_id": 14701711, "base_url": format!("{}/shopee", self.sim.address)},
                "credentials": {"partner_key": "shopee-partner-key", "access_token": "shop-token", "refresh_token": "r"}}))
            .await;
        connection["id"].as_str().unwrap().to_string()
    }

    async fn flow(&self, stream: &str, source: &str, destination: &str) -> String {
        let (status, flow) = self
            .app
            .post("/v1/flows", &self.token, json!({"name": format!("{stream} {source} {destination}"), "stream": stream, "source": source, "destination": destination}))
            .await;
        assert_eq!(status, 201, "{flow}");
        flow["id"].as_str().unwrap().to_string()
    }

    /// Queues a run of the flow; its id.
    async fn queue(&self, flow: &str) -> RunId {
        let (status, run) = self
            .app
            .post(&format!("/v1/flows/{flow}/run"), &self.token, json!({}))
            .await;
        assert_eq!(status, 202, "{run}");
        RunId::parse(run["id"].as_str().unwrap()).unwrap()
    }

    async fn run(&self, engine: &SyncEngine, flow: &str) -> RunReport {
        let id = self.queue(flow).await;
        engine.execute(&id).await.unwrap().expect("claimed")
    }

    /// The run's next attempt made due now (the backoff is tested elsewhere), and executed.
    async fn retry(&self, engine: &SyncEngine, id: &RunId) -> RunReport {
        self.app.advance_past_retry(&self.token, id.as_str()).await;
        engine.execute(id).await.unwrap().expect("claimed")
    }

    fn orders(&self) -> Vec<Value> {
        self.sim.state.lingxing_orders(APP_ID)
    }
}

/// 1,000 orders from two Shopify stores, two worker processes at once (each its own pool and
/// limiter), Lingxing answering in 20 ms with its bucket of 10 per endpoint: no call is
/// refused as too frequent, three orders refused once ("system busy") make their runs
/// retry, and the retry sends only those three.
async fn orders_reach_lingxing_once_under_its_cap(backend: Backend) {
    let s = setup(backend, 500).await;
    let (us, eu) = (s.shopify("acme").await, s.shopify("acme-eu").await);
    let flows = [
        s.flow("orders", &us, &s.lingxing).await,
        s.flow("orders", &eu, &s.lingxing).await,
    ];
    s.sim.state.set_lingxing(LingxingSwitches {
        hold_ms: 20,
        refuse_orders: 3,
        ..Default::default()
    });
    let (one, two) = (
        s.app.engine_of_another_process().await,
        s.app.engine_of_another_process().await,
    );
    let ids = [s.queue(&flows[0]).await, s.queue(&flows[1]).await];
    let (a, b) = tokio::join!(one.execute(&ids[0]), two.execute(&ids[1]));
    let reports = [a.unwrap().unwrap(), b.unwrap().unwrap()];
    let stats = s.sim.state.lingxing_stats();
    assert_eq!(
        stats.too_frequent, 0,
        "the shared cap kept every call in the bucket"
    );
    assert_eq!(stats.refused_busy, 3);
    // A run stops at the page with refusals: its delivered orders are kept, later pages wait.
    assert!(stats.orders_created < 1_000, "{stats:?}");
    let mut retried = 0;
    for (report, id) in reports.iter().zip(&ids) {
        if report.status.as_str() == "succeeded" {
            assert_eq!(report.records_written, 500);
            continue;
        }
        assert_eq!(report.status.as_str(), "retrying", "{report:?}");
        let (_, run) = s.app.get(&format!("/v1/runs/{id}"), &s.token).await;
        let error = run["error_message"].as_str().unwrap_or_default();
        assert!(error.contains("system busy"), "{error}");
        assert!(error.contains("refused"), "{error}");
        let report = s.retry(&one, id).await;
        assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
        retried += 1;
    }
    assert!(retried >= 1);
    let stats = s.sim.state.lingxing_stats();
    assert_eq!(stats.orders_created, 1_000);
    assert_eq!(
        stats.duplicates_refused, 0,
        "the retries sent only the refused orders"
    );
    let orders = s.orders();
    assert_eq!(orders.len(), 1_000);
    let one = &orders[0];
    assert_eq!(one["receiver_country_code"], "US");
    assert!(one["items"][0]["sku"].as_str().unwrap().starts_with("SKU-"));
}
on_both_backends!(orders_reach_lingxing_once_under_its_cap);

/// A worker killed while its calls are in flight: after its lease the run resumes on
/// another worker; orders Lingxing took but the dead worker never recorded are refused as
/// duplicates, found in the store, and counted as delivered.
async fn a_killed_worker_resumes_without_duplicates(backend: Backend) {
    let s = setup(backend, 400).await;
    let shop = s.shopify("acme").await;
    let flow = s.flow("orders", &shop, &s.lingxing).await;
    s.sim.state.set_lingxing(LingxingSwitches {
        hold_ms: 150,
        ..Default::default()
    });
    let id = s.queue(&flow).await;
    let killed = s.app.engine();
    // Dropped once Lingxing has taken orders and before the page is committed: what a
    // killed process leaves (orders created, nothing recorded).
    let taken = async {
        while s.sim.state.lingxing_stats().orders_created == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        done = killed.execute(&id) => panic!("the run ended before it was killed: {done:?}"),
        () = taken => {}
    }
    s.app.time.advance(chrono::Duration::minutes(10));
    s.sim.state.set_lingxing(LingxingSwitches::default());
    let report = s
        .app
        .engine()
        .execute(&id)
        .await
        .unwrap()
        .expect("claimed after the lease");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    let stats = s.sim.state.lingxing_stats();
    assert_eq!(stats.orders_created, 400, "every order once");
    assert_eq!(s.orders().len(), 400);
}
on_both_backends!(a_killed_worker_resumes_without_duplicates);

/// Stock from Lingxing's warehouse to Shopify and Shopee, and shipped-out orders back to
/// Shopify as fulfillments, with the calls each took.
async fn stock_and_shipments_come_back_from_lingxing(backend: Backend) {
    let s = setup(backend, 5).await;
    let engine = s.app.engine();
    let shop = s.shopify("acme").await;
    let shopee = s.shopee().await;
    let levels: Vec<(String, i64)> = (1..=4).map(|n| (format!("SKU-{n}"), n * 5)).collect();
    s.sim.state.set_erp_stock(APP_ID, &levels);
    for (destination, platform, account) in
        [(&shop, "shopify", "acme"), (&shopee, "shopee", "14701711")]
    {
        let flow = s.flow("inventory", &s.lingxing, destination).await;
        let report = s.run(&engine, &flow).await;
        assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
        assert_eq!(report.records_written, 4, "{platform}");
        let stock = s.sim.state.marketplace_stock(platform, account);
        assert_eq!(stock.get("SKU-3"), Some(&15), "{platform}: {stock:?}");
        // Unchanged quantities are not written again; a changed one is.
        s.sim.state.set_erp_stock(APP_ID, &[("SKU-3".into(), 0)]);
        let before = s.sim.state.stats().requests;
        let report = s.run(&engine, &flow).await;
        assert_eq!(report.records_written, 1, "{platform}: {report:?}");
        assert_eq!(s.sim.state.marketplace_stock(platform, account)["SKU-3"], 0);
        assert!(
            s.sim.state.stats().requests - before <= 3,
            "{platform}: one Lingxing page, at most a lookup and one write"
        );
        s.sim.state.set_erp_stock(APP_ID, &[("SKU-3".into(), 15)]);
    }

    let orders = s.flow("orders", &shop, &s.lingxing).await;
    assert_eq!(s.run(&engine, &orders).await.records_written, 5);
    assert_eq!(s.sim.state.ship_lingxing_orders(APP_ID, 3).len(), 3);
    let shipments = s.flow("shipments", &s.lingxing, &shop).await;
    let report = s.run(&engine, &shipments).await;
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    assert_eq!(report.records_written, 3);
    let fulfilled = s.sim.state.shop_fulfillments("acme");
    assert_eq!(fulfilled.len(), 3);
    let one = fulfilled.values().next().unwrap();
    assert_eq!(one["tracking_company"], "云途");
    assert!(one["tracking_number"].as_str().unwrap().starts_with("YT"));
    // Read again from the cursor's day: nothing new is written.
    assert_eq!(s.run(&engine, &shipments).await.records_written, 0);
}
on_both_backends!(stock_and_shipments_come_back_from_lingxing);

/// The token expires while two workers run flows of one Lingxing connection: each sees
/// 2001003, and under the connection's token lock one refresh token is spent once; both
/// runs then succeed. Afterwards another tool takes the AppID over: the run fails as auth
/// and the alert event names the cause.
async fn an_expired_token_is_renewed_once_and_a_takeover_is_named(backend: Backend) {
    let s = setup(backend, 3).await;
    let (us, eu) = (s.shopify("acme").await, s.shopify("acme-eu").await);
    let flows = [
        s.flow("orders", &us, &s.lingxing).await,
        s.flow("orders", &eu, &s.lingxing).await,
    ];
    s.sim.state.set_lingxing(LingxingSwitches {
        token_seconds: Some(60),
        ..Default::default()
    });
    // The check exchanges the AppSecret and stores the token.
    let (status, report) = s
        .app
        .post(
            &format!("/v1/connections/{}/check", s.lingxing),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(s.sim.state.lingxing_tokens(), (1, 0));
    // Lingxing's clock passes the token's minute; the refresh token (2 h) still works.
    s.sim.state.set_lingxing(LingxingSwitches {
        token_seconds: Some(60),
        advance_seconds: 90,
        ..Default::default()
    });
    let (one, two) = (s.app.engine(), s.app.engine());
    let ids = [s.queue(&flows[0]).await, s.queue(&flows[1]).await];
    let (a, b) = tokio::join!(one.execute(&ids[0]), two.execute(&ids[1]));
    for report in [a.unwrap().unwrap(), b.unwrap().unwrap()] {
        assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    }
    assert_eq!(
        s.sim.state.lingxing_tokens(),
        (1, 1),
        "one refresh, no second exchange"
    );

    // Another tool on the same AppID.
    let other = synchub::connectors::lingxing::App {
        base_url: &format!("{}/lingxing", s.sim.address),
        app_id: APP_ID,
        app_secret: APP_SECRET,
    };
    synchub::connectors::lingxing::exchange(
        &crate::helpers::local_client(),
        &other,
        chrono::Utc::now(),
    )
    .await
    .unwrap();
    s.sim.state.add_orders("acme", 1);
    let report = s.run(&one, &flows[0]).await;
    assert_eq!(report.status.as_str(), "dead", "{report:?}");
    assert_eq!(report.error_class.as_deref(), Some("auth"));
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use synchub::store::entities::alert_event;
    let taken = alert_event::Entity::find()
        .filter(alert_event::Column::Kind.eq("credential_refresh_failed"))
        .filter(alert_event::Column::ConnectionId.eq(s.lingxing.clone()))
        .one(&s.app.db)
        .await
        .unwrap()
        .expect("a credential_refresh_failed event");
    assert_eq!(taken.severity, "critical");
    assert_eq!(taken.details["cause"], "token_taken_over");
    let message = taken.message.as_str();
    assert!(
        message.contains("another application took over this AppID"),
        "{message}"
    );
    assert!(message.contains("AppID of its own"), "{message}");
    assert_eq!(
        s.sim.state.lingxing_tokens().0,
        2,
        "synchub did not take the AppID back"
    );
}
on_both_backends!(an_expired_token_is_renewed_once_and_a_takeover_is_named);

/// The IP whitelist refusing this server shows in the check as forbidden_ip, with where
/// the seller adds the address.
async fn the_ip_whitelist_shows_in_the_check(backend: Backend) {
    let s = setup(backend, 0).await;
    s.sim.state.set_lingxing(LingxingSwitches {
        ip_refused: true,
        ..Default::default()
    });
    let (status, report) = s
        .app
        .post(
            &format!("/v1/connections/{}/check", s.lingxing),
            &s.token,
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], false, "{report}");
    let failed = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["status"] == "failed")
        .expect("a failed check");
    assert_eq!(failed["error_class"], "forbidden_ip", "{failed}");
    assert!(
        failed["remedy"]
            .as_str()
            .unwrap()
            .contains("设置 > 业务配置 > 全局 > 开放接口"),
        "{failed}"
    );
}
on_both_backends!(the_ip_whitelist_shows_in_the_check);

/// Lingxing keeps one live token per AppID: a second connection of the tenant on the same
/// AppID, made or rotated onto it, is refused (409) instead of the two signing each other
/// out. Another tenant's connections are not compared.
async fn a_second_connection_on_one_appid_is_refused(backend: Backend) {
    let s = setup(backend, 0).await;
    let body = |name: &str, app_id: &str| {
        json!({"name": name, "connector": "lingxing", "environment": "production",
               "settings": {"base_url": format!("{}/lingxing", s.sim.address), "store_id": "2"},
               "credentials": {"app_id": app_id, "app_secret": APP_SECRET}})
    };
    let (status, problem) = s
        .app
        .post("/v1/connections", &s.token, body("Lingxing 2", APP_ID))
        .await;
    assert_eq!(status, 409, "{problem}");
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("\"Lingxing\"") && detail.contains("one live token"),
        "{problem}"
    );
    assert!(
        !detail.contains(APP_ID),
        "the AppID is not echoed: {problem}"
    );

    let (status, other) = s
        .app
        .post(
            "/v1/connections",
            &s.token,
            body("Lingxing 2", "ak_SIMLINGXING02"),
        )
        .await;
    assert_eq!(status, 201, "another AppID: {other}");
    let other = other["id"].as_str().unwrap();
    let (status, problem) = s
        .app
        .put(
            &format!("/v1/connections/{other}/credentials"),
            &s.token,
            json!({"credentials": {"app_id": APP_ID, "app_secret": APP_SECRET}}),
        )
        .await;
    assert_eq!(status, 409, "rotated onto the first one's AppID: {problem}");
    let (status, rotated) = s
        .app
        .put(
            &format!("/v1/connections/{}/credentials", s.lingxing),
            &s.token,
            json!({"credentials": {"app_id": APP_ID, "app_secret": APP_SECRET}}),
        )
        .await;
    assert_eq!(status, 200, "its own AppID again: {rotated}");

    let (_, stranger) = s.app.tenant_with_token(&["write"]).await;
    let (status, theirs) = s
        .app
        .post("/v1/connections", &stranger, body("Lingxing", APP_ID))
        .await;
    assert_eq!(status, 201, "another tenant is not compared: {theirs}");
}
on_both_backends!(a_second_connection_on_one_appid_is_refused);
