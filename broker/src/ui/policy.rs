//! The policy page: the policy in force, its groups and workloads, and its
//! document text when the file on disk is still the active version.

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use verifier_lib::crypto::HashAlg;

use super::session::SignedIn;
use super::{html, Layout, UiError};
use crate::state::AppState;

/// Largest policy document the page shows.
pub const MAX_POLICY_TEXT: u64 = 1 << 20;

#[derive(Template)]
#[template(path = "ui/policy.html")]
struct PolicyPage {
    layout: Layout,
    id: String,
    hash: String,
    groups: Vec<(String, String)>,
    workloads: Vec<(String, usize)>,
    default_lifetime_secs: u32,
    max_lifetime_secs: u32,
    /// The document, when the file still hashes to the active policy.
    text: Option<String>,
}

/// The policy file's text, if it is still exactly the active document.
async fn active_text(path: &std::path::Path, hash: &[u8]) -> Option<String> {
    let meta = tokio::fs::metadata(path).await.ok()?;
    if meta.len() > MAX_POLICY_TEXT {
        return None;
    }
    let bytes = tokio::fs::read(path).await.ok()?;
    (HashAlg::Sha256.digest(&bytes) == hash)
        .then(|| String::from_utf8(bytes).ok())
        .flatten()
}

/// `GET /ui/policy`.
pub async fn page(State(st): State<AppState>, who: SignedIn) -> Result<Response, UiError> {
    let p = st.policy.current();
    let text = active_text(st.policy.path(), &p.hash).await;
    html(&PolicyPage {
        layout: Layout::new("Policy", &who, "policy"),
        id: p.id.clone(),
        hash: p.hash_hex(),
        groups: p
            .groups
            .iter()
            .map(|g| (g.name.clone(), g.hosts.join(", ")))
            .collect(),
        workloads: p
            .workloads
            .iter()
            .map(|w| (w.name.clone(), w.digests.len()))
            .collect(),
        default_lifetime_secs: p.default_lifetime_secs,
        max_lifetime_secs: p.max_lifetime_secs,
        text,
    })
}
