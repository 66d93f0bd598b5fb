use serde_json::{Value, json};
use synchub::connectors::SignatureEncoding;
use synchub::webhooks::sign;

use crate::helpers::{Backend, TestApp, eventually, shopify_connection};
use crate::on_both_backends;

type Signer = Box<dyn Fn(&str, &[u8]) -> Vec<(String, String)>>;

async fn hook(app: &TestApp, id: &str, headers: &[(String, String)], body: &[u8]) -> (u16, Value) {
    let mut request = app
        .client
        .post(app.url(&format!("/v1/hooks/{id}")))
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name.as_str(), value.as_str());
    }
    let response = request.send().await.expect("sent");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// The rejection counter is written behind the 401 (it must not slow rejections down), so
/// it is read until it settles.
async fn rejected_count_reaches(app: &TestApp, token: &str, id: &str, expected: i64) -> i64 {
    eventually(
        "the refusals are counted",
        std::time::Duration::from_secs(5),
        || async {
            let count =
                app.get(&format!("/v1/connections/{id}"), token).await.1["rejected_webhooks"]
                    .as_i64()
                    .unwrap();
            if count >= expected {
                Ok(count)
            } else {
                Err(count)
            }
        },
    )
    .await
}

/// The common contract of every scheme: valid accepted and stored once even when repeated,
/// tampered body, wrong secret and missing signature refused with 401 and nothing stored.
async fn check_scheme(
    app: &TestApp,
    token: &str,
    connection: &Value,
    secret: &str,
    signer: Signer,
) {
    let id = connection["id"].as_str().unwrap();
    let body = br#"{"id":820982911946154508,"tts_notification_id":"7327","type":1,"email":"jon@example.com"}"#;
    let headers = signer(secret, body);
    let (status, ack) = hook(app, id, &headers, body).await;
    assert_eq!(status, 200, "{ack}");
    assert_eq!(ack["status"], "stored");
    let (status, _) = hook(app, id, &headers, body).await;
    assert_eq!(status, 200, "a duplicate is acknowledged");
    assert_eq!(app.events(token, id).await.len(), 1, "and stored once");

    let tampered = br#"{"id":820982911946154508,"tts_notification_id":"7327","type":1,"email":"eve@example.com"}"#;
    let (status, problem) = hook(app, id, &headers, tampered).await;
    assert_eq!(status, 401, "tampered body");
    assert_eq!(problem["code"], "invalid_signature");
    let (status, _) = hook(app, id, &signer("not-the-secret-at-all", body), body).await;
    assert_eq!(status, 401, "wrong secret");
    let (status, _) = hook(app, id, &[], body).await;
    assert_eq!(status, 401, "no signature");
    assert_eq!(
        app.events(token, id).await.len(),
        1,
        "rejected webhooks store nothing"
    );
    assert_eq!(
        rejected_count_reaches(app, token, id, 3).await,
        3,
        "but they are counted"
    );
    // And reported to the alerting, where a rule's threshold decides what is a spike.
    let reported = <synchub::store::entities::alert_event::Entity as sea_orm::EntityTrait>::find()
        .all(&app.db)
        .await
        .unwrap();
    assert!(
        reported
            .iter()
            .any(|e| e.kind == "webhook_rejected" && e.connection_id.as_deref() == Some(id)),
        "{reported:?}"
    );
}

fn header(name: &str, value: String) -> Vec<(String, String)> {
    vec![(name.to_string(), value)]
}

async fn shopify_webhooks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let secret = "shopify-app-client-secret-1";
    let connection = app
        .connection(&token, shopify_connection("US", secret))
        .await;
    check_scheme(
        &app,
        &token,
        &connection,
        secret,
        Box::new(|secret, body| {
            let mut h = header("X-Shopify-Hmac-Sha256", sign::shopify(secret, body));
            h.push((
                "X-Shopify-Event-Id".into(),
                "98880550-7158-44d4-b7cd-2c97c8a091b5".into(),
            ));
            h.push(("X-Shopify-Topic".into(), "orders/create".into()));
            h
        }),
    )
    .await;
    let events = app.events(&token, connection["id"].as_str().unwrap()).await;
    assert_eq!(
        events[0]["platform_event_id"],
        "98880550-7158-44d4-b7cd-2c97c8a091b5"
    );
    assert_eq!(events[0]["topic"], "orders/create");
    assert_eq!(events[0]["body"]["email"], "jon@example.com");
}
on_both_backends!(shopify_webhooks);

async fn shopee_push(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let callback = "https://hooks.example.com/shopee/push";
    let connection = app
        .connection(&token, json!({
            "name": "Shopee MY", "connector": "shopee", "environment": "production",
            "settings": {"partner_id": "2001887", "shop_id": 220001, "push_callback_url": callback},
            "credentials": {"partner_key": "shopee-partner-key-abc", "access_token": "t", "refresh_token": "r"},
        }))
        .await;
    assert_eq!(
        connection["settings"]["partner_id"], 2001887,
        "numeric strings become integers"
    );
    check_scheme(
        &app,
        &token,
        &connection,
        "shopee-partner-key-abc",
        Box::new(move |secret, body| {
            header("Authorization", sign::shopee_push(secret, callback, body))
        }),
    )
    .await;
}
on_both_backends!(shopee_push);

async fn tiktok_shop_webhooks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, json!({
            "name": "TikTok US", "connector": "tiktok-shop", "environment": "production",
            "settings": {"app_key": "6a1b2c3d4e", "shop_cipher": "ROW_abc"},
            "credentials": {"app_secret": "tiktok-app-secret-xyz", "access_token": "t", "refresh_token": "r"},
        }))
        .await;
    check_scheme(
        &app,
        &token,
        &connection,
        "tiktok-app-secret-xyz",
        Box::new(|secret, body| {
            header(
                "Authorization",
                sign::tiktok_shop(secret, "6a1b2c3d4e", body),
            )
        }),
    )
    .await;
    let id = connection["id"].as_str().unwrap();
    let events = app.events(&token, id).await;
    assert_eq!(events[0]["platform_event_id"], "7327");
    assert_eq!(events[0]["topic"], "1");

    // A verified webhook whose event id holds a NUL is stored (PostgreSQL's text has none).
    let body = br#"{"tts_notification_id":"73\u00002","type":1}"#;
    let signed = header(
        "Authorization",
        sign::tiktok_shop("tiktok-app-secret-xyz", "6a1b2c3d4e", body),
    );
    let (status, ack) = hook(&app, id, &signed, body).await;
    assert_eq!(status, 200, "{ack}");
    let events = app.events(&token, id).await;
    assert!(
        events
            .iter()
            .any(|e| e["platform_event_id"] == "73\u{FFFD}2"),
        "{events:?}"
    );
}
on_both_backends!(tiktok_shop_webhooks);

async fn generic_hmac_header(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, json!({
            "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
            "settings": {"base_url": "http://127.0.0.1:9", "webhook_signature_header": "X-Erp-Signature", "webhook_signature_encoding": "base64"},
            "credentials": {"api_key": "k"},
            "webhook_secret": "erp-shared-secret-123",
        }))
        .await;
    check_scheme(
        &app,
        &token,
        &connection,
        "erp-shared-secret-123",
        Box::new(|secret, body| {
            header(
                "X-Erp-Signature",
                sign::hmac_sha256(secret, body, SignatureEncoding::Base64),
            )
        }),
    )
    .await;
}
on_both_backends!(generic_hmac_header);

fn standard_headers(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("webhook-id".into(), id.into()),
        ("webhook-timestamp".into(), timestamp.to_string()),
        (
            "webhook-signature".into(),
            sign::standard_webhooks(secret, id, timestamp, body)
                .unwrap_or_else(|| "v1,AAAA".into()),
        ),
    ]
}

async fn standard_webhooks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let connection = app
        .connection(&token, json!({
            "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
            "settings": {"base_url": "http://127.0.0.1:9", "webhook_scheme": "standard_webhooks"},
            "credentials": {"api_key": "k"},
            "webhook_secret": secret,
        }))
        .await;
    check_scheme(
        &app,
        &token,
        &connection,
        secret,
        Box::new(|secret, body| {
            // A wrong secret in whsec_ form, so the signature is well-formed but wrong.
            let secret = if secret.starts_with("whsec_") {
                secret
            } else {
                "whsec_c2VjcmV0LWJ1dC13cm9uZw=="
            };
            standard_headers(
                secret,
                "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
                chrono::Utc::now().timestamp(),
                body,
            )
        }),
    )
    .await;
    let id = connection["id"].as_str().unwrap();
    let body = br#"{"type":"order.created","data":{"id":1}}"#;
    let stale = chrono::Utc::now().timestamp() - 301;
    let (status, problem) = hook(
        &app,
        id,
        &standard_headers(secret, "msg_old", stale, body),
        body,
    )
    .await;
    assert_eq!(status, 401, "expired timestamp");
    assert!(problem["detail"].as_str().unwrap().contains("tolerance"));
    // Well past the 300 s tolerance: a second ticking between here and the server's clock
    // must not bring it back inside (it did once, at +301).
    let future = chrono::Utc::now().timestamp() + 330;
    assert_eq!(
        hook(
            &app,
            id,
            &standard_headers(secret, "msg_future", future, body),
            body
        )
        .await
        .0,
        401
    );
    let (status, _) = hook(
        &app,
        id,
        &standard_headers(secret, "msg_new", chrono::Utc::now().timestamp(), body),
        body,
    )
    .await;
    assert_eq!(status, 200);
    let events = app.events(&token, id).await;
    assert_eq!(events[0]["platform_event_id"], "msg_new");
    assert_eq!(events[0]["topic"], "order.created");

    let (status, problem) = app
        .put(
            &format!("/v1/connections/{id}/credentials"),
            &token,
            json!({"webhook_secret": "not-a-whsec"}),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["errors"][0]["field"], "webhook_secret");
}
on_both_backends!(standard_webhooks);

/// After a rotation the old secret verifies only within the grace period asked for.
async fn rotated_secrets_verify_only_within_their_grace_period(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, shopify_connection("US", "first-shopify-secret"))
        .await;
    let id = connection["id"].as_str().unwrap();
    let send = |secret: &'static str, n: u32| {
        let body = format!("{{\"order\":{n}}}");
        let headers = shopify_headers(secret, body.as_bytes(), &format!("evt-{n}"));
        let app = &app;
        async move { hook(app, id, &headers, body.as_bytes()).await.0 }
    };

    let (status, _) = app
        .put(
            &format!("/v1/connections/{id}/credentials"),
            &token,
            json!({"webhook_secret": "second-shopify-secret", "grace_seconds": 3600}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        send("second-shopify-secret", 1).await,
        200,
        "the new secret verifies"
    );
    assert_eq!(
        send("first-shopify-secret", 2).await,
        200,
        "the old one too, within its grace period"
    );

    let (status, view) = app
        .put(
            &format!("/v1/connections/{id}/credentials"),
            &token,
            json!({"webhook_secret": "third-shopify-secret", "grace_seconds": 0}),
        )
        .await;
    assert_eq!(status, 200);
    assert!(view["previous_webhook_secret_valid_until"].is_null());
    assert_eq!(send("third-shopify-secret", 3).await, 200);
    assert_eq!(
        send("second-shopify-secret", 4).await,
        401,
        "no grace asked: the old secret is dead at once"
    );
    assert_eq!(
        send("first-shopify-secret", 5).await,
        401,
        "older secrets never come back"
    );

    let (status, _) = app
        .put(
            &format!("/v1/connections/{id}/credentials"),
            &token,
            json!({"webhook_secret": "fourth-shopify-secret", "grace_seconds": 600}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(send("third-shopify-secret", 6).await, 200);
    app.time.advance(chrono::Duration::seconds(601));
    assert_eq!(
        send("third-shopify-secret", 7).await,
        401,
        "the grace period is over"
    );
    assert_eq!(send("fourth-shopify-secret", 8).await, 200);
}
on_both_backends!(rotated_secrets_verify_only_within_their_grace_period);

/// Rotating the credential that signs pushes (Shopee's partner key) also keeps the old one in grace.
async fn rotating_a_signing_credential_keeps_the_old_key_in_grace(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let callback = "https://hooks.example.com/shopee";
    let connection = app
        .connection(&token, json!({
            "name": "Shopee", "connector": "shopee", "environment": "production",
            "settings": {"partner_id": 1, "shop_id": 2, "push_callback_url": callback},
            "credentials": {"partner_key": "old-partner-key", "access_token": "t", "refresh_token": "r"},
        }))
        .await;
    let id = connection["id"].as_str().unwrap();
    let (status, _) = app
        .put(&format!("/v1/connections/{id}/credentials"), &token, json!({"credentials": {"partner_key": "new-partner-key", "access_token": "t2", "refresh_token": "r2"}}))
        .await;
    assert_eq!(status, 200);
    for (key, n) in [("old-partner-key", 1), ("new-partner-key", 2)] {
        let body = format!("{{\"code\":3,\"n\":{n}}}");
        let (status, _) = hook(
            &app,
            id,
            &header(
                "Authorization",
                sign::shopee_push(key, callback, body.as_bytes()),
            ),
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 200, "{key}");
    }
}
on_both_backends!(rotating_a_signing_credential_keeps_the_old_key_in_grace);

/// Many concurrent deliveries of one event (a platform retrying while we are slow) store it once.
async fn concurrent_duplicates_are_stored_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, shopify_connection("US", "shopify-secret-1"))
        .await;
    let id = connection["id"].as_str().unwrap();
    let body = br#"{"id":1}"#;
    let headers = shopify_headers("shopify-secret-1", body, "same-event");
    let sends = (0..32).map(|_| hook(&app, id, &headers, body));
    let statuses: Vec<u16> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(app.events(&token, id).await.len(), 1);
}
on_both_backends!(concurrent_duplicates_are_stored_once);

/// A connector that sends no webhooks and an unknown connection both refuse clearly.
async fn hooks_for_unknown_or_webhookless_connections_are_refused(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    assert_eq!(
        hook(&app, "con_0123456789abcdef0123456789abcdef", &[], b"{}")
            .await
            .0,
        404
    );
    assert_eq!(hook(&app, "../../etc/passwd", &[], b"{}").await.0, 404);
    let amazon = app
        .connection(&token, json!({
            "name": "Amazon", "connector": "amazon-sp-api", "environment": "sandbox",
            "settings": {"region": "na", "marketplace_ids": ["ATVPDKIKX0DER"]},
            "credentials": {"lwa_client_id": "amzn1.application-oa2-client.x", "lwa_client_secret": "s", "refresh_token": "Atzr|x"},
        }))
        .await;
    let (status, problem) = hook(&app, amazon["id"].as_str().unwrap(), &[], b"{}").await;
    assert_eq!(status, 400);
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("does not send webhooks")
    );
    let shopify_without_secret = app
        .connection(&token, json!({
            "name": "no secret", "connector": "shopify", "environment": "production",
            "settings": {"shop_domain": "x.myshopify.com"}, "credentials": {"access_token": "shpat_x"},
        }))
        .await;
    let body = b"{}";
    let (status, _) = hook(
        &app,
        shopify_without_secret["id"].as_str().unwrap(),
        &header("X-Shopify-Hmac-Sha256", sign::shopify("", body)),
        body,
    )
    .await;
    assert_eq!(status, 401, "no secret configured: nothing verifies");
}
on_both_backends!(hooks_for_unknown_or_webhookless_connections_are_refused);

/// A flood of 5,000 webhooks with bad signatures is refused without the database paying per
/// request: refusals are tallied in memory and written once per connection per interval,
/// and the counter still adds up to every refusal.
async fn a_flood_of_bad_signatures_costs_the_database_little(backend: Backend) {
    use futures_util::StreamExt;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
    let app = TestApp::spawn_with(
        backend,
        &[("SYNCHUB_WEBHOOKS__REJECTION_FLUSH_MILLIS", "1000")],
    )
    .await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(
            &token,
            crate::helpers::shopify_connection("US", "flood-secret-123456"),
        )
        .await;
    let id = connection["id"].as_str().unwrap().to_string();
    let events = || async {
        synchub::store::entities::alert_event::Entity::find()
            .filter(synchub::store::entities::alert_event::Column::ConnectionId.eq(id.clone()))
            .all(&app.db)
            .await
            .unwrap()
    };
    assert!(events().await.is_empty());
    let started = std::time::Instant::now();
    let statuses: Vec<u16> = futures_util::stream::iter(0..5000)
        .map(|i| {
            let (client, url) = (app.client.clone(), app.url(&format!("/v1/hooks/{id}")));
            async move {
                client
                    .post(url)
                    .header("X-Shopify-Hmac-Sha256", "bm90LWEtc2lnbmF0dXJl")
                    .body(format!(r#"{{"id":{i}}}"#))
                    .send()
                    .await
                    .map(|r| r.status().as_u16())
                    .unwrap_or(0)
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs();
    assert!(statuses.iter().all(|s| *s == 401), "every one refused");
    assert_eq!(
        rejected_count_reaches(&app, &token, &id, 5000).await,
        5000,
        "all counted"
    );
    let written = events().await;
    let counted: i64 = written
        .iter()
        .map(|e| e.details["count"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(counted, 5000, "the events carry the counts");
    assert!(
        written.len() as u64 <= elapsed + 3,
        "{} events in {elapsed} s: at most one a second",
        written.len()
    );
}
on_both_backends!(a_flood_of_bad_signatures_costs_the_database_little);

/// Shopify's headers for `body` signed with `secret`, carrying event id `event`.
fn shopify_headers(secret: &str, body: &[u8], event: &str) -> Vec<(String, String)> {
    let mut headers = header("X-Shopify-Hmac-Sha256", sign::shopify(secret, body));
    headers.push(("X-Shopify-Event-Id".into(), event.into()));
    headers
}

/// A Shopify webhook for `connection`, signed with `secret`, carrying event id `event`.
async fn shopify_hook(app: &TestApp, connection: &str, secret: &str, event: &str) -> u16 {
    let body = br#"{"id":820982911946154508,"email":"jon@example.com"}"#;
    let mut headers = shopify_headers(secret, body, event);
    headers.push(("X-Shopify-Topic".into(), "orders/create".into()));
    hook(app, connection, &headers, body).await.0
}

/// Rows of `connection` in the events table whose platform event id is `event`.
async fn stored(app: &TestApp, connection: &str, event: &str) -> u64 {
    use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
    use synchub::store::entities::webhook_event;
    webhook_event::Entity::find()
        .filter(webhook_event::Column::ConnectionId.eq(connection))
        .filter(webhook_event::Column::PlatformEventId.eq(event))
        .count(&app.db)
        .await
        .unwrap()
}

/// Events older than the retention are deleted, a thousand a statement, and nothing newer;
/// until then a platform's retry of an old event is a duplicate, afterwards it is new.
async fn events_past_their_retention_are_deleted(backend: Backend) {
    use sea_orm::EntityTrait;
    use synchub::ids::{ConnectionId, EventId, TenantId};
    use synchub::store::entities::webhook_event;
    use synchub::webhooks::retention::{DELETE_BATCH, delete_events_before};

    let app = TestApp::spawn(backend).await;
    let (tenant, token) = app.tenant_with_token(&["write"]).await;
    let secret = "shopify-app-client-secret-1";
    let connection = app
        .connection(&token, shopify_connection("US", secret))
        .await;
    let connection = connection["id"].as_str().unwrap().to_string();
    let now = app.time.clock().now();
    let keep = chrono::Duration::days(30);
    let old = (0..DELETE_BATCH * 2 + 500).map(|n| webhook_event::ActiveModel {
        id: sea_orm::Set(EventId::generate_at(
            now - keep - chrono::Duration::minutes(n as i64 + 1),
        )),
        tenant_id: sea_orm::Set(TenantId::parse(&tenant).unwrap()),
        connection_id: sea_orm::Set(ConnectionId::parse(&connection).unwrap()),
        dedupe_key: sea_orm::Set(format!("id:old-{n}")),
        platform_event_id: sea_orm::Set(Some(format!("old-{n}"))),
        topic: sea_orm::Set(Some("orders/create".into())),
        content_type: sea_orm::Set(Some("application/json".into())),
        body: sea_orm::Set(b"{}".to_vec()),
        received_at: sea_orm::Set(now - keep - chrono::Duration::minutes(n as i64 + 1)),
    });
    let old: Vec<_> = old.collect();
    for chunk in old.chunks(500) {
        webhook_event::Entity::insert_many(chunk.to_vec())
            .exec(&app.db)
            .await
            .unwrap();
    }
    assert_eq!(
        shopify_hook(&app, &connection, secret, "fresh-1").await,
        200
    );
    assert_eq!(shopify_hook(&app, &connection, secret, "old-0").await, 200);
    assert_eq!(
        stored(&app, &connection, "old-0").await,
        1,
        "a duplicate before"
    );

    let deleted = delete_events_before(&app.db, now - keep).await.unwrap();
    assert_eq!(deleted, DELETE_BATCH * 2 + 500);
    let events = app.events(&token, &connection).await;
    let ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e["platform_event_id"].as_str())
        .collect();
    assert_eq!(ids, ["fresh-1"]);
    assert_eq!(delete_events_before(&app.db, now - keep).await.unwrap(), 0);

    assert_eq!(shopify_hook(&app, &connection, secret, "old-0").await, 200);
    assert_eq!(stored(&app, &connection, "old-0").await, 1, "new after");
}
on_both_backends!(events_past_their_retention_are_deleted);

/// The running service deletes them by itself, by its clock: a month and a day on, the
/// event received today is gone.
async fn the_service_deletes_events_once_their_retention_passes(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SYNCHUB_WEBHOOKS__RETENTION_DAYS", "30")]).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let secret = "shopify-app-client-secret-1";
    let connection = app
        .connection(&token, shopify_connection("US", secret))
        .await;
    let connection = connection["id"].as_str().unwrap().to_string();
    assert_eq!(shopify_hook(&app, &connection, secret, "today").await, 200);
    app.time.advance(chrono::Duration::days(29));
    tokio::time::sleep(std::time::Duration::from_millis(1_500)).await;
    assert_eq!(
        app.events(&token, &connection).await.len(),
        1,
        "kept for 30 days"
    );
    app.time.advance(chrono::Duration::days(2));
    eventually(
        "the event deleted",
        std::time::Duration::from_secs(10),
        || async {
            let left = app.events(&token, &connection).await.len();
            if left == 0 {
                Ok(())
            } else {
                Err(format!("{left} left"))
            }
        },
    )
    .await;
}
on_both_backends!(the_service_deletes_events_once_their_retention_passes);
