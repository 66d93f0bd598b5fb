//! Request signatures of the marketplaces that sign API calls, as their docs specify. Pure
//! functions: the connector client signs with them and the simulator verifies with them.

use super::hmac_sha256 as hmac;

/// Shopee Open Platform v2, shop-level APIs: hex HMAC-SHA256 with the partner key over
/// partner_id, the API path, the timestamp, the access token and the shop id, concatenated.
/// https://open.shopee.com/developer-guide/20 ("Signature calculation")
pub fn shopee_v2(
    partner_key: &str,
    partner_id: &str,
    path: &str,
    timestamp: i64,
    access_token: &str,
    shop_id: &str,
) -> String {
    let timestamp = timestamp.to_string();
    hex::encode(hmac(
        partner_key.as_bytes(),
        &[
            partner_id.as_bytes(),
            path.as_bytes(),
            timestamp.as_bytes(),
            access_token.as_bytes(),
            shop_id.as_bytes(),
        ],
    ))
}

/// TikTok Shop API 202309: hex HMAC-SHA256 with the app secret over the secret, the path, the
/// query parameters except `sign` and `access_token` sorted by name as name+value, the body
/// (unless multipart), and the secret again.
/// https://partner.tiktokshop.com/docv2/page/sign-your-api-request
pub fn tiktok_shop(
    app_secret: &str,
    path: &str,
    query: &[(String, String)],
    body: &[u8],
) -> String {
    let mut params: Vec<&(String, String)> = query
        .iter()
        .filter(|(name, _)| name != "sign" && name != "access_token")
        .collect();
    params.sort();
    let mut text = Vec::with_capacity(256 + body.len());
    text.extend_from_slice(app_secret.as_bytes());
    text.extend_from_slice(path.as_bytes());
    for (name, value) in params {
        text.extend_from_slice(name.as_bytes());
        text.extend_from_slice(value.as_bytes());
    }
    text.extend_from_slice(body);
    text.extend_from_slice(app_secret.as_bytes());
    hex::encode(hmac(app_secret.as_bytes(), &[&text]))
}

/// Shopify's OAuth callback HMAC: every query parameter but `hmac` and `signature`, sorted by
/// name and form-encoded as `URLSearchParams.toString()` does (space as `+`; `&`, `=`, `%`
/// escaped), joined with `&`; hex HMAC-SHA256 keyed with the app's client secret.
/// https://shopify.dev/docs/apps/build/authentication-authorization/access-tokens/authorization-code-grant
/// (step 2, "verify the installation request"); the encoding is the JS SDK's
/// (shopify-api-js `lib/utils/hmac-validator.ts`, `processed-query.ts`).
pub fn shopify_oauth(client_secret: &str, query: &[(String, String)]) -> [u8; 32] {
    let mut params: Vec<&(String, String)> = query
        .iter()
        .filter(|(name, _)| name != "hmac" && name != "signature")
        .collect();
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut text = url::form_urlencoded::Serializer::new(String::new());
    for (name, value) in params {
        text.append_pair(name, value);
    }
    hmac(client_secret.as_bytes(), &[text.finish().as_bytes()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(text: &str) -> Vec<(String, String)> {
        url::form_urlencoded::parse(text.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    }

    /// Shopify's legacy docs example (secret `hush`), as reproduced in the third-party suites
    /// `../shared/platforms-connect.md` names; with and without `state`.
    #[test]
    fn shopify_oauth_matches_the_published_example() {
        let query = pairs(
            "code=0907a61c0c8d55e99db179b68161bc00&shop=some-shop.myshopify.com&state=0.6784241404160823&timestamp=1337178173&hmac=ignored",
        );
        assert_eq!(
            hex::encode(shopify_oauth("hush", &query)),
            "700e2dadb827fcc8609e9d5ce208b2e9cdaab9df07390d2cbca10d7c328fc4bf"
        );
        let without_state: Vec<_> = query.into_iter().filter(|(k, _)| k != "state").collect();
        assert_eq!(
            hex::encode(shopify_oauth("hush", &without_state)),
            "4712bf92ffc2917d15a2f5a273e39f0116667419aa4b6ac0b3baaf26fa3c4d20"
        );
    }

    /// The JS SDK's fixture: values with spaces are signed with `+`, not `%20`; the keys
    /// arrive unsorted and are sorted before signing.
    #[test]
    fn shopify_oauth_encodes_spaces_as_plus() {
        let query = vec![
            (
                "state".to_string(),
                "some nonce passed from auth".to_string(),
            ),
            ("code".to_string(), "some code goes here".to_string()),
            ("timestamp".to_string(), "1337178173".to_string()),
            ("shop".to_string(), "the shop URL".to_string()),
        ];
        assert_eq!(
            hex::encode(shopify_oauth("my super secret key", &query)),
            "c247258009df8a6ab681a3830692316f721aaaf7d6c0e67148d6b54690f4d0d8"
        );
    }

    /// Shopee's auth_partner link: the public-call signature over partner_id + path +
    /// timestamp. No official worked example exists; this vector is computed from the stated
    /// rule (`../shared/platforms-connect.md`, Shopee).
    #[test]
    fn shopee_auth_link_sign() {
        assert_eq!(
            shopee_v2(
                "testkey",
                "2001887",
                "/api/v2/shop/auth_partner",
                1_655_714_431,
                "",
                ""
            ),
            "d81917c93609d41093219f06b3a24930b986d9e40c4fb8582026b6b2f436edf2"
        );
    }

    // Expected values computed independently with
    // `printf '%s' "<base string>" | openssl dgst -sha256 -hmac "<key>"`.

    #[test]
    fn shopee_signs_partner_path_timestamp_token_and_shop() {
        let sign = shopee_v2(
            "sample-partner-key",
            "2001887",
            "/api/v2/order/get_order_list",
            1_655_714_431,
            "59fa7ebd5e9b2e0a1a0c5d6b1a8d2c3e",
            "14701711",
        );
        assert_eq!(
            sign,
            "65e91c2c8cd00d3a16f11745d0a4fca976f81dc4d5c66aca3715023a1f1aa198"
        );
    }

    #[test]
    fn tiktok_signs_sorted_params_without_sign_and_token_then_the_body() {
        let query: Vec<(String, String)> = [
            ("timestamp", "1700000000"),
            ("shop_cipher", "ROW_abc123"),
            ("access_token", "never-signed"),
            ("app_key", "6abcdefgh12"),
            ("page_size", "50"),
            ("sign", "never-signed"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let sign = tiktok_shop(
            "sample-app-secret",
            "/order/202309/orders/search",
            &query,
            br#"{"order_status":"AWAITING_SHIPMENT"}"#,
        );
        assert_eq!(
            sign,
            "dd4bbc85f0ba796d3226fdeb05bb9955a5e8d238fe66563ddef06956fa5ec591"
        );
    }
}
