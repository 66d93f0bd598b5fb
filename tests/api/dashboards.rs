//! The ops views shipped under `deploy/` (the Grafana dashboard and the Prometheus alert
//! rules) query only what `/metrics` serves, with the labels they use; and the gauges read
//! from storage count what they say.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use sea_orm::{ActiveModelTrait, EntityTrait, Set};
use serde_json::{Value, json};
use synchub::sim::Simulator;
use synchub::store::entities::{alert_delivery, connection, flow, run};

use crate::durability::{free_port, start_role};
use crate::flows::store_and_erp;
use crate::helpers::{Backend, RemoteTenant, TestApp, TestDatabase, eventually, metrics_at};
use crate::on_both_backends;

/// The series on a /metrics page: sample name → the label sets it was seen with.
type Exposition = BTreeMap<String, Vec<BTreeMap<String, String>>>;

fn parse_exposition(text: &str) -> Exposition {
    let mut series = Exposition::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name, labels) = match line.split_once('{') {
            Some((name, rest)) => {
                let inside = rest.rsplit_once('}').map(|(l, _)| l).unwrap_or_default();
                (name.to_string(), parse_labels(inside))
            }
            None => (
                line.split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                BTreeMap::new(),
            ),
        };
        series.entry(name).or_default().push(labels);
    }
    series
}

/// `a="x",b="y"` (values here hold no quotes or commas).
fn parse_labels(inside: &str) -> BTreeMap<String, String> {
    inside
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

/// One use of a metric in a query: its name, the label names it is matched or grouped on,
/// and the values it is matched equal to.
#[derive(Debug)]
struct Use {
    metric: String,
    labels: BTreeSet<String>,
    equal: Vec<(String, String)>,
}

/// The synchub metrics a PromQL expression reads. Labels of `by (…)`/`without (…)` count for
/// every metric in the expression; `le` only for the `_bucket` series that carry it, and
/// `instance`/`job` not at all (Prometheus adds them when it scrapes).
fn uses(expr: &str) -> Vec<Use> {
    let mut grouped = BTreeSet::new();
    for keyword in ["by", "without"] {
        let mut rest = expr;
        while let Some(at) = rest.find(&format!("{keyword} (")) {
            let after = &rest[at + keyword.len() + 2..];
            let Some(end) = after.find(')') else { break };
            grouped.extend(
                after[..end]
                    .split(',')
                    .map(|l| l.trim().to_string())
                    .filter(|l| !l.is_empty()),
            );
            rest = &after[end..];
        }
    }
    let mut found = Vec::new();
    let mut rest = expr;
    while let Some(at) = rest.find("synchub_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        let metric = tail[..end].to_string();
        let mut labels: BTreeSet<String> = grouped
            .iter()
            .filter(|l| !["instance", "job"].contains(&l.as_str()))
            .filter(|l| *l != "le" || metric.ends_with("_bucket"))
            .cloned()
            .collect();
        let mut equal = Vec::new();
        let after = &tail[end..];
        if let Some(selector) = after.strip_prefix('{') {
            let close = selector.find('}').expect("a closed selector");
            for matcher in selector[..close].split(',') {
                let matcher = matcher.trim();
                let Some(op_at) = matcher.find(['=', '!']) else {
                    continue;
                };
                let name = matcher[..op_at].trim().to_string();
                let op_and_value = &matcher[op_at..];
                if let Some(value) = op_and_value.strip_prefix('=')
                    && !value.starts_with('~')
                {
                    equal.push((name.clone(), value.trim_matches('"').to_string()));
                }
                labels.insert(name);
            }
        }
        // label_values(metric, label): Grafana's variable query names the label after a comma.
        if let Some(label) = after.strip_prefix(", ") {
            let label: String = label
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            labels.insert(label);
        }
        found.push(Use {
            metric,
            labels,
            equal,
        });
        rest = &tail[end..];
    }
    found
}

/// Every `expr:` of the rules file, folded (`>-`) ones joined into one line.
fn rule_expressions(yaml: &str) -> Vec<String> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut exprs = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(value) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let value = value.trim();
        if value == ">-" || value == "|" {
            let indent = line.len() - line.trim_start().len();
            let folded: Vec<&str> = lines[i + 1..]
                .iter()
                .take_while(|l| l.len() - l.trim_start().len() > indent)
                .map(|l| l.trim())
                .collect();
            exprs.push(folded.join(" "));
        } else {
            exprs.push(value.to_string());
        }
    }
    exprs
}

/// Every `expr` in the dashboard's panels, and the template variables' queries.
fn dashboard_expressions(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().expect("an expr").to_string());
        }
    }
    for variable in dashboard["templating"]["list"]
        .as_array()
        .expect("templating")
    {
        if let Some(query) = variable["query"]["query"].as_str() {
            exprs.push(query.to_string());
        }
    }
    exprs
}

/// Starts the real binary, moves orders through a flow, and holds every query of the
/// dashboard and the rules to what its /metrics then serves.
async fn the_ops_views_query_what_metrics_serves(backend: Backend) {
    let root = env!("CARGO_MANIFEST_DIR");
    let rules = std::fs::read_to_string(format!("{root}/deploy/prometheus/alerts.yaml"))
        .expect("the rules file");
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(format!("{root}/deploy/grafana/synchub.json"))
            .expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let mut exprs: Vec<(String, String)> = rule_expressions(&rules)
        .into_iter()
        .map(|e| ("rules".to_string(), e))
        .collect();
    assert!(
        exprs.len() >= 15,
        "the rules file has its alerts: {exprs:?}"
    );
    exprs.extend(
        dashboard_expressions(&dashboard)
            .into_iter()
            .map(|e| ("dashboard".to_string(), e)),
    );
    let ids: BTreeSet<_> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_i64().expect("a panel id"))
        .collect();
    assert_eq!(
        ids.len(),
        dashboard["panels"].as_array().unwrap().len(),
        "panel ids repeat"
    );

    let sim = Simulator::start("127.0.0.1:0", 20).unwrap();
    let database = TestDatabase::create(&backend).await;
    let port = free_port();
    let _server = start_role(&database, port, "serve", &[], Stdio::null()).await;
    let remote = RemoteTenant::create(port).await;
    let run = remote.queue_orders_run(&sim).await;
    eventually("the run succeeds", Duration::from_secs(60), || async {
        let shown = remote.get(&run).await;
        if shown["status"] == "succeeded" {
            Ok(())
        } else {
            Err(shown)
        }
    })
    .await;
    // The worker counts a run's end after committing it, so the API can show the run
    // succeeded a moment before /metrics counts it.
    let text = eventually("the run is counted", Duration::from_secs(10), || async {
        let text = metrics_at(&remote.client, &remote.base).await;
        if text.contains("synchub_runs_total{") {
            Ok(text)
        } else {
            Err("no synchub_runs_total yet")
        }
    })
    .await;
    let served = parse_exposition(&text);

    let mut problems = Vec::new();
    for (source, expr) in &exprs {
        let found = uses(expr);
        if found.is_empty() {
            problems.push(format!("{source}: `{expr}` reads no synchub metric"));
        }
        for u in found {
            let Some(samples) = served.get(&u.metric) else {
                problems.push(format!(
                    "{source}: {} is not on /metrics (`{expr}`)",
                    u.metric
                ));
                continue;
            };
            for label in &u.labels {
                if !samples.iter().any(|s| s.contains_key(label)) {
                    problems.push(format!(
                        "{source}: {} has no label {label} (`{expr}`)",
                        u.metric
                    ));
                }
            }
            for (label, value) in &u.equal {
                if !samples.iter().any(|s| s.get(label) == Some(value)) {
                    problems.push(format!(
                        "{source}: {} has no series with {label}=\"{value}\" (`{expr}`)",
                        u.metric
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
on_both_backends!(the_ops_views_query_what_metrics_serves);

/// The storage gauges at a moment the test sets: due runs and the oldest one's wait (a
/// queued run, a retry whose time came, a dead worker's run; not a retry still waiting nor a
/// live lease), the dead letters, the alert outbox, and connections by credential state.
async fn storage_gauges_count_the_queue_the_outbox_and_credentials(backend: Backend) {
    let app = TestApp::spawn_quiet(backend).await;
    let (token, shop, erp) = store_and_erp(&app).await;
    let (status, created) = app
        .post(
            "/v1/flows",
            &token,
            json!({"name": "orders", "stream": "orders", "source": shop, "destination": erp}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let flow = flow::Entity::find_by_id(
        synchub::ids::FlowId::parse(created["id"].as_str().unwrap()).unwrap(),
    )
    .one(&app.db)
    .await
    .unwrap()
    .unwrap();
    let now: chrono::DateTime<chrono::Utc> = "2026-12-02T12:00:00Z".parse().unwrap();
    let minutes = |m: i64| now - chrono::Duration::minutes(m);
    let add =
        |n: usize, status: run::RunStatus, created: i64, next: Option<i64>, lease: Option<i64>| {
            let mut row = synchub::runs::queued_run(
                &flow,
                synchub::ids::RunId::generate(),
                "manual",
                format!("manual:{n}"),
                None,
                minutes(created),
            );
            row.status = Set(status);
            row.next_attempt_at = Set(next.map(minutes));
            row.lease_until = Set(lease.map(minutes));
            row
        };
    for row in [
        add(1, run::RunStatus::Queued, 3, None, None), // due 3 minutes
        add(2, run::RunStatus::Retrying, 60, Some(7), None), // due since its retry, 7 minutes
        add(3, run::RunStatus::Retrying, 60, Some(-5), None), // retries in 5 minutes: not due
        add(4, run::RunStatus::Running, 60, None, Some(1)), // lease ran out a minute ago
        add(5, run::RunStatus::Running, 60, None, Some(-1)), // a live lease
        add(6, run::RunStatus::Dead, 60, None, None),
        add(7, run::RunStatus::Dead, 60, None, None),
        add(8, run::RunStatus::Succeeded, 90, None, None),
    ] {
        row.insert(&app.db).await.unwrap();
    }
    let tenant = flow.tenant_id.clone();
    for (n, status, age) in [
        (1, alert_delivery::DeliveryStatus::Pending, 4),
        (2, alert_delivery::DeliveryStatus::Pending, 2),
        (3, alert_delivery::DeliveryStatus::Delivered, 30),
    ] {
        alert_delivery::ActiveModel {
            id: Set(synchub::ids::AlertDeliveryId::generate()),
            tenant_id: Set(tenant.clone()),
            alert_id: Set(synchub::ids::AlertId::generate()),
            channel_id: Set(synchub::ids::AlertChannelId::generate()),
            message: Set(json!({"n": n})),
            status: Set(status),
            attempts: Set(0),
            next_attempt_at: Set(minutes(age)),
            last_answer: Set(None),
            created_at: Set(minutes(age)),
            delivered_at: Set(None),
        }
        .insert(&app.db)
        .await
        .unwrap();
    }
    // The Shopify store: its token expires in 3 hours; the ERP: no known expiry.
    let store = connection::Entity::find_by_id(synchub::ids::ConnectionId::parse(&shop).unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let mut expiring: connection::ActiveModel = store.into();
    expiring.credential_expiry = Set(Some(
        json!({"access_token": (now + chrono::Duration::hours(3)).to_rfc3339(), "refresh_token": (now + chrono::Duration::days(30)).to_rfc3339()}),
    ));
    expiring.update(&app.db).await.unwrap();

    let sample = synchub::telemetry::gauges::sample(&app.db, now)
        .await
        .unwrap();
    assert_eq!(
        sample.runs_due, 3,
        "queued, a due retry, an abandoned lease"
    );
    assert_eq!(
        sample.runs_due_oldest_seconds,
        7.0 * 60.0,
        "the retry due 7 minutes ago"
    );
    assert_eq!(sample.dead_letters, 2);
    assert_eq!(sample.deliveries_pending, 2);
    assert_eq!(sample.deliveries_oldest_pending_seconds, 4.0 * 60.0);
    assert_eq!(
        sample.credentials["shopify"].get("expiring_within_24h"),
        Some(&1),
        "{:?}",
        sample.credentials
    );
    assert_eq!(
        sample.credentials["generic-rest-erp"].get("valid"),
        Some(&1)
    );

    // A day on, the token has expired; a refused refresh outranks any date.
    let later = now + chrono::Duration::days(1);
    let sample = synchub::telemetry::gauges::sample(&app.db, later)
        .await
        .unwrap();
    assert_eq!(sample.credentials["shopify"].get("expired"), Some(&1));
    let store = connection::Entity::find_by_id(synchub::ids::ConnectionId::parse(&shop).unwrap())
        .one(&app.db)
        .await
        .unwrap()
        .unwrap();
    let mut refused: connection::ActiveModel = store.into();
    refused.authorization_status = Set(Some(
        connection::AuthorizationStatus::ReauthorizationRequired,
    ));
    refused.update(&app.db).await.unwrap();
    let sample = synchub::telemetry::gauges::sample(&app.db, later)
        .await
        .unwrap();
    assert_eq!(
        sample.credentials["shopify"].get("reauthorization_required"),
        Some(&1)
    );
}
on_both_backends!(storage_gauges_count_the_queue_the_outbox_and_credentials);

#[test]
fn queries_are_read_for_their_metrics_and_labels() {
    let found = uses(
        r#"sum by (connector, le) (rate(synchub_run_pickup_delay_seconds_bucket{status="dead", route=~"5.."}[5m])) / synchub_runs_due"#,
    );
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].metric, "synchub_run_pickup_delay_seconds_bucket");
    assert_eq!(
        found[0].labels,
        ["connector", "le", "route", "status"]
            .map(String::from)
            .into()
    );
    assert_eq!(
        found[0].equal,
        vec![("status".to_string(), "dead".to_string())]
    );
    assert_eq!(
        found[1].labels,
        ["connector"].map(String::from).into(),
        "no le off a bucket"
    );
    let grafana = uses("label_values(synchub_runs_total, connector)");
    assert_eq!(grafana[0].labels, ["connector"].map(String::from).into());
    let rules = rule_expressions(
        "      - alert: A\n        expr: >-\n          sum(x)\n          / y\n        for: 1m\n      - alert: B\n        expr: z > 0\n",
    );
    assert_eq!(rules, vec!["sum(x) / y", "z > 0"]);
    let served = parse_exposition("# TYPE a counter\na{x=\"1\",y=\"2\"} 0\nb 3\n");
    assert_eq!(served["a"][0]["y"], "2");
    assert!(served["b"][0].is_empty());
}
