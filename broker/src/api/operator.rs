//! The operator routes' middleware: authenticates `Authorization: Bearer`
//! against `[operators]` (see `crate::config::OperatorsConfig`).

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::middleware::Next;
use axum::response::Response;

use super::ApiError;
use crate::config::{Operator, UNAUTHENTICATED};
use crate::state::AppState;

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    ApiError::new(axum::http::StatusCode::UNAUTHORIZED, code, message)
}

/// Middleware of the operator routes.
pub async fn require(
    State(st): State<AppState>,
    mut req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let operator = authenticate(&st, req.headers())?;
    req.extensions_mut().insert(operator);
    Ok(next.run(req).await)
}

/// The operator presenting `Authorization: Bearer` in `headers` (anyone
/// under `operators.dangerous_unauthenticated`), or why not.
pub fn authenticate(st: &AppState, headers: &HeaderMap) -> Result<Operator, ApiError> {
    let ops = &st.config.operators;
    if ops.dangerous_unauthenticated {
        return Ok(Operator {
            name: UNAUTHENTICATED.to_owned(),
        });
    }
    if ops.tokens.is_empty() {
        return Err(unauthorized(
            "operator_auth_not_configured",
            "no operator is configured ([operators] tokens); operator endpoints are closed",
        ));
    }
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .ok_or_else(|| {
            unauthorized(
                "operator_unauthorized",
                "Authorization: Bearer <operator token> required",
            )
        })?;
    ops.authenticate(presented)
        .ok_or_else(|| unauthorized("operator_unauthorized", "unknown operator token"))
}
