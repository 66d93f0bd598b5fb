//! Integration tests: the real app over HTTP, on SQLite and on PostgreSQL.
// The tests call the app and their own local servers directly, not through the guard.
#![allow(clippy::disallowed_methods)]

mod helpers;

mod alerting;
mod alerts;
mod allowlist;
mod browser;
mod checks;
mod cli;
mod connect;
mod connections;
mod credentials;
mod dashboards;
mod deployments;
mod durability;
mod flows;
mod idempotency;
mod input;
mod lingxing;
mod lingxing_flows;
mod mabang;
mod ops;
mod outbound;
mod platforms;
mod ratelimit;
mod reauthorize;
mod runtime;
mod scheduler;
mod split;
mod streams;
mod sync;
mod tenancy;
mod versions;
mod webhooks;
