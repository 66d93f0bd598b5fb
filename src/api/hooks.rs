use actix_web::http::header::HeaderMap;
use actix_web::{HttpRequest, HttpResponse, post, web};

use super::AppState;
use super::extract::{client_ip, read_body};
use crate::error::Result;
use crate::webhooks::{Acknowledged, Headers, InboundWebhook};

struct ActixHeaders<'a>(&'a HeaderMap);

impl Headers for ActixHeaders<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Public webhook ingress. Verified by the connector's scheme on the raw body; 200 only after
/// the event is committed. Bad signatures get 401, foreign sources 403, oversized bodies 413.
#[utoipa::path(params(("connection_id" = String, Path)), request_body(content = String, description = "the platform's raw body"), responses((status = 200, body = Acknowledged), (status = 401, body = crate::api::problem::Problem), (status = 403, body = crate::api::problem::Problem), (status = 413, body = crate::api::problem::Problem)), tag = "webhooks")]
#[post("/v1/hooks/{connection_id}")]
pub async fn receive(
    state: web::Data<AppState>,
    req: HttpRequest,
    connection_id: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse> {
    let mut payload = payload.into_inner();
    let body = read_body(&req, &mut payload, state.settings.webhooks.max_body_bytes).await?;
    let source_ip = client_ip(&req, &state);
    let headers = ActixHeaders(req.headers());
    let ack = state
        .ingest
        .ingest(InboundWebhook {
            connection_id: &connection_id,
            source_ip,
            headers: &headers,
            content_type: req
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            body: &body,
        })
        .await?;
    Ok(HttpResponse::Ok().json(ack))
}
