use serde_json::json;

use crate::helpers::{Backend, TestApp, shopify_connection};
use crate::on_both_backends;

async fn post_with_key(
    app: &TestApp,
    token: &str,
    key: &str,
    body: &serde_json::Value,
) -> (u16, bool, serde_json::Value) {
    let response = app
        .client
        .post(app.url("/v1/connections"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response.headers().get("idempotent-replayed").is_some();
    (status, replayed, response.json().await.unwrap())
}

/// A retried write with the same Idempotency-Key creates nothing new and gets the first answer.
async fn retried_writes_with_a_key_happen_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, token) = app.tenant_with_token(&["write"]).await;
    let body = shopify_connection("US", "idem-secret-123456");

    let (status, replayed, first) = post_with_key(&app, &token, "order-sync-setup-1", &body).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, replayed, second) = post_with_key(&app, &token, "order-sync-setup-1", &body).await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(first, second, "the stored response is replayed as it was");
    let (_, list) = app.get("/v1/connections", &token).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "created once");

    let mut other = body.clone();
    other["name"] = json!("EU");
    let (status, _, problem) = post_with_key(&app, &token, "order-sync-setup-1", &other).await;
    assert_eq!(status, 422, "same key, different request");
    assert_eq!(problem["code"], "idempotency_key_reused");

    // Errors that are the client's are remembered too; keys belong to their token.
    let (status, _, _) = post_with_key(&app, &token, "bad-1", &json!({"name": "x"})).await;
    assert_eq!(status, 400);
    let (status, replayed, _) = post_with_key(&app, &token, "bad-1", &json!({"name": "x"})).await;
    assert_eq!((status, replayed), (400, true));
    let other_token = app.token_for(&tenant, &["write"]).await;
    let (status, replayed, _) =
        post_with_key(&app, &other_token, "order-sync-setup-1", &other).await;
    assert_eq!(
        (status, replayed),
        (201, false),
        "another token's keys are its own"
    );

    let (status, _, problem) = post_with_key(&app, &token, "", &body).await;
    assert_eq!(status, 400, "{problem}");
    let (_, audit) = app.get("/v1/audit", &token).await;
    let creates = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "connection.create")
        .count();
    assert_eq!(creates, 2, "one per distinct request, none for replays");
}
on_both_backends!(retried_writes_with_a_key_happen_once);
