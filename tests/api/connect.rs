//! Connect links over HTTP against the simulated platforms' consent pages: platform apps,
//! sessions, the seller's page and its headers, each platform's callback and code trade,
//! replayed, expired, forged and foreign states, denial, refusal and timeouts, and
//! re-authorising a connection from the alert that says it is needed.

use chrono::Duration;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use synchub::sim::Simulator;
use synchub::sim::consent::{AmazonApp, Switches, TiktokService, TiktokShop};
use synchub::store::entities::{audit_event, connection};

use crate::helpers::{Backend, OPERATOR_TOKEN, TestApp, sim_apps};
use crate::on_both_backends;

pub const SHOPIFY_CLIENT_ID: &str = "shopify-client-id";
pub const SHOPIFY_CLIENT_SECRET: &str = "shopify-client-secret-0001";

/// The apps the simulated platforms know, consent pages included; TikTok sends sellers to
/// `tiktok_redirect` (its registered redirect URL).
pub fn consent_apps(tiktok_redirect: &str) -> synchub::sim::signed::AppRegistration {
    let mut apps = sim_apps();
    apps.consent
        .shopify
        .insert(SHOPIFY_CLIENT_ID.into(), SHOPIFY_CLIENT_SECRET.into());
    apps.consent.amazon.insert(
        "amzn1.sellerapps.app.sim".into(),
        AmazonApp {
            lwa_client_id: "amzn1.application-oa2-client.sim".into(),
            draft: true,
            selling_partner_id: "A2SIMSELLER0001".into(),
        },
    );
    apps.consent.tiktok_services.insert(
        "7001".into(),
        TiktokService {
            app_key: "6abcdefgh12".into(),
            redirect_url: tiktok_redirect.into(),
        },
    );
    apps
}

pub struct Setup {
    pub app: TestApp,
    pub sim: Simulator,
    pub token: String,
    /// Follows no redirect: each hop is looked at.
    pub browser: reqwest::Client,
}

pub async fn setup(backend: Backend, extra: &[(&str, &str)]) -> Setup {
    let sim = Simulator::start("127.0.0.1:0", 3).unwrap();
    let mut env = vec![("SYNCHUB_CONNECT__EXCHANGE_TIMEOUT_SECONDS", "2")];
    env.extend_from_slice(extra);
    let app = TestApp::spawn_with(backend, &env).await;
    sim.state
        .register_apps(consent_apps(&app.url("/v1/oauth/callback/tiktok-shop")));
    let (_, token) = app.tenant_with_token(&["read", "write", "admin"]).await;
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .build()
        .unwrap();
    Setup {
        app,
        sim,
        token,
        browser,
    }
}

/// A browser's answer: status, Location, body.
pub struct Answer {
    pub status: u16,
    pub location: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let location = headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Answer {
        status,
        location,
        headers,
        body: response.text().await.unwrap_or_default(),
    }
}

/// The hidden inputs of the simulator's consent form.
fn hidden_inputs(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|tag| {
            let name = tag.split("name=\"").nth(1)?.split('"').next()?;
            let value = tag.split("value=\"").nth(1)?.split('"').next()?;
            let value = value
                .replace("&quot;", "\"")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&");
            Some((name.to_string(), value))
        })
        .collect()
}

impl Setup {
    pub async fn platform_app(&self, token: &str, connector: &str, body: Value) -> Value {
        let (status, app) = self
            .app
            .put(&format!("/v1/platform-apps/{connector}"), token, body)
            .await;
        assert_eq!(status, 200, "{app}");
        app
    }

    pub async fn shopify_app(&self) {
        self.platform_app(
            &self.token,
            "shopify",
            json!({"client_id": SHOPIFY_CLIENT_ID, "client_secret": SHOPIFY_CLIENT_SECRET,
                   "scopes": ["read_orders", "write_inventory"]}),
        )
        .await;
    }

    pub fn shopify_settings(&self) -> Value {
        json!({"shop_domain": "acme-us.myshopify.com",
               "base_url": format!("{}/shopify/acme-us.myshopify.com", self.sim.address)})
    }

    pub async fn session(&self, body: Value) -> Value {
        let (status, session) = self
            .app
            .post("/v1/connect-sessions", &self.token, body)
            .await;
        assert_eq!(status, 201, "{session}");
        session
    }

    pub async fn shopify_session(&self) -> Value {
        self.session(json!({"connector": "shopify", "environment": "production",
                            "settings": self.shopify_settings(),
                            "return_url": "https://seller.example/done?from=mail"}))
            .await
    }

    pub async fn get(&self, url: &str) -> Answer {
        answer(
            self.browser
                .get(url)
                .header("Accept-Language", "en-US,en;q=0.9")
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Presses the link page's button: the answer is the redirect to the platform.
    pub async fn press(&self, link: &str) -> Answer {
        answer(self.browser.post(link).send().await.unwrap()).await
    }

    /// Opens the platform's consent page and answers it; returns the platform's redirect
    /// back (the callback URL with its parameters).
    pub async fn consent(&self, consent_url: &str, decision: &str) -> Answer {
        let page = self.get(consent_url).await;
        if page.status != 200 {
            return page;
        }
        let mut form = hidden_inputs(&page.body);
        form.push(("decision".into(), decision.into()));
        answer(
            self.browser
                .post(format!("{}/_sim/consent/decide", self.sim.address))
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Link → button → consent (approve) → the platform's redirect back (not yet followed).
    pub async fn to_callback(&self, link: &str) -> String {
        let page = self.get(link).await;
        assert_eq!(page.status, 200, "{}", page.body);
        let to_platform = self.press(link).await;
        assert_eq!(to_platform.status, 303, "{}", to_platform.body);
        let back = self.consent(&to_platform.location, "approve").await;
        assert_eq!(back.status, 302, "{}", back.body);
        back.location
    }

    /// Follows the platform's redirect back: the seller lands on the return URL with a
    /// connection that passed its check; returns the connection's view.
    pub async fn completed(&self, callback: &str) -> Value {
        let done = self.get(callback).await;
        assert_eq!(done.status, 303, "{}", done.body);
        assert_eq!(
            param(&done.location, "check").as_deref(),
            Some("passed"),
            "{}",
            done.location
        );
        self.view(&param(&done.location, "connection_id").unwrap())
            .await
    }

    pub async fn connections(&self) -> u64 {
        connection::Entity::find()
            .count(&self.app.db)
            .await
            .unwrap()
    }

    pub async fn view(&self, id: &str) -> Value {
        let (status, view) = self
            .app
            .get(&format!("/v1/connections/{id}"), &self.token)
            .await;
        assert_eq!(status, 200, "{view}");
        view
    }
}

/// The failure page's way back to the return URL (which carries the error code).
pub fn continue_link(html: &str) -> String {
    html.split("<a id=\"continue\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no continue link in {html}"))
        .replace("&amp;", "&")
}

fn query_of(url: &str) -> Vec<(String, String)> {
    url::Url::parse(url)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    query_of(url)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The full Shopify flow: the page and its headers, the redirect to the shop's grant screen
/// with an offline-token request, approval, a verified callback, tokens in the vault (never
/// in clear), a passing check, and the seller back at the return URL.
async fn shopify_connects_through_a_link(backend: Backend) {
    let sqlite = matches!(backend, Backend::Sqlite);
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    let session = s.shopify_session().await;
    let link = session["url"].as_str().unwrap().to_string();

    let page = s.get(&link).await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Continue to Shopify"), "{}", page.body);
    assert!(page.body.contains("acme-us.myshopify.com"));
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert!(
        csp.contains(&s.sim.address),
        "the form may lead to the shop: {csp}"
    );
    assert_eq!(page.headers["x-frame-options"], "DENY");
    assert_eq!(page.headers["referrer-policy"], "no-referrer");
    assert!(!page.body.contains("<script"), "works without JavaScript");
    assert!(
        !page.body.contains("http://") || !page.body.contains("src="),
        "no external asset"
    );

    let chinese = answer(
        s.browser
            .get(&link)
            .header("Accept-Language", "zh-CN,zh;q=0.9")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(chinese.body.contains("lang=\"zh-CN\"") && chinese.body.contains("授权"));

    let to_platform = s.press(&link).await;
    assert_eq!(to_platform.status, 303);
    let authorize = &to_platform.location;
    assert!(
        authorize.starts_with(&format!(
            "{}/shopify/acme-us.myshopify.com/admin/oauth/authorize",
            s.sim.address
        )),
        "{authorize}"
    );
    assert_eq!(
        param(authorize, "client_id").as_deref(),
        Some(SHOPIFY_CLIENT_ID)
    );
    assert_eq!(
        param(authorize, "scope").as_deref(),
        Some("read_orders,write_inventory")
    );
    assert_eq!(
        param(authorize, "grant_options[]").as_deref(),
        Some(""),
        "offline token"
    );
    assert_eq!(
        param(authorize, "redirect_uri"),
        Some(s.app.url("/v1/oauth/callback/shopify"))
    );
    let state = param(authorize, "state").unwrap();
    assert!(state.len() >= 43, "32 random bytes");

    let back = s.consent(authorize, "approve").await;
    let done = s.get(&back.location).await;
    assert_eq!(done.status, 303, "{}", done.body);
    assert!(
        done.location
            .starts_with("https://seller.example/done?from=mail&status=completed"),
        "{}",
        done.location
    );
    assert_eq!(param(&done.location, "check").as_deref(), Some("passed"));
    let id = param(&done.location, "connection_id").unwrap();

    let view = s.view(&id).await;
    assert_eq!(view["connector"], "shopify");
    assert_eq!(view["name"], "Shopify acme-us.myshopify.com");
    assert_eq!(view["authorization"]["status"], "authorized");
    assert_eq!(view["authorization"]["by"], "ci");
    assert!(
        view["credential_expiry"]["access_token"].is_string(),
        "{view}"
    );
    assert!(
        view["credential_expiry"]["refresh_token"].is_string(),
        "{view}"
    );
    assert!(
        view["credentials"]["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("****")
    );
    let (status, session_view) = s
        .app
        .get(
            &format!("/v1/connect-sessions/{}", session["id"].as_str().unwrap()),
            &s.token,
        )
        .await;
    assert_eq!(
        (status, &session_view["status"]),
        (200, &json!("completed"))
    );
    assert_eq!(session_view["connection_ids"], json!([id]));

    // Tokens only encrypted: neither the state nor the shop's tokens are in the database.
    if sqlite {
        let bytes = s.app.sqlite_bytes();
        assert!(!crate::helpers::contains(&bytes, "shpat_sim_"));
        assert!(!crate::helpers::contains(&bytes, SHOPIFY_CLIENT_SECRET));
        assert!(!crate::helpers::contains(&bytes, &state));
    }
}
on_both_backends!(shopify_connects_through_a_link);

/// A replayed answer, an expired state, an answer without one, a state from another
/// platform's session, and a forged answer (one parameter changed) are refused on a page,
/// and none creates a connection; the forged one does not spend the seller's real answer.
async fn states_are_single_use_bound_and_short_lived(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    let callback = s
        .to_callback(s.shopify_session().await["url"].as_str().unwrap())
        .await;

    // One changed parameter: the HMAC no longer matches.
    let forged = callback.replace("shop=acme-us.myshopify.com", "shop=evil-shop.myshopify.com");
    let refused = s.get(&forged).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.body.contains("could not be verified") && refused.body.contains("bad_signature")
    );
    assert_eq!(refused.headers["referrer-policy"], "no-referrer");
    assert_eq!(s.connections().await, 0);

    let done = s.get(&callback).await;
    assert_eq!(
        done.status, 303,
        "the real answer still works: {}",
        done.body
    );
    let replayed = s.get(&callback).await;
    assert_eq!(replayed.status, 410);
    assert!(replayed.body.contains("already used"), "{}", replayed.body);
    assert_eq!(s.connections().await, 1);

    let missing = s
        .get(
            &s.app
                .url("/v1/oauth/callback/shopify?code=x&shop=acme-us.myshopify.com"),
        )
        .await;
    assert_eq!(missing.status, 400);
    assert!(missing.body.contains("invalid_state"));

    // A Shopify session's state on Shopee's callback.
    let other = s
        .to_callback(s.shopify_session().await["url"].as_str().unwrap())
        .await;
    let state = param(&other, "state").unwrap();
    let crossed = s
        .get(&s.app.url(&format!(
            "/v1/oauth/callback/shopee?state={state}&code=c&shop_id=1"
        )))
        .await;
    assert_eq!(crossed.status, 400);
    assert!(crossed.body.contains("invalid_state"));

    // Eleven minutes on the consent page: the state has expired.
    s.app.time.advance(Duration::minutes(11));
    let late = s.get(&other).await;
    assert_eq!(late.status, 410, "{}", late.body);
    assert!(late.body.contains("expired"));
    assert_eq!(s.connections().await, 1);
}
on_both_backends!(states_are_single_use_bound_and_short_lived);

/// Shopify's callback must be within 90 s of our clock, and for the link's own shop.
async fn shopify_answers_are_fresh_and_for_the_links_shop(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    // A session for another shop than the one that answers: refused before any trade.
    let session = s
        .session(json!({"connector": "shopify", "environment": "production",
                        "settings": {"shop_domain": "other-shop.myshopify.com",
                                     "base_url": format!("{}/shopify/acme-us.myshopify.com", s.sim.address)},
                        "return_url": "https://seller.example/done"}))
        .await;
    let callback = s.to_callback(session["url"].as_str().unwrap()).await;
    let trades_before = s.sim.state.consent_trades().0;
    let wrong = s.get(&callback).await;
    assert_eq!(wrong.status, 400);
    assert!(wrong.body.contains("different account"), "{}", wrong.body);
    assert_eq!(
        s.sim.state.consent_trades().0,
        trades_before,
        "no trade was tried"
    );

    let callback = s
        .to_callback(s.shopify_session().await["url"].as_str().unwrap())
        .await;
    s.app.time.advance(Duration::seconds(91));
    let stale = s.get(&callback).await;
    assert_eq!(stale.status, 400);
    assert!(stale.body.contains("stale_callback"), "{}", stale.body);
    assert_eq!(s.connections().await, 0);
}
on_both_backends!(shopify_answers_are_fresh_and_for_the_links_shop);

/// A denied consent ends the session on a page; nothing is created.
async fn a_denied_consent_changes_nothing(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    let session = s.shopify_session().await;
    let link = session["url"].as_str().unwrap();
    let to_platform = s.press(link).await;
    let back = s.consent(&to_platform.location, "deny").await;
    assert!(
        back.location.contains("error=access_denied"),
        "{}",
        back.location
    );
    let ended = s.get(&back.location).await;
    assert_eq!(ended.status, 400);
    assert!(
        ended.body.contains("You did not approve access"),
        "{}",
        ended.body
    );
    let back_to = continue_link(&ended.body);
    assert!(
        back_to
            .starts_with("https://seller.example/done?from=mail&status=failed&error=access_denied"),
        "the return URL learns of it: {back_to}"
    );
    assert_eq!(s.connections().await, 0);
    let (_, view) = s
        .app
        .get(
            &format!("/v1/connect-sessions/{}", session["id"].as_str().unwrap()),
            &s.token,
        )
        .await;
    assert_eq!(
        (&view["status"], &view["error_code"]),
        (&json!("failed"), &json!("access_denied"))
    );
    let again = s.get(link).await;
    assert_eq!(again.status, 410, "a failed link is spent");

    // The platform redirects with error=access_denied on its own (the switch).
    s.sim.state.set_consent(Switches {
        deny: true,
        ..Default::default()
    });
    let link = s.shopify_session().await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let to_platform = s.press(&link).await;
    let redirected = s.get(&to_platform.location).await;
    assert_eq!(redirected.status, 302);
    let ended = s.get(&redirected.location).await;
    assert!(continue_link(&ended.body).contains("error=access_denied"));
    assert_eq!(s.connections().await, 0);
}
on_both_backends!(a_denied_consent_changes_nothing);

/// A platform that refuses the code, or does not answer: the seller is told, nothing is
/// created, and the session says why.
async fn refused_and_unanswered_trades(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    for (switches, code) in [
        (
            Switches {
                refuse: true,
                ..Default::default()
            },
            "platform_refused",
        ),
        (
            Switches {
                timeout: true,
                ..Default::default()
            },
            "platform_unavailable",
        ),
    ] {
        let session = s.shopify_session().await;
        let callback = s.to_callback(session["url"].as_str().unwrap()).await;
        s.sim.state.set_consent(switches);
        let ended = s.get(&callback).await;
        assert!(ended.status >= 500, "{}", ended.status);
        assert_eq!(
            param(&continue_link(&ended.body), "error").as_deref(),
            Some(code),
            "{}",
            ended.body
        );
        s.sim.state.set_consent(Switches::default());
        let (_, view) = s
            .app
            .get(
                &format!("/v1/connect-sessions/{}", session["id"].as_str().unwrap()),
                &s.token,
            )
            .await;
        assert_eq!(view["error_code"], code);
    }
    assert_eq!(s.connections().await, 0);
}
on_both_backends!(refused_and_unanswered_trades);

/// Shopee: the signed auth_partner link (state in the redirect), `code` with `shop_id`, the
/// signed token/get; the new connection holds the shop id and tokens and passes its check.
async fn shopee_connects_through_a_link(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.platform_app(
        &s.token,
        "shopee",
        json!({"partner_id": 2001887, "partner_key": "shopee-partner-key"}),
    )
    .await;
    let session = s
        .session(json!({"connector": "shopee", "environment": "production",
                        "settings": {"base_url": format!("{}/shopee", s.sim.address)},
                        "return_url": "https://seller.example/done"}))
        .await;
    let link = session["url"].as_str().unwrap();
    let to_platform = s.press(link).await;
    let auth = &to_platform.location;
    assert!(
        auth.contains("/api/v2/shop/auth_partner?partner_id=2001887&timestamp="),
        "{auth}"
    );
    let redirect = param(auth, "redirect").unwrap();
    assert!(
        redirect.starts_with(&s.app.url("/v1/oauth/callback/shopee?state=")),
        "{redirect}"
    );
    let back = s.consent(auth, "approve").await;
    assert_eq!(
        param(&back.location, "shop_id").as_deref(),
        Some("14701711")
    );
    let view = s.completed(&back.location).await;
    assert_eq!(view["settings"]["shop_id"], 14701711);
    assert_eq!(view["settings"]["partner_id"], 2001887);
    assert!(view["credential_expiry"]["access_token"].is_string());

    // A link signed with the wrong key is refused by the platform.
    s.platform_app(
        &s.token,
        "shopee",
        json!({"partner_id": 2001887, "partner_key": "not-the-key"}),
    )
    .await;
    let link = s
        .session(json!({"connector": "shopee", "environment": "production",
                        "settings": {"base_url": format!("{}/shopee", s.sim.address)},
                        "return_url": "https://seller.example/done"}))
        .await["url"]
        .as_str()
        .unwrap()
        .to_string();
    let refused = s.get(&s.press(&link).await.location).await;
    assert_eq!(refused.status, 400);
    assert!(refused.body.contains("Wrong sign"));
}
on_both_backends!(shopee_connects_through_a_link);

/// Amazon: the regional consent URL with `version=beta` for a Draft app, the code traded at
/// Login with Amazon, the selling partner id kept; a code older than 5 minutes is refused.
async fn amazon_connects_through_a_link(backend: Backend) {
    let s = setup(backend, &[]).await;
    let amazon_app = json!({"application_id": "amzn1.sellerapps.app.sim", "lwa_client_id": "amzn1.application-oa2-client.sim",
                            "lwa_client_secret": "lwa-client-secret", "draft": true});
    s.platform_app(&s.token, "amazon-sp-api", amazon_app.clone())
        .await;
    let body = json!({"connector": "amazon-sp-api", "environment": "production",
                      "settings": {"region": "na", "marketplace_ids": ["ATVPDKIKX0DER"],
                                   "base_url": format!("{}/amazon", s.sim.address),
                                   "lwa_endpoint": format!("{}/amazon/auth/o2/token", s.sim.address)},
                      "return_url": "https://seller.example/done"});
    let session = s.session(body.clone()).await;
    let to_platform = s.press(session["url"].as_str().unwrap()).await;
    assert!(
        to_platform
            .location
            .contains("/apps/authorize/consent?application_id=amzn1.sellerapps.app.sim")
    );
    assert_eq!(
        param(&to_platform.location, "version").as_deref(),
        Some("beta")
    );
    let back = s.consent(&to_platform.location, "approve").await;
    assert!(back.location.contains("spapi_oauth_code="));
    let view = s.completed(&back.location).await;
    assert_eq!(view["settings"]["seller_id"], "A2SIMSELLER0001");

    // Six minutes between consent and trade: Amazon's code has expired.
    let session = s.session(body.clone()).await;
    let callback = s.to_callback(session["url"].as_str().unwrap()).await;
    s.sim.state.set_consent(Switches {
        advance_seconds: 360,
        ..Default::default()
    });
    let late = s.get(&callback).await;
    assert_eq!(
        param(&continue_link(&late.body), "error").as_deref(),
        Some("platform_refused"),
        "{}",
        late.body
    );

    // A Draft app without version=beta: Amazon's MD1000 on its own page.
    s.sim.state.set_consent(Switches::default());
    let mut published = amazon_app;
    published["draft"] = json!(false);
    s.platform_app(&s.token, "amazon-sp-api", published).await;
    let session = s.session(body).await;
    let to_platform = s.press(session["url"].as_str().unwrap()).await;
    assert!(param(&to_platform.location, "version").is_none());
    assert!(s.get(&to_platform.location).await.body.contains("MD1000"));
}
on_both_backends!(amazon_connects_through_a_link);

/// TikTok Shop: token/get with `authorized_code`, then the authorized shops for the cipher;
/// with two shops the seller picks one on a page, and the pick cannot be replayed.
async fn tiktok_connects_and_the_seller_picks_a_shop(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.platform_app(
        &s.token,
        "tiktok-shop",
        json!({"app_key": "6abcdefgh12", "app_secret": "tiktok-app-secret", "service_id": "7001"}),
    )
    .await;
    s.sim.state.set_consent(Switches {
        tiktok_shops: Some(vec![
            TiktokShop {
                name: "UK shop".into(),
                region: "GB".into(),
                cipher: "ROW_uk".into(),
            },
            TiktokShop {
                name: "SG shop".into(),
                region: "SG".into(),
                cipher: "ROW_sg".into(),
            },
        ]),
        ..Default::default()
    });
    let session = s
        .session(json!({"connector": "tiktok-shop", "environment": "production",
                        "settings": {"base_url": format!("{}/tiktok", s.sim.address),
                                     "token_endpoint": format!("{}/tiktok-auth/api/v2/token/refresh", s.sim.address)},
                        "return_url": "https://seller.example/done"}))
        .await;
    let callback = s.to_callback(session["url"].as_str().unwrap()).await;
    let pick = s.get(&callback).await;
    assert_eq!(pick.status, 200, "{}", pick.body);
    assert!(pick.body.contains("UK shop (GB)") && pick.body.contains("SG shop (SG)"));
    let form = hidden_inputs(&pick.body);
    let choice = form.iter().find(|(k, _)| k == "choice").unwrap().1.clone();
    let chosen = answer(
        s.browser
            .post(s.app.url("/v1/oauth/callback/tiktok-shop/shop"))
            .form(&[("choice", choice.as_str()), ("shop", "1")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(chosen.status, 303, "{}", chosen.body);
    let view = s
        .view(&param(&chosen.location, "connection_id").unwrap())
        .await;
    assert_eq!(view["settings"]["shop_cipher"], "ROW_sg");
    assert_eq!(view["name"], "TikTok Shop SG shop (SG)");
    let again = answer(
        s.browser
            .post(s.app.url("/v1/oauth/callback/tiktok-shop/shop"))
            .form(&[("choice", choice.as_str()), ("shop", "0")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, 410);
    assert_eq!(s.connections().await, 1);
}
on_both_backends!(tiktok_connects_and_the_seller_picks_a_shop);

/// Platform apps: secrets masked when read, a rotation audited without its value, the
/// operator's app as every tenant's default (shown without secrets), bad input 400.
async fn platform_apps_are_vaulted_and_defaulted(backend: Backend) {
    let s = setup(backend, &[]).await;
    let operator_app = s
        .platform_app(OPERATOR_TOKEN, "shopify",
                      json!({"client_id": SHOPIFY_CLIENT_ID, "client_secret": SHOPIFY_CLIENT_SECRET, "scopes": ["read_orders"]}))
        .await;
    assert_eq!(operator_app["secrets"]["client_secret"], "****0001");
    assert_eq!(operator_app["owner"], "operator");
    let (status, seen) = s.app.get("/v1/platform-apps/shopify", &s.token).await;
    assert_eq!((status, &seen["owner"]), (200, &json!("operator")));
    assert!(seen.get("secrets").is_none(), "{seen}");
    assert_eq!(
        seen["redirect_url"],
        s.app.url("/v1/oauth/callback/shopify")
    );

    // The tenant's own app wins, and a new secret is a rotation.
    s.shopify_app().await;
    s.platform_app(&s.token, "shopify",
                   json!({"client_id": SHOPIFY_CLIENT_ID, "client_secret": "rotated-secret-000000002", "scopes": ["read_orders"]}))
        .await;
    let (_, own) = s.app.get("/v1/platform-apps/shopify", &s.token).await;
    assert_eq!(
        (&own["owner"], &own["secrets"]["client_secret"]),
        (&json!("tenant"), &json!("****0002"))
    );
    let rotations = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("platform_app.rotate_secret"))
        .all(&s.app.db)
        .await
        .unwrap();
    assert_eq!(rotations.len(), 1);
    assert!(!rotations[0].details.to_string().contains("rotated-secret"));

    for (connector, body, field) in [
        (
            "shopify",
            json!({"client_id": "x", "scopes": ["a"]}),
            "client_secret",
        ),
        (
            "shopify",
            json!({"client_id": "x", "client_secret": "y", "scopes": ["a b"]}),
            "scopes",
        ),
        (
            "shopify",
            json!({"client_id": "x", "client_secret": "y", "scopes": ["a"], "redirect_url": "javascript:x"}),
            "redirect_url",
        ),
        (
            "shopee",
            json!({"partner_id": "abc", "partner_key": "k"}),
            "partner_id",
        ),
        (
            "shopify",
            json!({"client_id": "x", "client_secret": "y", "scopes": ["a"], "extra": 1}),
            "extra",
        ),
        ("generic-rest-erp", json!({}), "connector"),
    ] {
        let (status, problem) = s
            .app
            .put(&format!("/v1/platform-apps/{connector}"), &s.token, body)
            .await;
        assert_eq!(status, 400, "{problem}");
        assert!(problem.to_string().contains(field), "{field}: {problem}");
    }
    let (status, _) = s
        .app
        .send(
            reqwest::Method::DELETE,
            "/v1/platform-apps/shopify",
            &s.token,
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (_, back) = s.app.get("/v1/platform-apps/shopify", &s.token).await;
    assert_eq!(back["owner"], "operator", "the default again");
}
on_both_backends!(platform_apps_are_vaulted_and_defaulted);

/// Bad session input is 400 naming the field; another tenant's sessions and connections
/// are 404; a link nobody made is a 404 page.
async fn sessions_check_their_input_and_tenant(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    let base = json!({"connector": "shopify", "environment": "production",
                      "settings": s.shopify_settings(), "return_url": "https://seller.example/done"});
    for (patch, field) in [
        (json!({"return_url": "javascript:alert(1)"}), "return_url"),
        (
            json!({"return_url": "https://user:pw@seller.example/"}),
            "return_url",
        ),
        (
            json!({"settings": {"shop_domain": "evil.com"}}),
            "shop_domain",
        ),
        (
            json!({"settings": {"shop_domain": "acme.myshopify.com", "base_url": "file:///etc/passwd"}}),
            "base_url",
        ),
        (json!({"connector": "generic-rest-erp"}), "connector"),
        (json!({"expires_in_seconds": 5}), "expires_in_seconds"),
        (json!({"connection_id": "con_nope"}), "connection"),
    ] {
        let mut body = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, problem) = s.app.post("/v1/connect-sessions", &s.token, body).await;
        assert!(status == 400 || status == 404, "{status} {problem}");
        assert!(problem.to_string().contains(field), "{field}: {problem}");
    }
    let session = s.session(base).await;
    let (_, other) = s.app.tenant_with_token(&["read", "write"]).await;
    let (status, _) = s
        .app
        .get(
            &format!("/v1/connect-sessions/{}", session["id"].as_str().unwrap()),
            &other,
        )
        .await;
    assert_eq!(status, 404);
    let shop = s
        .app
        .connection(
            &s.token,
            crate::helpers::shopify_connection("US", "hush-hush-secret-1234"),
        )
        .await;
    let (status, _) = s
        .app
        .post(
            "/v1/connect-sessions",
            &other,
            json!({"connector": "shopify", "environment": "production",
              "connection_id": shop["id"], "return_url": "https://seller.example/done"}),
        )
        .await;
    assert_eq!(status, 404, "another tenant's connection");
    let unknown = s.get(&s.app.url("/connect/not-a-real-token")).await;
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("could not be verified"));
    // Reading the page changes nothing; an expired link says so.
    s.app.time.advance(Duration::hours(2));
    let expired = s.get(session["url"].as_str().unwrap()).await;
    assert_eq!(expired.status, 410);
    assert!(expired.body.contains("expired"));
    let (_, view) = s
        .app
        .get(
            &format!("/v1/connect-sessions/{}", session["id"].as_str().unwrap()),
            &s.token,
        )
        .await;
    assert_eq!(view["status"], "expired");
}
on_both_backends!(sessions_check_their_input_and_tenant);

/// The page may be framed by the origins the operator allows, and then by no other.
async fn framing_is_configurable(backend: Backend) {
    let s = setup(
        backend,
        &[(
            "SYNCHUB_CONNECT__FRAME_ANCESTORS",
            "https://erp.example.com",
        )],
    )
    .await;
    s.shopify_app().await;
    let page = s
        .get(s.shopify_session().await["url"].as_str().unwrap())
        .await;
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors https://erp.example.com"),
        "{csp}"
    );
    assert!(page.headers.get("x-frame-options").is_none());
}
on_both_backends!(framing_is_configurable);

/// Authorising an existing connection again rotates its credentials in place: same id, an
/// audit line, new tokens.
async fn a_link_authorises_a_connection_again(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    let first = s
        .get(
            &s.to_callback(s.shopify_session().await["url"].as_str().unwrap())
                .await,
        )
        .await;
    let id = param(&first.location, "connection_id").unwrap();
    let before = s.view(&id).await;
    let session = s
        .session(
            json!({"connector": "shopify", "environment": "production", "connection_id": id,
                        "return_url": "https://seller.example/again"}),
        )
        .await;
    let page = s.get(session["url"].as_str().unwrap()).await;
    assert!(page.body.contains("Authorise Shopify again"));
    let done = s
        .get(&s.to_callback(session["url"].as_str().unwrap()).await)
        .await;
    assert_eq!(
        param(&done.location, "connection_id").as_deref(),
        Some(id.as_str())
    );
    assert_eq!(s.connections().await, 1);
    let after = s.view(&id).await;
    assert_ne!(
        before["credentials"]["access_token"],
        after["credentials"]["access_token"]
    );
    let lines = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("connection.reauthorize"))
        .filter(audit_event::Column::ResourceId.eq(id.clone()))
        .count(&s.app.db)
        .await
        .unwrap();
    assert_eq!(lines, 1);
}
on_both_backends!(a_link_authorises_a_connection_again);
