//! The real binary: a webhook acknowledged with 2xx survives SIGKILL.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use synchub::webhooks::sign;

use crate::helpers::{Backend, RemoteTenant, TestDatabase, shopify_connection};
use crate::on_both_backends;

/// A free port for a child process to listen on, below Linux's ephemeral range (32768 and
/// up): a port the OS hands out for `:0` (every other test's servers and simulators) could be
/// taken between this check and the child's bind, and the child's readiness probe would then
/// reach someone else's server.
pub fn free_port() -> u16 {
    static NEXT: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    // 20000-31999, starting at a place that differs between test binaries.
    let offset = (std::process::id() % 1_000) as u16 * 12;
    loop {
        let step = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let port = 20_000 + (offset + step % 12_000) % 12_000;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

pub struct Server(pub Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub async fn start(database: &TestDatabase, port: u16) -> Server {
    start_with(database, port, &[], Stdio::null()).await
}

/// Starts `synchub serve` with extra environment and where its log (stderr) goes.
pub async fn start_with(
    database: &TestDatabase,
    port: u16,
    extra: &[(&str, &str)],
    log: Stdio,
) -> Server {
    start_role(database, port, "serve", extra, log).await
}

/// Starts the binary in a role (`serve`, `api`, `worker`) and waits until it is ready.
pub async fn start_role(
    database: &TestDatabase,
    port: u16,
    role: &str,
    extra: &[(&str, &str)],
    log: Stdio,
) -> Server {
    let mut command = Command::new(env!("CARGO_BIN_EXE_synchub"));
    command
        .arg(role)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SYNCHUB_LISTEN", format!("127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log);
    for (key, value) in database.env() {
        command.env(key, value);
    }
    for (key, value) in extra {
        command.env(key, value);
    }
    let mut server = Server(command.spawn().expect("binary starts"));
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("the {role} process exited ({status}) before it was ready on port {port}");
        }
        if let Ok(r) = client
            .get(format!("http://127.0.0.1:{port}/readyz"))
            .send()
            .await
            && r.status().is_success()
        {
            return server;
        }
        assert!(Instant::now() < deadline, "the server did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn acknowledged_webhooks_survive_sigkill(backend: Backend) {
    let database = TestDatabase::create(&backend).await;
    let port = free_port();
    let mut server = start(&database, port).await;
    let remote = RemoteTenant::create(port).await;
    let (base, client, token) = (&remote.base, &remote.client, &remote.token);
    let connection = remote
        .post(
            "/v1/connections",
            shopify_connection("US", "durable-secret"),
        )
        .await;
    let id = connection["id"].as_str().unwrap().to_string();

    // Acknowledge a batch, then kill the process the instant the last 2xx arrives.
    let mut acknowledged = 0;
    for n in 0..50 {
        let body = format!("{{\"order\":{n}}}");
        let response = client
            .post(format!("{base}/v1/hooks/{id}"))
            .header(
                "X-Shopify-Hmac-Sha256",
                sign::shopify("durable-secret", body.as_bytes()),
            )
            .header("X-Shopify-Event-Id", format!("evt-{n}"))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        acknowledged += 1;
    }
    // SIGKILL: no shutdown hooks, no flush.
    server.0.kill().expect("SIGKILL");
    let _ = server.0.wait();
    drop(server);

    let _server = start(&database, port).await;
    let page: serde_json::Value = client
        .get(format!("{base}/v1/connections/{id}/events?limit=500"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["data"].as_array().unwrap().len(),
        acknowledged,
        "every acknowledged event is there after SIGKILL"
    );
}
on_both_backends!(acknowledged_webhooks_survive_sigkill);
