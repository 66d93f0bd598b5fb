//! The seller's pages: the link's page with its one button, the pick of a shop, and the
//! page that says how it ended. Small HTML with inline CSS (its hash goes into the CSP), no
//! script, no external asset, in English or Simplified Chinese by `Accept-Language`; forms
//! work with JavaScript disabled.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

use super::refusal::Refusal;
use super::service::LinkDetails;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    Zh,
}

impl Lang {
    /// The first of English and Chinese the browser asks for, by its q-values; English
    /// when it asks for neither.
    pub fn from_accept_language(header: Option<&str>) -> Self {
        let mut best: Option<(f32, Lang)> = None;
        for part in header.unwrap_or_default().split(',') {
            let mut pieces = part.trim().split(';');
            let tag = pieces
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase();
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") || tag == "*" {
                Lang::En
            } else {
                continue;
            };
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Zh => "zh-CN",
        }
    }

    fn pick(self, en: &'static str, zh: &'static str) -> &'static str {
        match self {
            Lang::En => en,
            Lang::Zh => zh,
        }
    }
}

pub const STYLE: &str = "body{font-family:system-ui,-apple-system,'PingFang SC','Microsoft YaHei',sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;color:#1f2328;line-height:1.5}main{border:1px solid #d0d7de;border-radius:8px;padding:1.5rem}h1{font-size:1.4rem;margin-top:0}button{font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:6px;background:#1f6feb;color:#fff;cursor:pointer}button:focus{outline:3px solid #0b3d91;outline-offset:2px}.muted{color:#57606a;font-size:.9rem}.error{color:#a40e26}label{display:block;margin:.4rem 0}";

/// The CSP source that allows exactly [`STYLE`].
pub fn style_source() -> String {
    format!(
        "'sha256-{}'",
        STANDARD.encode(Sha256::digest(STYLE.as_bytes()))
    )
}

/// Escapes text for HTML content and attribute values.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn document(lang: Lang, title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><meta name=\"robots\" content=\"noindex\"><title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>",
        lang.code(),
        esc(title)
    )
}

/// The link's page: what is being connected, for whom, and the button.
pub fn connect_page(lang: Lang, link: &LinkDetails, action: &str) -> String {
    let platform = link.platform.display_name();
    let title = match (lang, link.reauthorize) {
        (Lang::En, false) => format!("Connect your {platform} account"),
        (Lang::En, true) => format!("Authorise {platform} again"),
        (Lang::Zh, false) => format!("连接您的 {platform} 账号"),
        (Lang::Zh, true) => format!("重新授权 {platform}"),
    };
    let account = link
        .account
        .as_deref()
        .map(|a| {
            format!(
                "<p>{} <strong>{}</strong></p>",
                lang.pick("Account:", "账号："),
                esc(a)
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1>{title}</h1><p>{} <strong>{}</strong> {}</p>{account}<p>{}</p><form method=\"post\" action=\"{}\"><button type=\"submit\">{}</button></form><p class=\"muted\">{} {}</p>",
        lang.pick("For", "为"),
        esc(&link.tenant_name),
        lang.pick(
            "synchub will keep your orders, stock and shipments in sync.",
            "同步订单、库存和物流信息（synchub）。"
        ),
        lang.pick(
            "You will be sent to the platform to approve access, then brought back here.",
            "您将被转到平台页面确认授权，完成后自动返回。"
        ),
        esc(action),
        esc(&match lang {
            Lang::En => format!("Continue to {platform}"),
            Lang::Zh => format!("前往 {platform} 授权"),
        }),
        lang.pick("This link is valid until", "此链接有效期至"),
        link.expires_at.format("%Y-%m-%d %H:%M UTC"),
    );
    document(lang, &title, &body)
}

/// What to tell the seller for each way a flow can stop: what happened, what to do.
fn explain(lang: Lang, code: &str) -> (&'static str, &'static str) {
    match code {
        "access_denied" => (
            lang.pick("You did not approve access", "您未同意授权"),
            lang.pick(
                "Nothing was connected. To connect the store, open the link again and approve.",
                "未连接任何店铺。如需连接，请重新打开链接并同意授权。",
            ),
        ),
        "link_expired" | "state_expired" => (
            lang.pick("This link has expired", "此链接已过期"),
            lang.pick(
                "Nothing was changed. Ask whoever sent you the link for a new one.",
                "未做任何更改。请联系发送链接的人获取新链接。",
            ),
        ),
        "link_used" | "state_used" => (
            lang.pick("This link was already used", "此链接已被使用"),
            lang.pick(
                "An authorisation can be used once. If the store is not connected, ask for a new link.",
                "授权只能使用一次。如果店铺未连接，请获取新链接。",
            ),
        ),
        "bad_signature" | "stale_callback" | "invalid_state" | "unknown_link" | "missing_parameter" => (
            lang.pick("This answer could not be verified", "无法验证此授权结果"),
            lang.pick(
                "Nothing was changed. Open the link you were sent again and approve on the platform's own page.",
                "未做任何更改。请重新打开您收到的链接，并在平台官方页面上确认授权。",
            ),
        ),
        "wrong_account" => (
            lang.pick("This is a different account", "授权的账号不一致"),
            lang.pick(
                "You approved access for another store than the link is for. Sign in to the right store and open the link again.",
                "您授权的店铺与链接中的店铺不同。请登录正确的店铺后重新打开链接。",
            ),
        ),
        "platform_unavailable" => (
            lang.pick("The platform did not answer", "平台暂时无响应"),
            lang.pick(
                "Nothing was connected. Please try again in a few minutes with a new link.",
                "未连接任何店铺。请几分钟后使用新链接重试。",
            ),
        ),
        "no_platform_app" | "misconfigured" => (
            lang.pick("This connection is not set up yet", "此连接尚未配置"),
            lang.pick(
                "Please tell whoever sent you the link: the platform app is missing or incomplete.",
                "请告知发送链接的人：平台应用未配置或配置不完整。",
            ),
        ),
        "several_shops" | "no_shop" => (
            lang.pick("No single shop to connect", "没有可连接的单一店铺"),
            lang.pick(
                "Authorise one shop at a time, from the shop's own account.",
                "请使用店铺自己的账号，每次授权一个店铺。",
            ),
        ),
        _ => (
            lang.pick("The platform refused the authorisation", "平台拒绝了授权"),
            lang.pick(
                "Nothing was connected. Please tell whoever sent you the link; they can see the reason.",
                "未连接任何店铺。请告知发送链接的人，他们可以查看原因。",
            ),
        ),
    }
}

/// How a flow stopped: what happened, what to do, and (when the link has a return URL,
/// which then learns the error code) the way back.
pub fn refusal_page(lang: Lang, refusal: &Refusal, back_to: Option<&str>) -> String {
    let (title, what_to_do) = explain(lang, refusal.code);
    let back = back_to
        .map(|url| {
            format!(
                "<p><a id=\"continue\" href=\"{}\">{}</a></p>",
                esc(url),
                lang.pick("Continue", "继续")
            )
        })
        .unwrap_or_default();
    let body = format!(
        "<h1 class=\"error\">{}</h1><p>{}</p>{back}<p class=\"muted\">{} <code>{}</code></p>",
        esc(title),
        esc(what_to_do),
        lang.pick("Reference:", "参考代码："),
        esc(refusal.code)
    );
    document(lang, title, &body)
}

/// The end of a flow with no return URL (a link from an alert): connected.
pub fn done_page(lang: Lang) -> String {
    let title = lang.pick("Your store is connected", "店铺已连接");
    let body = format!(
        "<h1>{title}</h1><p>{}</p>",
        lang.pick(
            "You can close this page. Orders, stock and shipments sync again.",
            "您可以关闭此页面。订单、库存和物流将恢复同步。"
        )
    );
    document(lang, title, &body)
}

/// The pick of one shop when the platform granted several.
pub fn choose_shop_page(lang: Lang, action: &str, choice: &str, shops: &[String]) -> String {
    let title = lang.pick("Choose the shop to connect", "选择要连接的店铺");
    let options: String = shops
        .iter()
        .enumerate()
        .map(|(i, shop)| {
            format!(
                "<label><input type=\"radio\" name=\"shop\" value=\"{i}\"{}> {}</label>",
                if i == 0 { " checked" } else { "" },
                esc(shop)
            )
        })
        .collect();
    let body = format!(
        "<h1>{title}</h1><form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"choice\" value=\"{}\"><fieldset><legend>{}</legend>{options}</fieldset><p><button type=\"submit\">{}</button></p></form>",
        esc(action),
        esc(choice),
        lang.pick("Shops you authorised", "您授权的店铺"),
        lang.pick("Connect this shop", "连接此店铺"),
    );
    document(lang, title, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_browser_language_picks_the_page_language() {
        assert_eq!(Lang::from_accept_language(None), Lang::En);
        assert_eq!(
            Lang::from_accept_language(Some("zh-CN,zh;q=0.9,en;q=0.8")),
            Lang::Zh
        );
        assert_eq!(
            Lang::from_accept_language(Some("en-US,en;q=0.9,zh;q=0.8")),
            Lang::En
        );
        assert_eq!(Lang::from_accept_language(Some("fr-FR,zh;q=0.5")), Lang::Zh);
        assert_eq!(Lang::from_accept_language(Some("de,fr")), Lang::En);
        assert_eq!(Lang::from_accept_language(Some("zh;q=0,en")), Lang::En);
    }

    #[test]
    fn text_from_the_tenant_is_escaped() {
        let page = refusal_page(
            Lang::En,
            &Refusal::new("x\"><script>", "d"),
            Some("https://s.example/?a=\"><script>"),
        );
        assert!(!page.contains("<script>"));
        assert!(page.contains("&lt;script&gt;"));
    }
}
