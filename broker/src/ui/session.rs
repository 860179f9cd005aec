//! Dashboard sessions: an operator signs in with an operator token (checked
//! as the `/v1` operator routes check a bearer token) and gets a random
//! session id in an `HttpOnly; SameSite=Strict; Path=/ui` cookie (`Secure`
//! under TLS). Sessions live in memory, expire, and are bounded in number;
//! each carries a CSRF token that every POST must echo in a hidden field.
//! The operator token itself is never stored, logged or put in a URL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};

use crate::config::{Operator, UNAUTHENTICATED};
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "writ_ui_session";
/// The sign-in form's CSRF cookie (double submit, before a session exists).
pub const LOGIN_COOKIE: &str = "writ_ui_login";
/// How long a session lasts after sign-in.
pub const SESSION_TTL_SECS: i64 = 8 * 3600;
/// How long a sign-in form stays valid.
pub const LOGIN_TTL_SECS: i64 = 600;
/// Most sessions held at once; signing in beyond it ends the session that
/// expires first.
pub const MAX_SESSIONS: usize = 256;

/// A signed-in operator's session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub operator: Operator,
    /// The CSRF token every POST of this session must carry.
    pub csrf: String,
    pub expires_at: i64,
}

/// The sessions of one broker (in memory: a restart signs everyone out).
#[derive(Debug)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    max: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions::new(MAX_SESSIONS)
    }
}

/// Why signing in failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignInError {
    #[error("no operator is configured ([operators] tokens); the dashboard is closed")]
    NotConfigured,
    #[error("unknown operator token")]
    UnknownToken,
    #[error("the system RNG failed")]
    Rng,
}

/// 32 random bytes, hex.
pub fn random_id() -> Result<String, SignInError> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| SignInError::Rng)?;
    Ok(hex::encode(b))
}

/// Whether two secrets are equal, in time independent of where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// The operator `token` names, checked as `api::operator::authenticate`
/// checks a bearer token.
pub fn operator_for(st: &AppState, token: &str) -> Result<Operator, SignInError> {
    let ops = &st.config.operators;
    if ops.dangerous_unauthenticated {
        return Ok(Operator {
            name: UNAUTHENTICATED.to_owned(),
        });
    }
    if ops.tokens.is_empty() {
        return Err(SignInError::NotConfigured);
    }
    ops.authenticate(token.trim())
        .ok_or(SignInError::UnknownToken)
}

impl Sessions {
    pub fn new(max: usize) -> Sessions {
        Sessions {
            by_id: Mutex::new(HashMap::new()),
            max: max.max(1),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        match self.by_id.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Start a session for `operator` at `now`; returns its id.
    pub fn create(&self, operator: Operator, now: i64) -> Result<(String, Session), SignInError> {
        let id = random_id()?;
        let session = Session {
            operator,
            csrf: random_id()?,
            expires_at: now.saturating_add(SESSION_TTL_SECS),
        };
        let mut map = self.map();
        map.retain(|_, s| s.expires_at > now);
        while map.len() >= self.max {
            let first = map
                .iter()
                .min_by_key(|(_, s)| s.expires_at)
                .map(|(k, _)| k.clone());
            match first {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
        map.insert(id.clone(), session.clone());
        Ok((id, session))
    }

    /// The live session `id` at `now` (an expired one is dropped).
    pub fn get(&self, id: &str, now: i64) -> Option<Session> {
        let mut map = self.map();
        match map.get(id) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                map.remove(id);
                None
            }
            None => None,
        }
    }

    /// End session `id`.
    pub fn remove(&self, id: &str) {
        self.map().remove(id);
    }

    /// Sessions held (live or not yet swept).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The value of cookie `name` in `headers`.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for the dashboard: `HttpOnly; SameSite=Strict;
/// Path=/ui`, `Secure` when served over TLS; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: i64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path=/ui; Max-Age={max_age}{secure}")
}

/// Whether the broker serves this dashboard over TLS.
pub fn served_over_tls(st: &AppState) -> bool {
    st.config.server.tls_cert.is_some()
}

/// A request from a signed-in operator (extracting it from a request
/// without a live session redirects to the sign-in page).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub id: String,
    pub session: Session,
}

impl SignedIn {
    /// Whether `presented` is this session's CSRF token.
    pub fn csrf_ok(&self, presented: &str) -> bool {
        same_secret(&self.session.csrf, presented)
    }
}

/// Where a request without a live session goes.
#[derive(Debug)]
pub struct SignInRequired;

impl IntoResponse for SignInRequired {
    fn into_response(self) -> Response {
        Redirect::to("/ui/login").into_response()
    }
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = SignInRequired;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Self::Rejection> {
        let sessions = parts
            .extensions
            .get::<Arc<Sessions>>()
            .ok_or(SignInRequired)?;
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(SignInRequired)?;
        let session = sessions.get(id, st.now()).ok_or(SignInRequired)?;
        Ok(SignedIn {
            id: id.to_owned(),
            session,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op() -> Operator {
        Operator { name: "ops".into() }
    }

    #[test]
    fn sessions_expire() {
        let s = Sessions::new(4);
        let (id, session) = s.create(op(), 1000).unwrap();
        assert_eq!(session.expires_at, 1000 + SESSION_TTL_SECS);
        assert_eq!(s.get(&id, 1000 + SESSION_TTL_SECS - 1), Some(session));
        assert_eq!(s.get(&id, 1000 + SESSION_TTL_SECS), None);
        assert!(s.is_empty(), "an expired session is dropped");
    }

    #[test]
    fn sessions_are_bounded_and_ids_random() {
        let s = Sessions::new(2);
        let (a, _) = s.create(op(), 1).unwrap();
        let (b, _) = s.create(op(), 2).unwrap();
        let (c, _) = s.create(op(), 3).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s.get(&a, 4), None, "the first to expire made room");
        assert!(s.get(&b, 4).is_some() && s.get(&c, 4).is_some());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn cookie_attributes() {
        assert_eq!(
            set_cookie(SESSION_COOKIE, "abc", 60, false),
            "writ_ui_session=abc; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=60"
        );
        assert!(set_cookie(SESSION_COOKIE, "abc", 60, true).ends_with("; Secure"));
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "other=1; writ_ui_session=xyz".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("xyz"));
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
    }
}
