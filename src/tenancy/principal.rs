use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::audit::Actor;
use crate::error::{Error, Result};
use crate::ids::{TenantId, TokenId};

/// What a token may do. `admin` implies every other scope; `write` and `deploy` imply `read`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    Deploy,
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Deploy => "deploy",
            Self::Admin => "admin",
        }
    }
}

/// The authenticated caller of one request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub token_id: TokenId,
    pub token_name: String,
    /// None: the operator, who manages tenants but owns no tenant data.
    pub tenant_id: Option<TenantId>,
    pub scopes: BTreeSet<Scope>,
    pub request_id: Option<String>,
}

impl Principal {
    pub fn is_operator(&self) -> bool {
        self.tenant_id.is_none()
    }

    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.contains(&Scope::Admin)
            || self.scopes.contains(&scope)
            || (scope == Scope::Read
                && (self.scopes.contains(&Scope::Write) || self.scopes.contains(&Scope::Deploy)))
    }

    pub fn require(&self, scope: Scope) -> Result<()> {
        if self.has(scope) {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "this token lacks the `{}` scope",
                scope.as_str()
            )))
        }
    }

    /// The tenant whose data this request may touch, after checking the scope.
    pub fn tenant(&self, scope: Scope) -> Result<&TenantId> {
        self.require(scope)?;
        self.tenant_id.as_ref().ok_or_else(|| {
            Error::Forbidden(
                "operator tokens manage tenants and tokens; use a tenant token for tenant data"
                    .into(),
            )
        })
    }

    pub fn require_operator(&self) -> Result<()> {
        if self.is_operator() {
            Ok(())
        } else {
            Err(Error::Forbidden(
                "this action needs the operator token".into(),
            ))
        }
    }

    pub fn actor(&self) -> Actor {
        Actor {
            token_id: Some(self.token_id.clone()),
            tenant_id: self.tenant_id.clone(),
            name: self.token_name.clone(),
            request_id: self.request_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scopes: &[Scope]) -> Principal {
        Principal {
            token_id: TokenId::generate(),
            token_name: "t".into(),
            tenant_id: Some(TenantId::generate()),
            scopes: scopes.iter().copied().collect(),
            request_id: None,
        }
    }

    #[test]
    fn scopes_imply_what_they_should_and_no_more() {
        let reader = principal(&[Scope::Read]);
        assert!(reader.has(Scope::Read));
        assert!(!reader.has(Scope::Write));
        let writer = principal(&[Scope::Write]);
        assert!(writer.has(Scope::Read));
        assert!(!writer.has(Scope::Deploy));
        let admin = principal(&[Scope::Admin]);
        assert!(admin.has(Scope::Deploy) && admin.has(Scope::Write));
    }
}
