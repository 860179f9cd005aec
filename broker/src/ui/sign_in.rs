//! Signing in and out of the dashboard.

use std::sync::Arc;

use askama::Template;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{AppendHeaders, Html, IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::Deserialize;

use super::session::{
    self, cookie, random_id, same_secret, set_cookie, Sessions, SignedIn, LOGIN_COOKIE,
    LOGIN_TTL_SECS, SESSION_COOKIE, SESSION_TTL_SECS,
};
use super::UiError;
use crate::state::AppState;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    csrf: String,
    error: Option<String>,
}

/// The sign-in form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    token: String,
    csrf: String,
}

/// A form that carries only the CSRF token.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    pub csrf: String,
}

fn login_page(
    st: &AppState,
    status: StatusCode,
    error: Option<String>,
) -> Result<Response, UiError> {
    let csrf = random_id().map_err(|e| UiError::BadRequest {
        what: "sign-in",
        reason: e.to_string(),
    })?;
    let body = LoginPage {
        csrf: csrf.clone(),
        error,
    }
    .render()?;
    let tls = session::served_over_tls(st);
    Ok((
        status,
        [(
            header::SET_COOKIE,
            set_cookie(LOGIN_COOKIE, &csrf, LOGIN_TTL_SECS, tls),
        )],
        Html(body),
    )
        .into_response())
}

/// `GET /ui/login`.
pub async fn form(State(st): State<AppState>) -> Result<Response, UiError> {
    login_page(&st, StatusCode::OK, None)
}

/// `POST /ui/login`: check the form's CSRF token against its cookie and the
/// operator token as the operator API does, then open a session.
pub async fn submit(
    State(st): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Result<Response, UiError> {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(expected, &f.csrf) {
        return login_page(
            &st,
            StatusCode::FORBIDDEN,
            Some("The sign-in form expired or was not sent by this dashboard; try again.".into()),
        );
    }
    let operator = match session::operator_for(&st, &f.token) {
        Ok(op) => op,
        Err(e) => {
            tracing::warn!(error = %e, "dashboard sign-in refused");
            return login_page(
                &st,
                StatusCode::UNAUTHORIZED,
                Some(format!("Sign-in refused: {e}.")),
            );
        }
    };
    let (id, s) = sessions
        .create(operator, st.now())
        .map_err(|e| UiError::BadRequest {
            what: "sign-in",
            reason: e.to_string(),
        })?;
    tracing::info!(operator = %s.operator.name, "dashboard sign-in");
    let tls = session::served_over_tls(&st);
    Ok((
        AppendHeaders([
            (
                header::SET_COOKIE,
                set_cookie(SESSION_COOKIE, &id, SESSION_TTL_SECS, tls),
            ),
            (header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", 0, tls)),
        ]),
        Redirect::to("/ui"),
    )
        .into_response())
}

/// `POST /ui/logout`: end the session.
pub async fn sign_out(
    State(st): State<AppState>,
    Extension(sessions): Extension<Arc<Sessions>>,
    who: SignedIn,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    if !who.csrf_ok(&f.csrf) {
        return Err(UiError::Csrf);
    }
    sessions.remove(&who.id);
    tracing::info!(operator = %who.session.operator.name, "dashboard sign-out");
    Ok((
        [(
            header::SET_COOKIE,
            set_cookie(SESSION_COOKIE, "", 0, session::served_over_tls(&st)),
        )],
        Redirect::to("/ui/login"),
    )
        .into_response())
}
