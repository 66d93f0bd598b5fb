//! Connect links and the credential keeper: a refused refresh puts a fresh link into the
//! alert ops receive, following it rotates the same connection's credentials and the next
//! run works; Shopify's expiring tokens are refreshed once however many keepers look.

use std::sync::{Arc, Mutex};

use chrono::{Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use synchub::connections::keeper::{CredentialKeeper, KeeperPolicy};
use synchub::connectors::ConnectorRegistry;
use synchub::connectors::versions::Versions;
use synchub::ratelimit::RateLimiter;
use synchub::store::entities::audit_event;

use crate::connect::{Setup, setup};
use crate::helpers::Backend;
use crate::on_both_backends;

/// The connect service as the app builds it, for a keeper driven by hand.
fn connect_service(s: &Setup) -> synchub::connect::Connect {
    let settings = s.app.settings();
    let registry = Arc::new(ConnectorRegistry::built_in().unwrap());
    let connections = synchub::connections::Connections::new(
        s.app.db.clone(),
        s.app.vault(),
        registry.clone(),
        &settings,
    )
    .unwrap()
    .with_clock(s.app.time.clock());
    synchub::connect::Connect::new(
        s.app.db.clone(),
        s.app.vault(),
        registry,
        connections,
        crate::helpers::local_client(),
        s.app.time.clock(),
        s.app.url(""),
        settings.connect.clone(),
    )
}

/// A keeper whose clock runs `ahead` of the app's.
fn keeper(s: &Setup, ahead: Arc<Mutex<Duration>>) -> CredentialKeeper {
    let registry = Arc::new(ConnectorRegistry::built_in().unwrap());
    let app_clock = s.app.time.clock();
    CredentialKeeper::new(
        s.app.db.clone(),
        s.app.vault(),
        Versions::new(s.app.db.clone(), registry),
        RateLimiter::new(s.app.db.clone()),
        KeeperPolicy::default(),
        synchub::netpolicy::OutboundPolicy::allowing_private(),
    )
    .unwrap()
    .with_clock(synchub::clock::Clock::from_fn(move || {
        app_clock.now() + *ahead.lock().unwrap()
    }))
    .with_reauthorization(Arc::new(connect_service(s)))
}

/// The loops this file drives by hand.
const WORKERS_OFF: &[(&str, &str)] = &[
    ("SYNCHUB_WORKERS__ENABLED", "false"),
    ("SYNCHUB_CREDENTIALS__ENABLED", "false"),
    ("SYNCHUB_SCHEDULER__ENABLED", "false"),
];

/// A Shopify store connected through a link (an expiring offline token); its id.
async fn shopify_connected(s: &Setup) -> String {
    s.shopify_app().await;
    let done = s
        .get(
            &s.to_callback(s.shopify_session().await["url"].as_str().unwrap())
                .await,
        )
        .await;
    url::Url::parse(&done.location)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "connection_id")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

async fn orders_flow(s: &Setup, source: &str) -> String {
    let erp = s
        .app
        .connection(&s.token, json!({"name": format!("ERP for {source}"), "connector": "generic-rest-erp", "environment": "production",
            "settings": {"base_url": format!("{}/erp/reauth", s.sim.address)}, "credentials": {"api_key": "erp-key"}}))
        .await;
    let (status, flow) = s
        .app
        .post(
            "/v1/flows",
            &s.token,
            json!({"name": format!("orders of {source}"), "stream": "orders", "source": source,
              "destination": erp["id"], "schedule": {"every_seconds": 3600}, "enabled": false}),
        )
        .await;
    assert_eq!(status, 201, "{flow}");
    flow["id"].as_str().unwrap().to_string()
}

/// Triggers the flow, executes what is due and returns the run's view.
async fn run_once(s: &Setup, flow: &str) -> Value {
    let (status, run) = s
        .app
        .post(&format!("/v1/flows/{flow}/run"), &s.token, json!({}))
        .await;
    assert_eq!(status, 202, "{run}");
    let engine = s.app.engine();
    s.app.drain_runs(&engine).await;
    s.app
        .get(
            &format!("/v1/runs/{}", run["id"].as_str().unwrap()),
            &s.token,
        )
        .await
        .1
}

/// A Shopee refresh token the platform refuses: the DingTalk message of the rule carries a
/// connect link (valid a day); the seller follows it, the same connection gets new tokens
/// (audited as a re-authorisation), and the next run succeeds.
async fn a_refused_refresh_sends_a_link_that_repairs_the_connection(backend: Backend) {
    let s = setup(
        backend,
        &[
            ("SYNCHUB_WORKERS__ENABLED", "false"),
            ("SYNCHUB_CREDENTIALS__ENABLED", "false"),
            ("SYNCHUB_ALERTS__ENABLED", "false"),
            ("SYNCHUB_SCHEDULER__ENABLED", "false"),
        ],
    )
    .await;
    s.platform_app(
        &s.token,
        "shopee",
        json!({"partner_id": 2001887, "partner_key": "shopee-partner-key"}),
    )
    .await;
    s.sim
        .state
        .register_robot("reauth-room", Some("SECreauth".into()));
    let (status, channel) = s
        .app
        .post(
            "/v1/alert-channels",
            &s.token,
            json!({"name": "ops", "kind": "dingtalk", "secret": "SECreauth",
              "url": format!("{}/dingtalk/robot/send?access_token=reauth-room", s.sim.address)}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let (status, _) = s
        .app
        .post(
            "/v1/alert-rules",
            &s.token,
            json!({"name": "credentials", "kinds": ["credential_refresh_failed"],
              "severity": "critical", "channels": [channel["id"]]}),
        )
        .await;
    assert_eq!(status, 201);
    let shop = s
        .app
        .connection(&s.token, json!({"name": "SG shop", "connector": "shopee", "environment": "production",
            "settings": {"partner_id": 2001887, "shop_id": 14701711, "base_url": format!("{}/shopee", s.sim.address)},
            "credentials": {"partner_key": "shopee-partner-key", "access_token": "at-gone", "refresh_token": "rt-revoked"},
            "credential_expires_at": {"access_token": Utc::now() + Duration::minutes(5)}}))
        .await;
    let id = shop["id"].as_str().unwrap().to_string();
    let flow = orders_flow(&s, &id).await;

    let keeper = keeper(&s, Arc::new(Mutex::new(Duration::zero())));
    assert_eq!(keeper.tick().await.unwrap(), 1);
    assert_eq!(
        s.view(&id).await["authorization"]["status"],
        "reauthorization_required"
    );
    let alerter = synchub::alerts::Alerter::new(
        s.app.db.clone(),
        synchub::alerts::AlertChannels::new(
            s.app.db.clone(),
            s.app.vault(),
            synchub::netpolicy::OutboundPolicy::allowing_private(),
        )
        .unwrap(),
        RateLimiter::new(s.app.db.clone()),
        s.app.url(""),
    );
    alerter.tick().await.unwrap();
    let messages = s.sim.state.chat_messages("reauth-room");
    assert_eq!(messages.len(), 1);
    let text = messages[0].to_string();
    let start = text
        .find(&s.app.url("/connect/"))
        .unwrap_or_else(|| panic!("no link in {text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || ":/.-_".contains(*c))
        .collect();
    assert!(text.contains("valid until"), "{text}");

    let page = s.get(&link).await;
    assert!(
        page.body.contains("Authorise Shopee again") && page.body.contains("SG shop"),
        "{}",
        page.body
    );
    let done = s.get(&s.to_callback(&link).await).await;
    assert_eq!(
        done.status, 200,
        "no return URL: our own page: {}",
        done.body
    );
    assert!(done.body.contains("Your store is connected"));

    let view = s.view(&id).await;
    assert_eq!(view["authorization"]["status"], "authorized");
    assert_eq!(view["authorization"]["by"], "credential-keeper");
    assert_eq!(view["credential_refresh_failures"], 0);
    assert_eq!(
        s.connections().await,
        2,
        "the shop and its ERP: no new connection"
    );
    let audited = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("connection.reauthorize"))
        .filter(audit_event::Column::ResourceId.eq(id.clone()))
        .count(&s.app.db)
        .await
        .unwrap();
    assert_eq!(audited, 1);
    let run = run_once(&s, &flow).await;
    assert_eq!(run["status"], "succeeded", "{run}");
}
on_both_backends!(a_refused_refresh_sends_a_link_that_repairs_the_connection);

/// A Shopify connection with an expiring offline token: once the hour is nearly up, two
/// keepers look at once and exactly one refreshes; the old access token is revoked (only one
/// expiring token per shop is live), the new pair is stored, and a run uses it.
async fn shopify_expiring_tokens_are_refreshed_once(backend: Backend) {
    let s = setup(backend, WORKERS_OFF).await;
    let id = shopify_connected(&s).await;
    let before = s.view(&id).await;
    let flow = orders_flow(&s, &id).await;
    assert_eq!(run_once(&s, &flow).await["status"], "succeeded");

    // Not yet: an hour's token with 30 minutes' margin is left alone for half an hour.
    let ahead = Arc::new(Mutex::new(Duration::zero()));
    let (first, second) = (keeper(&s, ahead.clone()), keeper(&s, ahead.clone()));
    first.tick().await.unwrap();
    assert_eq!(s.sim.state.consent_trades().1, 0);
    *ahead.lock().unwrap() = Duration::minutes(40);
    let (a, b) = tokio::join!(first.tick(), second.tick());
    assert_eq!(
        a.unwrap() + b.unwrap(),
        1,
        "one keeper claimed the connection"
    );
    assert_eq!(s.sim.state.consent_trades().1, 1, "refreshed exactly once");

    let after = s.view(&id).await;
    assert_ne!(
        before["credentials"]["access_token"],
        after["credentials"]["access_token"]
    );
    assert_ne!(
        before["credentials"]["refresh_token"],
        after["credentials"]["refresh_token"]
    );
    assert!(
        after["credential_expiry"]["access_token"].as_str()
            > before["credential_expiry"]["access_token"].as_str()
    );
    s.app.time.advance(Duration::minutes(40));
    assert_eq!(
        run_once(&s, &flow).await["status"],
        "succeeded",
        "the run uses the new token"
    );
}
on_both_backends!(shopify_expiring_tokens_are_refreshed_once);

/// A run that spans a token refresh: the keeper replaces the Shopify token while the run is
/// between pages, Shopify revokes the old one, and the run carries on with the new one from
/// the page it had reached instead of failing.
async fn a_run_that_spans_a_refresh_carries_on(backend: Backend) {
    let s = setup(backend, WORKERS_OFF).await;
    let id = shopify_connected(&s).await;
    let flow = orders_flow(&s, &id).await;
    s.sim.state.add_orders("acme-us.myshopify.com", 1_000);
    // Each call takes a while, so the refresh lands between two pages.
    s.sim.state.set_faults(synchub::sim::Faults {
        latency_ms: 300,
        ..Default::default()
    });

    let (status, run) = s
        .app
        .post(&format!("/v1/flows/{flow}/run"), &s.token, json!({}))
        .await;
    assert_eq!(status, 202, "{run}");
    let run_id = synchub::ids::RunId::parse(run["id"].as_str().unwrap()).unwrap();
    let engine = s.app.engine();
    let running = {
        let run_id = run_id.clone();
        tokio::spawn(async move { engine.execute(&run_id).await })
    };
    let db = s.app.db.clone();
    crate::helpers::eventually(
        "the first page is committed",
        std::time::Duration::from_secs(30),
        || {
            let (db, run_id) = (db.clone(), run_id.clone());
            async move {
                let row = synchub::store::entities::run::Entity::find_by_id(run_id)
                    .one(&db)
                    .await
                    .map_err(|e| e.to_string())?
                    .ok_or("no run")?;
                if row.records_read > 0 {
                    Ok(())
                } else {
                    Err(format!("read {}", row.records_read))
                }
            }
        },
    )
    .await;
    let keeper = keeper(&s, Arc::new(Mutex::new(Duration::minutes(40))));
    assert_eq!(keeper.tick().await.unwrap(), 1);
    let report = running.await.unwrap().unwrap().expect("the attempt ran");
    assert_eq!(report.status.as_str(), "succeeded", "{report:?}");
    assert_eq!(s.sim.state.consent_trades().1, 1, "one refresh");
    assert!(
        s.sim.state.stats().refused_tokens >= 1,
        "the run met the revoked token"
    );
    let view = s
        .app
        .get(&format!("/v1/runs/{}", run_id.as_str()), &s.token)
        .await
        .1;
    assert_eq!(view["records_read"], 1_003, "every order once: {view}");
}
on_both_backends!(a_run_that_spans_a_refresh_carries_on);
