use serde_json::json;

use crate::helpers::{Backend, TestApp, contains, shopify_connection};
use crate::on_both_backends;

/// Secrets are stored encrypted: neither the database files nor any response holds them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_files_hold_no_plaintext_secret_after_create_and_rotate() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let first_token = "shpat_first_9f8e7d6c5b4a39281706";
    let first_secret = "whsec-style-first-shopify-app-secret";
    let mut body = shopify_connection("US store", first_secret);
    body["credentials"]["access_token"] = json!(first_token);
    let connection = app.connection(&token, body).await;
    let id = connection["id"].as_str().unwrap();
    assert_eq!(connection["credentials"]["access_token"], "****1706");
    assert_eq!(connection["webhook_secret"], "****cret");
    assert!(!connection.to_string().contains(first_token));

    let second_token = "shpat_second_0a1b2c3d4e5f60718293";
    let second_secret = "rotated-shopify-app-secret-value-2";
    let (status, rotated) = app
        .put(
            &format!("/v1/connections/{id}/credentials"),
            &token,
            json!({"credentials": {"access_token": second_token}, "webhook_secret": second_secret}),
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    assert_eq!(rotated["credentials"]["access_token"], "****8293");
    assert!(rotated["previous_webhook_secret_valid_until"].is_string());

    let bytes = app.sqlite_bytes();
    assert!(bytes.len() > 4096, "the database files were read");
    assert!(
        contains(&bytes, "acme-us.myshopify.com"),
        "settings are stored in plain text, so the scan works"
    );
    for secret in [first_token, first_secret, second_token, second_secret] {
        assert!(
            !contains(&bytes, secret),
            "{secret} found in the SQLite files"
        );
    }
    let (_, fetched) = app.get(&format!("/v1/connections/{id}"), &token).await;
    for secret in [first_token, first_secret, second_token, second_secret] {
        assert!(!fetched.to_string().contains(secret));
    }
}

/// Settings and credentials are checked against the connector's fields, naming each bad one.
async fn connections_are_validated_against_the_manifest(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let (status, body) = app
        .post(
            "/v1/connections",
            &token,
            json!({
                "name": "bad",
                "connector": "shopify",
                "environment": "production",
                "settings": {"shop_domain": "acme.example.com", "colour": "red"},
                "credentials": {},
                "timezone": "Mars/Olympus",
            }),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "validation");
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        fields,
        [
            "settings.colour",
            "settings.shop_domain",
            "credentials.access_token",
            "timezone"
        ]
    );

    let (status, body) = app
        .post("/v1/connections", &token, json!({"name": "x", "connector": "ebay", "environment": "production", "credentials": {}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["errors"][0]["field"], "connector");

    let (status, body) = app
        .post("/v1/connections", &token, json!({
            "name": "amazon", "connector": "amazon-sp-api", "environment": "sandbox",
            "settings": {"region": "mars", "marketplace_ids": []},
            "credentials": {"lwa_client_id": "a", "lwa_client_secret": "b", "refresh_token": "c"},
        }))
        .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["settings.region", "settings.marketplace_ids"]);

    app.connection(
        &token,
        shopify_connection("US store", "hush-hush-secret-1234"),
    )
    .await;
    let (status, body) = app
        .post(
            "/v1/connections",
            &token,
            shopify_connection("US store", "x-secret-xxxxxxxxxxx"),
        )
        .await;
    assert_eq!(status, 409, "{body}");
}
on_both_backends!(connections_are_validated_against_the_manifest);

/// Without SYNCHUB_ALLOW_PRIVATE_TARGETS, a base URL pointing into the private network is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_base_urls_are_refused_unless_the_operator_allows_them() {
    let app = TestApp::spawn_with(
        Backend::Sqlite,
        &[("SYNCHUB_ALLOW_PRIVATE_TARGETS", "false")],
    )
    .await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let body = json!({
        "name": "erp", "connector": "generic-rest-erp", "environment": "production",
        "settings": {"base_url": "http://169.254.169.254/latest"},
        "credentials": {"api_key": "k"},
    });
    let (status, problem) = app.post("/v1/connections", &token, body).await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "settings.base_url");
}

/// The whole life of a connection: create, read, list, patch, delete, with an audit entry each.
async fn connection_lifecycle_is_audited(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["admin"]).await;
    let connection = app
        .connection(
            &token,
            shopify_connection("US store", "hush-hush-secret-1234"),
        )
        .await;
    let id = connection["id"].as_str().unwrap();
    assert_eq!(connection["version"], "1.0.0");
    assert!(
        connection["webhook_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/hooks/{id}"))
    );

    let (status, patched) = app
        .patch(&format!("/v1/connections/{id}"), &token, json!({"name": "US flagship", "settings": {"shop_domain": "flagship.myshopify.com"}, "timezone": "America/New_York"}))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "US flagship");
    assert_eq!(patched["settings"]["shop_domain"], "flagship.myshopify.com");
    let (status, _) = app
        .patch(&format!("/v1/connections/{id}"), &token, json!({}))
        .await;
    assert_eq!(status, 400, "an empty patch changes nothing and says so");

    let (_, page) = app.get("/v1/connections?limit=1", &token).await;
    assert_eq!(page["data"].as_array().unwrap().len(), 1);
    assert!(page["next_cursor"].is_null());

    let (status, _) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/connections/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        app.get(&format!("/v1/connections/{id}"), &token).await.0,
        404
    );

    let (_, audit) = app.get("/v1/audit", &token).await;
    let actions: Vec<&str> = audit["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "connection.delete",
            "connection.update",
            "connection.create",
            "token.create"
        ]
    );
    let entry = &audit["data"][1];
    assert_eq!(entry["actor_name"], "ci");
    assert!(entry["request_id"].is_string());
    assert_eq!(entry["details"]["after"]["name"], "US flagship");
}
on_both_backends!(connection_lifecycle_is_audited);

/// Pagination walks every item exactly once.
async fn pagination_walks_every_connection_once(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    for i in 0..5 {
        app.connection(
            &token,
            shopify_connection(&format!("store {i}"), "hush-hush-secret-1234"),
        )
        .await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/connections?limit=2&cursor={c}"),
            None => "/v1/connections?limit=2".to_string(),
        };
        let (status, page) = app.get(&path, &token).await;
        assert_eq!(status, 200);
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["name"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        ["store 0", "store 1", "store 2", "store 3", "store 4"]
    );
    assert_eq!(app.get("/v1/connections?limit=0", &token).await.0, 400);
    assert_eq!(
        app.get("/v1/connections?cursor=';drop", &token).await.0,
        400
    );
}
on_both_backends!(pagination_walks_every_connection_once);

/// Credentials that no longer read as a JSON object make a check fail loudly (a 500 with the
/// cause in the log), instead of calling the platform with no credentials at all.
async fn unreadable_credentials_fail_loudly(backend: Backend) {
    use sea_orm::{ActiveModelTrait, EntityTrait, Set};
    use synchub::store::entities::connection;
    let app = TestApp::spawn(backend).await;
    let (tenant, token) = app.tenant_with_token(&["read", "write"]).await;
    let created = app
        .connection(&token, shopify_connection("US", "unreadable-secret-1"))
        .await;
    let id = synchub::ids::ConnectionId::parse(created["id"].as_str().unwrap()).unwrap();
    let tenant = synchub::ids::TenantId::parse(&tenant).unwrap();
    let broken = app
        .vault()
        .store(&app.db, &tenant, "not a JSON object")
        .await
        .unwrap();
    let row = connection::Entity::find_by_id(id.clone())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let mut active: connection::ActiveModel = row.into();
    active.credentials_secret_id = Set(broken);
    active.update(&app.db).await.unwrap();

    let (status, problem) = app
        .post(&format!("/v1/connections/{id}/check"), &token, json!({}))
        .await;
    assert_eq!(status, 500, "{problem}");
    assert_eq!(problem["code"], "internal", "{problem}");
}
on_both_backends!(unreadable_credentials_fail_loudly);

/// A connection row read just before its credentials were replaced names a secret that is
/// gone (the replacement deletes it): its credentials still load, the new ones. Without
/// this a worker that read the row a moment before the keeper renewed a token died with a
/// configuration error.
async fn credentials_replaced_after_the_row_was_read_still_load(backend: Backend) {
    use sea_orm::EntityTrait;
    use synchub::store::entities::connection;
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "write"]).await;
    let created = app
        .connection(&token, shopify_connection("US", "replaced-secret-1"))
        .await;
    let id = synchub::ids::ConnectionId::parse(created["id"].as_str().unwrap()).unwrap();
    let stale = connection::Entity::find_by_id(id.clone())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let (status, body) = app
        .put(
            &format!("/v1/connections/{id}/credentials"),
            &token,
            json!({"credentials": {"access_token": "shpat_replaced_while_read"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let vault = app.vault();
    let old = vault
        .load(&app.db, &stale.tenant_id, &stale.credentials_secret_id)
        .await;
    assert!(old.is_err(), "the old secret was deleted");
    let credentials = synchub::connections::load_credentials(&app.db, &vault, &stale)
        .await
        .unwrap();
    assert_eq!(credentials["access_token"], "shpat_replaced_while_read");
}
on_both_backends!(credentials_replaced_after_the_row_was_read_still_load);
