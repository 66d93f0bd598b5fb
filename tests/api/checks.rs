//! Connectivity checks over HTTP against the simulator: each failure reported at the step
//! that explains it, with its class and a remedy; checks before a connection is saved.

use serde_json::{Value, json};
use synchub::sim::{Faults, Simulator};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

fn shopify(sim: &Simulator, shop: &str) -> Value {
    json!({
        "name": shop, "connector": "shopify", "environment": "production",
        "settings": {"shop_domain": format!("{shop}.myshopify.com"), "base_url": format!("{}/shopify/{shop}", sim.address)},
        "credentials": {"access_token": "shpat_simulated_0123456789"},
    })
}

async fn run_check(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, report) = app
        .post(&format!("/v1/connections/{id}/check"), token, json!({}))
        .await;
    assert_eq!(status, 200, "{report}");
    report
}

/// A healthy Shopify connection passes every check it has; without its webhook address
/// among the shop's subscriptions, the webhooks check warns and says what to register.
async fn a_healthy_connection_passes_and_a_missing_webhook_is_named(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 3).unwrap();
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let shop = app.connection(&token, shopify(&sim, "acme")).await;
    let id = shop["id"].as_str().unwrap();

    let report = run_check(&app, &token, id).await;
    assert_eq!(
        report["passed"], true,
        "a warning does not fail the report: {report}"
    );
    for name in ["dns", "tcp", "read"] {
        assert_eq!(check(&report, name)["status"], "passed", "{name}: {report}");
    }
    assert_eq!(check(&report, "tls")["status"], "skipped", "plain http");
    let webhooks = check(&report, "webhooks");
    assert_eq!(webhooks["status"], "warning");
    let webhook_url = shop["webhook_url"].as_str().unwrap();
    assert!(
        webhooks["remedy"].as_str().unwrap().contains(webhook_url),
        "{webhooks}"
    );

    sim.state
        .subscribe_webhook("acme", "orders/create", webhook_url);
    let report = run_check(&app, &token, id).await;
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(check(&report, "webhooks")["status"], "passed");
    assert!(check(&report, "read")["duration_ms"].as_u64().is_some());

    let (_, audit) = app.get("/v1/audit", &token).await;
    assert!(audit.to_string().contains("connection.check"));
    let (status, body) = app
        .post(
            &format!("/v1/connections/{id}/check?version=9.9.9"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(status, 400, "a version the tenant cannot run: {body}");
    let (status, report) = app
        .post(
            &format!("/v1/connections/{id}/check?version=1.0.0"),
            &token,
            json!({}),
        )
        .await;
    assert_eq!((status, report["version"].as_str()), (200, Some("1.0.0")));
    // Another tenant's connection is not there.
    let (_, other) = app.tenant_with_token(&["write"]).await;
    let (status, _) = app
        .post(&format!("/v1/connections/{id}/check"), &other, json!({}))
        .await;
    assert_eq!(status, 404);
}
on_both_backends!(a_healthy_connection_passes_and_a_missing_webhook_is_named);

/// Each failure is reported where it happens, with its class, and the checks after it are
/// skipped: an unknown host (dns), a closed port (connect), an IP whitelist refusal
/// (forbidden_ip), a revoked Amazon grant (auth, at the token exchange).
async fn failures_are_classed_where_they_happen(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 3).unwrap();
    sim.state.register_apps(crate::helpers::sim_apps());
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;

    let mut unknown = shopify(&sim, "nowhere");
    unknown["settings"]["base_url"] = json!("http://shop.invalid/shopify/nowhere");
    let unknown = app.connection(&token, unknown).await;
    let report = run_check(&app, &token, unknown["id"].as_str().unwrap()).await;
    assert_eq!(check(&report, "dns")["error_class"], "dns", "{report}");
    assert_eq!(check(&report, "read")["status"], "skipped");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut refused = shopify(&sim, "closed");
    refused["settings"]["base_url"] = json!(format!("http://127.0.0.1:{port}/shopify/closed"));
    let refused = app.connection(&token, refused).await;
    let report = run_check(&app, &token, refused["id"].as_str().unwrap()).await;
    assert_eq!(check(&report, "tcp")["error_class"], "connect", "{report}");

    let shop = app.connection(&token, shopify(&sim, "walled")).await;
    sim.state.set_faults(Faults {
        forbidden_ip: true,
        ..Faults::default()
    });
    let report = run_check(&app, &token, shop["id"].as_str().unwrap()).await;
    let read = check(&report, "read");
    assert_eq!(read["error_class"], "forbidden_ip", "{report}");
    assert!(read["remedy"].as_str().unwrap().contains("IP whitelist"));
    sim.state.set_faults(Faults::default());

    let amazon = app
        .connection(&token, json!({
            "name": "amazon", "connector": "amazon-sp-api", "environment": "production",
            "settings": {"region": "na", "marketplace_ids": ["ATVPDKIKX0DER"], "seller_id": "A2SELLER",
                         "base_url": format!("{}/amazon", sim.address), "lwa_endpoint": format!("{}/amazon/auth/o2/token", sim.address)},
            "credentials": {"lwa_client_id": "amzn1.application-oa2-client.sim", "lwa_client_secret": "lwa-client-secret", "refresh_token": "Atzr|revoked"}}))
        .await;
    let report = run_check(&app, &token, amazon["id"].as_str().unwrap()).await;
    let auth = check(&report, "auth");
    assert_eq!(auth["error_class"], "auth", "{report}");
    assert!(auth["message"].as_str().unwrap().contains("invalid_grant"));
    assert_eq!(check(&report, "read")["status"], "skipped");
}
on_both_backends!(failures_are_classed_where_they_happen);

/// `POST /v1/connections/check` runs the checks on settings not saved yet, and saves
/// nothing; invalid settings are refused as creation would refuse them.
async fn a_connection_is_checked_before_it_is_saved(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 3).unwrap();
    sim.state.register_apps(crate::helpers::sim_apps());
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let amazon = json!({
        "name": "amazon", "connector": "amazon-sp-api", "environment": "production",
        "settings": {"region": "na", "marketplace_ids": ["ATVPDKIKX0DER"], "seller_id": "A2SELLER",
                     "base_url": format!("{}/amazon", sim.address), "lwa_endpoint": format!("{}/amazon/auth/o2/token", sim.address)},
        "credentials": {"lwa_client_id": "amzn1.application-oa2-client.sim", "lwa_client_secret": "lwa-client-secret", "refresh_token": "Atzr|seller-grant"}});
    let (status, report) = app
        .post("/v1/connections/check", &token, amazon.clone())
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(check(&report, "auth")["status"], "passed");
    assert_eq!(check(&report, "read")["status"], "passed");
    assert_eq!(check(&report, "webhooks")["status"], "skipped");
    assert_eq!(
        sim.state.lwa_exchanges(),
        1,
        "the check exchanged the grant"
    );

    let mut invalid = amazon;
    invalid["settings"]["region"] = json!("mars");
    let (status, body) = app.post("/v1/connections/check", &token, invalid).await;
    assert_eq!(status, 400, "{body}");
    let (_, listed) = app.get("/v1/connections", &token).await;
    assert_eq!(listed["data"].as_array().unwrap().len(), 0, "nothing saved");
}
on_both_backends!(a_connection_is_checked_before_it_is_saved);
