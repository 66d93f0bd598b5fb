//! Ops alerts: events from the rest of the product, rules that group and throttle them into
//! alerts, and a delivery outbox to the chats ops teams live in (Slack, DingTalk,
//! Feishu/Lark, WeCom, signed webhooks), each message signed and its answer read as the
//! platform documents it.

mod alerter;
mod channel;
pub mod events;
pub mod message;
pub mod rules;
pub mod sender;
pub mod views;

pub use alerter::{Alerter, DELIVERY_OUTCOMES, MAX_ATTEMPTS};
pub use channel::{AlertChannels, ChannelKind, ChannelView, NewChannel, TestReport};
pub use rules::{NewRule, QuietHours, RuleView, Threshold};
pub use views::{AlertView, DeliveryView};
