//! Signature schemes, as pure functions of headers, raw body and secret. Every comparison of
//! a computed signature with a received one is constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::connections::SchemeConfig;
use crate::connectors::{SignatureEncoding, WebhookScheme};
use crate::signing::{hmac_sha256 as hmac, matches, standard_webhooks_key};

/// Header lookup, case-insensitive; implemented by the HTTP layer over its own header type.
pub trait Headers {
    fn get(&self, name: &str) -> Option<&str>;
}

/// Why a webhook was refused. Deliberately coarse: the sender learns nothing about secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    MissingSignature,
    MalformedSignature,
    SignatureMismatch,
    TimestampOutOfTolerance,
}

impl Rejection {
    pub fn reason(self) -> &'static str {
        match self {
            Self::MissingSignature => "the signature header is missing",
            Self::MalformedSignature => "the signature header is malformed",
            Self::SignatureMismatch => "the signature does not match the body",
            Self::TimestampOutOfTolerance => "the timestamp is outside the allowed tolerance",
        }
    }
}

fn decode(encoding: SignatureEncoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Hex => hex::decode(text.trim()).ok(),
        SignatureEncoding::Base64 => STANDARD.decode(text.trim()).ok(),
    }
}

/// Verifies one request against any of `secrets` (the current one, then those in their grace
/// period). `now` is seconds since the epoch.
pub fn verify(
    config: &SchemeConfig,
    headers: &dyn Headers,
    body: &[u8],
    secrets: &[&str],
    now: i64,
) -> Result<(), Rejection> {
    match config.scheme {
        WebhookScheme::ShopifyHmac => {
            let received = headers
                .get("x-shopify-hmac-sha256")
                .ok_or(Rejection::MissingSignature)?;
            let received =
                decode(SignatureEncoding::Base64, received).ok_or(Rejection::MalformedSignature)?;
            any_secret(secrets, |secret| {
                matches(&hmac(secret.as_bytes(), &[body]), &received)
            })
        }
        WebhookScheme::ShopeePush => {
            let received = headers
                .get("authorization")
                .ok_or(Rejection::MissingSignature)?;
            let received =
                decode(SignatureEncoding::Hex, received).ok_or(Rejection::MalformedSignature)?;
            any_secret(secrets, |secret| {
                let signed = hmac(
                    secret.as_bytes(),
                    &[config.callback_url.as_bytes(), b"|", body],
                );
                matches(&signed, &received)
            })
        }
        WebhookScheme::TiktokShop => {
            let received = headers
                .get("authorization")
                .ok_or(Rejection::MissingSignature)?;
            let received =
                decode(SignatureEncoding::Hex, received).ok_or(Rejection::MalformedSignature)?;
            any_secret(secrets, |secret| {
                matches(
                    &hmac(secret.as_bytes(), &[config.app_key.as_bytes(), body]),
                    &received,
                )
            })
        }
        WebhookScheme::HmacSha256Header => {
            let raw = headers
                .get(&config.signature_header)
                .ok_or(Rejection::MissingSignature)?;
            let raw = match &config.prefix {
                Some(prefix) => raw
                    .strip_prefix(prefix.as_str())
                    .ok_or(Rejection::MalformedSignature)?,
                None => raw,
            };
            let received = decode(config.encoding, raw).ok_or(Rejection::MalformedSignature)?;
            any_secret(secrets, |secret| {
                matches(&hmac(secret.as_bytes(), &[body]), &received)
            })
        }
        WebhookScheme::StandardWebhooks => {
            let id = headers
                .get("webhook-id")
                .ok_or(Rejection::MissingSignature)?;
            let timestamp = headers
                .get("webhook-timestamp")
                .ok_or(Rejection::MissingSignature)?;
            let signatures = headers
                .get("webhook-signature")
                .ok_or(Rejection::MissingSignature)?;
            let ts: i64 = timestamp
                .trim()
                .parse()
                .map_err(|_| Rejection::MalformedSignature)?;
            if (now - ts).abs() > config.tolerance_seconds {
                return Err(Rejection::TimestampOutOfTolerance);
            }
            // Several space-separated `v1,<base64>` entries may be sent during key rotation.
            let received: Vec<Vec<u8>> = signatures
                .split_whitespace()
                .filter_map(|entry| entry.strip_prefix("v1,"))
                .filter_map(|sig| decode(SignatureEncoding::Base64, sig))
                .collect();
            if received.is_empty() {
                return Err(Rejection::MalformedSignature);
            }
            any_secret(secrets, |secret| {
                let Some(key) = standard_webhooks_key(secret) else {
                    return false;
                };
                let expected = hmac(
                    &key,
                    &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body],
                );
                received.iter().any(|sig| matches(&expected, sig))
            })
        }
    }
}

fn any_secret(secrets: &[&str], check: impl Fn(&str) -> bool) -> Result<(), Rejection> {
    // Check every secret, so the time taken does not say which one matched.
    let mut ok = false;
    for secret in secrets {
        ok |= check(secret);
    }
    if ok {
        Ok(())
    } else {
        Err(Rejection::SignatureMismatch)
    }
}

/// Signing helpers, the mirror image of `verify`: the simulator, tests and benchmarks use them.
pub mod sign {
    use super::*;

    pub fn shopify(secret: &str, body: &[u8]) -> String {
        STANDARD.encode(hmac(secret.as_bytes(), &[body]))
    }

    pub fn shopee_push(partner_key: &str, callback_url: &str, body: &[u8]) -> String {
        hex::encode(hmac(
            partner_key.as_bytes(),
            &[callback_url.as_bytes(), b"|", body],
        ))
    }

    pub fn tiktok_shop(app_secret: &str, app_key: &str, body: &[u8]) -> String {
        hex::encode(hmac(app_secret.as_bytes(), &[app_key.as_bytes(), body]))
    }

    pub fn hmac_sha256(secret: &str, body: &[u8], encoding: SignatureEncoding) -> String {
        let mac = hmac(secret.as_bytes(), &[body]);
        match encoding {
            SignatureEncoding::Hex => hex::encode(mac),
            SignatureEncoding::Base64 => STANDARD.encode(mac),
        }
    }

    /// `v1,<base64>` for a `whsec_` secret; None when the secret is not of that form.
    pub fn standard_webhooks(
        secret: &str,
        id: &str,
        timestamp: i64,
        body: &[u8],
    ) -> Option<String> {
        let key = standard_webhooks_key(secret)?;
        Some(crate::signing::standard_webhooks(&key, id, timestamp, body))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct Map(HashMap<String, String>);
    impl Headers for Map {
        fn get(&self, name: &str) -> Option<&str> {
            self.0.get(&name.to_ascii_lowercase()).map(String::as_str)
        }
    }
    fn headers(pairs: &[(&str, &str)]) -> Map {
        Map(pairs
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.to_string()))
            .collect())
    }
    fn config(scheme: WebhookScheme) -> SchemeConfig {
        SchemeConfig {
            scheme,
            signature_header: "X-Signature-SHA256".into(),
            encoding: SignatureEncoding::Hex,
            prefix: None,
            callback_url: "https://hooks.example.com/v1/hooks/con_1".into(),
            app_key: "6abc".into(),
            tolerance_seconds: 300,
        }
    }

    /// The example published with the Standard Webhooks specification
    /// (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md,
    /// also Svix's "Verifying payloads manually" docs).
    #[test]
    fn standard_webhooks_matches_the_specification_example() {
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = br#"{"test": 2432232314}"#;
        let signature = sign::standard_webhooks(secret, id, 1614265330, body).unwrap();
        assert_eq!(signature, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        let h = headers(&[
            ("webhook-id", id),
            ("webhook-timestamp", "1614265330"),
            ("webhook-signature", &format!("v1,bogus {signature}")),
        ]);
        let cfg = config(WebhookScheme::StandardWebhooks);
        assert_eq!(verify(&cfg, &h, body, &[secret], 1614265330 + 10), Ok(()));
        assert_eq!(
            verify(&cfg, &h, body, &[secret], 1614265330 + 301),
            Err(Rejection::TimestampOutOfTolerance)
        );
        assert_eq!(
            verify(&cfg, &h, b"{}", &[secret], 1614265330),
            Err(Rejection::SignatureMismatch)
        );
    }

    #[test]
    fn every_scheme_accepts_its_own_signature_and_rejects_tampering() {
        let body = br#"{"id":1}"#;
        let cases: Vec<(WebhookScheme, Map)> = vec![
            (
                WebhookScheme::ShopifyHmac,
                headers(&[("X-Shopify-Hmac-Sha256", &sign::shopify("s3cret", body))]),
            ),
            (
                WebhookScheme::ShopeePush,
                headers(&[(
                    "Authorization",
                    &sign::shopee_push("s3cret", "https://hooks.example.com/v1/hooks/con_1", body),
                )]),
            ),
            (
                WebhookScheme::TiktokShop,
                headers(&[("Authorization", &sign::tiktok_shop("s3cret", "6abc", body))]),
            ),
            (
                WebhookScheme::HmacSha256Header,
                headers(&[(
                    "X-Signature-SHA256",
                    &sign::hmac_sha256("s3cret", body, SignatureEncoding::Hex),
                )]),
            ),
        ];
        for (scheme, h) in cases {
            let cfg = config(scheme);
            assert_eq!(verify(&cfg, &h, body, &["s3cret"], 0), Ok(()), "{scheme:?}");
            assert_eq!(
                verify(&cfg, &h, br#"{"id":2}"#, &["s3cret"], 0),
                Err(Rejection::SignatureMismatch)
            );
            assert_eq!(
                verify(&cfg, &h, body, &["other"], 0),
                Err(Rejection::SignatureMismatch)
            );
            assert_eq!(
                verify(&cfg, &h, body, &["other", "s3cret"], 0),
                Ok(()),
                "grace secret"
            );
            assert_eq!(
                verify(&cfg, &headers(&[]), body, &["s3cret"], 0),
                Err(Rejection::MissingSignature)
            );
        }
    }

    #[test]
    fn garbage_signatures_are_malformed_not_panics() {
        let cfg = config(WebhookScheme::ShopifyHmac);
        let h = headers(&[("X-Shopify-Hmac-Sha256", "%%%")]);
        assert_eq!(
            verify(&cfg, &h, b"", &["s"], 0),
            Err(Rejection::MalformedSignature)
        );
        let cfg = config(WebhookScheme::StandardWebhooks);
        let h = headers(&[
            ("webhook-id", "x"),
            ("webhook-timestamp", "soon"),
            ("webhook-signature", "v1,x"),
        ]);
        assert_eq!(
            verify(&cfg, &h, b"", &["whsec_AAAA"], 0),
            Err(Rejection::MalformedSignature)
        );
    }
}
