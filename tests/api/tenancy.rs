use serde_json::json;

use crate::helpers::{Backend, OPERATOR_TOKEN, TestApp, shopify_connection};
use crate::on_both_backends;

/// Another tenant's connection, its events and its audit entries are "not found", never shown.
async fn tenants_cannot_see_each_other(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant_a, token_a) = app.tenant_with_token(&["admin"]).await;
    let (_, token_b) = app.tenant_with_token(&["admin"]).await;
    let connection = app
        .connection(
            &token_a,
            shopify_connection("US store", "hush-hush-secret-1234"),
        )
        .await;
    let id = connection["id"].as_str().unwrap();

    for path in [
        format!("/v1/connections/{id}"),
        format!("/v1/connections/{id}/events"),
        format!("/v1/connections/{id}/allowlist"),
    ] {
        let (status, body) = app.get(&path, &token_b).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(body["code"], "not_found");
    }
    let (status, _) = app
        .patch(
            &format!("/v1/connections/{id}"),
            &token_b,
            json!({"name": "mine"}),
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/connections/{id}"),
            &token_b,
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .get(&format!("/v1/audit?tenant_id={tenant_a}"), &token_b)
        .await;
    assert_eq!(status, 404);
    let (status, _) = app
        .post(
            &format!("/v1/tenants/{tenant_a}/tokens"),
            &token_b,
            json!({"name": "x", "scopes": ["admin"]}),
        )
        .await;
    assert_eq!(
        status, 404,
        "a tenant admin cannot mint tokens for another tenant"
    );

    let (status, audit_b) = app.get("/v1/audit", &token_b).await;
    assert_eq!(status, 200);
    assert!(
        !audit_b.to_string().contains(id),
        "B's audit log must not mention A's connection"
    );
    let (_, audit_a) = app.get("/v1/audit", &token_a).await;
    assert!(
        audit_a["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["resource_id"] == id && e["action"] == "connection.create")
    );
    let (_, list_b) = app.get("/v1/connections", &token_b).await;
    assert_eq!(list_b["data"].as_array().unwrap().len(), 0);
}
on_both_backends!(tenants_cannot_see_each_other);

/// Scopes are enforced: read tokens read, only write tokens write, only the operator makes tenants.
async fn scopes_are_enforced(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, writer) = app.tenant_with_token(&["write"]).await;
    let reader = app.token_for(&tenant, &["read"]).await;

    let (status, body) = app
        .post(
            "/v1/connections",
            &reader,
            shopify_connection("s", "hush-hush-secret-1234"),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "forbidden");
    let (status, _) = app.get("/v1/connections", &reader).await;
    assert_eq!(status, 200);
    let (status, connectors) = app.get("/v1/connectors", &reader).await;
    assert_eq!(status, 200);
    let names: Vec<&str> = connectors["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "amazon-sp-api",
            "generic-rest-erp",
            "lingxing",
            "mabang",
            "shopee",
            "shopify",
            "tiktok-shop"
        ]
    );
    let shopify = &connectors["data"][5];
    assert_eq!(shopify["settings"][0]["name"], "shop_domain");
    assert_eq!(shopify["credentials"][0]["name"], "access_token");
    assert_eq!(shopify["webhook_scheme"], "shopify_hmac");
    let (status, _) = app
        .post(
            "/v1/connections",
            &writer,
            shopify_connection("s", "hush-hush-secret-1234"),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = app.post("/v1/tenants", &writer, json!({"name": "x"})).await;
    assert_eq!(status, 403, "only the operator creates tenants");
    let (status, _) = app.get("/v1/connections", OPERATOR_TOKEN).await;
    assert_eq!(status, 403, "the operator does not read tenant data");
    let (status, body) = app
        .get(
            "/v1/connections",
            "shk_not_a_real_token_at_all_000000000000",
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "unauthenticated");
    assert_eq!(
        body["detail"], NOT_VALID,
        "an unknown token reads like a revoked or expired one"
    );
    let response = app
        .client
        .get(app.url("/v1/connections"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let problem: serde_json::Value = response.json().await.unwrap();
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .starts_with("no Authorization header"),
        "{problem}"
    );

    // The scheme is case-insensitive (RFC 9110 §11.1); the token itself is not.
    let (_, reader) = app.tenant_with_token(&["read"]).await;
    for (header, expected) in [
        (format!("bearer {reader}"), 200),
        (format!("BEARER  {reader}"), 200),
        (format!("Bearer {}", reader.to_uppercase()), 401),
        (format!("Basic {reader}"), 401),
        ("Bearer ".to_string(), 401),
    ] {
        let response = app
            .client
            .get(app.url("/v1/connections"))
            .header("Authorization", header.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected, "{header}");
        if expected == 401 {
            let problem: serde_json::Value = response.json().await.unwrap();
            let why = if header.starts_with("Bearer SHK_") {
                "the bearer token is not a synchub token (those start with shk_)"
            } else {
                "the Authorization header is not `Bearer <token>`"
            };
            assert_eq!(problem["detail"], why, "{header}");
        }
    }
    let (status, problem) = app
        .get("/v1/connections", "sk_live_elsewhere_0123456789")
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        problem["detail"],
        "the bearer token is not a synchub token (those start with shk_)"
    );
}

/// Unknown, revoked and expired tokens get the same 401 detail: it never says whether a
/// token exists.
const NOT_VALID: &str = "the bearer token is not valid: unknown, revoked or expired";
on_both_backends!(scopes_are_enforced);

/// Tokens stop working when revoked or expired, and only work from their networks.
async fn token_lifecycle_and_source_networks(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, _) = app.tenant_with_token(&["admin"]).await;

    let (status, fenced) = app
        .post(&format!("/v1/tenants/{tenant}/tokens"), OPERATOR_TOKEN, json!({"name": "office", "scopes": ["read"], "allowed_cidrs": ["10.0.0.0/8", "2001:db8::/32"]}))
        .await;
    assert_eq!(status, 201);
    let (status, body) = app
        .get("/v1/connections", fenced["token"].as_str().unwrap())
        .await;
    assert_eq!(status, 403, "127.0.0.1 is outside 10.0.0.0/8: {body}");
    let spoofed = app
        .client
        .get(app.url("/v1/connections"))
        .bearer_auth(fenced["token"].as_str().unwrap())
        .header("x-forwarded-for", "10.1.2.3")
        .send()
        .await
        .unwrap();
    assert_eq!(
        spoofed.status().as_u16(),
        403,
        "X-Forwarded-For from an untrusted peer is ignored"
    );

    let (status, local) = app
        .post(
            &format!("/v1/tenants/{tenant}/tokens"),
            OPERATOR_TOKEN,
            json!({"name": "local", "scopes": ["read"], "allowed_cidrs": ["127.0.0.0/8"]}),
        )
        .await;
    assert_eq!(status, 201);
    let token = local["token"].as_str().unwrap();
    assert_eq!(app.get("/v1/connections", token).await.0, 200);
    let (status, listed) = app
        .get(&format!("/v1/tenants/{tenant}/tokens"), OPERATOR_TOKEN)
        .await;
    assert_eq!(status, 200);
    assert!(
        !listed.to_string().contains(token),
        "tokens are never listed"
    );
    let token_id = local["id"].as_str().unwrap();
    let (status, _) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/tenants/{tenant}/tokens/{token_id}"),
            OPERATOR_TOKEN,
            None,
        )
        .await;
    assert_eq!(status, 200);
    let (status, problem) = app.get("/v1/connections", token).await;
    assert_eq!(
        (status, problem["detail"].as_str()),
        (401, Some(NOT_VALID)),
        "revoked"
    );

    let soon = chrono::Utc::now() + chrono::Duration::hours(1);
    let (status, expiring) = app
        .post(
            &format!("/v1/tenants/{tenant}/tokens"),
            OPERATOR_TOKEN,
            json!({"name": "brief", "scopes": ["read"], "expires_at": soon}),
        )
        .await;
    assert_eq!(status, 201);
    let token = expiring["token"].as_str().unwrap();
    assert_eq!(app.get("/v1/connections", token).await.0, 200);
    app.time.advance(chrono::Duration::minutes(61));
    let (status, problem) = app.get("/v1/connections", token).await;
    assert_eq!(
        (status, problem["detail"].as_str()),
        (401, Some(NOT_VALID)),
        "expired"
    );

    let (status, body) = app
        .post(
            &format!("/v1/tenants/{tenant}/tokens"),
            OPERATOR_TOKEN,
            json!({"name": "bad", "scopes": [], "allowed_cidrs": ["nope"]}),
        )
        .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["scopes", "allowed_cidrs[0]"]);
}
on_both_backends!(token_lifecycle_and_source_networks);

/// The operator's own tokens are listed and revoked through the API, by the operator only: a
/// leaked one stops working at once, the last working one stays (409, so nobody is locked
/// out of managing tenants), a tenant's token and an unknown id are not found here, and a
/// tenant admin is refused.
async fn operator_tokens_are_revoked_but_never_the_last(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, tenant_admin) = app.tenant_with_token(&["admin"]).await;
    let spare = synchub::tenancy::create_operator_token(&app.database.connect().await, "spare")
        .await
        .unwrap();
    assert_eq!(app.get("/v1/operator/tokens", &spare).await.0, 200);

    let (status, listed) = app.get("/v1/operator/tokens", OPERATOR_TOKEN).await;
    assert_eq!(status, 200, "{listed}");
    let listed = listed["data"].as_array().unwrap().clone();
    assert_eq!(
        listed.len(),
        2,
        "the operator's two tokens, no tenant's: {listed:?}"
    );
    assert!(listed.iter().all(|t| t["tenant_id"].is_null()));
    let text = serde_json::to_string(&listed).unwrap();
    assert!(!text.contains(&spare) && !text.contains(OPERATOR_TOKEN));
    let (spare_id, own_id) = (
        token_id_named(&listed, "spare"),
        token_id_named(&listed, "operator"),
    );

    let revoke = |id: String, token: String| {
        let app = &app;
        async move {
            app.send(
                reqwest::Method::DELETE,
                &format!("/v1/operator/tokens/{id}"),
                &token,
                None,
            )
            .await
        }
    };
    assert_eq!(app.get("/v1/operator/tokens", &tenant_admin).await.0, 403);
    assert_eq!(revoke(spare_id.clone(), tenant_admin.clone()).await.0, 403);
    let (_, tenant_tokens) = app
        .get(&format!("/v1/tenants/{tenant}/tokens"), OPERATOR_TOKEN)
        .await;
    let tenant_token_id = tenant_tokens["data"][0]["id"].as_str().unwrap().to_string();
    for id in [
        tenant_token_id,
        "tok_00000000000000000000000000000000".into(),
        "not-a-token".into(),
    ] {
        let (status, problem) = revoke(id.clone(), OPERATOR_TOKEN.into()).await;
        assert_eq!(status, 404, "{id}: {problem}");
    }
    assert_eq!(
        app.get("/v1/connections", &tenant_admin).await.0,
        200,
        "untouched"
    );

    let (status, revoked) = revoke(spare_id.clone(), OPERATOR_TOKEN.into()).await;
    assert_eq!(status, 200, "{revoked}");
    assert!(revoked["revoked_at"].is_string());
    let (status, problem) = app.get("/v1/operator/tokens", &spare).await;
    assert_eq!((status, problem["detail"].as_str()), (401, Some(NOT_VALID)));
    let (status, again) = revoke(spare_id, OPERATOR_TOKEN.into()).await;
    assert_eq!(
        (status, &again["revoked_at"]),
        (200, &revoked["revoked_at"])
    );

    let (status, problem) = revoke(own_id.clone(), OPERATOR_TOKEN.into()).await;
    assert_eq!(status, 409, "the last working operator token: {problem}");
    assert_eq!(app.get("/v1/operator/tokens", OPERATOR_TOKEN).await.0, 200);

    // Two operators revoking each other's token at once: one of them keeps working.
    let second = synchub::tenancy::create_operator_token(&app.database.connect().await, "second")
        .await
        .unwrap();
    let (_, listed) = app.get("/v1/operator/tokens", OPERATOR_TOKEN).await;
    let second_id = token_id_named(listed["data"].as_array().unwrap(), "second");
    let (a, b) = tokio::join!(
        revoke(second_id, OPERATOR_TOKEN.into()),
        revoke(own_id, second.clone())
    );
    // The loser is refused as the last (409), or was revoked before it was let in (401).
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert!(
        statuses == [200, 401] || statuses == [200, 409],
        "{a:?} {b:?}"
    );
    let mut working = Vec::new();
    for token in [OPERATOR_TOKEN, second.as_str()] {
        if app.get("/v1/operator/tokens", token).await.0 == 200 {
            working.push(token);
        }
    }
    assert_eq!(working.len(), 1, "exactly one operator token works");
    let (_, audit) = app.get("/v1/audit", working[0]).await;
    assert!(
        audit.to_string().contains("token.operator_revoke"),
        "{audit}"
    );
}
on_both_backends!(operator_tokens_are_revoked_but_never_the_last);

/// The id of the token called `name` in a listed page's data.
fn token_id_named(listed: &[serde_json::Value], name: &str) -> String {
    listed
        .iter()
        .find(|t| t["name"] == name)
        .and_then(|t| t["id"].as_str())
        .unwrap()
        .to_string()
}
