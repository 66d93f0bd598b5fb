//! Alerts end to end: events grouped and throttled into messages, an outbox that survives a
//! receiver outage, per-robot pacing, quiet hours in the tenant's zone.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use synchub::alerts::events::{Event, emit};
use synchub::alerts::message::Severity;
use synchub::alerts::{AlertChannels, Alerter};
use synchub::ids::TenantId;
use synchub::netpolicy::OutboundPolicy;
use synchub::ratelimit::RateLimiter;
use synchub::sim::{Faults, Simulator};
use synchub::store::entities::{alert_delivery, alert_event};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

struct Setup {
    /// A second alerter on the same database: another worker process.
    other: Alerter,
    app: TestApp,
    sim: Simulator,
    token: String,
    tenant: TenantId,
    clock: Arc<Mutex<DateTime<Utc>>>,
    alerter: Alerter,
}

async fn setup(backend: Backend) -> Setup {
    let sim = Simulator::start("127.0.0.1:0", 0).unwrap();
    let app = TestApp::spawn_quiet(backend).await;
    let (tenant, token) = app.tenant_with_token(&["read", "write", "admin"]).await;
    let clock = Arc::new(Mutex::new(Utc::now()));
    let read = clock.clone();
    let channels = AlertChannels::new(
        app.db.clone(),
        app.vault(),
        OutboundPolicy::allowing_private(),
    )
    .unwrap();
    let other = Alerter::new(
        app.db.clone(),
        channels.clone(),
        RateLimiter::new(app.db.clone()),
        "http://synchub.test".into(),
    );
    let alerter = Alerter::new(
        app.db.clone(),
        channels,
        RateLimiter::new(app.db.clone()),
        "http://synchub.test".into(),
    )
    .with_clock(synchub::clock::Clock::from_fn(move || {
        *read.lock().unwrap()
    }));
    Setup {
        other,
        app,
        sim,
        token,
        tenant: TenantId::parse(&tenant).unwrap(),
        clock,
        alerter,
    }
}

impl Setup {
    async fn dingtalk(&self, robot: &str) -> String {
        self.sim
            .state
            .register_robot(robot, Some("SECrobot".into()));
        let (status, channel) = self
            .app
            .post(
                "/v1/alert-channels",
                &self.token,
                json!({"name": robot, "kind": "dingtalk", "secret": "SECrobot",
                "url": format!("{}/dingtalk/robot/send?access_token={robot}", self.sim.address)}),
            )
            .await;
        assert_eq!(status, 201, "{channel}");
        channel["id"].as_str().unwrap().to_string()
    }

    /// A real flow of the tenant's (rules may watch only their own), disabled so that
    /// nothing runs it.
    async fn flow(&self, name: &str) -> String {
        let shop = self
            .app
            .connection(
                &self.token,
                crate::helpers::shopify_connection(name, "flow-secret-123456"),
            )
            .await;
        let erp = self
            .app
            .connection(&self.token, json!({"name": format!("{name} ERP"), "connector": "generic-rest-erp", "environment": "production",
                "settings": {"base_url": format!("{}/erp/{name}", self.sim.address)}, "credentials": {"api_key": "erp-key"}}))
            .await;
        let (status, flow) = self
            .app
            .post("/v1/flows", &self.token, json!({"name": name, "stream": "orders", "source": shop["id"], "destination": erp["id"],
                "schedule": {"every_seconds": 3600}, "enabled": false}))
            .await;
        assert_eq!(status, 201, "{flow}");
        flow["id"].as_str().unwrap().to_string()
    }

    async fn rule(&self, body: Value) {
        let (status, rule) = self.app.post("/v1/alert-rules", &self.token, body).await;
        assert_eq!(status, 201, "{rule}");
    }

    async fn failed_runs(&self, flow: &str, count: usize) {
        self.events("run_failed", flow, count).await
    }

    async fn events(&self, kind: &str, flow: &str, count: usize) {
        let txn = synchub::store::begin_write(&self.app.db).await.unwrap();
        for i in 0..count {
            emit(
                &txn,
                Event {
                    tenant: &self.tenant,
                    kind,
                    severity: Severity::Warning,
                    group_key: flow.to_string(),
                    connection_id: Some("con_x".into()),
                    flow_id: Some(flow.to_string()),
                    message: format!("a run of {flow} failed (server_error): HTTP 500 #{i}"),
                    details: json!({}),
                    at: Utc::now(),
                },
            )
            .await
            .unwrap();
        }
        txn.commit().await.unwrap();
    }

    /// Ticks until every event is evaluated and nothing due is left to try.
    async fn drain(&self) {
        for _ in 0..50 {
            let (events, tried) = self.alerter.tick().await.unwrap();
            if events == 0 && tried == 0 {
                return;
            }
        }
    }

    async fn deliveries(&self, status: &str) -> u64 {
        alert_delivery::Entity::find()
            .filter(alert_delivery::Column::Status.eq(status))
            .count(&self.app.db)
            .await
            .unwrap()
    }
}

/// 10,000 failing runs of one flow within a minute: every event is recorded and counted in
/// one alert, each channel gets one message, and more failures inside the throttle send
/// nothing.
async fn a_storm_is_grouped_and_throttled(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("ops-room").await;
    s.sim.state.register_robot(
        "hook",
        Some("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".into()),
    );
    let (_, hook) = s
        .app
        .post("/v1/alert-channels", &s.token, json!({"name": "hook", "kind": "webhook", "secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "url": format!("{}/hook/hook", s.sim.address)}))
        .await;
    s.rule(json!({"name": "failing runs", "kinds": ["run_failed"], "severity": "warning", "channels": [ding, hook["id"]], "throttle_seconds": 300})).await;
    s.failed_runs("flow_storm", 10_000).await;
    s.drain().await;
    let recorded = alert_event::Entity::find().count(&s.app.db).await.unwrap();
    assert_eq!(recorded, 10_000, "every event recorded");
    assert_eq!(
        s.deliveries("delivered").await,
        2,
        "one message per channel"
    );
    let received = s.sim.state.chat_messages("ops-room");
    assert_eq!(received.len(), 1);
    // The message goes out with the first batch evaluated and counts what was seen by then.
    assert!(
        received[0].to_string().contains("Occurrences"),
        "the count: {}",
        received[0]
    );
    let (_, alerts) = s.app.get("/v1/alerts", &s.token).await;
    assert_eq!(
        alerts["data"][0]["count"], 10_000,
        "the alert counts every event"
    );
    assert_eq!(s.sim.state.chat_messages("hook").len(), 1);

    s.failed_runs("flow_storm", 50).await;
    s.drain().await;
    assert_eq!(s.sim.state.chat_messages("ops-room").len(), 1, "throttled");
    let (_, alerts) = s.app.get("/v1/alerts", &s.token).await;
    assert_eq!(alerts["data"][0]["count"], 10_050);
    assert_eq!(alerts["data"][0]["deliveries"].as_array().unwrap().len(), 2);
}
on_both_backends!(a_storm_is_grouped_and_throttled);

/// The receiver is down: the delivery waits in the outbox with its backoff and arrives once
/// the receiver is back; a dead delivery can be replayed.
async fn deliveries_survive_a_receiver_outage(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("flaky-room").await;
    // A day's window: the alert does not recover while the test moves the clock.
    s.rule(json!({"name": "failing runs", "kinds": ["run_failed"], "severity": "critical", "channels": [ding], "threshold": {"count": 1, "window_seconds": 86400}})).await;
    s.sim.state.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    s.failed_runs("flow_a", 1).await;
    s.drain().await;
    assert_eq!(s.deliveries("pending").await, 1, "kept for a retry");
    assert!(s.sim.state.chat_messages("flaky-room").is_empty());
    s.sim.state.set_faults(Faults::default());
    *s.clock.lock().unwrap() = Utc::now() + chrono::Duration::hours(2);
    s.drain().await;
    assert_eq!(s.deliveries("delivered").await, 1);
    assert_eq!(s.sim.state.chat_messages("flaky-room").len(), 1);
}
on_both_backends!(deliveries_survive_a_receiver_outage);

/// 25 alerts to one DingTalk robot: 20 go out at once, the rest wait for the robot's
/// minute instead of being refused ("send too fast") and dropped.
async fn a_robots_limit_slows_the_sender(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("busy-room").await;
    s.rule(json!({"name": "failing runs", "kinds": ["run_failed"], "severity": "critical", "channels": [ding]})).await;
    for i in 0..25 {
        s.failed_runs(&format!("flow_{i}"), 1).await;
    }
    s.drain().await;
    assert_eq!(s.sim.state.chat_messages("busy-room").len(), 20);
    assert_eq!(s.deliveries("delivered").await, 20);
    assert_eq!(s.deliveries("pending").await, 5, "waiting, not dropped");
    assert_eq!(s.deliveries("dead").await, 0);
}
on_both_backends!(a_robots_limit_slows_the_sender);

/// Another sender used up the robot's minute: DingTalk answers "send too fast" (130101 in
/// an HTTP 200 body) and the delivery waits for a later minute instead of being dropped.
async fn send_too_fast_is_retried_not_dropped(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("shared-robot").await;
    s.rule(json!({"name": "failing runs", "kinds": ["run_failed"], "severity": "critical", "channels": [ding],
                  "threshold": {"count": 1, "window_seconds": 86400}}))
        .await;
    for _ in 0..20 {
        let (status, report) = s
            .app
            .post(
                &format!("/v1/alert-channels/{ding}/test"),
                &s.token,
                json!({}),
            )
            .await;
        assert_eq!(
            (status, &report["delivered"]),
            (200, &json!(true)),
            "{report}"
        );
    }
    s.failed_runs("flow_fast", 1).await;
    s.drain().await;
    assert_eq!(s.deliveries("pending").await, 1, "kept for a later minute");
    assert_eq!(s.deliveries("dead").await, 0);
    let (_, alerts) = s.app.get("/v1/alerts", &s.token).await;
    let answer = alerts["data"][0]["deliveries"][0]["last_answer"].to_string();
    assert!(answer.contains("too fast"), "{alerts}");
    assert_eq!(s.sim.state.chat_messages("shared-robot").len(), 20);

    // A minute later the robot takes messages again (a new window: registered afresh).
    s.sim
        .state
        .register_robot("shared-robot", Some("SECrobot".into()));
    *s.clock.lock().unwrap() = Utc::now() + chrono::Duration::minutes(2);
    s.drain().await;
    assert_eq!(s.deliveries("delivered").await, 1);
    assert_eq!(s.sim.state.chat_messages("shared-robot").len(), 1);
}
on_both_backends!(send_too_fast_is_retried_not_dropped);

/// Quiet hours in Asia/Shanghai (the tenant's zone) hold back a warning until they end, but
/// not a critical alert.
async fn quiet_hours_hold_warnings_not_critical_alerts(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("night-room").await;
    let local = Utc::now().with_timezone(&chrono_tz::Asia::Shanghai);
    let quiet = json!({"start": (local - chrono::Duration::hours(1)).format("%H:%M").to_string(), "end": (local + chrono::Duration::hours(1)).format("%H:%M").to_string()});
    let (warn, crit) = (s.flow("warn").await, s.flow("crit").await);
    s.rule(json!({"name": "warnings", "kinds": ["run_failed"], "flow_id": warn, "severity": "warning", "channels": [ding], "quiet_hours": quiet, "threshold": {"count": 1, "window_seconds": 86400}})).await;
    s.rule(json!({"name": "critical", "kinds": ["run_failed"], "flow_id": crit, "severity": "critical", "channels": [ding], "quiet_hours": quiet, "threshold": {"count": 1, "window_seconds": 86400}})).await;
    s.failed_runs(&warn, 1).await;
    s.failed_runs(&crit, 1).await;
    s.drain().await;
    let received = s.sim.state.chat_messages("night-room");
    assert_eq!(received.len(), 1, "only the critical alert");
    assert!(received[0].to_string().contains("critical"));
    assert_eq!(s.deliveries("pending").await, 1, "the warning waits");
    *s.clock.lock().unwrap() = Utc::now() + chrono::Duration::minutes(61);
    s.drain().await;
    assert_eq!(
        s.sim.state.chat_messages("night-room").len(),
        2,
        "sent when the quiet hours end"
    );
}
on_both_backends!(quiet_hours_hold_warnings_not_critical_alerts);

/// An alert with no new event for its rule's window recovers and says so once.
async fn a_quiet_alert_recovers(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("recovery-room").await;
    s.rule(json!({"name": "failing runs", "kinds": ["run_failed"], "severity": "critical", "channels": [ding],
                  "threshold": {"count": 3, "window_seconds": 300}}))
        .await;
    s.failed_runs("flow_r", 2).await;
    s.drain().await;
    assert!(
        s.sim.state.chat_messages("recovery-room").is_empty(),
        "under the threshold"
    );
    s.failed_runs("flow_r", 1).await;
    s.drain().await;
    assert_eq!(
        s.sim.state.chat_messages("recovery-room").len(),
        1,
        "three in the window"
    );
    *s.clock.lock().unwrap() = Utc::now() + chrono::Duration::minutes(6);
    s.drain().await;
    s.drain().await;
    let received = s.sim.state.chat_messages("recovery-room");
    assert_eq!(received.len(), 2, "one recovery message");
    assert!(received[1].to_string().contains("Recovered"));
    let (_, alerts) = s.app.get("/v1/alerts", &s.token).await;
    assert_eq!(alerts["data"][0]["state"], "resolved");
}
on_both_backends!(a_quiet_alert_recovers);

/// "A platform answered 5xx for longer than 15 minutes": errors every 5 minutes fire the
/// rule only once they have lasted 15 minutes; a gap longer than the window starts over.
async fn a_condition_fires_once_it_has_lasted(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("lasting-room").await;
    s.rule(json!({"name": "5xx for 15 minutes", "kinds": ["platform_errors"], "severity": "critical", "channels": [ding],
                  "threshold": {"count": 1, "window_seconds": 600, "for_seconds": 900}}))
        .await;
    let start = Utc::now();
    let s = &s;
    let errors_at = |minute: i64| async move {
        *s.clock.lock().unwrap() = start + chrono::Duration::minutes(minute);
        s.events("platform_errors", "flow_5xx", 1).await;
        s.drain().await;
        s.sim.state.chat_messages("lasting-room").len()
    };
    for minute in [0, 5, 10] {
        assert_eq!(errors_at(minute).await, 0, "{minute} minutes is not 15");
    }
    // 11 minutes without an error: longer than the window, the streak starts over.
    assert_eq!(errors_at(21).await, 0);
    assert_eq!(errors_at(30).await, 0, "9 minutes into the new streak");
    assert_eq!(errors_at(36).await, 1, "15 minutes of errors");
    let received = s.sim.state.chat_messages("lasting-room");
    assert!(
        received[0].to_string().contains("A platform keeps failing"),
        "{}",
        received[0]
    );
}
on_both_backends!(a_condition_fires_once_it_has_lasted);

/// An alerter that took events and died before acting on them: after its claim runs out,
/// another alerter counts them and sends the message; none is lost.
async fn events_a_dead_alerter_took_are_taken_again(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("relay-room").await;
    s.rule(json!({"name": "failing runs", "kinds": ["run_failed"], "severity": "critical", "channels": [ding],
                  "threshold": {"count": 1, "window_seconds": 86400}}))
        .await;
    s.failed_runs("flow_d", 3).await;
    // What the dead alerter left: its claim on every event, nothing done.
    alert_event::Entity::update_many()
        .col_expr(
            alert_event::Column::ClaimedUntil,
            Some(Utc::now() + chrono::Duration::minutes(2)).into(),
        )
        .exec(&s.app.db)
        .await
        .unwrap();
    s.drain().await;
    assert!(
        s.sim.state.chat_messages("relay-room").is_empty(),
        "still claimed"
    );
    *s.clock.lock().unwrap() = Utc::now() + chrono::Duration::minutes(3);
    s.drain().await;
    assert_eq!(s.sim.state.chat_messages("relay-room").len(), 1);
    let (_, alerts) = s.app.get("/v1/alerts", &s.token).await;
    assert_eq!(alerts["data"][0]["count"], 3);
    let left = alert_event::Entity::find()
        .filter(alert_event::Column::Processed.eq(false))
        .count(&s.app.db)
        .await
        .unwrap();
    assert_eq!(left, 0, "all done");
}
on_both_backends!(events_a_dead_alerter_took_are_taken_again);

/// Two alerters (two worker processes) on one database count each event once and send one
/// message.
async fn two_alerters_send_once(backend: Backend) {
    let s = setup(backend).await;
    let ding = s.dingtalk("shared-room").await;
    s.rule(json!({"name": "failing runs", "kinds": ["run_failed"], "severity": "critical", "channels": [ding]}))
        .await;
    s.failed_runs("flow_shared", 2_000).await;
    let drain_other = async {
        for _ in 0..20 {
            s.other.tick().await.unwrap();
        }
    };
    tokio::join!(s.drain(), drain_other);
    s.drain().await;
    assert_eq!(s.sim.state.chat_messages("shared-room").len(), 1);
    let (_, alerts) = s.app.get("/v1/alerts", &s.token).await;
    assert_eq!(alerts["data"][0]["count"], 2_000, "each event counted once");
}
on_both_backends!(two_alerters_send_once);
