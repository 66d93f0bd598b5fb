//! The signed and token-exchanging connectors against the simulator, which verifies each
//! call as the platform documents it: Amazon SP-API (Login with Amazon), Shopee v2 and
//! TikTok Shop 202309 signatures. Each lists every page to the last.

use serde_json::{Value, json};
use synchub::connectors::ConnectorRegistry;
use synchub::connectors::client::{ConnectorClient, ErrorClass, NextPage, Vars};
use synchub::sim::Simulator;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

fn client(app: &TestApp, connector: &str, settings: Value, credentials: Value) -> ConnectorClient {
    ConnectorClient::new(
        ConnectorRegistry::built_in()
            .unwrap()
            .get(connector)
            .unwrap(),
        "production",
        settings.as_object().cloned().unwrap(),
        credentials.as_object().cloned().unwrap(),
        &format!("con_{connector}"),
        synchub::ratelimit::RateLimiter::new(app.db.clone()),
        crate::helpers::local_client(),
    )
    .with_clock(app.time.clock())
}

/// Every record of `list_orders`, page by page; returns them and the number of pages.
async fn list_all(
    client: &ConnectorClient,
    cursor: Option<&str>,
) -> Result<(Vec<Value>, usize), synchub::connectors::client::CallError> {
    let (mut records, mut pages, mut next): (Vec<Value>, usize, Option<NextPage>) =
        (Vec::new(), 0, None);
    let vars = match cursor {
        Some(cursor) => Vars::new().with("cursor", cursor),
        None => Vars::new(),
    };
    loop {
        let page = client
            .list_page("list_orders", &vars, next.as_ref())
            .await?;
        records.extend(page.records);
        pages += 1;
        match page.next {
            Some(n) => next = Some(n),
            None => return Ok((records, pages)),
        }
    }
}

/// Amazon: the refresh token is exchanged once for an access token that serves every page,
/// and exchanged again before the token expires; a revoked grant is an auth error.
async fn amazon_orders_with_login_with_amazon(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 250).unwrap();
    // Tokens live an hour, as LWA documents, and are refreshed five minutes early.
    sim.state.register_apps(crate::helpers::sim_apps());
    let app = TestApp::spawn(backend).await;
    let settings = json!({
        "region": "na", "marketplace_ids": ["ATVPDKIKX0DER"], "seller_id": "A2SELLER",
        "base_url": format!("{}/amazon", sim.address),
        "lwa_endpoint": format!("{}/amazon/auth/o2/token", sim.address),
    });
    let credentials = json!({
        "lwa_client_id": "amzn1.application-oa2-client.sim",
        "lwa_client_secret": "lwa-client-secret",
        "refresh_token": "Atzr|seller-grant",
    });
    let amazon = client(&app, "amazon-sp-api", settings.clone(), credentials.clone());
    let (orders, pages) = list_all(&amazon, None).await.unwrap();
    assert_eq!(
        (orders.len(), pages),
        (250, 3),
        "NextToken to the last page"
    );
    assert!(orders[0]["AmazonOrderId"].as_str().is_some());
    assert_eq!(sim.state.lwa_exchanges(), 1, "one token for every page");

    app.time.advance(chrono::Duration::minutes(54));
    list_all(&amazon, None).await.unwrap();
    assert_eq!(sim.state.lwa_exchanges(), 1, "still well within its hour");
    app.time
        .advance(chrono::Duration::minutes(1) + chrono::Duration::seconds(1));
    list_all(&amazon, None).await.unwrap();
    assert_eq!(sim.state.lwa_exchanges(), 2, "refreshed before it expired");

    let mut revoked = credentials.clone();
    revoked["refresh_token"] = json!("Atzr|revoked");
    let err = list_all(&client(&app, "amazon-sp-api", settings, revoked), None)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Auth, "{err}");
    assert!(err.message.contains("invalid_grant"), "{err}");
}
on_both_backends!(amazon_orders_with_login_with_amazon);

/// Shopee: every call signed with the partner key over partner id, path, timestamp, token
/// and shop id; the simulator recomputes it. A wrong key is refused, never retried.
async fn shopee_order_list_signed_v2(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 230).unwrap();
    sim.state.register_apps(crate::helpers::sim_apps());
    let app = TestApp::spawn(backend).await;
    let settings = json!({"partner_id": 2001887, "shop_id": 14701711, "base_url": format!("{}/shopee", sim.address)});
    let credentials = json!({"partner_key": "shopee-partner-key", "access_token": "shop-token", "refresh_token": "r"});
    let shopee = client(&app, "shopee", settings.clone(), credentials.clone());
    let (orders, pages) = list_all(&shopee, Some("2020-01-01T00:00:00Z"))
        .await
        .unwrap();
    assert_eq!((orders.len(), pages), (230, 3), "cursor to the last page");
    assert!(orders[0]["order_sn"].as_str().is_some());

    let mut wrong = credentials;
    wrong["partner_key"] = json!("not-the-partner-key");
    let err = list_all(&client(&app, "shopee", settings, wrong), None)
        .await
        .unwrap_err();
    assert!(!err.class.is_transient(), "{err}");
    assert!(err.message.contains("error_sign"), "{err}");
}
on_both_backends!(shopee_order_list_signed_v2);

/// TikTok Shop: app key, timestamp and sign in the query, the token in x-tts-access-token;
/// the simulator recomputes the sign over the sorted parameters and the body.
async fn tiktok_orders_search_signed(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 120).unwrap();
    sim.state.register_apps(crate::helpers::sim_apps());
    let app = TestApp::spawn(backend).await;
    let settings = json!({"app_key": "6abcdefgh12", "shop_cipher": "ROW_sim", "base_url": format!("{}/tiktok", sim.address)});
    let credentials = json!({"app_secret": "tiktok-app-secret", "access_token": "tts-token", "refresh_token": "r"});
    let tiktok = client(&app, "tiktok-shop", settings.clone(), credentials.clone());
    let (orders, pages) = list_all(&tiktok, None).await.unwrap();
    assert_eq!(
        (orders.len(), pages),
        (120, 2),
        "page_token to the last page"
    );
    assert_eq!(orders[0]["payment"]["currency"], "USD");

    let mut wrong = credentials;
    wrong["app_secret"] = json!("not-the-secret");
    let err = list_all(&client(&app, "tiktok-shop", settings, wrong), None)
        .await
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Auth, "{err}");
    assert!(err.message.contains("Invalid signature"), "{err}");
}
on_both_backends!(tiktok_orders_search_signed);
