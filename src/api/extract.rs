//! Extractors: the authenticated caller, the client's address, and JSON bodies and query
//! strings that report the field that failed to parse, as problem+json.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::http::header;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::AppState;
use super::problem::REQUEST_ID;
use crate::error::{Error, FieldError};
use crate::tenancy::{Principal, authenticate};

fn state(req: &HttpRequest) -> Result<web::Data<AppState>, Error> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| Error::Internal(anyhow::anyhow!("application state is not registered")))
}

/// The address the request came from, believing `X-Forwarded-For` only from trusted proxies.
pub fn client_ip(req: &HttpRequest, state: &AppState) -> IpAddr {
    let peer = req
        .peer_addr()
        .map(|addr| addr.ip())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    crate::netpolicy::client_ip(peer, forwarded, &state.settings.trusted_proxies)
}

/// The token of `Authorization: Bearer <token>`, if the header is there. The scheme is
/// case-insensitive (RFC 9110 §11.1): `bearer` and `BEARER` are the same.
pub fn bearer_token(headers: &header::HeaderMap) -> Option<&str> {
    bearer(headers).ok()
}

/// The bearer token, or a 401 that says whether the header is missing or malformed.
fn bearer(headers: &header::HeaderMap) -> Result<&str, Error> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or(Error::Unauthenticated(
            "no Authorization header: send `Authorization: Bearer <token>`",
        ))?;
    let malformed = Error::Unauthenticated;
    let value = value
        .to_str()
        .map_err(|_| malformed("the Authorization header is not text"))?
        .trim_start();
    let (scheme, token) = value.split_once(' ').ok_or(malformed(
        "the Authorization header is not `Bearer <token>`",
    ))?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
        .ok_or(malformed(
            "the Authorization header is not `Bearer <token>`",
        ))
}

/// The caller, from `Authorization: Bearer <token>`.
pub struct Auth(pub Principal);

impl FromRequest for Auth {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let state = state(&req)?;
            let bearer = bearer(req.headers())?;
            let ip = client_ip(&req, &state);
            let request_id = REQUEST_ID.try_with(Clone::clone).ok();
            let principal =
                authenticate(&state.db, bearer, ip, request_id, state.clock.now()).await?;
            Ok(Auth(principal))
        })
    }
}

/// Reads the body up to `limit` bytes; a larger one is 413 before it is all read, and one
/// that does not arrive within `http.body_read_timeout_seconds` is 408, so a client sending
/// a byte a second cannot hold a connection (and its worker's memory) for long.
pub async fn read_body(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: usize,
) -> Result<web::Bytes, Error> {
    let seconds = state(req)?.settings.http.body_read_timeout_seconds;
    tokio::time::timeout(
        std::time::Duration::from_secs(seconds),
        read_body_within(req, payload, limit),
    )
    .await
    .unwrap_or(Err(Error::BodyTimeout { seconds }))
}

async fn read_body_within(
    req: &HttpRequest,
    payload: &mut Payload,
    limit: usize,
) -> Result<web::Bytes, Error> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(Error::PayloadTooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(1024).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| Error::invalid("body", format!("could not read the body: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(Error::PayloadTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// A JSON body: must say it is JSON, must fit the configured limit, and a parse error names
/// the field (`settings.shop_domain`) and what was wrong with it.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Error>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let mut payload = payload.take();
        Box::pin(async move {
            let state = state(&req)?;
            let content_type = req
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            let essence = content_type
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            if essence != "application/json" && !essence.ends_with("+json") {
                return Err(Error::UnsupportedMediaType(
                    "send the body as application/json".into(),
                ));
            }
            let body = read_body(&req, &mut payload, state.settings.max_json_body_bytes).await?;
            parse_json(&body).map(Json)
        })
    }
}

/// A query string: unknown parameters and values of the wrong kind are a 400 problem naming
/// the parameter (actix's own `Query` answers them in plain text).
pub struct Query<T>(pub T);

impl<T: DeserializeOwned + 'static> FromRequest for Query<T> {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(parse_query(req.query_string()).map(Query))
    }
}

pub fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    let deserializer =
        serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        // serde names an unknown parameter as the path; what it cannot place is the query.
        let field = blamed_field(err.path().to_string(), "query");
        Error::Invalid(vec![FieldError::new(field, err.inner().to_string())])
    })
}

/// Parses a JSON body. Strings may not hold NUL (`\u0000`): PostgreSQL stores no NUL in
/// text or jsonb, so it would fail there what SQLite takes; one rule here for every body.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, Error> {
    // Raw control characters are not JSON; a NUL can only come as an escape.
    if contains_escaped_nul(body)
        && let Ok(value) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(field) = nul_path(&value, String::new())
    {
        return Err(Error::invalid(
            field,
            "must not contain the NUL character (\\u0000)",
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let parsed = serde_path_to_error::deserialize(&mut deserializer);
    // JSON has one number type: `5.0` is the integer 5 (JSON Schema says so too), which
    // serde refuses for an integer field. Only then is the body read again with such
    // numbers made integers.
    if let Err(err) = &parsed
        && err
            .inner()
            .to_string()
            .starts_with("invalid type: floating point")
        && let Some(value) = integral_floats_as_integers(body)
        && let Ok(value) = serde_path_to_error::deserialize(value)
    {
        return Ok(value);
    }
    let value = parsed.map_err(|err| {
        // Broken JSON has no field to blame (the path reads "?"): the body, at its place.
        let broken = err.inner().is_syntax() || err.inner().is_eof();
        let field = if broken {
            "body".to_string()
        } else {
            blamed_field(err.path().to_string(), "body")
        };
        let message = if broken {
            format!("is not valid JSON: {}", err.inner())
        } else {
            err.inner().to_string()
        };
        // serde_json appends " at line L column C"; keep it, it helps find the spot.
        Error::Invalid(vec![FieldError::new(field, message)])
    })?;
    deserializer.end().map_err(|e| {
        Error::invalid(
            "body",
            format!("trailing characters after the JSON value: {e}"),
        )
    })?;
    Ok(value)
}

/// The body as a JSON value with every float that is a whole number within i64 made an
/// integer; None when it has no such float (nothing to retry) or is not JSON.
fn integral_floats_as_integers(body: &[u8]) -> Option<serde_json::Value> {
    fn walk(value: &mut serde_json::Value) -> bool {
        match value {
            serde_json::Value::Number(n) if n.is_f64() => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    *value = serde_json::Value::from(f as i64);
                    true
                }
                _ => false,
            },
            serde_json::Value::Array(items) => items.iter_mut().fold(false, |c, v| walk(v) | c),
            serde_json::Value::Object(map) => map.values_mut().fold(false, |c, v| walk(v) | c),
            _ => false,
        }
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    walk(&mut value).then_some(value)
}

/// The field serde_path_to_error's path names, or `whole` (the body, the query) when it
/// names none: empty, the root (`.`) or a place it could not follow (`?`).
fn blamed_field(path: String, whole: &str) -> String {
    if path.is_empty() || path == "." || path.contains('?') {
        whole.to_string()
    } else {
        path
    }
}

fn contains_escaped_nul(body: &[u8]) -> bool {
    body.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

/// The path (`settings.shop_domain`, `cidrs[2]`) of the first key or string holding a NUL.
fn nul_path(value: &serde_json::Value, path: String) -> Option<String> {
    let join = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        serde_json::Value::String(text) if text.contains('\0') => {
            Some(if path.is_empty() { "body".into() } else { path })
        }
        serde_json::Value::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| nul_path(item, format!("{path}[{i}]"))),
        serde_json::Value::Object(map) => map.iter().find_map(|(key, item)| {
            if key.contains('\0') {
                Some(join(&key.replace('\0', "\\u0000")))
            } else {
                nul_path(item, join(key))
            }
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_characters_are_refused_with_their_field() {
        let field = |body: &[u8]| match parse_json::<serde_json::Value>(body) {
            Err(Error::Invalid(fields)) => Some(fields[0].field.clone()),
            _ => None,
        };
        assert_eq!(field(br#"{"name":"a\u0000b"}"#).as_deref(), Some("name"));
        assert_eq!(
            field(br#"{"settings":{"shop_domain":"x\u0000"}}"#).as_deref(),
            Some("settings.shop_domain")
        );
        assert_eq!(
            field(br#"{"cidrs":["1.2.3.4","\u0000"]}"#).as_deref(),
            Some("cidrs[1]")
        );
        assert_eq!(
            field(br#"{"settings":{"a\u0000":1}}"#).as_deref(),
            Some(r"settings.a\u0000")
        );
        // An escaped backslash before u0000 is text, not a NUL.
        assert_eq!(field(br#"{"name":"a\\u0000"}"#), None);
        assert_eq!(field(br#"{"name":"plain"}"#), None);
    }

    /// Broken JSON is the body's fault, with the line and column where it broke.
    #[test]
    fn broken_json_names_the_body_and_the_place() {
        for body in [
            &br#"{"name": "x", "settings": {"a": }}"#[..],
            br#"{"name": "#,
            b"{\n  \"name\" 1}",
        ] {
            match parse_json::<serde_json::Value>(body) {
                Err(Error::Invalid(fields)) => {
                    assert_eq!(fields[0].field, "body");
                    assert!(
                        fields[0].message.contains("is not valid JSON")
                            && fields[0].message.contains("line"),
                        "{}",
                        fields[0].message
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }
    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u32,
    }

    #[test]
    fn parse_errors_name_the_field() {
        let err = parse_json::<Outer>(br#"{"inner":{"count":"x"}}"#).unwrap_err();
        let Error::Invalid(fields) = err else {
            panic!()
        };
        assert_eq!(fields[0].field, "inner.count");
        let err = parse_json::<Outer>(br#"{"inner":{"count":1},"extra":1}"#).unwrap_err();
        let Error::Invalid(fields) = err else {
            panic!()
        };
        assert!(
            fields[0].message.contains("unknown field `extra`"),
            "{fields:?}"
        );
        assert!(parse_json::<Outer>(b"{not json").is_err());
        assert!(parse_json::<Outer>(br#"{"inner":{"count":1}} x"#).is_err());
    }
}
