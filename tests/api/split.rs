//! `synchub api` and `synchub worker` as separate processes over one database.

use std::process::Stdio;

use serde_json::json;
use synchub::sim::Simulator;

use crate::durability::{free_port, start_role};
use crate::helpers::{Backend, OPERATOR_TOKEN, TestDatabase};
use crate::on_both_backends;

/// The API process queues a run; the worker process, which serves no API, executes it.
async fn api_and_worker_processes_split_the_work(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 50).unwrap();
    let database = TestDatabase::create(&backend).await;
    let (api_port, worker_port) = (free_port(), free_port());
    let _api = start_role(&database, api_port, "api", &[], Stdio::null()).await;
    let _worker = start_role(&database, worker_port, "worker", &[], Stdio::null()).await;
    let api = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::new();
    let post = |path: &str, token: &str, body: serde_json::Value| {
        client
            .post(format!("{api}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let tenant: serde_json::Value = post("/v1/tenants", OPERATOR_TOKEN, json!({"name": "Acme"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token: serde_json::Value = post(
        &format!("/v1/tenants/{}/tokens", tenant["id"].as_str().unwrap()),
        OPERATOR_TOKEN,
        json!({"name": "ci", "scopes": ["write"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let shop: serde_json::Value = post("/v1/connections", &token, json!({
        "name": "US", "connector": "shopify", "environment": "production",
        "settings": {"shop_domain": "acme.myshopify.com", "base_url": format!("{}/shopify/acme", sim.address)},
        "credentials": {"access_token": "shpat_simulated_0123456789"},
    })).await.unwrap().json().await.unwrap();
    let erp: serde_json::Value = post("/v1/connections", &token, json!({
        "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
        "settings": {"base_url": format!("{}/erp/acme", sim.address)}, "credentials": {"api_key": "k"},
    })).await.unwrap().json().await.unwrap();
    let flow: serde_json::Value = post("/v1/flows", &token, json!({"name": "orders", "stream": "orders", "source": shop["id"], "destination": erp["id"]}))
        .await.unwrap().json().await.unwrap();
    let run: serde_json::Value = post(
        &format!("/v1/flows/{}/run", flow["id"].as_str().unwrap()),
        &token,
        json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let shown: serde_json::Value = client
            .get(format!("{api}/v1/runs/{}", run["id"].as_str().unwrap()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if shown["status"] == "succeeded" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never ran it: {shown}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sim.state.erp_orders("acme").len(), 50);
    let on_worker = client
        .get(format!("http://127.0.0.1:{worker_port}/v1/connections"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(on_worker.status().as_u16(), 404, "the worker serves no API");
    let metrics = client
        .get(format!("http://127.0.0.1:{worker_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("synchub_runs_total"),
        "the worker reports its runs"
    );
}
on_both_backends!(api_and_worker_processes_split_the_work);

/// Kill a worker with SIGKILL mid-run: another worker takes the run over when its lease
/// runs out, resumes from the checkpoint, and every order reaches the ERP exactly once.
async fn a_killed_workers_run_resumes_elsewhere(backend: Backend) {
    let sim = Simulator::start("127.0.0.1:0", 400).unwrap();
    // Slow enough that the run is caught between its two pages.
    sim.state.set_faults(synchub::sim::Faults {
        latency_ms: 8,
        ..Default::default()
    });
    let database = TestDatabase::create(&backend).await;
    let short_lease = [("SYNCHUB_WORKERS__LEASE_SECONDS", "2")];
    let api_port = free_port();
    let _api = start_role(&database, api_port, "api", &[], Stdio::null()).await;
    let worker_log = database.data_dir.path().join("worker.log");
    let log_file = std::fs::File::create(&worker_log).unwrap();
    let mut first_worker = start_role(
        &database,
        free_port(),
        "worker",
        &short_lease,
        log_file.into(),
    )
    .await;
    let api = format!("http://127.0.0.1:{api_port}");
    let client = reqwest::Client::new();
    let post = |path: &str, token: &str, body: serde_json::Value| {
        client
            .post(format!("{api}{path}"))
            .bearer_auth(token)
            .json(&body)
            .send()
    };
    let tenant: serde_json::Value = post("/v1/tenants", OPERATOR_TOKEN, json!({"name": "Acme"}))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token: serde_json::Value = post(
        &format!("/v1/tenants/{}/tokens", tenant["id"].as_str().unwrap()),
        OPERATOR_TOKEN,
        json!({"name": "ci", "scopes": ["write"]}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = token["token"].as_str().unwrap().to_string();
    let shop: serde_json::Value = post("/v1/connections", &token, json!({
        "name": "US", "connector": "shopify", "environment": "production",
        "settings": {"shop_domain": "acme.myshopify.com", "base_url": format!("{}/shopify/acme", sim.address)},
        "credentials": {"access_token": "shpat_simulated_0123456789"},
    })).await.unwrap().json().await.unwrap();
    let erp: serde_json::Value = post("/v1/connections", &token, json!({
        "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
        "settings": {"base_url": format!("{}/erp/acme", sim.address)}, "credentials": {"api_key": "k"},
    })).await.unwrap().json().await.unwrap();
    let flow: serde_json::Value = post("/v1/flows", &token, json!({"name": "orders", "stream": "orders", "source": shop["id"], "destination": erp["id"]}))
        .await.unwrap().json().await.unwrap();
    let run: serde_json::Value = post(
        &format!("/v1/flows/{}/run", flow["id"].as_str().unwrap()),
        &token,
        json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let run_url = format!("{api}/v1/runs/{}", run["id"].as_str().unwrap());
    let show = || async {
        client
            .get(&run_url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json::<serde_json::Value>()
            .await
            .unwrap()
    };

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let shown = show().await;
        if shown["records_written"].as_i64().unwrap_or(0) >= 250 {
            assert_eq!(shown["status"], "running", "caught between pages: {shown}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first page never finished: {shown}\nworker log:\n{}",
            std::fs::read_to_string(&worker_log).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    first_worker.0.kill().expect("SIGKILL");
    let _ = first_worker.0.wait();
    let _second_worker = start_role(
        &database,
        free_port(),
        "worker",
        &short_lease,
        Stdio::null(),
    )
    .await;

    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let shown = loop {
        let shown = show().await;
        if shown["status"] == "succeeded" {
            break shown;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the run was never taken over: {shown}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(shown["attempts"], 2, "one attempt per worker");
    assert_eq!(sim.state.erp_orders("acme").len(), 400);
    assert_eq!(
        sim.state.stats().orders_written,
        400,
        "no order was written twice"
    );
}
on_both_backends!(a_killed_workers_run_resumes_elsewhere);
