//! The outbound guard against an attacker with a tenant token: names that resolve inside the
//! operator's network, redirects into it, and hosts chosen through settings or published
//! manifests never reach a local server, and nothing a local server says comes back.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const INTERNAL_PAGE: &str = "INTERNAL-ONLY ami-id instance-id iam/security-credentials";

/// A server inside the "operator's network" that counts who reached it and answers with a
/// page no tenant may read, or with a redirect.
struct LocalServer {
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl LocalServer {
    async fn start(ip: &str, answer: String) -> Self {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(AtomicUsize::new(0));
        let counted = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = stream.read(&mut buf).await;
                    let _ = stream.write_all(answer.as_bytes()).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Self { port, hits }
    }

    /// Answers 200 with the internal page.
    async fn internal(ip: &str) -> Self {
        let page = format!(r#"{{"data":[{{"id":"{INTERNAL_PAGE}"}}],"errmsg":"{INTERNAL_PAGE}"}}"#);
        Self::start(
            ip,
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}",
                page.len()
            ),
        )
        .await
    }

    /// Answers 302 to `location`.
    async fn redirecting(ip: &str, location: &str) -> Self {
        Self::start(
            ip,
            format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        )
        .await
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// The app as production runs it (private targets closed), with names that the tests'
/// resolver maps into loopback, and one loopback address (127.0.0.2) opened the way an
/// operator opens an on-premises ERP's range.
async fn guarded_app(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, &[
        ("SYNCHUB_ALLOW_PRIVATE_TARGETS", "false"),
        (
            "SYNCHUB_OUTBOUND__HOSTS",
            "erp.example.test=127.0.0.1,hooks.example.test=127.0.0.1,v6.example.test=::ffff:127.0.0.1",
        ),
        ("SYNCHUB_OUTBOUND__ALLOWED_PRIVATE_CIDRS", "127.0.0.2/32"),
    ])
    .await
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no {name} check in {report}"))
}

fn erp(base_url: &str) -> Value {
    json!({"name": "ERP", "connector": "generic-rest-erp", "environment": "production",
        "settings": {"base_url": base_url}, "credentials": {"api_key": "erp-key"}})
}

/// `POST {path}` on the resource `created` names, with an empty body.
async fn act_on(app: &TestApp, token: &str, path: &str, created: &Value) -> (u16, Value) {
    let id = created["id"].as_str().unwrap();
    app.post(&path.replace("{id}", id), token, json!({})).await
}

async fn webhook_channel(app: &TestApp, token: &str, url: &str) -> (u16, Value) {
    app.post(
        "/v1/alert-channels",
        token,
        json!({"name": "ops", "kind": "webhook", "url": url, "secret": WHSEC}),
    )
    .await
}

/// A host name that resolves to 127.0.0.1 passes the syntax check when saved, and is
/// refused at the connection: the check's DNS step says so, the channel test fails, and
/// the local server is never reached; nothing it would say comes back.
async fn names_resolving_to_private_addresses_are_never_called(backend: Backend) {
    let internal = LocalServer::internal("127.0.0.1").await;
    let app = guarded_app(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "write", "admin"]).await;

    for host in [
        "erp.example.test",
        "v6.example.test",
        "localhost.",
        "127.0.0.1",
    ] {
        let base = format!("http://{host}:{}/erp/acme", internal.port);
        let (status, report) = app.post("/v1/connections/check", &token, erp(&base)).await;
        if host == "localhost." || host == "127.0.0.1" {
            assert_eq!(status, 400, "{host} is refused when given: {report}");
            assert_eq!(
                report["errors"][0]["field"], "settings.base_url",
                "{report}"
            );
            continue;
        }
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["passed"], false, "{report}");
        let dns = check(&report, "dns");
        assert_eq!(dns["status"], "failed", "{report}");
        assert_eq!(dns["error_class"], "blocked", "{report}");
        assert!(
            dns["message"].as_str().unwrap().contains("127.0.0.1"),
            "{report}"
        );
        assert_eq!(check(&report, "read")["status"], "skipped");
    }

    // Saved, then checked: the saved URL is checked again on use.
    let saved = app
        .connection(
            &token,
            erp(&format!(
                "http://erp.example.test:{}/erp/acme",
                internal.port
            )),
        )
        .await;
    let (status, report) = act_on(&app, &token, "/v1/connections/{id}/check", &saved).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(check(&report, "dns")["error_class"], "blocked", "{report}");

    let (status, channel) = webhook_channel(
        &app,
        &token,
        &format!("http://hooks.example.test:{}/hook", internal.port),
    )
    .await;
    assert_eq!(
        status, 201,
        "a public-looking name is accepted when saved: {channel}"
    );
    let (status, test) = act_on(&app, &token, "/v1/alert-channels/{id}/test", &channel).await;
    assert_eq!(status, 200, "{test}");
    assert_eq!(test["delivered"], false, "{test}");
    assert_eq!(
        test["outcome"], "failed",
        "a refused target is not retried: {test}"
    );
    assert!(
        test["answer"].as_str().unwrap().contains("private"),
        "{test}"
    );

    assert_eq!(internal.hits(), 0, "the internal server was reached");
    let everything = format!("{report}{test}");
    assert!(!everything.contains("INTERNAL-ONLY"), "{everything}");
}
on_both_backends!(names_resolving_to_private_addresses_are_never_called);

/// A permitted server that answers 302 into the operator's network (the metadata address,
/// loopback) has its redirect refused at the hop, by the check's read probe and by the
/// channel test alike.
async fn redirects_are_checked_at_every_hop(backend: Backend) {
    let internal = LocalServer::internal("127.0.0.1").await;
    let to_loopback = LocalServer::redirecting(
        "127.0.0.2",
        &format!("http://127.0.0.1:{}/latest/meta-data/", internal.port),
    )
    .await;
    let to_metadata =
        LocalServer::redirecting("127.0.0.2", "http://169.254.169.254/latest/meta-data/").await;
    let app = guarded_app(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "write", "admin"]).await;

    for server in [&to_loopback, &to_metadata] {
        let base = format!("http://127.0.0.2:{}/erp/acme", server.port);
        let (status, report) = app.post("/v1/connections/check", &token, erp(&base)).await;
        assert_eq!(status, 200, "{report}");
        assert_eq!(
            check(&report, "tcp")["status"],
            "passed",
            "127.0.0.2 is opened: {report}"
        );
        let read = check(&report, "read");
        assert_eq!(read["status"], "failed", "{report}");
        assert_eq!(read["error_class"], "blocked", "{report}");
        assert!(
            read["message"].as_str().unwrap().contains("redirected"),
            "{report}"
        );

        let (status, channel) = webhook_channel(
            &app,
            &token,
            &format!("http://127.0.0.2:{}/hook", server.port),
        )
        .await;
        assert_eq!(status, 201, "{channel}");
        let (_, test) = act_on(&app, &token, "/v1/alert-channels/{id}/test", &channel).await;
        assert_eq!(test["delivered"], false, "{test}");
        assert!(
            test["answer"].as_str().unwrap().contains("redirected"),
            "{test}"
        );
        assert!(server.hits() >= 2, "the permitted server was asked");
    }
    assert_eq!(internal.hits(), 0, "a redirect reached the internal server");
}
on_both_backends!(redirects_are_checked_at_every_hop);

const SHOPIFY: &str = include_str!("../../connectors/shopify.toml");

/// Hosts chosen another way than a URL setting are guarded too: a shop domain is a host
/// name and nothing else, a published manifest may not put free text in a host, and a
/// manifest's fixed private base URL is refused on every call.
async fn hosts_from_settings_and_manifests_are_guarded(backend: Backend) {
    let internal = LocalServer::internal("127.0.0.1").await;
    let app = guarded_app(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "write", "deploy"]).await;

    for shop in [
        "169.254.169.254:80/x?.myshopify.com",
        "127.0.0.1#.myshopify.com",
        "evil.example/.myshopify.com",
        "user@evil.example.myshopify.com",
    ] {
        let (status, body) = app
            .post(
                "/v1/connections/check",
                &token,
                json!({
                "name": "US", "connector": "shopify", "environment": "production",
                "settings": {"shop_domain": shop}, "credentials": {"access_token": "shpat_x"}}),
            )
            .await;
        assert_eq!(status, 400, "{shop}: {body}");
        assert_eq!(body["errors"][0]["field"], "settings.shop_domain", "{body}");
    }

    let free_text_host = SHOPIFY
        .replace("version = \"1.0.0\"", "version = \"1.2.0\"")
        .replace("type = \"host\"\n", "");
    let (status, body) = app
        .post(
            "/v1/connectors/shopify/versions",
            &token,
            json!({"manifest": free_text_host, "changelog": "x"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body.to_string().contains("environments.production"),
        "{body}"
    );

    let fixed_private = SHOPIFY
        .replace("version = \"1.0.0\"", "version = \"1.3.0\"")
        .replace(
            "production = \"https://{shop_domain}\"",
            &format!("production = \"http://127.0.0.1:{}\"", internal.port),
        );
    let (status, body) = app
        .post(
            "/v1/connectors/shopify/versions",
            &token,
            json!({"manifest": fixed_private, "changelog": "x"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let connection = app
        .connection(&token, json!({
            "name": "US", "connector": "shopify", "environment": "production", "version": "1.3.0",
            "settings": {"shop_domain": "acme.myshopify.com"}, "credentials": {"access_token": "shpat_x"}}))
        .await;
    let (status, report) = act_on(&app, &token, "/v1/connections/{id}/check", &connection).await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(check(&report, "dns")["error_class"], "blocked", "{report}");
    assert_eq!(
        internal.hits(),
        0,
        "the manifest's private base URL was called"
    );
}
on_both_backends!(hosts_from_settings_and_manifests_are_guarded);

/// With private targets allowed (the simulator, on-premises ERPs) an IPv6 literal base URL
/// resolves: the DNS step is given the address without its brackets.
async fn ipv6_literal_base_urls_pass_the_dns_step(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (_, token) = app.tenant_with_token(&["read", "write"]).await;
    let (status, report) = app
        .post(
            "/v1/connections/check",
            &token,
            erp("http://[::1]:9/erp/acme"),
        )
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(check(&report, "dns")["status"], "passed", "{report}");
}
on_both_backends!(ipv6_literal_base_urls_pass_the_dns_step);
