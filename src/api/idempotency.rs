//! `Idempotency-Key` on every write: the first request's response is stored and replayed to
//! retries with the same key and body (marked `Idempotent-Replayed: true`); the same key with
//! another body is 422; a retry while the first is still running is 409.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{Method, StatusCode};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};

use super::AppState;
use super::extract::{bearer_token, read_body};
use crate::error::Error;
use crate::idempotency::{self, Claim, StoredResponse};

pub const HEADER: &str = "idempotency-key";
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

fn applies(req: &ServiceRequest) -> bool {
    matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH | Method::DELETE)
        && req.headers().contains_key(HEADER)
        // Webhooks deduplicate by the platform's own event ids.
        && !req.path().starts_with("/v1/hooks/")
        // A route or method the API does not serve gets its 404 or 405, not a replay.
        && super::openapi::methods_for(req.path())
            .iter()
            .any(|m| m == req.method().as_str())
}

pub async fn idempotency(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if !applies(&req) {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let bearer = bearer_token(req.headers()).map(str::to_string);
    let (Some(bearer), Some(state)) = (bearer, req.app_data::<web::Data<AppState>>().cloned())
    else {
        // Unauthenticated: the handler answers 401, nothing to remember.
        return Ok(next.call(req).await?.map_into_boxed_body());
    };
    let key = req
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Err(err) = idempotency::validate_key(&key) {
        return Ok(req.error_response(err));
    }
    let (http_req, mut payload) = req.into_parts();
    let body = match read_body(&http_req, &mut payload, state.settings.max_json_body_bytes).await {
        Ok(body) => body,
        Err(err) => return Ok(ServiceResponse::from_err(err, http_req)),
    };
    let scope = idempotency::scope_of_token(&bearer);
    let path = http_req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let hash = idempotency::request_hash(http_req.method().as_str(), path, &body);
    match idempotency::claim(
        &state.db,
        &state.vault,
        &scope,
        &key,
        &hash,
        state.clock.now(),
    )
    .await
    {
        Err(err) => Ok(ServiceResponse::from_err(err, http_req)),
        Ok(Claim::Replay(stored)) => Ok(ServiceResponse::new(http_req, replay(stored))),
        Ok(Claim::Claimed) => {
            let req = ServiceRequest::from_parts(http_req, Payload::from(body));
            let response = next.call(req).await?;
            let status = response.status();
            let (http_req, response) = response.into_parts();
            let (head, body) = response.into_parts();
            let bytes = match actix_web::body::to_bytes(body).await {
                Ok(bytes) => bytes,
                Err(_) => {
                    let _ = idempotency::release(&state.db, &scope, &key).await;
                    let err =
                        Error::Internal(anyhow::anyhow!("the response body could not be buffered"));
                    return Ok(ServiceResponse::from_err(err, http_req));
                }
            };
            let outcome = if status.is_server_error() {
                // A 5xx may succeed on retry: do not pin it to the key.
                idempotency::release(&state.db, &scope, &key).await
            } else {
                let content_type = head
                    .headers()
                    .get(header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let stored = StoredResponse {
                    status: status.as_u16(),
                    content_type,
                    body: bytes.to_vec(),
                };
                idempotency::complete(&state.db, &state.vault, &scope, &key, stored).await
            };
            if let Err(err) = outcome {
                tracing::error!(error = %err, "could not record the idempotency key's outcome");
            }
            Ok(ServiceResponse::new(
                http_req,
                head.set_body(bytes).map_into_boxed_body(),
            ))
        }
    }
}

fn replay(stored: StoredResponse) -> HttpResponse {
    let status = StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK);
    let mut response = HttpResponse::build(status);
    if let Some(content_type) = stored
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        response.insert_header((header::CONTENT_TYPE, content_type));
    }
    response.insert_header((REPLAYED_HEADER, "true"));
    response.body(stored.body)
}
