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

/// A NUL character in any JSON string, key or value, is a 400 naming the field, on every
/// endpoint and both databases (PostgreSQL stores no NUL in text or jsonb, and answered 500).
async fn nul_characters_get_400_naming_the_field(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (tenant, token) = app
        .tenant_with_token(&["read", "write", "deploy", "admin"])
        .await;
    let connection = app
        .connection(&token, shopify_connection("US", "nul-secret-123456"))
        .await;
    let id = connection["id"].as_str().unwrap();
    let cases: Vec<(reqwest::Method, String, &str, &str, &str)> = vec![
        (
            reqwest::Method::POST,
            "/v1/tenants".into(),
            OPERATOR_TOKEN,
            r#"{"name":"a\u0000b","timezone":"UTC"}"#,
            "name",
        ),
        (
            reqwest::Method::POST,
            format!("/v1/tenants/{tenant}/tokens"),
            OPERATOR_TOKEN,
            r#"{"name":"ci\u0000","scopes":["read"]}"#,
            "name",
        ),
        (
            reqwest::Method::POST,
            "/v1/connections".into(),
            &token,
            r#"{"name":"US\u0000","connector":"shopify"}"#,
            "name",
        ),
        (
            reqwest::Method::POST,
            "/v1/connections".into(),
            &token,
            r#"{"name":"US","settings":{"shop_domain":"a\u0000.myshopify.com"}}"#,
            "settings.shop_domain",
        ),
        (
            reqwest::Method::POST,
            "/v1/connections/check".into(),
            &token,
            r#"{"settings":{"tags":["ok","\u0000"]}}"#,
            "settings.tags[1]",
        ),
        (
            reqwest::Method::PATCH,
            format!("/v1/connections/{id}"),
            &token,
            r#"{"name":"\u0000"}"#,
            "name",
        ),
        (
            reqwest::Method::POST,
            "/v1/flows".into(),
            &token,
            r#"{"name":"orders\u0000"}"#,
            "name",
        ),
        (
            reqwest::Method::POST,
            "/v1/alert-channels".into(),
            &token,
            r#"{"name":"ops\u0000","kind":"slack"}"#,
            "name",
        ),
        (
            reqwest::Method::PUT,
            "/v1/deploy-policy".into(),
            &token,
            r#"{"freezes":[{"name":"\u0000"}]}"#,
            "freezes[0].name",
        ),
        (
            reqwest::Method::POST,
            "/v1/connectors/shopify/versions".into(),
            &token,
            r#"{"manifest":"name = \"\u0000\""}"#,
            "manifest",
        ),
        (
            reqwest::Method::POST,
            "/v1/deployments".into(),
            &token,
            r#"{"connector":"shopify\u0000"}"#,
            "connector",
        ),
    ];
    for (method, path, bearer, body, field) in cases {
        let response = app
            .client
            .request(method, app.url(&path))
            .bearer_auth(bearer)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(status, 400, "{path}: {problem}");
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
    }
    let (_, listed) = app.get("/v1/connections", &token).await;
    assert_eq!(
        listed["data"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
}
on_both_backends!(nul_characters_get_400_naming_the_field);

/// A body that trickles in (a byte every 300 ms) is cut off with 408 once the configured
/// time to read it has passed, on the REST API and on webhook ingress alike.
async fn slow_bodies_get_408(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app =
        TestApp::spawn_with(backend, &[("SYNCHUB_HTTP__BODY_READ_TIMEOUT_SECONDS", "1")]).await;
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let connection = app
        .connection(&token, shopify_connection("US", "slow-secret-123456"))
        .await;
    let id = connection["id"].as_str().unwrap();
    let address = app.address.trim_start_matches("http://").to_string();
    for (path, auth) in [
        (
            "/v1/connections".to_string(),
            format!("Authorization: Bearer {token}\r\n"),
        ),
        (format!("/v1/hooks/{id}"), String::new()),
    ] {
        let stream = tokio::net::TcpStream::connect(&address).await.unwrap();
        let (mut reader, mut writer) = stream.into_split();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n"
        );
        writer.write_all(head.as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let trickle = async move {
            for _ in 0..30 {
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
        };
        // Stop trickling once the server has answered.
        let mut answer = vec![0u8; 1024];
        let read = async { reader.read(&mut answer).await.unwrap_or(0) };
        let n = tokio::select! {
            n = read => n,
            _ = trickle => 0,
        };
        let text = String::from_utf8_lossy(&answer[..n]).to_string();
        assert!(text.starts_with("HTTP/1.1 408"), "{path}: {text:?}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path}"
        );
    }
}
on_both_backends!(slow_bodies_get_408);

/// A known route asked with a method it does not serve is a 405 naming the methods it does
/// (`Allow`, from the OpenAPI document's routes); an unknown route stays a 404. Both are
/// problem+json.
async fn wrong_methods_get_405_with_allow(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "write"]).await;
    let client = reqwest::Client::new();
    for (method, path, allow) in [
        (reqwest::Method::PATCH, "/v1/connections", "GET, POST"),
        (reqwest::Method::POST, "/healthz", "GET"),
        (
            reqwest::Method::PUT,
            "/v1/flows/flw_0000000000000000/run",
            "POST",
        ),
        // Its own route, not /v1/connections/{id}'s.
        (reqwest::Method::OPTIONS, "/v1/connections/check", "POST"),
        // An Idempotency-Key does not make a method the route lacks a replayable write.
        (
            reqwest::Method::PATCH,
            "/v1/alert-deliveries/adl_0/replay",
            "POST",
        ),
    ] {
        let response = client
            .request(method.clone(), app.url(path))
            .bearer_auth(&token)
            .header("idempotency-key", "same-key-for-every-request")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(
            response.headers()["allow"].to_str().unwrap(),
            allow,
            "{method} {path}"
        );
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "method_not_allowed", "{problem}");
        assert_eq!(problem["status"], 405);
    }
    let (status, problem) = app
        .send(reqwest::Method::GET, "/v1/no-such-thing", &token, None)
        .await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "not_found");
}
on_both_backends!(wrong_methods_get_405_with_allow);

/// Query parameters are read like bodies: an unknown one or a value of the wrong kind is a
/// 400 problem naming the parameter (actix's own extractor answered plain text).
async fn bad_query_parameters_are_problems(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["read"]).await;
    for (path, field, says) in [
        ("/v1/flows?limit=many", "limit", "invalid digit"),
        ("/v1/connections?limit=-1", "limit", "invalid digit"),
        ("/v1/flows?colour=red", "colour", "unknown field `colour`"),
        ("/v1/audit?limit=0", "limit", "between 1 and 500"),
        ("/v1/dead-letters?cursor=%00", "cursor", "not a cursor"),
    ] {
        let response = app
            .client
            .get(app.url(path))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{path}"
        );
        let problem: serde_json::Value = response.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{path}: {problem}");
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{path}: {problem}"
        );
    }
    // Every list, paged or served whole, has the same shape.
    for path in [
        "/v1/connectors",
        "/v1/deployments",
        "/v1/alert-channels",
        "/v1/alerts",
        "/v1/flows",
    ] {
        let (status, list) = app.get(path, &token).await;
        assert_eq!(status, 200, "{path}: {list}");
        assert!(list["data"].is_array(), "{path}: {list}");
        assert!(
            list.as_object().unwrap().contains_key("next_cursor"),
            "{path}: {list}"
        );
    }
}
on_both_backends!(bad_query_parameters_are_problems);
