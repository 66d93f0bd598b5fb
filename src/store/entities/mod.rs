//! sea-orm entities, one per table. Tenant scoping lives here: each tenant-owned entity has a
//! `find_in_tenant` constructor, and handlers never build an unscoped query.

pub mod alert_channel;
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
