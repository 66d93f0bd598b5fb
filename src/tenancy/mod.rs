//! Tenants (seller accounts) and the API tokens that act for them or for the operator.

mod principal;
mod tenants;
mod tokens;

pub use principal::{Principal, Scope};
pub use tenants::{NewTenant, TenantView, create_tenant, ensure_tenant_exists};
pub use tokens::{
    Bootstrap, CreatedToken, LastOperatorToken, NewToken, TokenView, authenticate,
    bootstrap_operator_token, create_operator_token, create_token, list_operator_tokens,
    list_tokens, revoke_operator_token, revoke_token,
};
