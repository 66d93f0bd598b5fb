//! Signatures, as the platforms specify them: a leaf that webhook ingress, the connector
//! client, the alert sender and the simulator all use, and that uses nothing of theirs.
//! Pure functions; every comparison of a computed signature with a received one is
//! constant-time (`matches`).

pub mod chat;
pub mod erp;
pub mod marketplaces;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// HMAC-SHA256 of the parts, concatenated.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail.
    let mut mac =
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// A received MAC equals the expected one, compared in constant time.
pub fn matches(expected: &[u8; 32], received: &[u8]) -> bool {
    received.len() == expected.len() && bool::from(expected.as_slice().ct_eq(received))
}

/// Two byte strings are equal, compared in constant time (for texts: signs, secrets).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// The Standard Webhooks key: the base64 after `whsec_`.
/// https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
pub fn standard_webhooks_key(secret: &str) -> Option<Vec<u8>> {
    STANDARD.decode(secret.strip_prefix("whsec_")?).ok()
}

/// Standard Webhooks: `v1,` + base64(HMAC-SHA256(key = the decoded whsec_ secret,
/// message = id + "." + timestamp + "." + body)).
pub fn standard_webhooks(key: &[u8], id: &str, timestamp_s: i64, body: &[u8]) -> String {
    let ts = timestamp_s.to_string();
    let mac = hmac_sha256(key, &[id.as_bytes(), b".", ts.as_bytes(), b".", body]);
    format!("v1,{}", STANDARD.encode(mac))
}
