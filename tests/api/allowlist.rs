use serde_json::json;
use synchub::webhooks::sign;

use crate::helpers::{Backend, TestApp, shopify_connection};
use crate::on_both_backends;

async fn signed_hook(app: &TestApp, id: &str, forwarded_for: Option<&str>, n: u32) -> u16 {
    let body = format!("{{\"n\":{n}}}");
    let mut request = app
        .client
        .post(app.url(&format!("/v1/hooks/{id}")))
        .header(
            "X-Shopify-Hmac-Sha256",
            sign::shopify("allowlist-secret", body.as_bytes()),
        )
        .header("X-Shopify-Event-Id", format!("e{n}"))
        .body(body);
    if let Some(xff) = forwarded_for {
        request = request.header("X-Forwarded-For", xff);
    }
    request.send().await.expect("sent").status().as_u16()
}

/// Webhooks from outside the allowlist get 403, and an untrusted peer cannot talk its way in
/// with X-Forwarded-For.
async fn allowlists_refuse_foreign_senders(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, shopify_connection("US", "allowlist-secret"))
        .await;
    let id = connection["id"].as_str().unwrap();

    assert_eq!(
        signed_hook(&app, id, None, 1).await,
        200,
        "an empty allowlist accepts anyone"
    );
    let (status, list) = app
        .put(
            &format!("/v1/connections/{id}/allowlist"),
            &token,
            json!({"cidrs": ["10.0.0.0/8", "2001:db8::/32"]}),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(
        app.get(&format!("/v1/connections/{id}/allowlist"), &token)
            .await
            .1,
        json!({"cidrs": ["10.0.0.0/8", "2001:db8::/32"]})
    );

    let response = app
        .client
        .post(app.url(&format!("/v1/hooks/{id}")))
        .header(
            "X-Shopify-Hmac-Sha256",
            sign::shopify("allowlist-secret", b"{}"),
        )
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let problem: serde_json::Value = response.json().await.unwrap();
    assert_eq!(problem["code"], "source_not_allowed");
    assert_eq!(
        signed_hook(&app, id, Some("10.9.9.9"), 3).await,
        403,
        "spoofed X-Forwarded-For changes nothing"
    );
    assert_eq!(app.events(&token, id).await.len(), 1);

    let (status, problem) = app
        .put(
            &format!("/v1/connections/{id}/allowlist"),
            &token,
            json!({"cidrs": ["10.0.0.0/8", "banana"]}),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "cidrs[1]");
    let (status, _) = app
        .put(
            &format!("/v1/connections/{id}/allowlist"),
            &token,
            json!({"cidrs": ["127.0.0.1"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        signed_hook(&app, id, None, 4).await,
        200,
        "the change applies at once"
    );
}
on_both_backends!(allowlists_refuse_foreign_senders);

/// Behind a trusted proxy the forwarded address is the one the allowlist checks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("SYNCHUB_TRUSTED_PROXIES", "127.0.0.1/32")],
    )
    .await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, shopify_connection("US", "allowlist-secret"))
        .await;
    let id = connection["id"].as_str().unwrap();
    let (status, _) = app
        .put(
            &format!("/v1/connections/{id}/allowlist"),
            &token,
            json!({"cidrs": ["203.0.113.0/24"]}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(signed_hook(&app, id, Some("203.0.113.5"), 1).await, 200);
    assert_eq!(signed_hook(&app, id, Some("198.51.100.1"), 2).await, 403);
    assert_eq!(
        signed_hook(&app, id, Some("203.0.113.5, 198.51.100.1"), 3).await,
        403,
        "the nearest untrusted hop counts, not the left-most"
    );
    assert_eq!(
        signed_hook(&app, id, None, 4).await,
        403,
        "the proxy itself is not on the list"
    );
}
