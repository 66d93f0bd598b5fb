//! How each ops chat authenticates a message, as its documentation specifies. Pure functions:
//! the sender and the simulated receivers use the same ones.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::hmac_sha256;

/// DingTalk custom robot ("加签"): base64(HMAC-SHA256(key = secret,
/// message = timestamp_ms + "\n" + secret)), sent URL-encoded as `sign` beside `timestamp`.
pub fn dingtalk(secret: &str, timestamp_ms: i64) -> String {
    let text = format!("{timestamp_ms}\n{secret}");
    STANDARD.encode(hmac_sha256(secret.as_bytes(), &[text.as_bytes()]))
}

/// Feishu/Lark custom bot: base64(HMAC-SHA256(key = timestamp_s + "\n" + secret, message =
/// empty)); `timestamp` and `sign` go in the JSON body. (The key is the signed string: the
/// official SignDemo does it this way round.)
pub fn feishu(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    STANDARD.encode(hmac_sha256(key.as_bytes(), &[]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::standard_webhooks;

    #[test]
    fn dingtalk_signs_timestamp_and_secret_with_the_secret() {
        // Computed independently: printf '1700000000000\nsecret' | openssl dgst -sha256
        // -hmac secret -binary | base64 (the docs publish no vector with its secret).
        assert_eq!(
            dingtalk("secret", 1_700_000_000_000),
            "OuzzJR5+xZ4/EYwqtNt6sMYZQMTa/HEGvc9miJe7XzY="
        );
    }

    #[test]
    fn feishu_keys_the_mac_with_the_signed_string() {
        // printf '' | openssl dgst -sha256 -hmac "$(printf '1599360473\ntest-secret')" -binary | base64
        assert_eq!(
            feishu("test-secret", 1_599_360_473),
            "wSds2BzzFIIGf/WrhUO+NI1q/9j+FRJd3JNHKAq0NZY="
        );
    }

    #[test]
    fn standard_webhooks_matches_the_specifications_example() {
        // https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md
        let key = STANDARD.decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            standard_webhooks(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
