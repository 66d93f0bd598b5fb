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

impl Message {
    fn severity_label(&self, language: Language) -> &'static str {
        let labels = labels(language);
        labels.severity[self.severity as usize]
    }

    /// The body as Markdown (DingTalk, WeCom and Feishu render it; Slack's mrkdwn is close).
    pub fn markdown(&self, language: Language) -> String {
        let l = labels(language);
        let mut lines = vec![
            format!("### [{}] {}", self.severity_label(language), self.title),
            format!("**{}**: {}", l.what, self.what),
        ];
        for (label, value) in &self.location {
            lines.push(format!("**{label}**: {value}"));
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
        let title = format!("[{}] {}", self.severity_label(language), self.title);
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
