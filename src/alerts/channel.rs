//! Alert channels: a tenant's ops chats. The URL (it carries the robot's token) and the
//! signing secret go through the vault; the URL passes the outbound guard.

use sea_orm::{ActiveModelTrait, DatabaseConnection, QueryOrder, Set};
use serde::{Deserialize, Serialize};

use super::message::{Language, Message, Severity};
use super::sender::{self, Destination, Outcome};
use crate::audit::{self, Actor, Entry};
use crate::error::{Error, FieldError, Result};
use crate::ids::{AlertChannelId, TenantId};
use crate::netpolicy::{OutboundClient, OutboundPolicy};
use crate::store::entities::alert_channel;
use crate::vault::Vault;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChannelKind {
    Slack,
    Dingtalk,
    Feishu,
    Wecom,
    /// Any HTTPS endpoint, signed the Standard Webhooks way.
    Webhook,
}

impl ChannelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Slack => "slack",
            Self::Dingtalk => "dingtalk",
            Self::Feishu => "feishu",
            Self::Wecom => "wecom",
            Self::Webhook => "webhook",
        }
    }

    pub const ALL: [Self; 5] = [
        Self::Slack,
        Self::Dingtalk,
        Self::Feishu,
        Self::Wecom,
        Self::Webhook,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

/// `POST /v1/alert-channels`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChannel {
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = r"^[^\u0000]*[^\u0000\u0009-\u000D \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000][^\u0000]*$"
    )]
    pub name: String,
    pub kind: ChannelKind,
    /// The robot's or endpoint's webhook URL (DingTalk `.../robot/send?access_token=...`,
    /// Feishu `.../bot/v2/hook/...`, WeCom `.../webhook/send?key=...`, Slack incoming
    /// webhook). Kept encrypted: it carries the token.
    pub url: String,
    /// DingTalk "加签" secret (SEC...), Feishu signing secret, or the webhook's whsec_ key
    /// (required for `webhook`).
    pub secret: Option<String>,
    /// `en` (default) or `zh-Hans`.
    #[serde(default)]
    pub language: Language,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChannelView {
    pub id: String,
    pub name: String,
    pub kind: String,
    /// Scheme and host only: the rest of the URL is a secret.
    pub url: String,
    pub signed: bool,
    pub language: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TestReport {
    pub delivered: bool,
    /// delivered, retry or failed.
    pub outcome: String,
    /// What the platform answered, or why it could not be reached.
    pub answer: String,
}

fn view(row: alert_channel::Model) -> ChannelView {
    ChannelView {
        id: row.id.to_string(),
        name: row.name,
        kind: row.kind,
        url: row.url_hint,
        signed: row.secret_id.is_some(),
        language: row.language,
        created_at: row.created_at,
    }
}

fn language_code(language: Language) -> &'static str {
    match language {
        Language::English => "en",
        Language::SimplifiedChinese => "zh-Hans",
    }
}

#[derive(Clone)]
pub struct AlertChannels {
    db: DatabaseConnection,
    vault: Vault,
    http: OutboundClient,
    clock: crate::clock::Clock,
}

impl AlertChannels {
    pub fn new(
        db: DatabaseConnection,
        vault: Vault,
        outbound: OutboundPolicy,
    ) -> anyhow::Result<Self> {
        let http = OutboundClient::new(
            outbound,
            std::time::Duration::from_secs(5),
            std::time::Duration::from_secs(10),
        )?;
        Ok(Self {
            db,
            vault,
            http,
            clock: crate::clock::Clock::system(),
        })
    }

    pub fn with_clock(mut self, clock: crate::clock::Clock) -> Self {
        self.clock = clock;
        self
    }

    pub async fn create(
        &self,
        actor: &Actor,
        tenant: &TenantId,
        input: NewChannel,
    ) -> Result<ChannelView> {
        let mut errors = Vec::new();
        let name = input.name.trim().to_string();
        if name.is_empty() || name.chars().count() > 100 {
            errors.push(FieldError::new("name", "1 to 100 characters"));
        }
        let url = match self.http.policy().parse_url(&input.url) {
            Ok(url) => Some(url),
            Err(message) => {
                errors.push(FieldError::new("url", message));
                None
            }
        };
        match (input.kind, input.secret.as_deref()) {
            (ChannelKind::Webhook, Some(secret))
                if crate::signing::standard_webhooks_key(secret).is_none() =>
            {
                errors.push(FieldError::new(
                    "secret",
                    "a Standard Webhooks key: whsec_ and base64",
                ));
            }
            (ChannelKind::Webhook, None) => errors.push(FieldError::new(
                "secret",
                "a webhook channel is signed: give a whsec_ key",
            )),
            (ChannelKind::Slack | ChannelKind::Wecom, Some(_)) => {
                errors.push(FieldError::new(
                    "secret",
                    "this platform does not sign messages: leave it out",
                ));
            }
            (_, Some(secret)) if secret.trim().is_empty() || secret.len() > 512 => {
                errors.push(FieldError::new("secret", "1 to 512 characters"));
            }
            _ => {}
        }
        let Some(url) = url.filter(|_| errors.is_empty()) else {
            return Err(Error::Invalid(errors));
        };
        let url_hint = format!(
            "{}://{}/…",
            url.scheme(),
            url.host_str().unwrap_or_default()
        );
        let txn = crate::store::begin_write(&self.db).await?;
        crate::tenancy::ensure_tenant_exists(&txn, tenant).await?;
        let url_secret_id = self.vault.store(&txn, tenant, url.as_str()).await?;
        let secret_id = match &input.secret {
            Some(secret) => Some(self.vault.store(&txn, tenant, secret).await?),
            None => None,
        };
        let row = alert_channel::ActiveModel {
            id: Set(AlertChannelId::generate()),
            tenant_id: Set(tenant.clone()),
            name: Set(name),
            kind: Set(input.kind.as_str().into()),
            url_secret_id: Set(url_secret_id),
            secret_id: Set(secret_id),
            url_hint: Set(url_hint),
            language: Set(language_code(input.language).into()),
            created_at: Set(self.clock.now()),
        }
        .insert(&txn)
        .await?;
        audit::record(&txn, actor, Entry {
            tenant_id: Some(tenant),
            action: "alert_channel.create",
            resource_type: "alert_channel",
            resource_id: row.id.as_str(),
            details: serde_json::json!({"name": row.name, "kind": row.kind, "url": row.url_hint, "signed": row.secret_id.is_some()}),
        })
        .await?;
        txn.commit().await?;
        Ok(view(row))
    }

    pub async fn list(&self, tenant: &TenantId) -> Result<Vec<ChannelView>> {
        Ok(alert_channel::Entity::find_in_tenant(tenant)
            .order_by_asc(alert_channel::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(view)
            .collect())
    }

    async fn find(&self, tenant: &TenantId, id: &str) -> Result<alert_channel::Model> {
        crate::store::find_owned::<alert_channel::Entity>(&self.db, tenant, id).await
    }

    /// Sends one message to a channel now and reports what the platform answered.
    pub async fn send(
        &self,
        tenant: &TenantId,
        row: &alert_channel::Model,
        message: &Message,
    ) -> Result<Outcome> {
        let kind = ChannelKind::parse(&row.kind)
            .ok_or_else(|| Error::Internal(anyhow::anyhow!("unknown channel kind {}", row.kind)))?;
        let language = if row.language == "zh-Hans" {
            Language::SimplifiedChinese
        } else {
            Language::English
        };
        let url = self
            .vault
            .load(&self.db, tenant, &row.url_secret_id)
            .await?;
        let secret = match &row.secret_id {
            Some(id) => Some(self.vault.load(&self.db, tenant, id).await?),
            None => None,
        };
        let destination = Destination {
            kind,
            url: url.expose(),
            secret: secret.as_ref().map(|s| s.expose()),
        };
        Ok(sender::send(&self.http, &destination, message.body(kind, language)).await)
    }

    /// `POST /v1/alert-channels/{id}/test`: a test message, sent once, and the answer.
    pub async fn test(&self, actor: &Actor, tenant: &TenantId, id: &str) -> Result<TestReport> {
        let row = self.find(tenant, id).await?;
        let message = Message {
            kind: Some("test".into()),
            rule: None,
            title: "synchub test message".into(),
            severity: Severity::Info,
            what: format!("{} asked for a test message to {}", actor.name, row.name),
            location: vec![("Tenant".into(), tenant.to_string())],
            since: Some(self.clock.now()),
            count: 1,
            last_error: None,
            link: None,
        };
        let outcome = self.send(tenant, &row, &message).await?;
        let report = match outcome {
            Outcome::Delivered { answer } => TestReport {
                delivered: true,
                outcome: "delivered".into(),
                answer,
            },
            Outcome::Retry { reason, .. } => TestReport {
                delivered: false,
                outcome: "retry".into(),
                answer: reason,
            },
            Outcome::Failed { reason } => TestReport {
                delivered: false,
                outcome: "failed".into(),
                answer: reason,
            },
        };
        audit::record(&self.db, actor, Entry {
            tenant_id: Some(tenant),
            action: "alert_channel.test",
            resource_type: "alert_channel",
            resource_id: row.id.as_str(),
            details: serde_json::json!({"delivered": report.delivered, "outcome": report.outcome}),
        })
        .await?;
        Ok(report)
    }
}
