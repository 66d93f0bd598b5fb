//! Integration tests: the real app over HTTP, on SQLite and on PostgreSQL.

mod helpers;

mod allowlist;
mod connections;
mod durability;
mod input;
mod ops;
mod tenancy;
mod webhooks;
