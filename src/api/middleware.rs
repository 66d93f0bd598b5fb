//! One middleware for every request: a request id (kept from a sane `X-Request-Id`, else
//! generated) on the response and on every log line, an access log line, and the HTTP metrics.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use tracing::Instrument;

use super::problem::REQUEST_ID;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

fn incoming_request_id(req: &ServiceRequest) -> Option<String> {
    let value = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| value.to_string())
}

const WEBHOOK_ROUTE: &str = "/v1/hooks/{connection_id}";

/// The matched route's pattern, for labels. Asking actix re-runs the router's regexes (3 %
/// of ingest's CPU), so the one hot route, whose prefix nothing else shares, is named
/// directly.
fn route_of(req: &ServiceRequest) -> String {
    let path = req.path();
    if let Some(id) = path.strip_prefix("/v1/hooks/")
        && !id.is_empty()
        && !id.contains('/')
    {
        return WEBHOOK_ROUTE.to_string();
    }
    req.match_pattern()
        .unwrap_or_else(|| "unmatched".to_string())
}

pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let request_id =
        incoming_request_id(&req).unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let started = Instant::now();
    let method = req.method().to_string();
    let route = route_of(&req);
    let is_webhook = route == WEBHOOK_ROUTE;
    let span =
        tracing::info_span!("http", request_id = %request_id, method = %method, route = %route);
    let result = REQUEST_ID
        .scope(request_id.clone(), next.call(req).instrument(span.clone()))
        .await;
    let mut response = result?;
    let status = response.status().as_u16();
    let elapsed = started.elapsed().as_secs_f64();
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert(HeaderName::from_static(REQUEST_ID_HEADER), value);
    }
    let status_label = status.to_string();
    metrics::counter!("synchub_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status_label).increment(1);
    metrics::histogram!("synchub_http_request_duration_seconds", "method" => method, "route" => route).record(elapsed);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!(status, latency_ms = elapsed * 1000.0, "request served");
        } else if is_webhook && status < 400 {
            // A line per accepted webhook was 8 % of ingest's CPU at 13,000/s (profiled);
            // synchub_webhooks_total counts them. Refusals still get their line.
            tracing::debug!(status, latency_ms = elapsed * 1000.0, "request served");
        } else {
            tracing::info!(status, latency_ms = elapsed * 1000.0, "request served");
        }
    });
    Ok(response)
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    #[test]
    fn the_webhook_route_is_named_without_the_router() {
        let route = |uri: &str| route_of(&TestRequest::with_uri(uri).to_srv_request());
        assert_eq!(route("/v1/hooks/01JABCDEF"), WEBHOOK_ROUTE);
        assert_eq!(route("/v1/hooks/01JABCDEF?x=1"), WEBHOOK_ROUTE);
        // Not the webhook route: asked of the router (none here).
        assert_eq!(route("/v1/hooks/"), "unmatched");
        assert_eq!(route("/v1/hooks/a/b"), "unmatched");
        assert_eq!(route("/v1/hooksx/a"), "unmatched");
    }
}
