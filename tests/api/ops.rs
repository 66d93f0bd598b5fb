use synchub::webhooks::sign;

use crate::helpers::{Backend, TestApp, shopify_connection};
use crate::on_both_backends;

/// Health, readiness, metrics and the OpenAPI document are served without a token, and every
/// response carries a request id (a sane incoming one is kept).
async fn ops_surface_is_served(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, shopify_connection("US", "ops-secret"))
        .await;
    let id = connection["id"].as_str().unwrap();
    let body = b"{}";
    let hook = app
        .client
        .post(app.url(&format!("/v1/hooks/{id}")))
        .header("X-Shopify-Hmac-Sha256", sign::shopify("ops-secret", body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(hook.status().as_u16(), 200);
    let bad = app
        .client
        .post(app.url(&format!("/v1/hooks/{id}")))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 401);

    let health = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    assert_eq!(health.headers()["x-request-id"], "trace-abc-123");
    let evil = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "a b <script>")
        .send()
        .await
        .unwrap();
    assert_ne!(
        evil.headers()["x-request-id"],
        "a b <script>",
        "ids that could break a log line are replaced"
    );
    let missing = app
        .client
        .get(app.url("/v1/connections/con_0123456789abcdef0123456789abcdef"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let request_id = missing.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let problem: serde_json::Value = missing.json().await.unwrap();
    assert_eq!(
        problem["request_id"], request_id,
        "the problem names the request id of its response"
    );

    let ready = app.client.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let metrics = app.metrics().await;
    assert!(metrics.contains("synchub_http_requests_total"), "{metrics}");
    assert!(metrics.contains("route=\"/v1/hooks/{connection_id}\""));
    assert!(metrics.contains("synchub_http_request_duration_seconds_bucket"));
    assert!(metrics.contains("synchub_webhooks_total{outcome=\"stored\"}"));
    assert!(metrics.contains("synchub_webhooks_total{outcome=\"bad_signature\"}"));

    let openapi: serde_json::Value = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/v1/tenants",
        "/v1/connections/{id}",
        "/v1/hooks/{connection_id}",
        "/v1/connections/{id}/allowlist",
        "/v1/audit",
    ] {
        assert!(
            openapi["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(openapi["components"]["securitySchemes"]["bearer"].is_object());
}
on_both_backends!(ops_surface_is_served);
