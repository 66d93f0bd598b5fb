//! RFC 9457 problem+json for every error. Domain errors keep their message and a stable
//! `code`; anything unexpected becomes an opaque 500 whose full cause chain goes to the log.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::error::{Error, FieldError};

pub const PROBLEM_BASE: &str = "https://synchub.dev/problems/";

tokio::task_local! {
    /// The request id of the request being served, so error bodies can carry it.
    pub static REQUEST_ID: String;
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable machine-readable code, e.g. `validation`, `not_found`.
    pub code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

fn parts(err: &Error) -> (StatusCode, &'static str, &'static str) {
    match err {
        Error::NotFound(_) => (StatusCode::NOT_FOUND, "not_found", "Not found"),
        Error::Invalid(_) => (StatusCode::BAD_REQUEST, "validation", "Invalid input"),
        Error::Unauthenticated(_) => (
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "Authentication required",
        ),
        Error::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden", "Forbidden"),
        Error::Conflict(_) => (StatusCode::CONFLICT, "conflict", "Conflict"),
        Error::BadSignature(_) => (
            StatusCode::UNAUTHORIZED,
            "invalid_signature",
            "Webhook signature rejected",
        ),
        Error::SourceNotAllowed(_) => (
            StatusCode::FORBIDDEN,
            "source_not_allowed",
            "Source address not allowed",
        ),
        Error::PayloadTooLarge { .. } => (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
        ),
        Error::BodyTimeout { .. } => (
            StatusCode::REQUEST_TIMEOUT,
            "body_timeout",
            "Request body too slow",
        ),
        Error::IdempotencyKeyReused => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "Idempotency key reused",
        ),
        Error::UnsupportedMediaType(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Unsupported media type",
        ),
        Error::Unavailable(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "Temporarily unavailable",
        ),
        Error::Internal(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "Internal error",
        ),
    }
}

pub fn problem_response(
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: String,
    errors: Vec<FieldError>,
) -> HttpResponse {
    let problem = Problem {
        problem_type: format!("{PROBLEM_BASE}{code}"),
        title,
        status: status.as_u16(),
        detail: printable(detail),
        code,
        request_id: REQUEST_ID.try_with(Clone::clone).ok(),
        errors: errors
            .into_iter()
            .map(|e| FieldError::new(printable(e.field), printable(e.message)))
            .collect(),
    };
    let mut response = HttpResponse::build(status);
    response.insert_header((
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    ));
    if status == StatusCode::UNAUTHORIZED && code == "unauthenticated" {
        response.insert_header((header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
    }
    response.body(serde_json::to_string(&problem).unwrap_or_default())
}

/// An error names what it refused, often the caller's own text (an unknown parameter's
/// name, say): control characters in it are shown escaped, so a client's terminal, a log
/// line or a NUL-free text column never receives them raw.
fn printable(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        parts(self).0
    }

    fn error_response(&self) -> HttpResponse {
        let (status, code, title) = parts(self);
        let detail = match self {
            Error::Internal(cause) => {
                tracing::error!(error = ?cause, "request failed");
                "something went wrong on our side; the request id identifies it in our logs"
                    .to_string()
            }
            other => other.to_string(),
        };
        let errors = match self {
            Error::Invalid(errors) => errors.clone(),
            _ => Vec::new(),
        };
        problem_response(status, code, title, detail, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_an_echoed_name_come_back_escaped() {
        let error = Error::Invalid(vec![FieldError::new("a\0b", "unknown field `a\0b`")]);
        let response = error.error_response();
        let body =
            actix_web::body::MessageBody::try_into_bytes(response.into_body()).unwrap_or_default();
        let problem: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(problem["errors"][0]["field"], "a\\u{0}b");
        assert_eq!(problem["errors"][0]["message"], "unknown field `a\\u{0}b`");
        assert!(!problem["detail"].as_str().unwrap_or("\0").contains('\0'));
        assert_eq!(printable("plain ünïcode".into()), "plain ünïcode");
    }
}
