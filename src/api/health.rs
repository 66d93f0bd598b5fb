use actix_web::{HttpResponse, get, web};

use super::AppState;
use crate::error::Error;

/// Liveness: the process is up.
#[utoipa::path(responses((status = 200, description = "alive")), tag = "ops")]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database answers and every migration is applied.
#[utoipa::path(responses((status = 200, description = "ready"), (status = 503, description = "not ready", body = crate::api::problem::Problem)), tag = "ops")]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, Error> {
    crate::store::readiness(&state.db)
        .await
        .map_err(Error::Unavailable)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "status": "ready" })))
}

/// Prometheus metrics.
#[utoipa::path(responses((status = 200, description = "Prometheus text format")), tag = "ops")]
#[get("/metrics")]
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    // Counted by SQLite's busy handler on the connections' own threads; read at each scrape.
    ::metrics::counter!("synchub_sqlite_lock_waits_total")
        .absolute(crate::store::sqlite_lock_waits());
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(state.metrics.render())
}
