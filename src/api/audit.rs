use actix_web::{HttpResponse, get, web};
use serde::Deserialize;

use super::AppState;
use super::extract::{Auth, Query};
use crate::error::{Error, Result};
use crate::ids::TenantId;
use crate::pagination::PageQuery;
use crate::tenancy::Scope;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Items per page, 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(max_length = 64, pattern = "^[A-Za-z0-9_]*$")]
    pub cursor: Option<String>,
    /// Operator only: a tenant's entries instead of the operator-level ones.
    pub tenant_id: Option<String>,
}

/// The audit log, newest first: who did what, when, to which resource.
#[utoipa::path(params(AuditQuery), responses((status = 200, body = crate::pagination::Page<crate::audit::AuditEntry>), (status = 404, description = "Operator only: no such tenant", body = crate::api::problem::Problem)), tag = "audit", security(("bearer" = [])))]
#[get("/v1/audit")]
pub async fn list(
    state: web::Data<AppState>,
    Auth(principal): Auth,
    Query(query): Query<AuditQuery>,
) -> Result<HttpResponse> {
    principal.require(Scope::Read)?;
    let page = PageQuery {
        limit: query.limit,
        cursor: query.cursor,
    }
    .validate()?;
    let tenant = match (&principal.tenant_id, query.tenant_id) {
        (Some(own), None) => Some(own.clone()),
        (Some(own), Some(asked)) => {
            // A tenant may name itself; any other tenant id is simply not there.
            if TenantId::parse(&asked).as_ref() != Some(own) {
                return Err(Error::NotFound("tenant"));
            }
            Some(own.clone())
        }
        (None, None) => None,
        (None, Some(asked)) => Some(TenantId::parse(&asked).ok_or(Error::NotFound("tenant"))?),
    };
    Ok(HttpResponse::Ok().json(crate::audit::list(&state.db, tenant.as_ref(), &page).await?))
}
