//! The alerter: a loop that turns new events into alerts and alerts into deliveries, and
//! sends due deliveries. Events are grouped by (rule, key) into one alert, which messages at
//! most once per throttle interval with the count since the last message; a warning during
//! quiet hours waits for their end; each channel is paced to its platform's limit through the
//! shared rate limiter, so a storm slows down instead of being refused and dropped. A
//! delivery is retried with backoff until the platform takes it, or dead after
//! `MAX_ATTEMPTS`, from where it can be replayed.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, NaiveTime, TimeZone, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, DatabaseConnection, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Set,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::channel::{AlertChannels, ChannelKind};
use super::message::{Message, Severity};
use super::rules::QuietHours;
use super::sender::Outcome;
use crate::error::Result;
use crate::ids::{AlertDeliveryId, AlertId};
use crate::ratelimit::{Limit, RateLimiter, Take};
use crate::store::entities::alert_delivery::DeliveryStatus;
use crate::store::entities::{
    alert, alert_channel, alert_delivery, alert_event, alert_rule, tenant,
};

/// Deliveries give up after this many tries (about a day with the backoff's cap).
pub const MAX_ATTEMPTS: i64 = 30;

pub use crate::runtime::Clock;

/// How long an alerter owns the events it took: ample for one evaluation.
const EVENT_CLAIM: chrono::Duration = chrono::Duration::minutes(2);

/// Each platform's documented limit per robot.
fn pace(kind: ChannelKind) -> Limit {
    match kind {
        // 20 messages a minute per robot.
        ChannelKind::Dingtalk | ChannelKind::Wecom => Limit {
            rate: 20.0 / 60.0,
            burst: 20.0,
        },
        // 5 a second and 100 a minute.
        ChannelKind::Feishu => Limit {
            rate: 100.0 / 60.0,
            burst: 5.0,
        },
        // Incoming webhooks: about one a second.
        ChannelKind::Slack => Limit {
            rate: 1.0,
            burst: 1.0,
        },
        ChannelKind::Webhook => Limit {
            rate: 50.0,
            burst: 100.0,
        },
    }
}

/// The end of the quiet hours if `now` is inside them, in the tenant's zone.
fn quiet_until(
    quiet: &QuietHours,
    zone: chrono_tz::Tz,
    now: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let start = NaiveTime::parse_from_str(&quiet.start, "%H:%M").ok()?;
    let end = NaiveTime::parse_from_str(&quiet.end, "%H:%M").ok()?;
    let local = now.with_timezone(&zone);
    let time = local.time();
    let inside = if start <= end {
        start <= time && time < end
    } else {
        time >= start || time < end
    };
    if !inside {
        return None;
    }
    let mut day = local.date_naive();
    if time >= end {
        day = day.succ_opt()?;
    }
    zone.from_local_datetime(&day.and_time(end))
        .earliest()
        .map(|t| t.with_timezone(&Utc))
}

#[derive(Clone)]
pub struct Alerter {
    db: DatabaseConnection,
    channels: AlertChannels,
    limiter: RateLimiter,
    public_url: String,
    clock: Clock,
}

impl Alerter {
    pub fn new(
        db: DatabaseConnection,
        channels: AlertChannels,
        limiter: RateLimiter,
        public_url: String,
    ) -> Self {
        Self {
            db,
            channels,
            limiter,
            public_url,
            clock: Clock::system(),
        }
    }

    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    pub async fn run(self, every: Duration, shutdown: CancellationToken) {
        crate::runtime::repeat("alerter", every, shutdown, || self.tick()).await
    }

    /// Evaluates new events, resolves quiet alerts and sends due deliveries once; returns
    /// (events, deliveries tried).
    pub async fn tick(&self) -> Result<(usize, usize)> {
        let events = self.evaluate().await?;
        self.resolve().await?;
        let sent = self.deliver().await?;
        Ok((events, sent))
    }

    /// An alert with no new event for its rule's window has recovered: it says so, once,
    /// on the rule's channels.
    async fn resolve(&self) -> Result<()> {
        let now = self.clock.now();
        let firing = alert::Entity::find()
            .filter(alert::Column::State.eq("firing"))
            .filter(alert::Column::LastNotifiedAt.is_not_null())
            .all(&self.db)
            .await?;
        for row in firing {
            let Some(rule) = alert_rule::Entity::find_by_id(row.rule_id.clone())
                .one(&self.db)
                .await?
            else {
                continue;
            };
            if now < row.last_at + chrono::Duration::seconds(rule.window_seconds) {
                continue;
            }
            let message = Message {
                kind: Some("recovered".into()),
                rule: Some(rule.name.clone()),
                title: format!("Recovered: {}", rule.name),
                severity: Severity::Info,
                what: format!(
                    "no new event since {}",
                    row.last_at.format("%Y-%m-%d %H:%M:%S UTC")
                ),
                location: vec![("Tenant".to_string(), rule.tenant_id.to_string())],
                since: Some(row.first_at),
                count: row.count.max(1) as u64,
                last_error: Some(row.last_message.clone()),
                link: None,
            };
            let mut resolved: alert::ActiveModel = row.clone().into();
            resolved.state = Set("resolved".into());
            self.queue(&rule, &row, &message, None, now, resolved)
                .await?;
        }
        Ok(())
    }

    /// Queues `message` to each of the rule's channels (held until `hold` if given) and
    /// saves the alert's new state, in one transaction.
    async fn queue(
        &self,
        rule: &alert_rule::Model,
        row: &alert::Model,
        message: &Message,
        hold: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        update: alert::ActiveModel,
    ) -> Result<()> {
        let channels: Vec<String> =
            serde_json::from_value(rule.channels.clone()).unwrap_or_default();
        let txn = crate::store::begin_write(&self.db).await?;
        for channel in channels {
            let Some(channel_id) = crate::ids::AlertChannelId::parse(&channel) else {
                continue;
            };
            alert_delivery::ActiveModel {
                id: Set(AlertDeliveryId::generate()),
                tenant_id: Set(rule.tenant_id.clone()),
                alert_id: Set(row.id.clone()),
                channel_id: Set(channel_id),
                message: Set(serde_json::to_value(message).unwrap_or_default()),
                status: Set(DeliveryStatus::Pending),
                attempts: Set(0),
                next_attempt_at: Set(hold.unwrap_or(now)),
                last_answer: Set(hold.map(|until| format!("held for quiet hours until {until}"))),
                created_at: Set(now),
                delivered_at: Set(None),
            }
            .insert(&txn)
            .await?;
        }
        update.update(&txn).await?;
        txn.commit().await?;
        Ok(())
    }

    async fn evaluate(&self) -> Result<usize> {
        let now = self.clock.now();
        let free = || {
            sea_orm::Condition::any()
                .add(alert_event::Column::ClaimedUntil.is_null())
                .add(alert_event::Column::ClaimedUntil.lt(now))
        };
        // A read first: on SQLite every write takes the one write lock, and most ticks find
        // nothing new.
        let any = alert_event::Entity::find()
            .filter(alert_event::Column::Processed.eq(false))
            .filter(free())
            .one(&self.db)
            .await?;
        if any.is_none() {
            return Ok(0);
        }
        // One statement picks and claims the batch, re-checking each row, so two alerters
        // (two worker processes) never count an event twice. Claimed, not done: an alerter
        // that dies before queueing the messages leaves the events to the next one.
        let pick = alert_event::Entity::find()
            .select_only()
            .column(alert_event::Column::Id)
            .filter(alert_event::Column::Processed.eq(false))
            .filter(free())
            .order_by_asc(alert_event::Column::Id)
            .limit(5_000)
            .into_query();
        let mut events = alert_event::Entity::update_many()
            .col_expr(
                alert_event::Column::ClaimedUntil,
                Some(now + EVENT_CLAIM).into(),
            )
            .filter(alert_event::Column::Id.in_subquery(pick))
            .filter(alert_event::Column::Processed.eq(false))
            .filter(free())
            .exec_with_returning(&self.db)
            .await?;
        events.sort_by(|a, b| a.id.cmp(&b.id));
        if events.is_empty() {
            return Ok(0);
        }
        // (rule, key) -> the new events it matches, newest last.
        let mut groups: BTreeMap<(String, String), Vec<&alert_event::Model>> = BTreeMap::new();
        let mut rules_by_id = BTreeMap::new();
        let tenants: std::collections::BTreeSet<_> =
            events.iter().map(|e| e.tenant_id.clone()).collect();
        for tenant_id in &tenants {
            let rules = alert_rule::Entity::find()
                .filter(alert_rule::Column::TenantId.eq(tenant_id.clone()))
                .all(&self.db)
                .await?;
            for rule in rules {
                let kinds: Vec<String> =
                    serde_json::from_value(rule.kinds.clone()).unwrap_or_default();
                for event in events.iter().filter(|e| &e.tenant_id == tenant_id) {
                    let in_scope = kinds.contains(&event.kind)
                        && rule
                            .connection_id
                            .as_ref()
                            .is_none_or(|c| event.connection_id.as_ref() == Some(c))
                        && rule
                            .flow_id
                            .as_ref()
                            .is_none_or(|f| event.flow_id.as_ref() == Some(f));
                    if in_scope {
                        groups
                            .entry((rule.id.to_string(), event.group_key.clone()))
                            .or_default()
                            .push(event);
                    }
                }
                rules_by_id.insert(rule.id.to_string(), rule);
            }
        }
        for ((rule_id, key), matched) in groups {
            let Some(rule) = rules_by_id.get(&rule_id) else {
                continue;
            };
            self.fire(rule, &key, &matched, now).await?;
        }
        alert_event::Entity::update_many()
            .col_expr(alert_event::Column::Processed, true.into())
            .filter(alert_event::Column::Id.is_in(events.iter().map(|e| e.id.clone())))
            .exec(&self.db)
            .await?;
        Ok(events.len())
    }

    /// Counts the events into the rule's alert for `key` and queues a message when the
    /// threshold is met and the throttle allows.
    async fn fire(
        &self,
        rule: &alert_rule::Model,
        key: &str,
        matched: &[&alert_event::Model],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let Some(last) = matched.last() else {
            return Ok(());
        };
        let window = chrono::Duration::seconds(rule.window_seconds);
        // The events just taken count even if their stamps lag this alerter's clock.
        let in_window = (alert_event::Entity::find()
            .filter(alert_event::Column::TenantId.eq(rule.tenant_id.clone()))
            .filter(alert_event::Column::GroupKey.eq(key))
            .filter(alert_event::Column::At.gte(now - window))
            .count(&self.db)
            .await? as i64)
            .max(matched.len() as i64);
        let existing = alert::Entity::find()
            .filter(alert::Column::RuleId.eq(rule.id.clone()))
            .filter(alert::Column::GroupKey.eq(key))
            .one(&self.db)
            .await?;
        let added = matched.len() as i64;
        let row = match existing {
            Some(row) => {
                let mut active: alert::ActiveModel = row.clone().into();
                active.count = Set(row.count + added);
                active.last_at = Set(now);
                active.last_message = Set(last.message.clone());
                if row.state == "resolved" {
                    active.state = Set("firing".into());
                    active.first_at = Set(now);
                } else if now > row.last_at + window {
                    // A gap longer than the window ends a streak: a condition that must
                    // last (`for_seconds`) starts counting again.
                    active.first_at = Set(now);
                }
                active.update(&self.db).await?
            }
            None => {
                alert::ActiveModel {
                    id: Set(AlertId::generate()),
                    tenant_id: Set(rule.tenant_id.clone()),
                    rule_id: Set(rule.id.clone()),
                    group_key: Set(key.to_string()),
                    state: Set("firing".into()),
                    count: Set(added),
                    notified_count: Set(0),
                    last_message: Set(last.message.clone()),
                    first_at: Set(now),
                    last_at: Set(now),
                    last_notified_at: Set(None),
                }
                .insert(&self.db)
                .await?
            }
        };
        let throttled = row
            .last_notified_at
            .is_some_and(|at| now < at + chrono::Duration::seconds(rule.throttle_seconds));
        let lasted = now - row.first_at >= chrono::Duration::seconds(rule.for_seconds);
        if in_window < rule.threshold_count || !lasted || throttled {
            return Ok(());
        }
        let severity: Severity =
            serde_json::from_value(json!(rule.severity)).unwrap_or(Severity::Warning);
        let zone = tenant::Entity::find_by_id(rule.tenant_id.clone())
            .one(&self.db)
            .await?
            .and_then(|t| crate::timezone::parse_timezone(&t.timezone).ok())
            .unwrap_or(chrono_tz::UTC);
        let hold = match (&rule.quiet_hours, severity) {
            (_, Severity::Critical) | (None, _) => None,
            (Some(quiet), _) => serde_json::from_value::<QuietHours>(quiet.clone())
                .ok()
                .and_then(|q| quiet_until(&q, zone, now)),
        };
        let mut location = vec![("Tenant".to_string(), rule.tenant_id.to_string())];
        if let Some(connection) = &last.connection_id {
            location.push(("Connection".into(), connection.clone()));
        }
        if let Some(flow) = &last.flow_id {
            location.push(("Flow".into(), flow.clone()));
        }
        let link = last
            .flow_id
            .as_ref()
            .map(|f| format!("{}/v1/flows/{f}/runs", self.public_url))
            .or_else(|| {
                last.details["deployment_id"]
                    .as_str()
                    .map(|d| format!("{}/v1/deployments/{d}", self.public_url))
            })
            .or_else(|| {
                last.connection_id
                    .as_ref()
                    .map(|c| format!("{}/v1/connections/{c}", self.public_url))
            });
        let message = Message {
            kind: Some(last.kind.clone()),
            rule: Some(rule.name.clone()),
            title: format!("{} ({})", last.kind, rule.name),
            severity,
            what: last.message.clone(),
            location,
            since: Some(row.first_at),
            count: (row.count - row.notified_count).max(1) as u64,
            last_error: Some(last.message.clone()),
            link,
        };
        let mut notified: alert::ActiveModel = row.clone().into();
        notified.last_notified_at = Set(Some(now));
        notified.notified_count = Set(row.count);
        self.queue(rule, &row, &message, hold, now, notified).await
    }

    /// Sends the due deliveries, each channel paced to its platform's limit.
    async fn deliver(&self) -> Result<usize> {
        let now = self.clock.now();
        let due = alert_delivery::Entity::find()
            .filter(alert_delivery::Column::Status.eq(DeliveryStatus::Pending))
            .filter(alert_delivery::Column::NextAttemptAt.lte(now))
            .order_by_asc(alert_delivery::Column::NextAttemptAt)
            .limit(200)
            .all(&self.db)
            .await?;
        let mut tried = 0;
        for delivery in due {
            // Claimed for a minute before sending, so another alerter leaves it alone; an
            // alerter that dies mid-send leaves it to be tried again after that.
            let claimed = alert_delivery::Entity::update_many()
                .col_expr(
                    alert_delivery::Column::NextAttemptAt,
                    (now + chrono::Duration::seconds(60)).into(),
                )
                .filter(alert_delivery::Column::Id.eq(delivery.id.clone()))
                .filter(alert_delivery::Column::Status.eq(DeliveryStatus::Pending))
                .filter(alert_delivery::Column::NextAttemptAt.lte(now))
                .exec(&self.db)
                .await?;
            if claimed.rows_affected == 0 {
                continue;
            }
            let Some(channel) = alert_channel::Entity::find_by_id(delivery.channel_id.clone())
                .one(&self.db)
                .await?
            else {
                self.finish(
                    &delivery,
                    DeliveryStatus::Dead,
                    "the channel is gone".into(),
                    now,
                )
                .await?;
                continue;
            };
            let kind = ChannelKind::parse(&channel.kind).unwrap_or(ChannelKind::Webhook);
            if let Take::RetryAfter(wait) = self
                .limiter
                .try_take(&format!("alert:{}", channel.id), pace(kind))
                .await?
            {
                let mut later: alert_delivery::ActiveModel = delivery.into();
                later.next_attempt_at =
                    Set(now + chrono::Duration::from_std(wait).unwrap_or_default());
                later.update(&self.db).await?;
                continue;
            }
            let Ok(message) = serde_json::from_value::<Message>(delivery.message.clone()) else {
                self.finish(
                    &delivery,
                    DeliveryStatus::Dead,
                    "the stored message is unreadable".into(),
                    now,
                )
                .await?;
                continue;
            };
            tried += 1;
            match self
                .channels
                .send(&delivery.tenant_id, &channel, &message)
                .await?
            {
                Outcome::Delivered { answer } => {
                    delivery_attempted(kind, "delivered");
                    self.finish(&delivery, DeliveryStatus::Delivered, answer, now)
                        .await?
                }
                Outcome::Failed { reason } => {
                    delivery_attempted(kind, "dead");
                    self.finish(&delivery, DeliveryStatus::Dead, reason, now)
                        .await?
                }
                Outcome::Retry { after, reason } => {
                    let attempts = delivery.attempts + 1;
                    if attempts >= MAX_ATTEMPTS {
                        delivery_attempted(kind, "dead");
                        self.finish(&delivery, DeliveryStatus::Dead, reason, now)
                            .await?;
                        continue;
                    }
                    let backoff = crate::runtime::backoff::backoff(
                        attempts as u32,
                        Duration::from_secs(2),
                        Duration::from_secs(3600),
                    );
                    let wait = after.max(backoff);
                    delivery_attempted(kind, "retrying");
                    let mut later: alert_delivery::ActiveModel = delivery.into();
                    later.attempts = Set(attempts);
                    later.next_attempt_at =
                        Set(now + chrono::Duration::from_std(wait).unwrap_or_default());
                    later.last_answer = Set(Some(reason));
                    later.update(&self.db).await?;
                }
            }
        }
        Ok(tried)
    }

    async fn finish(
        &self,
        delivery: &alert_delivery::Model,
        status: DeliveryStatus,
        answer: String,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let mut done: alert_delivery::ActiveModel = delivery.clone().into();
        done.status = Set(status);
        done.attempts = Set(delivery.attempts + 1);
        done.last_answer = Set(Some(answer.chars().take(1000).collect()));
        if status == DeliveryStatus::Delivered {
            done.delivered_at = Set(Some(now));
        }
        done.update(&self.db).await?;
        Ok(())
    }
}

/// How one attempt to deliver an alert ends: the `outcome` of
/// `synchub_alert_deliveries_total` (start-up sets each to zero).
pub const DELIVERY_OUTCOMES: [&str; 3] = ["delivered", "retrying", "dead"];

/// Counts one attempt to send to a channel of `kind`: one of `DELIVERY_OUTCOMES`.
fn delivery_attempted(kind: ChannelKind, outcome: &'static str) {
    metrics::counter!("synchub_alert_deliveries_total", "channel" => kind.as_str(), "outcome" => outcome)
        .increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_hold_until_their_local_end() {
        let shanghai: chrono_tz::Tz = "Asia/Shanghai".parse().unwrap();
        let night = QuietHours {
            start: "22:00".into(),
            end: "08:00".into(),
        };
        // 23:30 in Shanghai is 15:30 UTC; the hours end at 08:00 local, 00:00 UTC.
        let now: DateTime<Utc> = "2026-11-27T15:30:00Z".parse().unwrap();
        assert_eq!(
            quiet_until(&night, shanghai, now),
            Some("2026-11-28T00:00:00Z".parse().unwrap())
        );
        // 10:00 in Shanghai: not quiet.
        assert_eq!(
            quiet_until(&night, shanghai, "2026-11-27T02:00:00Z".parse().unwrap()),
            None
        );
    }
}
