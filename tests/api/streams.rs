//! Each stream end to end against the simulator: orders from Amazon, Shopee and TikTok Shop
//! mapped into unified orders in the ERP; stock levels from the ERP to every marketplace;
//! shipments from the ERP to Shopify as fulfillments with tracking.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use synchub::ids::RunId;
use synchub::sim::catalogue::{lines_for, money};
use synchub::sim::{Faults, Simulator};
use synchub::sync::{RunReport, SyncEngine};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

struct Setup {
    app: TestApp,
    sim: Simulator,
    engine: SyncEngine,
    token: String,
    erp: String,
}

async fn setup(backend: Backend, seed_orders: usize) -> Setup {
    let sim = Simulator::start("127.0.0.1:0", seed_orders).unwrap();
    sim.state.register_apps(crate::helpers::sim_apps());
    // The test drives the engine itself: no background scheduler or workers.
    let app = TestApp::spawn_quiet(backend).await;
    let engine = app.engine();
    let (_, token) = app.tenant_with_token(&["write"]).await;
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
    Setup {
        app,
        sim,
        engine,
        token,
        erp: erp["id"].as_str().unwrap().to_string(),
    }
}

impl Setup {
    /// A marketplace connection to the simulator: (connector, settings, credentials).
    async fn marketplace(&self, platform: &str) -> String {
        let address = &self.sim.address;
        let (connector, settings, credentials) = match platform {
            "shopify" => (
                "shopify",
                json!({"shop_domain": "acme.myshopify.com", "location_id": "gid://shopify/Location/655441491", "base_url": format!("{address}/shopify/acme")}),
                json!({"access_token": "shpat_simulated_0123456789"}),
            ),
            "shopify-eu" => (
                "shopify",
                json!({"shop_domain": "acme-eu.myshopify.com", "location_id": "gid://shopify/Location/7", "base_url": format!("{address}/shopify/acme-eu")}),
                json!({"access_token": "shpat_simulated_eu"}),
            ),
            "amazon" | "amazon-revoked" => (
                "amazon-sp-api",
                json!({"region": "na", "marketplace_ids": ["ATVPDKIKX0DER"], "seller_id": "A2SELLER",
                       "base_url": format!("{address}/amazon"), "lwa_endpoint": format!("{address}/amazon/auth/o2/token")}),
                json!({"lwa_client_id": "amzn1.application-oa2-client.sim", "lwa_client_secret": "lwa-client-secret",
                       "refresh_token": if platform == "amazon" { "Atzr|seller-grant" } else { "Atzr|revoked" }}),
            ),
            "shopee" => (
                "shopee",
                json!({"partner_id": 2001887, "shop_id": 14701711, "base_url": format!("{address}/shopee")}),
                json!({"partner_key": "shopee-partner-key", "access_token": "shop-token", "refresh_token": "r"}),
            ),
            "tiktok" => (
                "tiktok-shop",
                json!({"app_key": "6abcdefgh12", "shop_cipher": "ROW_sim", "base_url": format!("{address}/tiktok")}),
                json!({"app_secret": "tiktok-app-secret", "access_token": "tts-token", "refresh_token": "r"}),
            ),
            other => panic!("no simulated {other}"),
        };
        let connection = self
            .app
            .connection(&self.token, json!({"name": platform, "connector": connector, "environment": "production", "settings": settings, "credentials": credentials}))
            .await;
        connection["id"].as_str().unwrap().to_string()
    }

    async fn flow(&self, stream: &str, source: &str, destination: &str) -> String {
        let (status, flow) = self
            .app
            .post("/v1/flows", &self.token, json!({"name": format!("{stream} {source}"), "stream": stream, "source": source, "destination": destination}))
            .await;
        assert_eq!(status, 201, "{flow}");
        flow["id"].as_str().unwrap().to_string()
    }

    /// Queues a run of the flow and executes it here.
    async fn run(&self, flow: &str) -> RunReport {
        let (status, run) = self
            .app
            .post(&format!("/v1/flows/{flow}/run"), &self.token, json!({}))
            .await;
        assert_eq!(status, 202, "{run}");
        let id = RunId::parse(run["id"].as_str().unwrap()).unwrap();
        self.engine.execute(&id).await.unwrap().expect("claimed")
    }

    fn requests(&self) -> u64 {
        self.sim.state.stats().requests
    }
}

fn succeeded(report: &RunReport) -> (&str, i64, i64) {
    (
        report.status.as_str(),
        report.records_read,
        report.records_written,
    )
}

/// The unified lines the simulator's order carries: units per SKU at the unit price.
fn expected_lines(order_id: &str) -> Value {
    json!(
        lines_for(order_id)
            .into_iter()
            .map(
                |(sku, units, cents)| json!({"sku": sku, "quantity": units, "price": money(cents)})
            )
            .collect::<Vec<_>>()
    )
}

/// The ERP's orders from one connection, by platform id.
fn erp_orders_from(sim: &Simulator, connection: &str) -> BTreeMap<String, Value> {
    sim.state
        .erp_orders("acme")
        .into_iter()
        .filter(|o| o["source_connection"] == connection)
        .map(|o| (o["platform_id"].as_str().unwrap().to_string(), o))
        .collect()
}

/// Amazon lists orders without items: getOrderItems completes each, and ItemPrice (the
/// price of all units) becomes a unit price.
async fn amazon_orders_arrive_with_their_items(backend: Backend) {
    let s = setup(backend, 25).await;
    let amazon = s.marketplace("amazon").await;
    let flow = s.flow("orders", &amazon, &s.erp).await;
    let report = s.run(&flow).await;
    assert_eq!(succeeded(&report), ("succeeded", 25, 25), "{report:?}");
    let orders = erp_orders_from(&s.sim, &amazon);
    assert_eq!(orders.len(), 25);
    for (id, order) in &orders {
        let sim_id = order["number"].as_str().unwrap();
        assert_eq!(id, sim_id);
        assert_eq!(order["lines"], expected_lines(sim_id), "order {id}");
        assert_eq!(order["currency"], "USD");
        assert!(order["updated_at"].as_str().unwrap().ends_with(".000Z"));
    }
    assert_eq!(
        s.requests(),
        1 + 1 + 25 + 1,
        "token exchange, one list page, one getOrderItems per order, one batch write"
    );
}
on_both_backends!(amazon_orders_arrive_with_their_items);

/// Login with Amazon refuses the seller's grant: the run dead-letters at once (no retry
/// brings a revoked grant back) and, besides run_failed, a critical
/// credential_refresh_failed event says the credentials stopped working.
async fn a_revoked_amazon_grant_is_a_credential_failure(backend: Backend) {
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    use synchub::store::entities::alert_event;
    let s = setup(backend, 5).await;
    let amazon = s.marketplace("amazon-revoked").await;
    let flow = s.flow("orders", &amazon, &s.erp).await;
    let report = s.run(&flow).await;
    assert_eq!(report.status.as_str(), "dead", "{report:?}");
    assert_eq!(report.error_class.as_deref(), Some("auth"));
    let events = alert_event::Entity::find()
        .filter(alert_event::Column::Kind.eq("credential_refresh_failed"))
        .all(&s.app.db)
        .await
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].severity, "critical");
    assert_eq!(events[0].flow_id.as_deref(), Some(flow.as_str()));
    assert!(
        events[0].message.contains("invalid_grant"),
        "{}",
        events[0].message
    );
    assert_eq!(s.requests(), 1, "one token exchange, nothing else");
}
on_both_backends!(a_revoked_amazon_grant_is_a_credential_failure);

/// Shopee's order list holds order_sn only: get_order_detail completes 50 at a time, with
/// Unix-second timestamps made UTC.
async fn shopee_orders_are_completed_fifty_at_a_time(backend: Backend) {
    let s = setup(backend, 120).await;
    let shopee = s.marketplace("shopee").await;
    let flow = s.flow("orders", &shopee, &s.erp).await;
    let report = s.run(&flow).await;
    assert_eq!(succeeded(&report), ("succeeded", 120, 120), "{report:?}");
    assert_eq!(
        s.requests(),
        2 + 3 + 2,
        "two list pages of 100 and 20, details for 50 + 50 and 20, one batch write a page"
    );
    let orders = erp_orders_from(&s.sim, &shopee);
    assert_eq!(orders.len(), 120);
    let (_, order) = orders.iter().next().unwrap();
    let first_line = &order["lines"][0];
    assert!(first_line["sku"].as_str().unwrap().starts_with("SKU-"));
    assert_eq!(order["currency"], "SGD");
    assert!(order["created_at"].as_str().unwrap().ends_with("Z"));
}
on_both_backends!(shopee_orders_are_completed_fifty_at_a_time);

/// TikTok lists one line item per unit: the ERP gets one line per SKU with its unit count,
/// and the recipient's address.
async fn tiktok_units_become_lines_with_quantities(backend: Backend) {
    let s = setup(backend, 40).await;
    let tiktok = s.marketplace("tiktok").await;
    let flow = s.flow("orders", &tiktok, &s.erp).await;
    let report = s.run(&flow).await;
    assert_eq!(succeeded(&report), ("succeeded", 40, 40), "{report:?}");
    let orders = erp_orders_from(&s.sim, &tiktok);
    assert_eq!(orders.len(), 40);
    let mut multi_unit = 0;
    for order in orders.values() {
        // The simulator's ids are the dashed form's digits.
        let lines = order["lines"].as_array().unwrap();
        let units: i64 = lines.iter().map(|l| l["quantity"].as_i64().unwrap()).sum();
        assert!(units >= 1);
        multi_unit += lines
            .iter()
            .filter(|l| l["quantity"].as_i64() > Some(1))
            .count();
    }
    assert!(multi_unit > 0, "units of one SKU are counted into one line");
    // The recipient's state and city are district_info entries, picked by their level name.
    let shipping = &orders.values().next().unwrap()["shipping"];
    assert_eq!(
        (
            shipping["name"].as_str(),
            shipping["country_code"].as_str(),
            shipping["state"].as_str(),
            shipping["city"].as_str(),
            shipping["address_line1"].as_str(),
            shipping["postal_code"].as_str(),
        ),
        (
            Some("Jordan Lee"),
            Some("US"),
            Some("New York"),
            Some("New York"),
            Some("350 5th Ave"),
            Some("10001")
        ),
        "{shipping}"
    );
}
on_both_backends!(tiktok_units_become_lines_with_quantities);

/// One ERP's stock reaches Shopify, Amazon, Shopee and TikTok; a SKU no marketplace lists is
/// skipped without failing the run; a later run sends only what changed and reuses the
/// looked-up ids.
async fn stock_levels_reach_every_marketplace(backend: Backend) {
    let s = setup(backend, 0).await;
    let levels: Vec<(String, i64)> = (1..=5)
        .map(|n| (format!("SKU-{n}"), n * 10))
        .chain([("GHOST-1".to_string(), 3)])
        .collect();
    s.sim.state.set_erp_stock("acme", &levels);
    let expected: BTreeMap<String, i64> = (1..=5).map(|n| (format!("SKU-{n}"), n * 10)).collect();
    let accounts = [
        ("shopify", "shopify", "acme"),
        ("amazon", "amazon", "A2SELLER"),
        ("shopee", "shopee", "14701711"),
        ("tiktok", "tiktok", "ROW_sim"),
    ];
    let mut flows = Vec::new();
    for (platform, sim_platform, account) in accounts {
        let marketplace = s.marketplace(platform).await;
        let flow = s.flow("inventory", &s.erp, &marketplace).await;
        let report = s.run(&flow).await;
        assert_eq!(
            succeeded(&report),
            ("succeeded", 6, 5),
            "{platform}: {report:?}"
        );
        assert_eq!(
            s.sim.state.marketplace_stock(sim_platform, account),
            expected,
            "{platform}"
        );
        flows.push((platform, flow, sim_platform, account));
    }

    s.sim
        .state
        .set_erp_stock("acme", &[("SKU-2".to_string(), 0)]);
    for (platform, flow, sim_platform, account) in &flows {
        let before = s.requests();
        let report = s.run(flow).await;
        // The ERP lists changes from the cursor inclusive: GHOST-1, the last change the
        // first run saw, comes again; its version is not new, so it is not written.
        assert_eq!(
            succeeded(&report),
            ("succeeded", 2, 1),
            "{platform}: {report:?}"
        );
        assert_eq!(
            s.sim.state.marketplace_stock(sim_platform, account)["SKU-2"],
            0
        );
        assert_eq!(
            s.requests() - before,
            3,
            "{platform}: one ERP page, GHOST-1 looked up again (not found is not cached: \
             a product listed later must sync), one write; SKU-2's ids are cached"
        );
    }
}
on_both_backends!(stock_levels_reach_every_marketplace);

/// An error the platform reports in a 200 answer (Shopify's userErrors for a location that
/// does not exist) fails the run as permanent: it goes to the dead letters, not round and
/// round in retries.
async fn errors_in_successful_answers_fail_the_write(backend: Backend) {
    let s = setup(backend, 0).await;
    s.sim
        .state
        .set_erp_stock("acme", &[("SKU-1".to_string(), 4)]);
    let connection = s
        .app
        .connection(&s.token, json!({"name": "misconfigured", "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": "acme.myshopify.com", "location_id": "655441491", "base_url": format!("{}/shopify/acme", s.sim.address)},
            "credentials": {"access_token": "shpat_simulated_0123456789"}}))
        .await;
    let flow = s
        .flow("inventory", &s.erp, connection["id"].as_str().unwrap())
        .await;
    let report = s.run(&flow).await;
    assert_eq!(report.status.as_str(), "dead", "{report:?}");
    assert_eq!(report.error_class.as_deref(), Some("client_error"));
    assert!(s.sim.state.marketplace_stock("shopify", "acme").is_empty());
}
on_both_backends!(errors_in_successful_answers_fail_the_write);

/// Shipments: the ERP ships orders from two Shopify stores; each store's flow fulfils its
/// own orders once, with tracking. An outage mid-run is retried from storage and the
/// retry fulfils nothing twice (fulfilled orders are closed and skipped).
async fn shipments_fulfil_each_stores_orders_once(backend: Backend) {
    let s = setup(backend, 20).await;
    let us = s.marketplace("shopify").await;
    let eu = s.marketplace("shopify-eu").await;
    for store in [&us, &eu] {
        let orders = s.flow("orders", store, &s.erp).await;
        assert_eq!(s.run(&orders).await.records_written, 20);
    }
    let shipped = s.sim.state.ship_erp_orders("acme", 30);
    assert_eq!(shipped.len(), 30);
    let shipped_us = shipped
        .iter()
        .filter(|sh| sh["source_connection"] == us.as_str())
        .count();
    let us_shipments = s.flow("shipments", &s.erp, &us).await;
    let eu_shipments = s.flow("shipments", &s.erp, &eu).await;

    // The outage starts after the ERP page, two lookups and the first fulfillment.
    s.sim.state.set_faults(Faults {
        fail_after_requests: Some(4),
        ..Faults::default()
    });
    let report = s.run(&us_shipments).await;
    assert_eq!(report.status.as_str(), "retrying", "{report:?}");
    assert_eq!(s.sim.state.shop_fulfillments("acme").len(), 1);
    s.sim.state.set_faults(Faults::default());
    let (status, runs) = s
        .app
        .get(&format!("/v1/flows/{us_shipments}/runs"), &s.token)
        .await;
    assert_eq!(status, 200);
    let run_id = RunId::parse(runs["data"][0]["id"].as_str().unwrap()).unwrap();
    // Due at once for the test: the backoff itself is tested elsewhere.
    sea_orm::ConnectionTrait::execute_unprepared(
        &s.app.db,
        &format!("UPDATE runs SET next_attempt_at = '2000-01-01T00:00:00Z' WHERE id = '{run_id}'"),
    )
    .await
    .unwrap();
    let report = s.engine.execute(&run_id).await.unwrap().expect("claimed");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");

    let fulfilled = s.sim.state.shop_fulfillments("acme");
    assert_eq!(fulfilled.len(), shipped_us, "every shipped US order, once");
    let one = fulfilled.values().next().unwrap();
    assert_eq!(one["tracking_company"], "UPS");
    assert!(
        one["tracking_number"]
            .as_str()
            .unwrap()
            .starts_with("1Z999AA1")
    );
    assert!(
        s.sim.state.shop_fulfillments("acme-eu").is_empty(),
        "not the EU store's"
    );

    let report = s.run(&eu_shipments).await;
    assert_eq!(
        report.records_written as usize,
        30 - shipped_us,
        "{report:?}"
    );
    assert_eq!(
        s.sim.state.shop_fulfillments("acme-eu").len(),
        30 - shipped_us
    );

    s.sim.state.ship_erp_orders("acme", 10);
    let report = s.run(&us_shipments).await;
    let report_eu = s.run(&eu_shipments).await;
    assert_eq!(report.records_written + report_eu.records_written, 10);
    assert_eq!(
        s.sim.state.shop_fulfillments("acme").len()
            + s.sim.state.shop_fulfillments("acme-eu").len(),
        40
    );
}
on_both_backends!(shipments_fulfil_each_stores_orders_once);

/// Flows refuse a connector that cannot play its end of the stream.
async fn flows_refuse_connectors_without_the_stream(backend: Backend) {
    let s = setup(backend, 0).await;
    // The generic ERP takes orders but does not read them: it cannot be an orders source.
    let (status, body) = s
        .app
        .post(
            "/v1/flows",
            &s.token,
            json!({"name": "backwards", "stream": "orders", "source": s.erp, "destination": s.erp}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let amazon = s.marketplace("amazon").await;
    let (status, body) = s
        .app
        .post("/v1/flows", &s.token, json!({"name": "no fulfilments", "stream": "shipments", "source": s.erp, "destination": amazon}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("does not take shipments"),
        "{body}"
    );
}
on_both_backends!(flows_refuse_connectors_without_the_stream);
