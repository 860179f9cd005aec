//! Operator actions: each a confirmation page (GET) and the action (POST,
//! CSRF-checked), taken through `crate::decision::operator`, the same
//! audited decisions as the `/v1` operator API, with the signed-in operator
//! named in the `operator_action` leaf.

use askama::Template;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;
use verifier_lib::token::CTI_LEN;

use super::session::SignedIn;
use super::{html, Layout, UiError};
use crate::decision::operator as decide;
use crate::state::AppState;

/// Longest reason an operator can give.
pub const MAX_REASON: usize = 500;

/// An action form: the session's CSRF token and an optional reason.
#[derive(Debug, Deserialize)]
pub struct ActionForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

impl ActionForm {
    /// The checked reason (`default` when none was given).
    fn reason(&self, who: &SignedIn, default: &str) -> Result<String, UiError> {
        if !who.csrf_ok(&self.csrf) {
            return Err(UiError::Csrf);
        }
        let r = self.reason.trim();
        if r.chars().count() > MAX_REASON {
            return Err(UiError::BadRequest {
                what: "reason",
                reason: format!("at most {MAX_REASON} characters"),
            });
        }
        Ok(if r.is_empty() { default } else { r }.to_owned())
    }
}

#[derive(Template)]
#[template(path = "ui/confirm.html")]
struct Confirm {
    layout: Layout,
    question: String,
    consequence: String,
    action: String,
    button: String,
    back: String,
    with_reason: bool,
}

fn confirm(who: &SignedIn, c: ConfirmText) -> Result<Response, UiError> {
    html(&Confirm {
        layout: Layout::new(c.title, who, c.nav),
        question: c.question,
        consequence: c.consequence,
        action: c.action,
        button: c.button,
        back: c.back,
        with_reason: c.with_reason,
    })
}

struct ConfirmText {
    title: String,
    nav: &'static str,
    question: String,
    consequence: String,
    action: String,
    button: String,
    back: String,
    with_reason: bool,
}

fn host_url(id: &str) -> String {
    format!("/ui/hosts/{}", url_segment(id))
}

/// `s` percent-encoded for one path segment.
pub fn url_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn known_host(st: &AppState, id: &str) -> Result<(), UiError> {
    match st.store.host(id).await? {
        Some(_) => Ok(()),
        None => Err(UiError::NotFound {
            what: "host",
            id: id.to_owned(),
        }),
    }
}

/// `GET /ui/hosts/{id}/revoke`.
pub async fn confirm_revoke_host(
    State(st): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    known_host(&st, &id).await?;
    confirm(
        &who,
        ConfirmText {
            title: format!("Revoke host {id}"),
            nav: "fleet",
            question: format!("Revoke host {id}?"),
            consequence: "The host becomes revoked and every token it was issued (and every token derived from them) is revoked; relying parties see it in the next status list. Its TPM cannot enroll again until it is reinstated.".into(),
            action: format!("{}/revoke", host_url(&id)),
            button: format!("Revoke host {id}"),
            back: host_url(&id),
            with_reason: true,
        },
    )
}

/// `POST /ui/hosts/{id}/revoke`.
pub async fn revoke_host(
    State(st): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    let reason = f.reason(&who, "revoked by operator")?;
    decide::revoke_host(&st, &who.session.operator, &id, &reason).await?;
    Ok(Redirect::to(&host_url(&id)).into_response())
}

/// `GET /ui/hosts/{id}/reinstate`.
pub async fn confirm_reinstate_host(
    State(st): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
) -> Result<Response, UiError> {
    known_host(&st, &id).await?;
    confirm(
        &who,
        ConfirmText {
            title: format!("Reinstate host {id}"),
            nav: "fleet",
            question: format!("Reinstate host {id}?"),
            consequence: "The host goes back to enrolled: it gets no token until it attests again and passes the policy. Tokens revoked with it stay revoked.".into(),
            action: format!("{}/reinstate", host_url(&id)),
            button: format!("Reinstate host {id}"),
            back: host_url(&id),
            with_reason: false,
        },
    )
}

/// `POST /ui/hosts/{id}/reinstate`.
pub async fn reinstate_host(
    State(st): State<AppState>,
    who: SignedIn,
    Path(id): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    f.reason(&who, "")?;
    decide::reinstate_host(&st, &who.session.operator, &id).await?;
    Ok(Redirect::to(&host_url(&id)).into_response())
}

pub(super) fn parse_cti(s: &str) -> Result<Vec<u8>, UiError> {
    hex::decode(s)
        .ok()
        .filter(|b| b.len() == CTI_LEN)
        .ok_or_else(|| UiError::BadRequest {
            what: "token id",
            reason: format!("expected {} hex digits", CTI_LEN * 2),
        })
}

/// `GET /ui/tokens/{cti}/revoke`.
pub async fn confirm_revoke_token(
    State(st): State<AppState>,
    who: SignedIn,
    Path(cti): Path<String>,
) -> Result<Response, UiError> {
    let id = parse_cti(&cti)?;
    let t = st
        .store
        .token_state(&id)
        .await?
        .ok_or_else(|| UiError::NotFound {
            what: "token",
            id: cti.clone(),
        })?;
    confirm(
        &who,
        ConfirmText {
            title: format!("Revoke token {cti}"),
            nav: "tokens",
            question: format!(
                "Revoke token {cti} (workload {} on host {})?",
                t.record.workload, t.record.host_id
            ),
            consequence: "The token and every token derived from it are revoked; relying parties see it in the next status list.".into(),
            action: format!("/ui/tokens/{cti}/revoke"),
            button: "Revoke token".into(),
            back: "/ui/tokens".into(),
            with_reason: true,
        },
    )
}

/// `POST /ui/tokens/{cti}/revoke`.
pub async fn revoke_token(
    State(st): State<AppState>,
    who: SignedIn,
    Path(cti): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    let reason = f.reason(&who, "revoked by operator")?;
    let id = parse_cti(&cti)?;
    decide::revoke_token(&st, &who.session.operator, &id, &reason).await?;
    Ok(Redirect::to("/ui/tokens").into_response())
}

/// `GET /ui/workloads/{name}/revoke`.
pub async fn confirm_revoke_workload(
    who: SignedIn,
    Path(name): Path<String>,
) -> Result<Response, UiError> {
    confirm(
        &who,
        ConfirmText {
            title: format!("Revoke workload {name}"),
            nav: "tokens",
            question: format!("Revoke every token of workload {name}?"),
            consequence: "Every token issued for this workload on any host, and every token derived from them, is revoked. New tokens can still be issued if the policy allows the workload.".into(),
            action: format!("/ui/workloads/{}/revoke", url_segment(&name)),
            button: format!("Revoke workload {name}"),
            back: "/ui/tokens".into(),
            with_reason: true,
        },
    )
}

/// `POST /ui/workloads/{name}/revoke`.
pub async fn revoke_workload(
    State(st): State<AppState>,
    who: SignedIn,
    Path(name): Path<String>,
    Form(f): Form<ActionForm>,
) -> Result<Response, UiError> {
    let reason = f.reason(&who, "workload revoked by operator")?;
    decide::revoke_workload(&st, &who.session.operator, &name, &reason).await?;
    Ok(Redirect::to("/ui/tokens").into_response())
}

#[cfg(test)]
mod tests {
    use super::url_segment;

    #[test]
    fn url_segment_escapes_everything_but_unreserved() {
        assert_eq!(url_segment("host-1.a_b~"), "host-1.a_b~");
        assert_eq!(url_segment("a/b c?"), "a%2Fb%20c%3F");
    }
}
