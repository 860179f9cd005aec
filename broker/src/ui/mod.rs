//! The operator dashboard under `/ui`: server-rendered HTML (askama
//! templates in `broker/templates/ui/`), no third-party assets, one small
//! same-origin script that reloads a live page when the audit log grows.
//!
//! Sign-in takes an operator token and opens a server-side session
//! ([`session`]); every POST carries the session's CSRF token; every
//! response carries a strict Content-Security-Policy. Actions (revoke or
//! reinstate a host, revoke a token or a workload) go through a
//! confirmation page and then `crate::decision::operator`, the same audited
//! decisions the `/v1` operator API takes.

mod actions;
mod audit_pages;
pub mod describe;
mod fleet;
mod host;
pub mod line_diff;
mod policy;
pub mod session;
mod sign_in;
#[cfg(test)]
mod tests;
mod tokens;

use std::sync::Arc;

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use crate::decision::DecisionError;
use crate::state::AppState;
use crate::store::StoreError;

pub use session::Sessions;

/// The dashboard's Content-Security-Policy: only same-origin scripts and
/// styles, no framing, forms post only to the broker.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; form-action 'self'";

const STYLESHEET: &str = include_str!("../../templates/ui/static/ui.css");
const LIVE_SCRIPT: &str = include_str!("../../templates/ui/static/live.js");

/// The dashboard's routes, with a fresh session table.
pub fn router() -> Router<AppState> {
    router_with(Arc::new(Sessions::default()))
}

/// The dashboard's routes over `sessions`.
pub fn router_with(sessions: Arc<Sessions>) -> Router<AppState> {
    Router::new()
        .route("/ui", get(fleet::overview))
        .route("/ui/login", get(sign_in::form).post(sign_in::submit))
        .route("/ui/logout", axum::routing::post(sign_in::sign_out))
        .route("/ui/live", get(fleet::live))
        .route("/ui/static/ui.css", get(stylesheet))
        .route("/ui/static/live.js", get(live_script))
        .route("/ui/hosts/{id}", get(host::page))
        .route(
            "/ui/hosts/{id}/revoke",
            get(actions::confirm_revoke_host).post(actions::revoke_host),
        )
        .route(
            "/ui/hosts/{id}/reinstate",
            get(actions::confirm_reinstate_host).post(actions::reinstate_host),
        )
        .route("/ui/tokens", get(tokens::page))
        .route("/ui/tokens/{cti}", get(tokens::show))
        .route(
            "/ui/tokens/{cti}/revoke",
            get(actions::confirm_revoke_token).post(actions::revoke_token),
        )
        .route(
            "/ui/workloads/{name}/revoke",
            get(actions::confirm_revoke_workload).post(actions::revoke_workload),
        )
        .route("/ui/audit", get(audit_pages::list))
        .route("/ui/audit/{index}", get(audit_pages::leaf))
        .route("/ui/policy", get(policy::page))
        .layer(Extension(sessions))
        .layer(axum::middleware::map_response(security_headers))
}

async fn security_headers(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
}

async fn live_script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        LIVE_SCRIPT,
    )
}

/// What every signed-in page shows around its content.
#[derive(Debug, Clone)]
pub struct Layout {
    pub title: String,
    /// The signed-in operator's name.
    pub operator: String,
    /// The session's CSRF token (for the sign-out form and actions).
    pub csrf: String,
    /// Which navigation entry is current.
    pub nav: &'static str,
    /// On live pages: the audit log size the page was rendered at (the
    /// script reloads the page when it grows).
    pub live: Option<u64>,
}

impl Layout {
    pub fn new(title: impl Into<String>, who: &session::SignedIn, nav: &'static str) -> Layout {
        Layout {
            title: title.into(),
            operator: who.session.operator.name.clone(),
            csrf: who.session.csrf.clone(),
            nav,
            live: None,
        }
    }

    /// Mark the page live at the current audit log size.
    pub fn live(mut self, st: &AppState) -> Layout {
        self.live = Some(st.audit.view().tree.len());
        self
    }
}

/// Why a dashboard page could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UiError {
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Decision(#[from] DecisionError),
    #[error("rendering the page: {0}")]
    Render(#[from] askama::Error),
    #[error("no {what} {id}")]
    NotFound { what: &'static str, id: String },
    #[error("{what}: {reason}")]
    BadRequest { what: &'static str, reason: String },
    #[error("the form is stale or was not sent by this dashboard (CSRF check failed); reload the page and try again")]
    Csrf,
    #[error("the status list: {reason}")]
    Status { reason: String },
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage {
    status: u16,
    message: String,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let status = match &self {
            UiError::NotFound { .. } => StatusCode::NOT_FOUND,
            UiError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            UiError::Csrf => StatusCode::FORBIDDEN,
            UiError::Decision(DecisionError::UnknownHost { .. }) => StatusCode::NOT_FOUND,
            UiError::Decision(DecisionError::Refused(_)) => StatusCode::CONFLICT,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        let message = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "dashboard page failed");
            "internal error; see the broker log".to_owned()
        } else {
            self.to_string()
        };
        let page = ErrorPage {
            status: status.as_u16(),
            message,
        };
        match page.render() {
            Ok(body) => (status, Html(body)).into_response(),
            Err(_) => status.into_response(),
        }
    }
}

/// Render `t` as an HTML response.
pub fn html<T: Template>(t: &T) -> Result<Response, UiError> {
    Ok(Html(t.render()?).into_response())
}

/// `then` as an age relative to `now`: "12 s ago", "3 min ago", "2 h ago".
pub fn age(now: i64, then: i64) -> String {
    let d = now.saturating_sub(then);
    if d < 0 {
        return "in the future".into();
    }
    match d {
        0..=119 => format!("{d} s ago"),
        120..=7199 => format!("{} min ago", d / 60),
        7200..=172_799 => format!("{} h ago", d / 3600),
        _ => format!("{} days ago", d / 86_400),
    }
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SS UTC`.
pub fn timestamp(t: i64) -> String {
    let fmt =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| d.format(&fmt).ok())
        .unwrap_or_else(|| t.to_string())
}
