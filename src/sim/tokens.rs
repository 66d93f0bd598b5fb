//! Shop tokens of the marketplaces whose access tokens expire (Shopee, TikTok Shop): refresh
//! tokens granted to a shop, each spent by its first use, and the access tokens they were
//! traded for, which the simulated APIs refuse once expired.
//!
//! - `POST /shopee/api/v2/auth/access_token/get`, signed as a public call (partner_id + path
//!   + timestamp), body `{refresh_token, partner_id, shop_id}`;
//! - `GET /tiktok-auth/api/v2/token/refresh?app_key&app_secret&refresh_token&grant_type`.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{DateTime, Duration, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::SimState;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Shopee,
    Tiktok,
}

#[derive(Debug, Clone)]
struct Grant {
    platform: Platform,
    access_lifetime: Duration,
}

#[derive(Default)]
pub struct ShopTokens {
    /// Unspent refresh tokens.
    grants: HashMap<String, Grant>,
    /// Access tokens issued here and when they expire.
    issued: HashMap<String, DateTime<Utc>>,
    refreshes: u64,
    /// The token endpoints answer 503 (an outage).
    down: bool,
}

impl ShopTokens {
    /// Whether `token` may call: tokens not issued here pass (set up by hand in a test);
    /// issued ones until they expire.
    pub fn usable(&self, token: &str) -> bool {
        self.issued
            .get(token)
            .is_none_or(|expires| Utc::now() < *expires)
    }
}

impl SimState {
    /// Grants a shop `refresh_token`, traded for access tokens that live `access_lifetime`.
    pub fn grant_shop_token(
        &self,
        platform: Platform,
        refresh_token: &str,
        access_lifetime: Duration,
    ) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.grants.insert(
                refresh_token.to_string(),
                Grant {
                    platform,
                    access_lifetime,
                },
            );
        }
    }

    /// Issues an access token as a past trade would have, expiring at `expires`.
    pub fn issue_access_token(&self, token: &str, expires: DateTime<Utc>) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.issued.insert(token.to_string(), expires);
        }
    }

    /// Tokens for a shop that has just authorised the app (a code trade): an access token
    /// living `access_lifetime` and an unspent refresh token for it.
    pub(super) fn mint_shop_tokens(
        &self,
        platform: Platform,
        access_lifetime: Duration,
    ) -> Option<(String, String)> {
        let mut tokens = self.tokens.lock().ok()?;
        if tokens.down {
            return None;
        }
        let id = uuid::Uuid::now_v7().simple();
        let access = format!("sim-granted-access-{id}");
        let refresh = format!("sim-granted-refresh-{id}");
        tokens
            .issued
            .insert(access.clone(), Utc::now() + access_lifetime);
        tokens.grants.insert(
            refresh.clone(),
            Grant {
                platform,
                access_lifetime,
            },
        );
        Some((access, refresh))
    }

    pub fn token_refreshes(&self) -> u64 {
        self.tokens.lock().map(|t| t.refreshes).unwrap_or_default()
    }

    pub fn set_token_endpoints_down(&self, down: bool) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.down = down;
        }
    }

    pub fn access_token_usable(&self, token: &str) -> bool {
        self.tokens.lock().is_ok_and(|t| t.usable(token))
    }

    /// Spends `refresh_token` of `platform`: new tokens and the access token's lifetime.
    fn trade(&self, platform: Platform, refresh_token: &str) -> Trade {
        let Ok(mut tokens) = self.tokens.lock() else {
            return Trade::Down;
        };
        if tokens.down {
            return Trade::Down;
        }
        let Some(grant) = tokens
            .grants
            .get(refresh_token)
            .filter(|g| g.platform == platform)
            .cloned()
        else {
            return Trade::Refused;
        };
        tokens.grants.remove(refresh_token);
        tokens.refreshes += 1;
        let n = tokens.refreshes;
        let access = format!("sim-access-{n}-{}", uuid::Uuid::now_v7().simple());
        let refresh = format!("sim-refresh-{n}-{}", uuid::Uuid::now_v7().simple());
        tokens
            .issued
            .insert(access.clone(), Utc::now() + grant.access_lifetime);
        tokens.grants.insert(refresh.clone(), grant.clone());
        Trade::Traded {
            access,
            refresh,
            lifetime: grant.access_lifetime,
        }
    }
}

enum Trade {
    Traded {
        access: String,
        refresh: String,
        lifetime: Duration,
    },
    Refused,
    Down,
}

fn down() -> HttpResponse {
    HttpResponse::ServiceUnavailable().body("token service unavailable")
}

#[derive(Deserialize)]
pub struct ShopeeRefresh {
    refresh_token: String,
    partner_id: i64,
    shop_id: i64,
}

/// Shopee v2 RefreshAccessToken.
pub async fn shopee_refresh(
    state: web::Data<SimState>,
    req: HttpRequest,
    body: web::Json<ShopeeRefresh>,
) -> HttpResponse {
    if let Err(refused) = super::signed::shopee_public_verified(&state, &req) {
        return refused;
    }
    let request_id = uuid::Uuid::now_v7().simple().to_string();
    match state.trade(Platform::Shopee, &body.refresh_token) {
        Trade::Traded {
            access,
            refresh,
            lifetime,
        } => HttpResponse::Ok().json(json!({
            "refresh_token": refresh, "access_token": access, "expire_in": lifetime.num_seconds(),
            "request_id": request_id, "error": "", "message": "",
            "partner_id": body.partner_id, "shop_id": body.shop_id,
        })),
        Trade::Refused => HttpResponse::Forbidden().json(json!({
            "error": "error_auth", "message": "Invalid refresh_token.", "request_id": request_id,
        })),
        Trade::Down => down(),
    }
}

#[derive(Deserialize)]
pub struct TiktokRefresh {
    app_key: String,
    app_secret: String,
    refresh_token: String,
    grant_type: String,
}

/// TikTok Shop token refresh: `code` 0 and `data` with both tokens and their expiry as Unix
/// timestamps.
pub async fn tiktok_refresh(
    state: web::Data<SimState>,
    query: web::Query<TiktokRefresh>,
) -> HttpResponse {
    let fail = |code: u32, message: &str| {
        HttpResponse::Ok().json(
            json!({"code": code, "message": message, "data": Value::Null,
                                        "request_id": uuid::Uuid::now_v7().simple().to_string()}),
        )
    };
    if query.grant_type != "refresh_token" {
        return fail(36004004, "invalid grant_type");
    }
    if !super::signed::tiktok_app_secret_is(&state, &query.app_key, &query.app_secret) {
        return fail(36004004, "invalid app_key or app_secret");
    }
    match state.trade(Platform::Tiktok, &query.refresh_token) {
        Trade::Traded {
            access,
            refresh,
            lifetime,
        } => {
            let now = Utc::now();
            HttpResponse::Ok().json(json!({"code": 0, "message": "success",
                "request_id": uuid::Uuid::now_v7().simple().to_string(),
                "data": {"access_token": access, "access_token_expire_in": (now + lifetime).timestamp(),
                         "refresh_token": refresh, "refresh_token_expire_in": (now + Duration::days(365)).timestamp(),
                         "open_id": "sim-open-id", "seller_name": "Sim Seller", "seller_base_region": "GB", "user_type": 0}}))
        }
        Trade::Refused => fail(36004004, "refresh_token is invalid or expired"),
        Trade::Down => down(),
    }
}
