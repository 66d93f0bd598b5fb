//! Connections: a tenant's account on one connector. Settings are validated against the
//! connector's manifest; credentials and webhook secrets live only in the vault.

mod client_for;
mod fields;
pub mod keeper;
mod model;
mod service;
mod webhook_target;

pub use client_for::{ClientDeps, client_for, load_credentials};
pub use fields::validate as validate_fields;
pub use model::{
    AllowlistView, Authorization, AuthorizationView, ConnectionPatch, ConnectionView,
    CredentialsRotation, EnvironmentKind, NewConnection, Reauthorization,
};
pub use service::{Connections, current_webhook_secret};
pub use webhook_target::{SchemeConfig, Target, Unavailable};
