//! The tokens page: recent execution tokens, active and revoked, as a
//! lineage tree (a derived token under its parent), and their workloads.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use super::actions::url_segment;
use super::session::SignedIn;
use super::{html, timestamp, Layout, UiError};
use crate::state::AppState;
use crate::store::TokenState;

/// Most tokens the tokens page lists.
pub const PAGE_TOKENS: u32 = 500;

/// A token as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub cti: String,
    pub host: String,
    pub host_href: String,
    pub workload: String,
    pub issued: String,
    pub expires: String,
    /// `active`, `expired` or `revoked`.
    pub state: &'static str,
    pub parent: Option<String>,
}

impl TokenRow {
    pub fn of(t: &TokenState, now: i64) -> TokenRow {
        TokenRow {
            cti: hex::encode(&t.record.cti),
            host: t.record.host_id.clone(),
            host_href: format!("/ui/hosts/{}", url_segment(&t.record.host_id)),
            workload: t.record.workload.clone(),
            issued: timestamp(t.record.iat),
            expires: timestamp(t.record.exp),
            state: if t.revoked {
                "revoked"
            } else if t.record.exp <= now {
                "expired"
            } else {
                "active"
            },
            parent: t.parent_cti.as_deref().map(hex::encode),
        }
    }
}

/// One step of writing the lineage tree as nested lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `<ul>`
    Open,
    /// `<li>` and the token
    Start(TokenRow),
    /// `</li>`
    End,
    /// `</ul>`
    Close,
}

/// `tokens` (newest first) as nested lists: each token under its parent
/// when the parent is listed too, roots in the given order.
pub fn lineage(tokens: &[TokenState], now: i64) -> Vec<Step> {
    let rows: Vec<TokenRow> = tokens.iter().map(|t| TokenRow::of(t, now)).collect();
    let listed: HashSet<&str> = rows.iter().map(|r| r.cti.as_str()).collect();
    let mut children: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    let mut roots = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match r.parent.as_deref().filter(|p| listed.contains(p)) {
            Some(p) => children.entry(p).or_default().push(i),
            None => roots.push(i),
        }
    }
    let mut steps = vec![Step::Open];
    let mut seen = BTreeSet::new();
    // Explicit stack: (row, whether its children were written).
    let mut stack: Vec<(usize, bool)> = roots.iter().rev().map(|i| (*i, false)).collect();
    while let Some((i, done)) = stack.pop() {
        if done {
            if children.contains_key(rows[i].cti.as_str()) {
                steps.push(Step::Close);
            }
            steps.push(Step::End);
            continue;
        }
        if !seen.insert(i) {
            continue;
        }
        steps.push(Step::Start(rows[i].clone()));
        stack.push((i, true));
        if let Some(kids) = children.get(rows[i].cti.as_str()) {
            steps.push(Step::Open);
            stack.extend(kids.iter().rev().map(|k| (*k, false)));
        }
    }
    steps.push(Step::Close);
    steps
}

#[derive(Template)]
#[template(path = "ui/tokens.html")]
struct TokensPage {
    layout: Layout,
    total: usize,
    active: usize,
    revoked: usize,
    steps: Vec<Step>,
    /// Workload names and their revocation pages.
    workloads: Vec<(String, String)>,
}

/// `GET /ui/tokens`.
pub async fn page(State(st): State<AppState>, who: SignedIn) -> Result<Response, UiError> {
    let now = st.now();
    let tokens = st.store.recent_tokens(None, PAGE_TOKENS).await?;
    let workloads: BTreeSet<String> = tokens.iter().map(|t| t.record.workload.clone()).collect();
    html(&TokensPage {
        layout: Layout::new("Tokens", &who, "tokens"),
        total: tokens.len(),
        active: tokens
            .iter()
            .filter(|t| !t.revoked && t.record.exp > now)
            .count(),
        revoked: tokens.iter().filter(|t| t.revoked).count(),
        steps: lineage(&tokens, now),
        workloads: workloads
            .into_iter()
            .map(|w| {
                let href = format!("/ui/workloads/{}/revoke", url_segment(&w));
                (w, href)
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TokenRecord;

    fn token(n: u8, parent: Option<u8>, revoked: bool) -> TokenState {
        TokenState {
            record: TokenRecord {
                cti: vec![n; 16],
                host_id: "h".into(),
                workload: "w".into(),
                workload_digest: vec![],
                iat: 10,
                exp: 100,
                policy_id: "p".into(),
                token_digest: vec![],
                status: None,
            },
            parent_cti: parent.map(|p| vec![p; 16]),
            revoked,
        }
    }

    fn shape(steps: &[Step]) -> String {
        steps
            .iter()
            .map(|s| match s {
                Step::Open => "[".to_owned(),
                Step::Close => "]".to_owned(),
                Step::Start(t) => format!(
                    "{}{}",
                    &t.cti[..2],
                    if t.state == "revoked" { "r" } else { "" }
                ),
                Step::End => ".".to_owned(),
            })
            .collect()
    }

    #[test]
    fn lineage_nests_children_under_parents() {
        // Newest first: 3 derived from 1, 4 from 3 (revoked); 9's parent is
        // not listed, so it is a root.
        let tokens = [
            token(4, Some(3), true),
            token(3, Some(1), false),
            token(2, None, false),
            token(1, None, false),
            token(9, Some(8), false),
        ];
        assert_eq!(shape(&lineage(&tokens, 50)), "[02.01[03[04r.].].09.]");
        assert_eq!(TokenRow::of(&tokens[3], 100).state, "expired");
        assert_eq!(shape(&lineage(&[], 50)), "[]");
    }
}
