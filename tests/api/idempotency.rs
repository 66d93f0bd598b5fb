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

/// A token issued under an Idempotency-Key is replayed to the retry, but the kept response
/// is sealed: neither the idempotency table nor the database files hold the token.
async fn issued_tokens_are_kept_sealed_for_replays(backend: Backend) {
    use sea_orm::EntityTrait;
    let app = TestApp::spawn(backend.clone()).await;
    let (tenant, _) = app.tenant_with_token(&["read"]).await;
    let issue = || async {
        let response = app
            .client
            .post(app.url(&format!("/v1/tenants/{tenant}/tokens")))
            .bearer_auth(crate::helpers::OPERATOR_TOKEN)
            .header("Idempotency-Key", "issue-ci-token-1")
            .json(&json!({"name": "ci", "scopes": ["read"]}))
            .send()
            .await
            .unwrap();
        let replayed = response.headers().get("idempotent-replayed").is_some();
        (
            response.status().as_u16(),
            replayed,
            response.json::<serde_json::Value>().await.unwrap(),
        )
    };
    let (status, replayed, first) = issue().await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let token = first["token"].as_str().unwrap().to_string();
    let (status, replayed, again) = issue().await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(
        again["token"],
        token.as_str(),
        "the retry gets the same token"
    );

    let kept = synchub::store::entities::idempotency_key::Entity::find()
        .all(&app.db)
        .await
        .unwrap();
    assert!(!kept.is_empty());
    for row in &kept {
        let body = row.body.clone().unwrap_or_default();
        assert!(
            !crate::helpers::contains(&body, &token),
            "kept in plaintext"
        );
        assert!(
            !crate::helpers::contains(&body, "\"token\""),
            "not even the field name"
        );
    }
    if matches!(backend, Backend::Sqlite) {
        assert!(!crate::helpers::contains(&app.sqlite_bytes(), &token));
    }
    // The token works, and is not shown again without the key.
    let (status, _) = app.get("/v1/connections", &token).await;
    assert_eq!(status, 200);
}
on_both_backends!(issued_tokens_are_kept_sealed_for_replays);
