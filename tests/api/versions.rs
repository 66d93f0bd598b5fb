//! Connector versions: built-in ones registered at start-up, published ones linted, immutable
//! and private to their tenant, and a connection running the version it is pinned to.

use serde_json::{Value, json};
use synchub::ids::RunId;
use synchub::sim::Simulator;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

const SHOPIFY: &str = include_str!("../../connectors/shopify.toml");

/// The built-in Shopify manifest as version 1.1.0, mapping the order number from the id.
fn shopify_1_1_0() -> String {
    SHOPIFY
        .replace("version = \"1.0.0\"", "version = \"1.1.0\"")
        .replace("number = \"/name\"", "number = \"/id\"")
}

async fn publish(app: &TestApp, token: &str, manifest: &str, changelog: &str) -> (u16, Value) {
    app.post(
        "/v1/connectors/shopify/versions",
        token,
        json!({"manifest": manifest, "changelog": changelog}),
    )
    .await
}

async fn versions_are_linted_immutable_and_private(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, token) = app.tenant_with_token(&["write", "deploy"]).await;

    let (status, listed) = app.get("/v1/connectors/shopify/versions", &token).await;
    assert_eq!(status, 200);
    assert_eq!(listed["data"][0]["version"], "1.0.0");
    assert_eq!(listed["data"][0]["built_in"], true);
    assert_eq!(
        listed["data"][0]["content_hash"].as_str().unwrap().len(),
        64
    );

    let broken = shopify_1_1_0().replace(
        "path = \"/admin/api/{api_version}/orders.json\"",
        "path = \"admin/orders.json\"",
    );
    let (status, body) = publish(&app, &token, &broken, "broken").await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["errors"].as_array().unwrap().iter().any(|e| e["field"]
            .as_str()
            .unwrap()
            .starts_with("manifest.operations.")),
        "every problem with its path: {body}"
    );
    let other_name = shopify_1_1_0().replace("name = \"shopify\"", "name = \"shopify-copy\"");
    let (status, body) = publish(&app, &token, &other_name, "renamed").await;
    assert_eq!(status, 400, "{body}");
    let (status, body) = publish(&app, &token, SHOPIFY, "the same number again").await;
    assert_eq!(status, 409, "a built-in version cannot be replaced: {body}");

    let writer = app.token_for(&tenant, &["write"]).await;
    let (status, _) = publish(&app, &writer, &shopify_1_1_0(), "no deploy scope").await;
    assert_eq!(status, 403);

    let (status, published) =
        publish(&app, &token, &shopify_1_1_0(), "Order number from the id.").await;
    assert_eq!(status, 201, "{published}");
    assert_eq!(published["version"], "1.1.0");
    assert_eq!(published["built_in"], false);
    assert_ne!(published["content_hash"], listed["data"][0]["content_hash"]);
    let (status, again) = publish(&app, &token, &shopify_1_1_0(), "again").await;
    assert_eq!(status, 409, "versions are immutable: {again}");
    let (_, listed) = app.get("/v1/connectors/shopify/versions", &token).await;
    let order: Vec<&str> = listed["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["version"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["1.1.0", "1.0.0"], "newest first");
    let (_, audit) = app.get("/v1/audit", &token).await;
    assert!(audit.to_string().contains("connector.version.publish"));

    // Another tenant neither sees nor runs it.
    let (_, other) = app.tenant_with_token(&["write", "deploy"]).await;
    let (_, theirs) = app.get("/v1/connectors/shopify/versions", &other).await;
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    let (status, body) = app
        .post("/v1/connections", &other, json!({
            "name": "US", "connector": "shopify", "environment": "production", "version": "1.1.0",
            "settings": {"shop_domain": "acme.myshopify.com"}, "credentials": {"access_token": "shpat_0123456789abcdef"}}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errors"][0]["field"], "version");
}
on_both_backends!(versions_are_linted_immutable_and_private);

async fn queue(app: &TestApp, token: &str, flow: &str) -> RunId {
    let (status, run) = app
        .post(&format!("/v1/flows/{flow}/run"), token, json!({}))
        .await;
    assert_eq!(status, 202, "{run}");
    RunId::parse(run["id"].as_str().unwrap()).unwrap()
}

/// A connection runs the version it is pinned to; re-pinning changes the next run.
async fn a_connection_runs_its_pinned_version(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 5).unwrap();
    let app = TestApp::spawn_quiet(backend).await;
    let engine = app.engine();
    let (_, token) = app.tenant_with_token(&["write", "deploy"]).await;
    let (status, _) = publish(&app, &token, &shopify_1_1_0(), "Order number from the id.").await;
    assert_eq!(status, 201);
    let shop = app
        .connection(&token, json!({
            "name": "US", "connector": "shopify", "environment": "production", "version": "1.1.0",
            "settings": {"shop_domain": "acme.myshopify.com", "base_url": format!("{}/shopify/acme", sim.address)},
            "credentials": {"access_token": "shpat_simulated_0123456789"}}))
        .await;
    assert_eq!(
        (shop["version"].as_str(), shop["pinned_by"].as_str()),
        (Some("1.1.0"), Some("hand"))
    );
    let erp = app
        .connection(&token, json!({
            "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
            "settings": {"base_url": format!("{}/erp/acme", sim.address)}, "credentials": {"api_key": "k"}}))
        .await;
    assert_eq!(
        (erp["version"].as_str(), erp["pinned_by"].as_str()),
        (Some("1.0.0"), Some("default"))
    );
    let (_, flow) = app
        .post("/v1/flows", &token, json!({"name": "orders", "stream": "orders", "source": shop["id"], "destination": erp["id"]}))
        .await;
    let first = queue(&app, &token, flow["id"].as_str().unwrap()).await;
    engine.execute(&first).await.unwrap().expect("claimed");
    let (_, shown) = app.get(&format!("/v1/runs/{first}"), &token).await;
    assert_eq!(shown["connector_version"], "1.1.0");
    let order = sim.state.erp_orders("acme").into_iter().next().unwrap();
    assert_eq!(order["number"], order["platform_id"], "1.1.0's mapping");

    let (status, repinned) = app
        .patch(
            &format!("/v1/connections/{}", shop["id"].as_str().unwrap()),
            &token,
            json!({"version": "1.0.0"}),
        )
        .await;
    assert_eq!(status, 200, "{repinned}");
    sim.state.add_orders("acme", 1);
    let second = queue(&app, &token, flow["id"].as_str().unwrap()).await;
    engine.execute(&second).await.unwrap().expect("claimed");
    let (_, shown) = app.get(&format!("/v1/runs/{second}"), &token).await;
    assert_eq!(shown["connector_version"], "1.0.0");
    let newest = sim
        .state
        .erp_orders("acme")
        .into_iter()
        .find(|o| o["number"].as_str().unwrap().starts_with('#'));
    assert!(newest.is_some(), "1.0.0 maps the number from the name");
}
on_both_backends!(a_connection_runs_its_pinned_version);
