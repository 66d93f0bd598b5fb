//! The credential keeper against the simulated token endpoints: Shopee and TikTok Shop
//! tokens refreshed ahead of expiry and used by the next call, refusals and outages turned
//! into `credential_refresh_failed` events (and a chat message), expiring credentials
//! announced once a day, a hand rotation winning over a refresh in flight.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};
use synchub::connections::keeper::{CredentialKeeper, KeeperPolicy};
use synchub::connectors::ConnectorRegistry;
use synchub::connectors::versions::Versions;
use synchub::ratelimit::RateLimiter;
use synchub::sim::Simulator;
use synchub::sim::tokens::Platform;
use synchub::store::entities::{alert_event, audit_event};

use crate::helpers::{Backend, TestApp, sim_apps};
use crate::on_both_backends;

struct Setup {
    app: TestApp,
    sim: Simulator,
    token: String,
    /// How far the keeper's clock runs ahead of the real one.
    ahead: Arc<Mutex<Duration>>,
    keeper: CredentialKeeper,
}

async fn setup(backend: Backend) -> Setup {
    let sim = Simulator::start("127.0.0.1:0", 3).unwrap();
    sim.state.register_apps(sim_apps());
    let app = TestApp::spawn_quiet(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "write", "admin"]).await;
    let ahead = Arc::new(Mutex::new(Duration::zero()));
    let read = ahead.clone();
    let registry = Arc::new(ConnectorRegistry::built_in().unwrap());
    let keeper = CredentialKeeper::new(
        app.db.clone(),
        app.vault(),
        Versions::new(app.db.clone(), registry),
        RateLimiter::new(app.db.clone()),
        KeeperPolicy::default(),
        synchub::netpolicy::OutboundPolicy::allowing_private(),
    )
    .unwrap()
    .with_clock(synchub::clock::Clock::from_fn(move || {
        Utc::now() + *read.lock().unwrap()
    }));
    Setup {
        app,
        sim,
        token,
        ahead,
        keeper,
    }
}

impl Setup {
    fn at(&self, offset: Duration) {
        *self.ahead.lock().unwrap() = offset;
    }

    async fn shopee(&self, access_token: &str, refresh_token: &str, expiries: Value) -> String {
        let connection = self
            .app
            .connection(
                &self.token,
                json!({"name": "SG shop", "connector": "shopee", "environment": "production",
                       "settings": {"partner_id": 2001887, "shop_id": 14701711, "base_url": format!("{}/shopee", self.sim.address)},
                       "credentials": {"partner_key": "shopee-partner-key", "access_token": access_token, "refresh_token": refresh_token},
                       "credential_expires_at": expiries}),
            )
            .await;
        connection["id"].as_str().unwrap().to_string()
    }

    async fn view(&self, id: &str) -> Value {
        let (status, view) = self
            .app
            .get(&format!("/v1/connections/{id}"), &self.token)
            .await;
        assert_eq!(status, 200, "{view}");
        view
    }

    async fn read_check(&self, id: &str) -> Value {
        let (status, report) = self
            .app
            .post(
                &format!("/v1/connections/{id}/check"),
                &self.token,
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{report}");
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "read")
            .cloned()
            .unwrap()
    }

    async fn events(&self, kind: &str) -> Vec<alert_event::Model> {
        alert_event::Entity::find()
            .filter(alert_event::Column::Kind.eq(kind))
            .order_by_asc(alert_event::Column::Id)
            .all(&self.app.db)
            .await
            .unwrap()
    }
}

fn instant(view: &Value, credential: &str) -> DateTime<Utc> {
    view["credential_expiry"][credential]
        .as_str()
        .unwrap_or_else(|| panic!("no expiry of {credential}: {view}"))
        .parse()
        .unwrap()
}

/// A Shopee access token 10 minutes from expiry is traded for a new one (4 hours) with its
/// refresh token, the new pair replaces the old in the vault, the refresh is audited, and
/// the next call works with the new token after the old one expired. Nothing more happens
/// until the new token nears its own expiry.
async fn shopee_tokens_are_refreshed_ahead_of_expiry(backend: Backend) {
    let s = setup(backend).await;
    s.sim
        .state
        .grant_shop_token(Platform::Shopee, "rt-granted", Duration::hours(4));
    s.sim
        .state
        .issue_access_token("at-old", Utc::now() + Duration::minutes(10));
    let id = s
        .shopee(
            "at-old",
            "rt-granted",
            json!({"access_token": Utc::now() + Duration::minutes(10)}),
        )
        .await;
    assert_eq!(s.read_check(&id).await["status"], "passed");

    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    assert_eq!(s.sim.state.token_refreshes(), 1);
    let view = s.view(&id).await;
    let access = instant(&view, "access_token") - Utc::now();
    assert!(
        access > Duration::minutes(235) && access <= Duration::hours(4),
        "{view}"
    );
    assert!(instant(&view, "refresh_token") > Utc::now() + Duration::days(29));
    assert_eq!(view["credential_refresh_failures"], 0);
    assert!(
        !view["credentials"]["access_token"]
            .as_str()
            .unwrap()
            .ends_with("-old"),
        "masked new token: {view}"
    );
    let audited = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("connection.refresh_credentials"))
        .all(&s.app.db)
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].actor_name, "credential-keeper");

    // The old token is gone: the call only works with the new one.
    s.sim
        .state
        .issue_access_token("at-old", Utc::now() - Duration::seconds(1));
    assert_eq!(s.read_check(&id).await["status"], "passed");

    // Nothing to do until 30 minutes before the new expiry; then the spent refresh token
    // is not used again, the new one is.
    assert_eq!(s.keeper.tick().await.unwrap(), 0);
    s.at(Duration::minutes(211));
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    assert_eq!(
        s.sim.state.token_refreshes(),
        2,
        "traded with the new refresh token"
    );
    assert!(s.events("credential_refresh_failed").await.is_empty());
}
on_both_backends!(shopee_tokens_are_refreshed_ahead_of_expiry);

/// Tokens that live less than the refresh margin (20 minutes against 30) are refreshed
/// halfway through their life, not on every tick.
async fn short_lived_tokens_are_refreshed_halfway(backend: Backend) {
    let s = setup(backend).await;
    s.sim
        .state
        .grant_shop_token(Platform::Shopee, "rt-short", Duration::minutes(20));
    s.shopee("at-s", "rt-short", json!({})).await;
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    assert_eq!(s.sim.state.token_refreshes(), 1);
    assert_eq!(s.keeper.tick().await.unwrap(), 0, "not again at once");
    s.at(Duration::minutes(9));
    assert_eq!(s.keeper.tick().await.unwrap(), 0);
    s.at(Duration::minutes(11));
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    assert_eq!(s.sim.state.token_refreshes(), 2);
}
on_both_backends!(short_lived_tokens_are_refreshed_halfway);

/// TikTok Shop at its own token endpoint: expiries come back as Unix timestamps.
async fn tiktok_tokens_are_refreshed(backend: Backend) {
    let s = setup(backend).await;
    s.sim
        .state
        .grant_shop_token(Platform::Tiktok, "tts-rt", Duration::days(7));
    let connection = s
        .app
        .connection(
            &s.token,
            json!({"name": "UK shop", "connector": "tiktok-shop", "environment": "production",
                   "settings": {"app_key": "6abcdefgh12", "shop_cipher": "ROW_sim",
                                "base_url": format!("{}/tiktok", s.sim.address),
                                "token_endpoint": format!("{}/tiktok-auth/api/v2/token/refresh", s.sim.address)},
                   "credentials": {"app_secret": "tiktok-app-secret", "access_token": "tts-at", "refresh_token": "tts-rt"}}),
        )
        .await;
    let id = connection["id"].as_str().unwrap();
    // Unknown expiry: refreshed at once, and the answer dates it.
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    assert_eq!(s.sim.state.token_refreshes(), 1);
    let view = s.view(id).await;
    let access = instant(&view, "access_token") - Utc::now();
    assert!(access > Duration::days(6), "{view}");
    assert!(instant(&view, "refresh_token") > Utc::now() + Duration::days(300));
    assert_eq!(s.read_check(id).await["status"], "passed");
}
on_both_backends!(tiktok_tokens_are_refreshed);

/// A refresh token the platform refuses: a critical event that says the seller must
/// authorise again, a chat message through a rule, the failure counted on the connection,
/// and no second try before the backoff.
async fn a_refused_refresh_raises_a_critical_alert(backend: Backend) {
    let s = setup(backend).await;
    s.sim
        .state
        .register_robot("cred-room", Some("SECcred".into()));
    let (status, channel) = s
        .app
        .post(
            "/v1/alert-channels",
            &s.token,
            json!({"name": "ops", "kind": "dingtalk", "secret": "SECcred",
              "url": format!("{}/dingtalk/robot/send?access_token=cred-room", s.sim.address)}),
        )
        .await;
    assert_eq!(status, 201, "{channel}");
    let (status, rule) = s
        .app
        .post("/v1/alert-rules", &s.token, json!({"name": "credentials", "kinds": ["credential_refresh_failed", "credential_expiring"],
              "severity": "critical", "channels": [channel["id"]]}))
        .await;
    assert_eq!(status, 201, "{rule}");
    let id = s
        .shopee(
            "at-x",
            "rt-revoked",
            json!({"access_token": Utc::now() + Duration::minutes(5)}),
        )
        .await;

    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    let events = s.events("credential_refresh_failed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].severity, "critical");
    assert_eq!(events[0].connection_id.as_deref(), Some(id.as_str()));
    assert!(
        events[0].message.contains("authorise the app again")
            && events[0].message.contains("Invalid refresh_token"),
        "{}",
        events[0].message
    );
    assert_eq!(s.view(&id).await["credential_refresh_failures"], 1);
    assert_eq!(s.keeper.tick().await.unwrap(), 0, "backing off");

    let alerter = synchub::alerts::Alerter::new(
        s.app.db.clone(),
        synchub::alerts::AlertChannels::new(
            s.app.db.clone(),
            s.app.vault(),
            synchub::netpolicy::OutboundPolicy::allowing_private(),
        )
        .unwrap(),
        RateLimiter::new(s.app.db.clone()),
        "http://synchub.test".into(),
    );
    alerter.tick().await.unwrap();
    let received = s.sim.state.chat_messages("cred-room");
    assert_eq!(received.len(), 1);
    assert!(
        received[0]
            .to_string()
            .contains("credential refresh failed"),
        "{}",
        received[0]
    );
}
on_both_backends!(a_refused_refresh_raises_a_critical_alert);

/// The token endpoint is down with the access token still good for 20 minutes: a warning,
/// a retry after the backoff, and a refresh once it answers again.
async fn an_outage_is_retried_and_recovers(backend: Backend) {
    let s = setup(backend).await;
    s.sim
        .state
        .grant_shop_token(Platform::Shopee, "rt-ok", Duration::hours(4));
    let id = s
        .shopee(
            "at-y",
            "rt-ok",
            json!({"access_token": Utc::now() + Duration::minutes(20)}),
        )
        .await;
    s.sim.state.set_token_endpoints_down(true);
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    let events = s.events("credential_refresh_failed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].severity, "warning", "{}", events[0].message);
    assert!(
        events[0].message.contains("server_error"),
        "{}",
        events[0].message
    );
    assert_eq!(s.sim.state.token_refreshes(), 0);

    s.sim.state.set_token_endpoints_down(false);
    assert_eq!(s.keeper.tick().await.unwrap(), 0, "backing off");
    s.at(Duration::minutes(3));
    assert_eq!(
        s.keeper.tick().await.unwrap(),
        1,
        "retried after the backoff"
    );
    assert_eq!(s.sim.state.token_refreshes(), 1);
    assert_eq!(s.view(&id).await["credential_refresh_failures"], 0);
}
on_both_backends!(an_outage_is_retried_and_recovers);

/// A token endpoint that is not one (404): ours to fix, not the seller's, so a warning that
/// does not ask for a new authorisation while the access token still has hours to live.
async fn a_wrong_token_endpoint_is_not_blamed_on_the_seller(backend: Backend) {
    let s = setup(backend).await;
    s.app
        .connection(
            &s.token,
            json!({"name": "UK shop", "connector": "tiktok-shop", "environment": "production",
                   "settings": {"app_key": "6abcdefgh12", "shop_cipher": "ROW_sim",
                                "base_url": format!("{}/tiktok", s.sim.address),
                                "token_endpoint": format!("{}/no-such-endpoint", s.sim.address)},
                   "credentials": {"app_secret": "tiktok-app-secret", "access_token": "tts-at", "refresh_token": "tts-rt"},
                   "credential_expires_at": {"access_token": Utc::now() + Duration::minutes(20)}}),
        )
        .await;
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    let events = s.events("credential_refresh_failed").await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].severity, "warning", "{}", events[0].message);
    assert!(
        events[0].message.contains("(config)"),
        "{}",
        events[0].message
    );
    assert!(
        !events[0].message.contains("authorise"),
        "{}",
        events[0].message
    );
}
on_both_backends!(a_wrong_token_endpoint_is_not_blamed_on_the_seller);

/// A key the seller dated (Shopify here): nothing until 14 days before, then a warning a
/// day, critical in the last day; rotated credentials without a date end the reminders.
async fn expiring_credentials_are_announced_daily(backend: Backend) {
    let s = setup(backend).await;
    let expires = Utc::now() + Duration::days(20);
    let connection = s
        .app
        .connection(
            &s.token,
            json!({"name": "US store", "connector": "shopify", "environment": "production",
                   "settings": {"shop_domain": "acme.myshopify.com", "base_url": format!("{}/shopify/acme", s.sim.address)},
                   "credentials": {"access_token": "shpat_dated_0123456789"},
                   "credential_expires_at": {"access_token": expires}}),
        )
        .await;
    let id = connection["id"].as_str().unwrap().to_string();
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    assert!(
        s.events("credential_expiring").await.is_empty(),
        "20 days out"
    );
    assert_eq!(s.keeper.tick().await.unwrap(), 0);

    s.at(Duration::days(7));
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    s.at(Duration::days(7) + Duration::hours(12));
    assert_eq!(s.keeper.tick().await.unwrap(), 0, "once a day");
    s.at(Duration::days(8) + Duration::minutes(1));
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    s.at(Duration::days(19) + Duration::hours(6));
    assert_eq!(s.keeper.tick().await.unwrap(), 1);
    let events = s.events("credential_expiring").await;
    assert_eq!(events.len(), 3);
    assert_eq!(events[0].severity, "warning");
    assert_eq!(events[2].severity, "critical", "{}", events[2].message);
    assert!(events[0].message.contains("access_token"));

    let (status, rotated) = s
        .app
        .put(
            &format!("/v1/connections/{id}/credentials"),
            &s.token,
            json!({"credentials": {"access_token": "shpat_renewed_0123456789"}}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["credential_expiry"], json!({}));
    s.at(Duration::days(21));
    assert_eq!(
        s.keeper.tick().await.unwrap(),
        0,
        "no date, nothing to look at"
    );
}
on_both_backends!(expiring_credentials_are_announced_daily);

/// Expiry dates must name the connection's credentials, and come with credentials.
async fn expiry_dates_are_checked(backend: Backend) {
    let s = setup(backend).await;
    let (status, problem) = s
        .app
        .post(
            "/v1/connections",
            &s.token,
            json!({"name": "x", "connector": "shopify", "environment": "production",
                   "settings": {"shop_domain": "x.myshopify.com"},
                   "credentials": {"access_token": "shpat_x_0123456789"},
                   "credential_expires_at": {"api_password": "2030-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem
            .to_string()
            .contains("credential_expires_at.api_password")
    );
    let id = s.shopee("at", "rt", json!({})).await;
    let (status, problem) = s
        .app
        .put(
            &format!("/v1/connections/{id}/credentials"),
            &s.token,
            json!({"credential_expires_at": {"access_token": "2030-01-01T00:00:00Z"}}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem
            .to_string()
            .contains("with the credentials it dates")
    );
}
on_both_backends!(expiry_dates_are_checked);
