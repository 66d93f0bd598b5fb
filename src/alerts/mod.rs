//! Ops alerts: channels to the chats ops teams live in (Slack, DingTalk, Feishu/Lark,
//! WeCom, signed webhooks), each message signed and its answer read as the platform
//! documents it.

mod channel;
pub mod message;
pub mod sender;
pub mod signing;

pub use channel::{AlertChannels, ChannelKind, ChannelView, NewChannel, TestReport};
