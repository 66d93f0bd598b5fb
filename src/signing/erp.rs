//! Request signatures of the ERPs that sign calls, as their docs specify.
//!
//! Lingxing OpenAPI (领星), "领星 API 接入指南" §4.1 (apidoc.lingxing.com, copied in the public
//! repo youjunhui-sky/zoupw-lingxing-v2, `lingxing-api-docs/docs/Guidance/newInstructions.md`):
//! every parameter (the business ones and `access_token`, `app_key`, `timestamp`) sorted by
//! ASCII, joined `key=value&...` leaving out empty values (a null value is signed, as
//! `null`), MD5 as 32 upper-case hex characters, that text encrypted with AES/ECB/PKCS5
//! keyed by the AppID. Not stated there, taken from the third-party SDK
//! SongKehao/lingxing-sdk: the ciphertext is Base64, and nested body values are signed as
//! compact JSON text with sorted keys. The caller URL-encodes the result (a query value).
//!
//! Mabang (马帮) gateway: `Authorization` = hex(HMAC-SHA256(developer secret, the exact body
//! text)), as every public client does it (Go, Node, PHP clients; a Bun test checks it
//! against the doc site's stock-get-stock-quantity example, which `mabang_sign_matches...`
//! repeats).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ecb::cipher::{BlockModeEncrypt, KeyInit, block_padding::Pkcs7};
use md5::{Digest, Md5};
use serde_json::Value;

/// Lingxing's `sign` over these parameters; None if the AppID is not an AES-128 key (16
/// bytes; AppIDs look like `ak_` and 13 characters).
pub fn lingxing(app_id: &str, params: &[(String, String)]) -> Option<String> {
    let key: [u8; 16] = app_id.as_bytes().try_into().ok()?;
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(_, v)| !v.is_empty()).collect();
    sorted.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let text = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let digest = hex::encode_upper(Md5::digest(text.as_bytes()));
    let mut buffer = [0u8; 48];
    let sealed = ecb::Encryptor::<aes::Aes128>::new(&key.into())
        .encrypt_padded_b2b::<Pkcs7>(digest.as_bytes(), &mut buffer)
        .ok()?;
    Some(STANDARD.encode(sealed))
}

/// Mabang's `Authorization` over the exact body text that is sent.
pub fn mabang(secret: &str, body: &[u8]) -> String {
    hex::encode(super::hmac_sha256(secret.as_bytes(), &[body]))
}

/// A JSON body's top-level fields as Lingxing signs them: text as is, numbers and booleans
/// as written, null as `null`, arrays and objects as compact JSON with sorted keys.
pub fn lingxing_body_params(body: &Value) -> Vec<(String, String)> {
    let Some(fields) = body.as_object() else {
        return Vec::new();
    };
    fields
        .iter()
        .map(|(k, v)| {
            let text = match v {
                Value::String(s) => s.clone(),
                Value::Array(_) | Value::Object(_) => canonical_json(v),
                other => other.to_string(),
            };
            (k.clone(), text)
        })
        .collect()
}

/// Compact JSON with every object's keys sorted, whatever order the map keeps.
fn canonical_json(value: &Value) -> String {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), canonical_json(&map[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(canonical_json).collect();
            format!("[{}]", items.join(","))
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// The known-answer vector computed from §4.1 (`../shared/platforms-erp.md`; not
    /// published by Lingxing): a GET with offset and length, parameters given unsorted.
    #[test]
    fn lingxing_sign_matches_the_vector() {
        let params = pairs(&[
            ("timestamp", "1720429074"),
            ("offset", "0"),
            ("app_key", "ak_TESTTESTTEST1"),
            ("length", "100"),
            ("access_token", "00000000-0000-0000-0000-000000000000"),
        ]);
        assert_eq!(
            lingxing("ak_TESTTESTTEST1", &params).as_deref(),
            Some("ovEHsQ9sZ3hLI+VMxaSdX7WohSnP8v/p1wCGBRnlPGlj2ydHRAtAl4luDaQWfJi6")
        );
    }

    /// Empty values are left out of the signed text; `null` is signed.
    #[test]
    fn empty_values_are_not_signed() {
        let with_empty = pairs(&[("a", "1"), ("b", "")]);
        assert_eq!(
            lingxing("ak_TESTTESTTEST1", &with_empty),
            lingxing("ak_TESTTESTTEST1", &pairs(&[("a", "1")]))
        );
        let with_null = lingxing_body_params(&serde_json::json!({"a": 1, "b": null}));
        assert_eq!(with_null, pairs(&[("a", "1"), ("b", "null")]));
        assert_ne!(
            lingxing("ak_TESTTESTTEST1", &with_null),
            lingxing("ak_TESTTESTTEST1", &pairs(&[("a", "1")]))
        );
    }

    #[test]
    fn nested_body_values_are_compact_sorted_json() {
        let body =
            serde_json::json!({"store_id": "1", "orders": [{"z": 1, "a": {"y": "x", "b": true}}]});
        let mut params = lingxing_body_params(&body);
        params.sort();
        assert_eq!(
            params,
            pairs(&[
                ("orders", r#"[{"a":{"b":true,"y":"x"},"z":1}]"#),
                ("store_id", "1")
            ])
        );
    }

    /// The doc site's example, as a public client's test quotes it (search id 54588284561).
    #[test]
    fn mabang_sign_matches_the_published_example() {
        let body = br#"{"api":"stock-get-stock-quantity","appkey":"201501","data":{},"timestamp":1779176045}"#;
        assert_eq!(
            mabang("2c11c34624d660dfae3ba7aa42e5cde2", body),
            "2b5899e3232fb98803f7ff4dedf8a3941ea8b36f1308d8435a407478a2f177a9"
        );
    }

    #[test]
    fn an_app_id_that_is_no_aes_128_key_is_refused() {
        assert_eq!(lingxing("short", &[]), None);
    }
}
