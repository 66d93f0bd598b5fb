//! What an alert says, for an engineer on call: what, where, since when, how many, the last
//! error and a link; as Markdown where the platform renders it, in English or Simplified
//! Chinese as the channel asks.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::channel::ChannelKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Language {
    #[default]
    #[serde(rename = "en")]
    English,
    #[serde(rename = "zh-Hans")]
    SimplifiedChinese,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Message {
    /// The event kind (or "recovered"): picks the title in the channel's language.
    #[serde(default)]
    pub kind: Option<String>,
    /// The rule's name, after the title.
    #[serde(default)]
    pub rule: Option<String>,
    /// The title when there is no kind (a test message).
    pub title: String,
    pub severity: Severity,
    pub what: String,
    /// (label, value): tenant, connection, flow.
    pub location: Vec<(String, String)>,
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    pub count: u64,
    pub last_error: Option<String>,
    pub link: Option<String>,
}

struct Labels {
    severity: [&'static str; 3],
    what: &'static str,
    since: &'static str,
    count: &'static str,
    last_error: &'static str,
    open: &'static str,
}

fn labels(language: Language) -> Labels {
    match language {
        Language::English => Labels {
            severity: ["Info", "Warning", "Critical"],
            what: "What",
            since: "Since",
            count: "Occurrences",
            last_error: "Last error",
            open: "Open in synchub",
        },
        Language::SimplifiedChinese => Labels {
            severity: ["通知", "警告", "严重"],
            what: "事件",
            since: "开始时间",
            count: "次数",
            last_error: "最近错误",
            open: "在 synchub 中查看",
        },
    }
}

/// An event kind's title, in the channel's language.
pub fn kind_title(kind: &str, language: Language) -> Option<&'static str> {
    let (en, zh) = match kind {
        "run_failed" => (
            "A run failed after its retries",
            "运行重试后仍失败，已进入死信队列",
        ),
        "flow_disabled" => ("A flow was disabled", "数据流已被停用"),
        "check_failed" => ("A connectivity check failed", "连通性检查失败"),
        "credential_refresh_failed" => ("A credential refresh failed", "凭证刷新失败"),
        "credential_expiring" => ("A credential is about to expire", "凭证即将过期"),
        "platform_errors" => ("A platform keeps failing", "平台持续报错"),
        "rate_limited" => ("A rate-limit budget stays spent", "限流额度持续耗尽"),
        "webhook_rejected" => ("Webhooks are being refused", "Webhook 被拒收"),
        "deployment.verification_failed" => {
            ("A deployment failed its verification", "部署验证失败")
        }
        "deployment.rolled_back" => ("A deployment was rolled back", "部署已回滚"),
        "deployment.waiting_for_window" => {
            ("A deployment waits for its window", "部署等待发布窗口")
        }
        "deployment.step_promoted" => ("A deployment step was promoted", "部署步骤已推进"),
        "deployment.promoted" => ("A deployment was promoted", "部署已全部推广"),
        "recovered" => ("Recovered", "已恢复"),
        "test" => ("synchub test message", "synchub 测试消息"),
        _ => return None,
    };
    Some(match language {
        Language::English => en,
        Language::SimplifiedChinese => zh,
    })
}

/// Where-labels the alerter writes, in the channel's language.
fn location_label(label: &str, language: Language) -> &str {
    match (language, label) {
        (Language::SimplifiedChinese, "Tenant") => "租户",
        (Language::SimplifiedChinese, "Connection") => "连接",
        (Language::SimplifiedChinese, "Flow") => "数据流",
        _ => label,
    }
}

impl Message {
    fn severity_label(&self, language: Language) -> &'static str {
        let labels = labels(language);
        labels.severity[self.severity as usize]
    }

    /// The title in the channel's language: the kind's, then the rule's name.
    pub fn title(&self, language: Language) -> String {
        match (
            self.kind.as_deref().and_then(|k| kind_title(k, language)),
            &self.rule,
        ) {
            (Some(title), Some(rule)) => format!("{title} ({rule})"),
            (Some(title), None) => title.to_string(),
            (None, _) => self.title.clone(),
        }
    }

    /// The body as Markdown (DingTalk, WeCom and Feishu render it; Slack's mrkdwn is close).
    pub fn markdown(&self, language: Language) -> String {
        let l = labels(language);
        let mut lines = vec![
            format!(
                "### [{}] {}",
                self.severity_label(language),
                self.title(language)
            ),
            format!("**{}**: {}", l.what, self.what),
        ];
        for (label, value) in &self.location {
            lines.push(format!("**{}**: {value}", location_label(label, language)));
        }
        if let Some(since) = self.since {
            lines.push(format!(
                "**{}**: {}",
                l.since,
                since.format("%Y-%m-%d %H:%M:%S UTC")
            ));
        }
        if self.count > 1 {
            lines.push(format!("**{}**: {}", l.count, self.count));
        }
        if let Some(error) = &self.last_error {
            let error: String = error.chars().take(500).collect();
            lines.push(format!(
                "**{}**: `{}`",
                l.last_error,
                error.replace('`', "'")
            ));
        }
        if let Some(link) = &self.link {
            lines.push(format!("[{}]({link})", l.open));
        }
        lines.join("\n\n")
    }

    /// The request body each platform takes (before any signing).
    pub fn body(&self, kind: ChannelKind, language: Language) -> Value {
        let title = format!(
            "[{}] {}",
            self.severity_label(language),
            self.title(language)
        );
        let text = self.markdown(language);
        match kind {
            ChannelKind::Dingtalk => {
                json!({"msgtype": "markdown", "markdown": {"title": title, "text": text}})
            }
            ChannelKind::Wecom => json!({"msgtype": "markdown", "markdown": {"content": text}}),
            ChannelKind::Feishu => json!({
                "msg_type": "interactive",
                "card": {
                    "header": {"title": {"tag": "plain_text", "content": title},
                               "template": match self.severity { Severity::Critical => "red", Severity::Warning => "orange", Severity::Info => "blue" }},
                    "elements": [{"tag": "markdown", "content": text}],
                },
            }),
            ChannelKind::Slack => {
                // Slack's mrkdwn: *bold*, <url|text> links, no headings.
                let mut text = text.replace("**", "*").replace("### ", "");
                if let Some(link) = &self.link {
                    let open = labels(language).open;
                    text = text.replace(&format!("[{open}]({link})"), &format!("<{link}|{open}>"));
                }
                json!({"text": title, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]})
            }
            ChannelKind::Webhook => json!({"type": "synchub.alert", "data": self}),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Message {
        Message {
            kind: None,
            rule: None,
            title: "Run failed after its retries".into(),
            severity: Severity::Critical,
            what: "orders from US store".into(),
            location: vec![("Flow".into(), "flow_1".into())],
            since: None,
            count: 3,
            last_error: Some("HTTP 500".into()),
            link: Some("https://synchub.example/v1/runs/run_1".into()),
        }
    }

    #[test]
    fn markdown_names_what_where_how_many_and_links() {
        let text = alert().markdown(Language::English);
        assert!(text.starts_with("### [Critical] Run failed"));
        assert!(text.contains("**Occurrences**: 3"));
        assert!(text.contains("[Open in synchub](https://synchub.example/v1/runs/run_1)"));
        assert!(
            alert()
                .markdown(Language::SimplifiedChinese)
                .contains("严重")
        );
    }

    #[test]
    fn chinese_channels_get_chinese_titles_and_labels() {
        let message = Message {
            kind: Some("credential_expiring".into()),
            rule: Some("凭证".into()),
            location: vec![("Connection".into(), "con_1".into())],
            ..alert()
        };
        let text = message.markdown(Language::SimplifiedChinese);
        assert!(text.starts_with("### [严重] 凭证即将过期 (凭证)"), "{text}");
        assert!(text.contains("**连接**: con_1"), "{text}");
        assert!(
            message
                .markdown(Language::English)
                .starts_with("### [Critical] A credential is about to expire (凭证)")
        );
        for kind in super::super::events::KINDS {
            assert!(kind_title(kind, Language::English).is_some(), "{kind}");
        }
    }

    #[test]
    fn slack_gets_its_own_link_syntax() {
        let body = alert().body(ChannelKind::Slack, Language::English);
        let text = body["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(
            text.contains("<https://synchub.example/v1/runs/run_1|Open in synchub>"),
            "{text}"
        );
        assert!(!text.contains("**"));
    }
}
