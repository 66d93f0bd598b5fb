//! Connect links in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs) driven over WebDriver. A seller opens the
//! link, presses the button, approves on the simulated platform's consent page and lands on
//! the return URL; another denies and reads the failure page. JavaScript is off throughout:
//! the pages must work without it.

use std::process::{Child, Command, Stdio};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use crate::connect::{Setup, setup};
use crate::helpers::{Backend, eventually};
use crate::on_both_backends;

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser() -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let binary = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("chromedriver is installed (.ci/run installs Debian's chromium-driver)");
    let child = Command::new(binary)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _profile: profile,
    };
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            // The machine's network is closed: no background calls to Google.
            "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--disable-dev-shm-usage", format!("--user-data-dir={}", driver._profile.path().display())],
            // The seller's pages must work with JavaScript disabled.
            "prefs": {"profile.managed_default_content_settings.javascript": 2},
        }),
    );
    let client = eventually(
        "chromedriver answers",
        std::time::Duration::from_secs(20),
        || {
            let capabilities = capabilities.clone();
            let url = driver.url.clone();
            async move {
                ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                    .capabilities(capabilities)
                    .connect(&url)
                    .await
            }
        },
    )
    .await;
    (driver, client)
}

impl Setup {
    fn landing(&self) -> String {
        format!("{}/_sim/landing", self.sim.address)
    }
}

/// Opens the link, presses its button and answers the platform's consent page with the
/// button of that id (`approve` or `deny`).
async fn consent_in_browser(client: &Client, link: &str, decision: &str) {
    client.goto(link).await.unwrap();
    client
        .find(Locator::Css("button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // Clicks do not wait out the redirects that follow: wait for the page.
    client
        .wait()
        .for_element(Locator::Id(decision))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

/// Open a link, press the button, approve on Shopify's and then Shopee's consent page, land
/// on the return URL; each connection then exists, holds its tokens encrypted and passed
/// its check.
async fn a_seller_connects_shopify_and_shopee_in_a_browser(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    s.platform_app(
        &s.token,
        "shopee",
        json!({"partner_id": 2001887, "partner_key": "shopee-partner-key"}),
    )
    .await;
    let (_driver, client) = browser().await;
    let sessions = [
        s.session(json!({"connector": "shopify", "environment": "production", "settings": s.shopify_settings(),
                         "return_url": s.landing()}))
            .await,
        s.session(json!({"connector": "shopee", "environment": "production",
                         "settings": {"base_url": format!("{}/shopee", s.sim.address)}, "return_url": s.landing()}))
            .await,
    ];
    for session in sessions {
        consent_in_browser(&client, session["url"].as_str().unwrap(), "approve").await;
        let Ok(status) = client.wait().for_element(Locator::Id("status")).await else {
            panic!(
                "not on the return page: {:?}\n{}",
                client.current_url().await,
                client.source().await.unwrap_or_default()
            );
        };
        let status = status.text().await.unwrap();
        assert_eq!(status, "completed");
        let landed = client.current_url().await.unwrap();
        assert!(landed.as_str().starts_with(&s.landing()), "{landed}");
        let query: std::collections::HashMap<_, _> = landed.query_pairs().into_owned().collect();
        assert_eq!(
            query.get("check").map(String::as_str),
            Some("passed"),
            "{landed}"
        );
        let view = s.view(&query["connection_id"]).await;
        assert_eq!(view["authorization"]["status"], "authorized");
        assert!(
            view["credentials"]["access_token"]
                .as_str()
                .unwrap()
                .starts_with("****")
        );
    }
    assert_eq!(s.connections().await, 2);
    client.close().await.unwrap();
}
on_both_backends!(a_seller_connects_shopify_and_shopee_in_a_browser);

/// Deny on the consent page: the seller reads what happened and what to do, and nothing
/// was connected.
async fn a_seller_who_denies_reads_the_failure_page(backend: Backend) {
    let s = setup(backend, &[]).await;
    s.shopify_app().await;
    let (_driver, client) = browser().await;
    let session = s
        .session(json!({"connector": "shopify", "environment": "production", "settings": s.shopify_settings(),
                        "return_url": s.landing()}))
        .await;
    consent_in_browser(&client, session["url"].as_str().unwrap(), "deny").await;
    let heading = client
        .wait()
        .for_element(Locator::Id("continue"))
        .await
        .map(|_| ());
    assert!(heading.is_ok(), "no failure page");
    let heading = client
        .find(Locator::Css("h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "You did not approve access");
    let advice = client
        .find(Locator::Css("main p"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(advice.contains("open the link again"), "{advice}");
    client
        .find(Locator::Id("continue"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let status = client
        .wait()
        .for_element(Locator::Id("status"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(status, "failed");
    assert_eq!(s.connections().await, 0);
    client.close().await.unwrap();
}
on_both_backends!(a_seller_who_denies_reads_the_failure_page);
