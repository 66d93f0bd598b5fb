use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, shopify_connection};
use crate::on_both_backends;

/// A tenant with a Shopify store and an ERP; returns (token, shopify id, erp id).
pub async fn store_and_erp(app: &TestApp) -> (String, String, String) {
    let (_, token) = app.tenant_with_token(&["write"]).await;
    let shop = app
        .connection(&token, shopify_connection("US store", "flow-secret-123"))
        .await;
    let erp = app
        .connection(
            &token,
            json!({
                "name": "ERP", "connector": "generic-rest-erp", "environment": "production",
                "settings": {"base_url": "http://127.0.0.1:9"}, "credentials": {"api_key": "k"},
            }),
        )
        .await;
    (
        token,
        shop["id"].as_str().unwrap().to_string(),
        erp["id"].as_str().unwrap().to_string(),
    )
}

fn fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap().to_string())
        .collect()
}

/// Flows check their connections and schedule, and show the next run in UTC and local time.
async fn flows_are_validated_and_scheduled_in_the_sellers_zone(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, shop, erp) = store_and_erp(&app).await;

    let (status, flow) = app
        .post("/v1/flows", &token, json!({"name": "orders in", "stream": "orders", "source": shop, "destination": erp, "schedule": {"cron": "0 9 * * *"}}))
        .await;
    assert_eq!(status, 201, "{flow}");
    assert_eq!(
        flow["timezone"], "Asia/Shanghai",
        "the tenant's zone by default"
    );
    let next: chrono::DateTime<chrono::Utc> =
        flow["next_run_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        next.format("%H:%M").to_string(),
        "01:00",
        "09:00 in Shanghai is 01:00 UTC"
    );
    let local = flow["next_run_at_local"].as_str().unwrap();
    assert!(local.ends_with("T09:00:00+08:00"), "{local}");
    assert_eq!(
        flow["retry"],
        json!({"max_attempts": 8, "base_seconds": 5, "cap_seconds": 900})
    );

    let (status, problem) = app
        .post("/v1/flows", &token, json!({"name": "backwards", "stream": "orders", "source": erp, "destination": shop, "schedule": {"cron": "61 * * * *", "timezone": "Asia/Nowhere"}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        fields(&problem),
        ["source", "destination", "schedule.timezone"]
    );
    let (status, problem) = app
        .post("/v1/flows", &token, json!({"name": "bad cron", "stream": "inventory", "source": erp, "destination": shop, "schedule": {"cron": "61 * * * *"}, "retry": {"max_attempts": 0, "base_seconds": 5, "cap_seconds": 1}}))
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        fields(&problem),
        ["retry.max_attempts", "retry.cap_seconds", "schedule.cron"]
    );

    let id = flow["id"].as_str().unwrap();
    let (status, patched) = app
        .patch(
            &format!("/v1/flows/{id}"),
            &token,
            json!({"schedule": {"cron": "30 2 * * *", "timezone": "America/New_York"}}),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["timezone"], "America/New_York");
    assert!(
        patched["next_run_at_local"]
            .as_str()
            .unwrap()
            .contains("T02:30:00-0")
    );
    let (_, paused) = app
        .patch(
            &format!("/v1/flows/{id}"),
            &token,
            json!({"enabled": false}),
        )
        .await;
    assert!(
        paused["next_run_at"].is_null(),
        "a disabled flow has no next run"
    );
    let (_, resumed) = app
        .patch(&format!("/v1/flows/{id}"), &token, json!({"enabled": true}))
        .await;
    assert!(resumed["next_run_at"].is_string());
    let (_, unscheduled) = app
        .patch(
            &format!("/v1/flows/{id}"),
            &token,
            json!({"schedule": null}),
        )
        .await;
    assert!(unscheduled["schedule"].is_null() && unscheduled["next_run_at"].is_null());
}
on_both_backends!(flows_are_validated_and_scheduled_in_the_sellers_zone);

/// A manual run is queued and visible to its tenant only.
async fn manual_runs_are_queued_and_scoped(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let (token, shop, erp) = store_and_erp(&app).await;
    let (_, flow) = app
        .post(
            "/v1/flows",
            &token,
            json!({"name": "orders", "stream": "orders", "source": shop, "destination": erp}),
        )
        .await;
    let id = flow["id"].as_str().unwrap();
    let (status, run) = app
        .post(&format!("/v1/flows/{id}/run"), &token, json!({}))
        .await;
    assert_eq!(status, 202, "{run}");
    assert_eq!(run["status"], "queued");
    assert_eq!(run["trigger"], "manual");
    let run_id = run["id"].as_str().unwrap();
    let (_, runs) = app.get(&format!("/v1/flows/{id}/runs"), &token).await;
    assert_eq!(runs["data"][0]["id"], run_id);
    assert_eq!(app.get(&format!("/v1/runs/{run_id}"), &token).await.0, 200);

    let (_, other) = app.tenant_with_token(&["admin"]).await;
    assert_eq!(app.get(&format!("/v1/runs/{run_id}"), &other).await.0, 404);
    assert_eq!(app.get(&format!("/v1/flows/{id}"), &other).await.0, 404);
    assert_eq!(
        app.post(&format!("/v1/flows/{id}/run"), &other, json!({}))
            .await
            .0,
        404
    );
    let (status, problem) = app
        .post(
            "/v1/flows",
            &other,
            json!({"name": "steal", "stream": "orders", "source": shop, "destination": erp}),
        )
        .await;
    assert_eq!(status, 400, "another tenant's connections are not there");
    assert_eq!(fields(&problem), ["source", "destination"]);

    let (status, _) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/v1/flows/{id}"),
            &token,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(app.get(&format!("/v1/runs/{run_id}"), &token).await.0, 404);
}
on_both_backends!(manual_runs_are_queued_and_scoped);
