use serde_json::json;
use synchub::webhooks::sign;

use crate::helpers::{Backend, OPERATOR_TOKEN, TestApp, shopify_connection};
use crate::on_both_backends;

/// Oversized bodies get 413 problem+json, on webhooks and on the REST API.
async fn oversized_bodies_get_413(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SYNCHUB_WEBHOOKS__MAX_BODY_BYTES", "65536")]).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, shopify_connection("US", "size-secret"))
        .await;
    let id = connection["id"].as_str().unwrap();
    let big = vec![b'a'; 65537];
    let response = app
        .client
        .post(app.url(&format!("/v1/hooks/{id}")))
        .header("X-Shopify-Hmac-Sha256", sign::shopify("size-secret", &big))
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    let fits = vec![b'a'; 65536];
    let response = app
        .client
        .post(app.url(&format!("/v1/hooks/{id}")))
        .header("X-Shopify-Hmac-Sha256", sign::shopify("size-secret", &fits))
        .body(fits)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "exactly the limit is fine");

    // Chunked, with no Content-Length: the limit holds while reading.
    let stream =
        futures_util::stream::iter((0..80).map(|_| Ok::<_, std::io::Error>(vec![b'b'; 1024])));
    let response = app
        .client
        .post(app.url(&format!("/v1/hooks/{id}")))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);

    let huge_name = "x".repeat(300 * 1024);
    let (status, problem) = app
        .post("/v1/connections", &token, json!({"name": huge_name}))
        .await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["code"], "payload_too_large");
}
on_both_backends!(oversized_bodies_get_413);

/// Malformed JSON, unknown fields and wrong types get 400 problem+json naming the field.
async fn bad_json_gets_400_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let send_raw = |body: &'static str, content_type: &'static str| {
        let app = &app;
        let token = token.clone();
        async move {
            let response = app
                .client
                .post(app.url("/v1/connections"))
                .bearer_auth(token)
                .header("content-type", content_type)
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            (
                status,
                content_type,
                response.json::<serde_json::Value>().await.unwrap(),
            )
        }
    };
    let (status, content_type, problem) = send_raw("{\"name\": ", "application/json").await;
    assert_eq!(
        (status, content_type.as_str()),
        (400, "application/problem+json")
    );
    assert_eq!(problem["status"], 400);
    assert!(problem["type"].as_str().unwrap().starts_with("https://"));
    let (status, _, problem) = send_raw(r#"{"name":"x","connector":"shopify","environment":"production","credentials":{},"colour":"red"}"#, "application/json").await;
    assert_eq!(status, 400);
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `colour`")
    );
    let (status, _, problem) = send_raw(
        r#"{"name":"x","connector":"shopify","environment":"staging","credentials":{}}"#,
        "application/json",
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(problem["errors"][0]["field"], "environment");
    let (status, _, problem) = send_raw(r#"{"name":"x"}"#, "text/plain").await;
    assert_eq!(status, 415);
    assert_eq!(problem["code"], "unsupported_media_type");
    let (status, _, _) = send_raw(r#"[1,2,3]"#, "application/json").await;
    assert_eq!(status, 400);
}
on_both_backends!(bad_json_gets_400_naming_the_field);

/// Hostile and odd inputs never make the server fail: every answer is a 4xx, and it keeps serving.
async fn no_input_makes_the_server_fail(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, token) = app.tenant_with_token(&["admin"]).await;
    let connection = app
        .connection(&token, shopify_connection("US", "fuzz-secret"))
        .await;
    let id = connection["id"].as_str().unwrap().to_string();
    let bodies = [
        "",
        "null",
        "0",
        "\"x\"",
        "[]",
        "{}",
        "{\"name\":null}",
        "{\"name\":1e999}",
        "{\"name\":\"\\ud800\"}",
        "{\"settings\":{\"shop_domain\":[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]}}",
        "\u{0}\u{1}\u{2}",
        "{\"a\":",
        "{\"name\":\"x\",\"name\":\"y\"}",
        "{\"cidrs\":[\"::/0\",\"0.0.0.0/0\",\"fe80::1%eth0\",\"999.1.1.1/8\"]}",
        "{\"scopes\":[\"root\"]}",
        "{\"timezone\":\"../../etc/passwd\"}",
        "{\"grace_seconds\":-1}",
        "{\"grace_seconds\":9223372036854775807}",
        "{\"expires_at\":\"yesterday\"}",
    ];
    let paths = [
        ("POST", "/v1/tenants".to_string()),
        ("POST", format!("/v1/tenants/{tenant}/tokens")),
        ("POST", "/v1/connections".to_string()),
        ("PATCH", format!("/v1/connections/{id}")),
        ("PUT", format!("/v1/connections/{id}/credentials")),
        ("PUT", format!("/v1/connections/{id}/allowlist")),
        ("POST", format!("/v1/hooks/{id}")),
        ("POST", "/v1/hooks/con_zzzz".to_string()),
        ("GET", "/v1/connections/%00%ff".to_string()),
        ("GET", "/v1/audit?limit=-1&cursor=%27".to_string()),
        ("DELETE", "/v1/tenants/ten_x/tokens/tok_y".to_string()),
    ];
    for (method, path) in &paths {
        for body in bodies {
            let request = app
                .client
                .request(method.parse().unwrap(), app.url(path))
                .bearer_auth(if path.contains("tokens") || path == "/v1/tenants" {
                    OPERATOR_TOKEN
                } else {
                    token.as_str()
                })
                .header("content-type", "application/json")
                .header("X-Shopify-Hmac-Sha256", "%%%not-base64")
                .body(body);
            let status = request
                .send()
                .await
                .expect("the server answered")
                .status()
                .as_u16();
            assert!(
                (400..500).contains(&status),
                "{method} {path} with {body:?} gave {status}"
            );
        }
    }
    assert_eq!(app.get("/healthz", &token).await.0, 200);
    assert_eq!(
        app.get(&format!("/v1/connections/{id}"), &token).await.1["name"],
        "US",
        "nothing changed"
    );
}
on_both_backends!(no_input_makes_the_server_fail);
