//! synchub: keeps sellers' marketplaces and ERPs in sync.
//!
//! One folder per capability: `tenancy` (tenants, tokens), `vault` (secrets), `connectors`
//! (manifests, versions, client, checks), `connections`, `webhooks` (ingress), `flows`,
//! `sync` (the engine), `runtime` (workers), `scheduler`, `ratelimit`, `deploy`
//! (deployments), `netpolicy` (allowlists, proxies, outbound guard), `audit`, `store`
//! (database), `alerts` (ops chats), `signing` (every signature). `api` is the only place that
//! knows HTTP. ARCHITECTURE.md says which way they depend. The dev tools (`sim`, the platform
//! simulator; `bench`; `demo`) are behind the default feature `dev-tools`, which production
//! builds leave out (`--no-default-features`).

pub mod alerts;
pub mod api;
pub mod audit;
#[cfg(feature = "dev-tools")]
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connect;
pub mod connections;
pub mod connectors;
#[cfg(feature = "dev-tools")]
pub mod demo;
pub mod deploy;
pub mod error;
pub mod flows;
pub mod idempotency;
pub mod ids;
pub mod netpolicy;
pub mod pagination;
pub mod random;
pub mod ratelimit;
pub mod runs;
pub mod runtime;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod signing;
#[cfg(feature = "dev-tools")]
pub mod sim;
pub mod startup;
pub mod store;
pub mod sync;
pub mod telemetry;
pub mod tenancy;
pub mod timezone;
pub mod vault;
pub mod webhooks;

/// One TLS backend (ring) for every client in the process; call before building any client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
