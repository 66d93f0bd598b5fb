//! sea-orm entities, one per table. Tenant scoping lives here: each tenant-owned entity has a
//! `find_in_tenant` constructor, and handlers never build an unscoped query.

pub mod alert;
pub mod alert_channel;
pub mod alert_delivery;
pub mod alert_event;
pub mod alert_rule;
pub mod api_token;
pub mod audit_event;
pub mod connection;
pub mod connector_version;
pub mod deployment;
pub mod deployment_event;
pub mod deployment_target;
pub mod flow;
pub mod idempotency_key;
pub mod record;
pub mod run;
pub mod tenant;
pub mod vault_secret;
pub mod webhook_event;
