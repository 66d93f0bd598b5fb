//! The declarative part of a manifest that the sync engine executes: auth scheme, rate-limit
//! groups, operations (method, path, query, pagination, where the records are) and the
//! mapping of platform records onto unified records.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How requests are authenticated: a closed set, each implemented in Rust.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "scheme", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSpec {
    /// `X-Shopify-Access-Token: <credential>`. With an expiring offline token (public apps
    /// from 2026), the credential keeper trades its refresh token, with the app's client id
    /// and secret, for a new pair before the hour is up; a connection whose credentials hold
    /// no refresh token (a non-expiring token) is left alone.
    ShopifyAccessToken {
        credential: String,
        refresh_token: Option<String>,
        client_id: Option<String>,
        client_secret: Option<String>,
    },
    /// A header carrying a credential as is.
    ApiKeyHeader { header: String, credential: String },
    /// `Authorization: Bearer <credential>`.
    Bearer { credential: String },
    /// Shopee v2: partner_id, timestamp, access_token, shop_id and sign in the query.
    ShopeeV2 {
        partner_id_setting: String,
        shop_id_setting: String,
        partner_key: String,
        access_token: String,
        /// The shop's refresh token: the credential keeper trades it for a new access
        /// token (4 hours) and refresh token (30 days) before the access token expires.
        refresh_token: Option<String>,
    },
    /// TikTok Shop 202309: app_key, timestamp and sign in the query, the token in
    /// `x-tts-access-token`.
    TiktokShop {
        app_key_setting: String,
        app_secret: String,
        access_token: String,
        /// The shop's refresh token, traded by the credential keeper for new tokens.
        refresh_token: Option<String>,
        /// A setting that overrides the token endpoint (the simulator).
        token_endpoint_setting: Option<String>,
    },
    /// Amazon SP-API: a Login with Amazon access token from the refresh token, cached and
    /// refreshed before it expires, in `x-amz-access-token`.
    AmazonLwa {
        client_id: String,
        client_secret: String,
        refresh_token: String,
        /// A setting that overrides the token endpoint (the simulator).
        endpoint_setting: Option<String>,
    },
    /// Mabang's gateway: every call is one POST of `{"api": <action>, "appkey", "data":
    /// <the operation's body>, "timestamp"}`, signed in `Authorization` (`connectors::mabang`).
    Mabang { app_key: String, app_secret: String },
    /// Lingxing OpenAPI: the AppID and AppSecret are exchanged for an access token (2 hours)
    /// that the credential keeper stores and renews with its single-use refresh token, or
    /// with a fresh exchange; every call is signed (`connectors::lingxing`).
    Lingxing {
        app_id: String,
        app_secret: String,
        /// Written by the keeper and the connectivity check, never by the seller.
        access_token: String,
        refresh_token: String,
    },
}

impl AuthSpec {
    pub fn credentials(&self) -> Vec<&str> {
        match self {
            Self::ShopifyAccessToken {
                credential,
                refresh_token,
                client_id,
                client_secret,
            } => [
                Some(credential),
                refresh_token.as_ref(),
                client_id.as_ref(),
                client_secret.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect(),
            Self::Bearer { credential } => vec![credential],
            Self::ApiKeyHeader { credential, .. } => vec![credential],
            // The app's signing key, the shop's access token and its refresh token.
            Self::ShopeeV2 {
                partner_key: key,
                access_token,
                refresh_token,
                ..
            }
            | Self::TiktokShop {
                app_secret: key,
                access_token,
                refresh_token,
                ..
            } => [key, access_token]
                .into_iter()
                .chain(refresh_token)
                .map(String::as_str)
                .collect(),
            Self::AmazonLwa {
                client_id,
                client_secret,
                refresh_token,
                ..
            } => vec![client_id, client_secret, refresh_token],
            Self::Lingxing {
                app_id,
                app_secret,
                access_token,
                refresh_token,
            } => vec![app_id, app_secret, access_token, refresh_token],
            Self::Mabang {
                app_key,
                app_secret,
            } => vec![app_key, app_secret],
        }
    }

    /// Schemes whose tokens synchub obtains itself from the app's credentials (Lingxing):
    /// the keeper looks after them from the start, and a refused token is renewed, not
    /// handed to the seller.
    pub fn keeps_tokens(&self) -> bool {
        matches!(self, Self::Lingxing { .. })
    }

    /// The credential naming an app for which the platform keeps one live token (Lingxing's
    /// AppID: its docs' QA item 3, `2001005` once another tool takes tokens for it): two
    /// connections on one app would each end the other's token at every exchange.
    pub fn exclusive_credential(&self) -> Option<&str> {
        match self {
            Self::Lingxing { app_id, .. } => Some(app_id),
            _ => None,
        }
    }

    /// The credential the keeper trades for new tokens, for schemes that refresh.
    pub fn refresh_credential(&self) -> Option<&str> {
        match self {
            Self::ShopeeV2 { refresh_token, .. }
            | Self::TiktokShop { refresh_token, .. }
            | Self::ShopifyAccessToken { refresh_token, .. } => refresh_token.as_deref(),
            Self::Lingxing { refresh_token, .. } => Some(refresh_token),
            _ => None,
        }
    }

    /// The settings the scheme reads.
    pub fn settings(&self) -> Vec<&str> {
        match self {
            Self::ShopeeV2 {
                partner_id_setting,
                shop_id_setting,
                ..
            } => vec![partner_id_setting, shop_id_setting],
            Self::TiktokShop {
                app_key_setting,
                token_endpoint_setting,
                ..
            } => [app_key_setting]
                .into_iter()
                .chain(token_endpoint_setting)
                .map(String::as_str)
                .collect(),
            Self::AmazonLwa {
                endpoint_setting: Some(setting),
                ..
            } => vec![setting],
            _ => vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Operations name this group.
    pub group: String,
    /// Tokens per second.
    pub rate: f64,
    pub burst: f64,
    /// Connections to the same account share the bucket: the setting naming the account.
    pub account_setting: Option<String>,
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Get,
    Post,
    Put,
    Patch,
}

impl Method {
    pub fn as_reqwest(self) -> reqwest::Method {
        match self {
            Self::Get => reqwest::Method::GET,
            Self::Post => reqwest::Method::POST,
            Self::Put => reqwest::Method::PUT,
            Self::Patch => reqwest::Method::PATCH,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OperationSpec {
    pub method: Method,
    /// Path after the base URL; `{setting}` placeholders come from settings.
    pub path: String,
    /// Rate-limit group this operation spends. An operation without one is bounded by its
    /// `concurrency` alone (Lingxing states caps on calls in flight, no rate).
    #[serde(default)]
    pub group: Option<String>,
    /// Query parameters; `{cursor}` is the incremental cursor, `{setting}` a setting.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// JSON pointer to the array of records in the response.
    pub records: Option<String>,
    pub pagination: Option<Pagination>,
    /// Header carrying an idempotency key on writes, where the platform takes one.
    pub idempotency_header: Option<String>,
    /// A write that takes many records per call.
    pub batch: Option<BatchSpec>,
    /// The JSON body: a string that is exactly `{name}` becomes that value with its type
    /// (a quantity stays a number); `{name}` inside a longer string is filled as text.
    #[schema(value_type = Option<Object>)]
    pub body: Option<serde_json::Value>,
    /// Where a 200 answer reports a failure (GraphQL `errors` and `userErrors`, TikTok
    /// `code`, Shopee `error`).
    #[serde(default)]
    pub errors: Vec<ErrorSpec>,
    /// Most calls of this operation in flight per connection, across every worker and
    /// process (Lingxing's per-endpoint token buckets, which refill when a call ends).
    pub concurrency: Option<u32>,
    /// The gateway's action for this operation, where one URL serves every call (Mabang's
    /// `api`).
    pub action: Option<String>,
    /// How a record is shaped for this write (unified as it is by default).
    #[serde(default)]
    pub format: RecordFormat,
    /// A write the platform carries out later: poll this until it says done.
    pub confirm: Option<ConfirmSpec>,
}

/// The body of a single-record write.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordFormat {
    #[default]
    Unified,
    /// Mabang's `order-do-create-order` data (`connectors::mabang::order`).
    MabangOrder,
}

/// How an asynchronous write is confirmed: `operation` is called with the record's id in
/// `id_field` of its body until the value at one of `done` equals `done_value`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmSpec {
    pub operation: String,
    pub id_field: String,
    /// JSON pointers tried in turn: the first present decides.
    pub done: Vec<String>,
    #[schema(value_type = Object)]
    pub done_value: serde_json::Value,
}

/// A failure reported in a successful HTTP answer: the value at `pointer` is an error when
/// it differs from `ok`, or, without `ok`, when it is present and not empty, zero or false.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErrorSpec {
    pub pointer: String,
    #[schema(value_type = Option<Object>)]
    pub ok: Option<serde_json::Value>,
}

impl ErrorSpec {
    /// The reported failure in `body`, if any.
    pub fn failure<'a>(&self, body: &'a serde_json::Value) -> Option<&'a serde_json::Value> {
        use serde_json::Value;
        let value = body.pointer(&self.pointer)?;
        let failed = match &self.ok {
            Some(ok) => value != ok,
            None => match value {
                Value::Null | Value::Bool(false) => false,
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(o) => !o.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::Bool(true) => true,
            },
        };
        failed.then_some(value)
    }
}

/// How a batch write is shaped: `{"<field>": [record, ...]}`, each record carrying its own
/// idempotency key in `item_key` where the platform takes one.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchSpec {
    /// Most records per call (1 to 10,000).
    pub max: usize,
    pub field: String,
    pub item_key: Option<String>,
    /// How each record is shaped for the platform (unified orders as they are by default).
    #[serde(default)]
    pub format: BatchFormat,
}

/// The body of a batch of orders.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BatchFormat {
    /// `{"<field>": [unified order, ...]}`, all or nothing.
    #[default]
    Unified,
    /// Lingxing's multi-platform hand-made orders (`/pb/mp/order/v2/create`): each order
    /// succeeds or fails on its own (`connectors::lingxing::order_batch`).
    LingxingOrders,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Pagination {
    /// RFC 8288 `Link: <url>; rel="next"` (Shopify); the next URL is followed as given.
    LinkHeader,
    /// A token in the body sent back as a parameter (Amazon `NextToken`, ERP cursors).
    Token { response: String, param: String },
    /// Page numbers from `start`, until a page comes back short or empty, or, with
    /// `pages`, until the page count the answer states there.
    PageNumber {
        param: String,
        start: u32,
        size: u32,
        /// The page number goes in the JSON body, not the query (Lingxing's POST lists).
        #[serde(default)]
        in_body: bool,
        pages: Option<String>,
    },
    /// An offset of records from 0 in steps of `size`, until a page comes back short.
    Offset {
        param: String,
        size: u32,
        #[serde(default)]
        in_body: bool,
    },
}

/// Where each unified field is in a platform record (JSON pointers).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Mappings {
    /// Orders read from this platform (`list_orders`).
    pub order: Option<OrderMapping>,
    /// Stock levels read from this platform (`list_stock`): an ERP's warehouse.
    pub stock: Option<StockMapping>,
    /// Shipments read from this platform (`list_shipments`): an ERP's dispatches.
    pub shipment: Option<ShipmentMapping>,
}

/// How a platform writes its timestamps.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    /// `2026-11-27T10:00:00+08:00` (Shopify, Amazon).
    #[default]
    Rfc3339,
    /// Seconds since the epoch, as a number or a string (Shopee, TikTok Shop).
    UnixSeconds,
    /// `2021-12-16 20:02:19` in the zone a connection setting names (Lingxing states no
    /// zone; the `timezone` setting, Asia/Shanghai by default).
    LocalDateTime,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderMapping {
    pub id: String,
    pub number: String,
    pub status: String,
    pub currency: String,
    pub total: String,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub timestamps: TimeFormat,
    pub lines: String,
    pub line_sku: String,
    /// Without it each line is one unit, and lines of the same SKU and price are merged
    /// (TikTok Shop lists one line per unit).
    pub line_quantity: Option<String>,
    pub line_price: String,
    /// The line price is for the whole quantity (Amazon's ItemPrice), not for one unit.
    #[serde(default)]
    pub line_price_covers_quantity: bool,
    /// Unified fields a platform may leave out (Amazon omits OrderTotal while an order is
    /// pending): they map to an empty string instead of failing the run.
    #[serde(default)]
    pub optional: Vec<String>,
    /// A second call that completes the listed orders (lines, totals).
    pub detail: Option<DetailSpec>,
    /// Where the shipping address is; an ERP that ships the order needs it.
    pub shipping: Option<AddressMapping>,
}

/// Where each part of a shipping address is (JSON pointers); a part the platform leaves
/// out maps to an empty string.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressMapping {
    pub name: String,
    /// ISO 3166-1 alpha-2.
    pub country_code: String,
    pub city: String,
    pub address_line1: String,
    pub address_line2: Option<String>,
    pub state: Option<String>,
    pub postal_code: Option<String>,
    pub phone: Option<String>,
}

/// Completes listed records with a detail operation: one call per record with `{id}` in its
/// path or query, or one call per `per_call` records with `{ids}` comma-joined.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DetailSpec {
    pub operation: String,
    /// Where the id is, in a listed record and in a detail record.
    pub id: String,
    #[serde(default = "one")]
    pub per_call: usize,
    /// Put the detail call's records (all pages) under this field of the listed record;
    /// without it, each detail record replaces the listed record with the same id.
    pub attach: Option<String>,
}

fn one() -> usize {
    1
}

/// A stock level: how many units of a SKU can be sold.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockMapping {
    pub sku: String,
    pub quantity: String,
    /// Without it (Lingxing's inventory states no change time) a level is written when its
    /// quantity differs from the one last written.
    pub updated_at: Option<String>,
    #[serde(default)]
    pub timestamps: TimeFormat,
    /// The list holds a SKU once per warehouse: the run reads it whole and sums each SKU's
    /// quantity (Lingxing's inventory details).
    #[serde(default)]
    pub sum_by_sku: bool,
}

/// A shipment of a marketplace order: carrier and tracking number.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ShipmentMapping {
    pub id: String,
    /// The order's id on the marketplace it came from.
    pub order_id: String,
    /// The synchub connection the order came from: a shipments flow to a marketplace
    /// connection takes only that connection's shipments.
    pub connection: Option<String>,
    pub carrier: String,
    pub tracking_number: String,
    pub shipped_at: String,
    pub updated_at: String,
    #[serde(default)]
    pub timestamps: TimeFormat,
}

/// The setting naming the zone of `local_date_time` timestamps, and its fallback.
pub const TIMEZONE_SETTING: &str = "timezone";
pub const DEFAULT_LOCAL_ZONE: chrono_tz::Tz = chrono_tz::Asia::Shanghai;

/// The connectivity checks a connection can run besides DNS, TCP and TLS.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecksSpec {
    /// A list operation whose first page proves the credentials read (spends the shared
    /// rate-limit budget like any call).
    pub read: Option<String>,
    /// Where the platform lists webhook subscriptions: the connection's webhook URL should
    /// be among them.
    pub webhooks: Option<WebhookListSpec>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookListSpec {
    pub operation: String,
    /// Where a subscription's address is.
    pub address: String,
}

/// How unified records are written to a platform: an operation whose path, query and body
/// take the record's fields, after an optional lookup of the platform's own ids.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteSpec {
    pub operation: String,
    pub lookup: Option<LookupSpec>,
}

/// Finds the platform's ids for a record (a SKU's inventory item, an order's fulfillment
/// order) with a read operation; its first record's `fields` (JSON pointers) join the
/// write's placeholders. A record the lookup does not find is skipped, not failed.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LookupSpec {
    pub operation: String,
    pub fields: BTreeMap<String, String>,
    /// Only records with these values (JSON pointer -> value) count, e.g. an open
    /// fulfillment order.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub only: BTreeMap<String, serde_json::Value>,
    /// Keep what was found for a day (catalogue ids rarely change).
    #[serde(default)]
    pub cache: bool,
}
