//! Alert channels against simulated ops chats: each message signed by the platform's
//! formula and shaped as it expects, the platform's refusals read from its answers.

use serde_json::{Value, json};
use synchub::sim::Simulator;

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn url(sim: &Simulator, kind: &str, robot: &str) -> String {
    let base = &sim.address;
    match kind {
        "dingtalk" => format!("{base}/dingtalk/robot/send?access_token={robot}"),
        "feishu" => format!("{base}/feishu/open-apis/bot/v2/hook/{robot}"),
        "wecom" => format!("{base}/wecom/cgi-bin/webhook/send?key={robot}"),
        "slack" => format!("{base}/slack/services/{robot}"),
        _ => format!("{base}/hook/{robot}"),
    }
}

async fn channel(app: &TestApp, token: &str, body: Value) -> String {
    let (status, created) = app.post("/v1/alert-channels", token, body).await;
    assert_eq!(status, 201, "{created}");
    created["id"].as_str().unwrap().to_string()
}

async fn test_message(app: &TestApp, token: &str, id: &str) -> Value {
    let (status, report) = app
        .post(&format!("/v1/alert-channels/{id}/test"), token, json!({}))
        .await;
    assert_eq!(status, 200, "{report}");
    report
}

/// Every kind delivers a test message that its receiver verified and can read.
async fn every_kind_of_channel_delivers_a_signed_message(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 0).unwrap();
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "admin"]).await;
    let cases = [
        ("dingtalk", Some("SECdingtalk0123456789")),
        ("feishu", Some("feishu-signing-secret")),
        ("wecom", None),
        ("slack", None),
        ("webhook", Some(WHSEC)),
    ];
    for (kind, secret) in cases {
        let robot = format!("{kind}-robot");
        sim.state.register_robot(&robot, secret.map(String::from));
        let mut body =
            json!({"name": format!("{kind} ops"), "kind": kind, "url": url(&sim, kind, &robot)});
        if let Some(secret) = secret {
            body["secret"] = json!(secret);
        }
        let id = channel(&app, &token, body).await;
        let report = test_message(&app, &token, &id).await;
        assert_eq!(report["delivered"], true, "{kind}: {report}");
        let received = sim.state.chat_messages(&robot);
        assert_eq!(received.len(), 1, "{kind}");
        let text = received[0].to_string();
        assert!(text.contains("synchub test message"), "{kind}: {text}");
        match kind {
            "dingtalk" => assert_eq!(received[0]["msgtype"], "markdown"),
            "feishu" => assert_eq!(received[0]["msg_type"], "interactive"),
            "wecom" => assert_eq!(received[0]["msgtype"], "markdown"),
            "slack" => assert!(received[0]["blocks"].is_array()),
            _ => assert_eq!(received[0]["type"], "synchub.alert"),
        }
    }
    let (_, listed) = app.get("/v1/alert-channels", &token).await;
    let listed = listed["data"].as_array().unwrap();
    assert_eq!(listed.len(), 5);
    let shown = listed.iter().find(|c| c["kind"] == "dingtalk").unwrap();
    assert_eq!(shown["signed"], true);
    assert!(
        !shown.to_string().contains("access_token"),
        "the URL's token is never shown: {shown}"
    );
    assert!(!shown.to_string().contains("SECdingtalk"));

    let (_, other) = app.tenant_with_token(&["read", "admin"]).await;
    let id = listed[0]["id"].as_str().unwrap();
    let (status, _) = app
        .post(&format!("/v1/alert-channels/{id}/test"), &other, json!({}))
        .await;
    assert_eq!(status, 404);
}
on_both_backends!(every_kind_of_channel_delivers_a_signed_message);

/// A receiver holding another secret refuses the message, and the report says so; DingTalk's
/// "send too fast" is a retry, not a failure; a webhook channel needs a whsec_ key.
async fn refusals_are_read_from_the_platforms_answers(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 0).unwrap();
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "admin"]).await;
    for (kind, ours, theirs, said) in [
        ("dingtalk", "SECours", "SECtheirs", "sign not match"),
        ("feishu", "ours", "theirs", "sign match fail"),
        (
            "webhook",
            WHSEC,
            "whsec_dGhlaXJzLXNlY3JldC0wMTIzNDU2Nzg5",
            // A generic receiver's body is never shown: it could be any server's page.
            "HTTP 401",
        ),
    ] {
        let robot = format!("{kind}-wrong");
        sim.state.register_robot(&robot, Some(theirs.to_string()));
        let id = channel(&app, &token, json!({"name": format!("{kind} wrong"), "kind": kind, "url": url(&sim, kind, &robot), "secret": ours})).await;
        let report = test_message(&app, &token, &id).await;
        assert_eq!(
            (report["delivered"].as_bool(), report["outcome"].as_str()),
            (Some(false), Some("failed")),
            "{kind}: {report}"
        );
        assert!(
            report["answer"].as_str().unwrap().contains(said),
            "{kind}: {report}"
        );
        assert!(sim.state.chat_messages(&robot).is_empty());
    }

    sim.state.register_robot("busy", Some("SECbusy".into()));
    let id = channel(&app, &token, json!({"name": "busy", "kind": "dingtalk", "url": url(&sim, "dingtalk", "busy"), "secret": "SECbusy", "language": "zh-Hans"})).await;
    for _ in 0..20 {
        assert_eq!(test_message(&app, &token, &id).await["delivered"], true);
    }
    let report = test_message(&app, &token, &id).await;
    assert_eq!(report["outcome"], "retry", "{report}");
    assert!(report["answer"].as_str().unwrap().contains("too fast"));
    assert!(
        sim.state.chat_messages("busy")[0]
            .to_string()
            .contains("通知"),
        "the channel's language"
    );

    let (status, body) = app
        .post(
            "/v1/alert-channels",
            &token,
            json!({"name": "unsigned", "kind": "webhook", "url": url(&sim, "webhook", "x")}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}
on_both_backends!(refusals_are_read_from_the_platforms_answers);

/// A rule may watch only the tenant's own connection or flow: another tenant's id or a
/// malformed one is a 400 naming the field, and no rule is made.
async fn rules_refuse_ids_that_are_not_the_tenants(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 0).unwrap();
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "write", "admin"]).await;
    let (_, other) = app.tenant_with_token(&["read", "write", "admin"]).await;
    let theirs = app
        .connection(
            &other,
            crate::helpers::shopify_connection("Theirs", "their-secret-123456"),
        )
        .await;
    let ours = app
        .connection(
            &token,
            crate::helpers::shopify_connection("Ours", "our-secret-1234567"),
        )
        .await;
    sim.state.register_robot("rules", None);
    let channel_id = channel(
        &app,
        &token,
        json!({"name": "ops", "kind": "slack", "url": url(&sim, "slack", "rules")}),
    )
    .await;
    let rule = |field: &str, value: &Value| {
        let mut body = json!({"name": "r", "kinds": ["run_failed"], "severity": "warning", "channels": [channel_id]});
        body[field] = value.clone();
        body
    };
    for (field, value) in [
        ("connection_id", theirs["id"].clone()),
        ("connection_id", json!("con_not-an-id")),
        ("connection_id", json!("garbage")),
        ("flow_id", json!("flow_01JZZZZZZZZZZZZZZZZZZZZZZZ")),
        ("flow_id", json!("")),
    ] {
        let (status, problem) = app
            .post("/v1/alert-rules", &token, rule(field, &value))
            .await;
        assert_eq!(status, 400, "{field}={value}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    let (status, created) = app
        .post(
            "/v1/alert-rules",
            &token,
            rule("connection_id", &ours["id"]),
        )
        .await;
    assert_eq!(
        status, 201,
        "the tenant's own connection is fine: {created}"
    );
}
on_both_backends!(rules_refuse_ids_that_are_not_the_tenants);
