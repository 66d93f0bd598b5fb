//! Lingxing's token, signature and answers against the simulated OpenAPI, through the real
//! protocol code and the guarded client: a one-byte change of the sign and a 3-minute-old
//! timestamp are refused, refresh tokens are single-use, a second exchange for the AppID
//! makes the first token answer 2001005, and the whitelist and in-flight cap answer as
//! Lingxing documents, each classified with what to do.

use chrono::Utc;
use serde_json::{Value, json};
use synchub::connectors::client::ErrorClass;
use synchub::connectors::lingxing::{self, App};
use synchub::sim::{LingxingSwitches, Simulator};

use crate::helpers::local_client;

const APP_ID: &str = "ak_SIMLINGXING01";
const APP_SECRET: &str = "lingxing+secret/=&1";
const INVENTORY: &str = "/erp/sc/routing/data/local_inventory/inventoryDetails";

fn sim() -> Simulator {
    let sim = Simulator::start("127.0.0.1:0", 1).unwrap();
    let mut apps = synchub::sim::signed::AppRegistration::default();
    apps.lingxing.insert(APP_ID.into(), APP_SECRET.into());
    sim.state.register_apps(apps);
    sim.state
        .set_erp_stock(APP_ID, &[("SKU-1".into(), 7), ("SKU-2".into(), 0)]);
    sim
}

fn base(sim: &Simulator) -> String {
    format!("{}/lingxing", sim.address)
}

/// A signed inventory call; `tamper` may change the signed request before it is sent.
async fn inventory(
    sim: &Simulator,
    token: &str,
    timestamp: i64,
    tamper: impl FnOnce(&mut reqwest::Request),
) -> Value {
    let http = local_client();
    let mut request = http
        .post(format!("{}{INVENTORY}", base(sim)))
        .json(&json!({"offset": 0, "length": 100, "wid": "1"}))
        .build()
        .unwrap();
    lingxing::sign_request(&mut request, APP_ID, token, timestamp).unwrap();
    tamper(&mut request);
    http.execute(request).await.unwrap().json().await.unwrap()
}

fn app(sim: &Simulator) -> (String, &'static str, &'static str) {
    (base(sim), APP_ID, APP_SECRET)
}

/// A token pair from the AppID and AppSecret.
async fn issued(sim: &Simulator) -> synchub::connectors::token_refresh::RefreshedTokens {
    let (base, app_id, app_secret) = app(sim);
    let app = App {
        base_url: &base,
        app_id,
        app_secret,
    };
    lingxing::exchange(&local_client(), &app, Utc::now())
        .await
        .unwrap()
}

#[tokio::test]
async fn signed_calls_pass_and_forged_or_stale_ones_do_not() {
    let sim = sim();
    let tokens = issued(&sim).await;
    let now = Utc::now().timestamp();

    let answer = inventory(&sim, &tokens.access_token, now, |_| {}).await;
    let data = lingxing::answer_data(&answer).unwrap();
    assert_eq!(data[0]["sku"], "SKU-1");
    assert_eq!(data[0]["product_valid_num"], 7);

    // One byte of the sign changed.
    let forged = inventory(&sim, &tokens.access_token, now, |request| {
        let pairs: Vec<(String, String)> = request.url().query_pairs().into_owned().collect();
        let mut query = request.url().clone();
        query.query_pairs_mut().clear();
        for (k, v) in pairs {
            let v = if k == "sign" {
                let mut bytes = v.into_bytes();
                bytes[0] = if bytes[0] == b'A' { b'B' } else { b'A' };
                String::from_utf8(bytes).unwrap()
            } else {
                v
            };
            query.query_pairs_mut().append_pair(&k, &v);
        }
        *request.url_mut() = query;
    })
    .await;
    let refused = lingxing::answer_data(&forged).unwrap_err();
    assert_eq!(refused.class, ErrorClass::Config, "{}", refused.message);
    assert!(refused.message.contains("2001006"));

    // Signed three minutes ago: past the sign's two minutes.
    let stale = inventory(&sim, &tokens.access_token, now - 180, |_| {}).await;
    let refused = lingxing::answer_data(&stale).unwrap_err();
    assert!(refused.message.contains("2001007"), "{}", refused.message);

    // A changed body no longer matches its sign.
    let changed = inventory(&sim, &tokens.access_token, now, |request| {
        *request.body_mut() = Some(r#"{"offset":0,"length":800,"wid":"1"}"#.into());
    })
    .await;
    assert!(
        lingxing::answer_data(&changed)
            .unwrap_err()
            .message
            .contains("2001006")
    );
}

#[tokio::test]
async fn tokens_follow_lingxings_lifecycle() {
    let sim = sim();
    let (base, app_id, app_secret) = app(&sim);
    let app = App {
        base_url: &base,
        app_id,
        app_secret,
    };
    let http = local_client();
    let first = lingxing::exchange(&http, &app, Utc::now()).await.unwrap();
    assert!(first.access_expires_at > Utc::now() + chrono::Duration::minutes(119));

    // A refresh token is spent by its first use.
    let refreshed = lingxing::refresh(&http, &app, &first.refresh_token, Utc::now())
        .await
        .unwrap();
    let again = lingxing::refresh(&http, &app, &first.refresh_token, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(again.class, ErrorClass::Auth);
    assert!(
        again.message.contains("2001009") && again.message.contains("new token exchange"),
        "{}",
        again.message
    );
    assert_eq!(sim.state.lingxing_tokens(), (1, 1));
    let now = Utc::now().timestamp();
    assert!(
        lingxing::answer_data(&inventory(&sim, &refreshed.access_token, now, |_| {}).await).is_ok()
    );

    // Another tool exchanges on the same AppID: our token answers 2001005.
    let theirs = lingxing::exchange(&http, &app, Utc::now()).await.unwrap();
    let ours = lingxing::answer_data(&inventory(&sim, &refreshed.access_token, now, |_| {}).await)
        .unwrap_err();
    assert_eq!(ours.class, ErrorClass::Auth);
    assert!(
        ours.message
            .contains("another application took over this AppID"),
        "{}",
        ours.message
    );
    assert!(
        lingxing::answer_data(&inventory(&sim, &theirs.access_token, now, |_| {}).await).is_ok()
    );

    // A wrong secret.
    let wrong = App {
        base_url: &base,
        app_id,
        app_secret: "nope",
    };
    let refused = lingxing::exchange(&http, &wrong, Utc::now())
        .await
        .unwrap_err();
    assert!(refused.message.contains("2001002"), "{}", refused.message);
}

#[tokio::test]
async fn the_whitelist_and_the_in_flight_cap_answer_as_documented() {
    let sim = sim();
    let tokens = issued(&sim).await;
    let now = Utc::now().timestamp();

    sim.state.set_lingxing(LingxingSwitches {
        ip_refused: true,
        ..Default::default()
    });
    let refused = lingxing::answer_data(&inventory(&sim, &tokens.access_token, now, |_| {}).await)
        .unwrap_err();
    assert_eq!(refused.class, ErrorClass::Forbidden);
    assert!(
        refused
            .remedy
            .as_deref()
            .unwrap_or_default()
            .contains("IP whitelist (设置 > 业务配置 > 全局 > 开放接口)"),
        "{}",
        refused.message
    );

    // Inventory details allow one request in flight per AppID.
    sim.state.set_lingxing(LingxingSwitches {
        hold_ms: 400,
        ..Default::default()
    });
    let (a, b) = tokio::join!(
        inventory(&sim, &tokens.access_token, now, |_| {}),
        inventory(&sim, &tokens.access_token, now, |_| {})
    );
    let outcomes = [
        lingxing::answer_data(&a).map(|_| ()),
        lingxing::answer_data(&b).map(|_| ()),
    ];
    assert_eq!(
        outcomes.iter().filter(|o| o.is_ok()).count(),
        1,
        "{outcomes:?}"
    );
    let limited = outcomes.iter().find_map(|o| o.clone().err()).unwrap();
    assert_eq!(limited.class, ErrorClass::RateLimited);
}
