//! The scheduler with a controllable clock: several processes, missed ticks, DST days.

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use synchub::scheduler::{Scheduler, TickReport};
use synchub::store::entities::{flow, run};

use crate::flows::store_and_erp;
use crate::helpers::{Backend, TestApp};
use crate::on_both_backends;

async fn app_without_scheduler(backend: Backend) -> TestApp {
    TestApp::spawn_with(backend, &[("SYNCHUB_SCHEDULER__ENABLED", "false")]).await
}

async fn set_next_run(app: &TestApp, at: DateTime<Utc>) {
    flow::Entity::update_many()
        .col_expr(flow::Column::NextRunAt, Some(at).into())
        .exec(&app.db)
        .await
        .unwrap();
}

/// A tick that fails on a busy database is tried again, as the loop would on its next turn.
async fn tick_until_done(scheduler: &Scheduler, now: DateTime<Utc>) -> TickReport {
    for _ in 0..50 {
        match scheduler.tick(now).await {
            Ok(report) => return report,
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    panic!("the scheduler never got through");
}

/// Three scheduler processes ticking at the same moments enqueue every tick exactly once.
async fn three_schedulers_fire_each_tick_once(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let (token, shop, erp) = store_and_erp(&app).await;
    for i in 0..40 {
        let (status, _) = app
            .post("/v1/flows", &token, json!({"name": format!("flow {i}"), "stream": "orders", "source": shop, "destination": erp, "schedule": {"every_seconds": 60}}))
            .await;
        assert_eq!(status, 201);
    }
    let start: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
    set_next_run(&app, start).await;
    let schedulers = [
        Scheduler::new(app.database.connect().await),
        Scheduler::new(app.database.connect().await),
        Scheduler::new(app.database.connect().await),
    ];
    let mut enqueued = 0;
    for minute in 0..5 {
        let now = start + Duration::minutes(minute) + Duration::seconds(1);
        let (a, b, c) = tokio::join!(
            tick_until_done(&schedulers[0], now),
            tick_until_done(&schedulers[1], now),
            tick_until_done(&schedulers[2], now)
        );
        enqueued += a.enqueued + b.enqueued + c.enqueued;
    }
    assert_eq!(
        enqueued,
        40 * 5,
        "each of 5 ticks of 40 flows enqueued once in all"
    );
    assert_eq!(run::Entity::find().count(&app.db).await.unwrap(), 200);
    let first_flow = flow::Entity::find().one(&app.db).await.unwrap().unwrap();
    let runs: Vec<run::Model> = run::Entity::find()
        .filter(run::Column::FlowId.eq(first_flow.id.clone()))
        .all(&app.db)
        .await
        .unwrap();
    let mut ticks: Vec<String> = runs
        .iter()
        .map(|r| r.scheduled_for.unwrap().format("%H:%M").to_string())
        .collect();
    ticks.sort();
    assert_eq!(ticks, ["10:00", "10:01", "10:02", "10:03", "10:04"]);
    assert_eq!(
        first_flow.next_run_at.unwrap(),
        start + Duration::minutes(5)
    );
}
on_both_backends!(three_schedulers_fire_each_tick_once);

/// After downtime a missed tick runs once with catch-up, and not at all without it.
async fn missed_ticks_run_once_or_are_skipped(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let (token, shop, erp) = store_and_erp(&app).await;
    let (_, catching_up) = app
        .post("/v1/flows", &token, json!({"name": "catch up", "stream": "orders", "source": shop, "destination": erp, "schedule": {"every_seconds": 60}}))
        .await;
    let (_, skipping) = app
        .post("/v1/flows", &token, json!({"name": "skip", "stream": "orders", "source": shop, "destination": erp, "schedule": {"every_seconds": 60}, "catch_up": false}))
        .await;
    let down_since: DateTime<Utc> = "2026-11-26T10:00:00Z".parse().unwrap();
    set_next_run(&app, down_since).await;
    let back = down_since + Duration::hours(1);
    let scheduler = Scheduler::new(app.db.clone());
    let report = scheduler.tick(back).await.unwrap();
    assert_eq!((report.enqueued, report.skipped), (1, 1), "{report:?}");
    assert_eq!(
        scheduler.tick(back).await.unwrap(),
        TickReport::default(),
        "60 missed ticks do not all run"
    );

    let runs_of =
        |flow: &serde_json::Value| format!("/v1/flows/{}/runs", flow["id"].as_str().unwrap());
    let caught = app.get(&runs_of(&catching_up), &token).await.1["data"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(caught.len(), 1);
    assert_eq!(
        caught[0]["scheduled_for"], "2026-11-26T10:00:00Z",
        "the missed tick, once"
    );
    let skipped = app.get(&runs_of(&skipping), &token).await.1["data"]
        .as_array()
        .unwrap()
        .clone();
    assert!(skipped.is_empty());
    for row in flow::Entity::find().all(&app.db).await.unwrap() {
        assert_eq!(
            row.next_run_at.unwrap(),
            back + Duration::minutes(1),
            "both continue from now"
        );
    }
}
on_both_backends!(missed_ticks_run_once_or_are_skipped);

/// Through the scheduler and the API: a daily 02:30 in New York over the spring-forward day.
async fn the_scheduler_follows_dst_rules(backend: Backend) {
    let app = app_without_scheduler(backend).await;
    let (token, shop, erp) = store_and_erp(&app).await;
    let (_, created) = app
        .post("/v1/flows", &token, json!({"name": "nightly", "stream": "orders", "source": shop, "destination": erp, "schedule": {"cron": "30 2 * * *", "timezone": "America/New_York"}}))
        .await;
    let id = created["id"].as_str().unwrap();
    set_next_run(&app, "2026-03-07T07:30:00Z".parse().unwrap()).await;
    let scheduler = Scheduler::new(app.db.clone());
    let mut fired = Vec::new();
    for now in [
        "2026-03-07T07:30:00.4Z",
        "2026-03-08T07:00:00.4Z",
        "2026-03-09T06:30:00.4Z",
    ] {
        let report = scheduler.tick(now.parse().unwrap()).await.unwrap();
        assert_eq!(report.enqueued, 1, "at {now}");
        let (_, flow) = app.get(&format!("/v1/flows/{id}"), &token).await;
        fired.push((
            flow["next_run_at"].as_str().unwrap().to_string(),
            flow["next_run_at_local"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        fired,
        [
            (
                "2026-03-08T07:00:00Z".to_string(),
                "2026-03-08T03:00:00-04:00".to_string()
            ),
            (
                "2026-03-09T06:30:00Z".to_string(),
                "2026-03-09T02:30:00-04:00".to_string()
            ),
            (
                "2026-03-10T06:30:00Z".to_string(),
                "2026-03-10T02:30:00-04:00".to_string()
            ),
        ]
    );
}
on_both_backends!(the_scheduler_follows_dst_rules);
