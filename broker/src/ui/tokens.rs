//! The tokens page: execution tokens, newest first, filtered by host,
//! workload and state and paged like `GET /v1/tokens`, as a lineage tree
//! (a derived token under its parent), with their workloads; and one
//! token's page (claims, lineage, revocation, audit leaf).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;

use super::actions::{parse_cti, url_segment};
use super::session::SignedIn;
use super::{html, timestamp, Layout, UiError};
use crate::state::AppState;
use crate::store::token_query::MAX_TOKEN_CHILDREN;
use crate::store::{TokenCursor, TokenLifecycle, TokenState};
use crate::token_filter::{page as one_page, TokenFilter};

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
    pub revocation: String,
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
            state: TokenLifecycle::of(t, now).as_str(),
            parent: t.parent_cti.as_deref().map(hex::encode),
            revocation: match (t.revoked_at, &t.revocation_reason) {
                (Some(at), Some(why)) => format!("{why} at {}", timestamp(at)),
                (Some(at), None) => format!("at {}", timestamp(at)),
                (None, Some(why)) => why.clone(),
                (None, None) => String::new(),
            },
        }
    }
}

/// One step of writing the lineage tree as nested lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// `<ul>`
    Open,
    /// `<li>` and the token
    Start(Box<TokenRow>),
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
        steps.push(Step::Start(Box::new(rows[i].clone())));
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
    /// The filters, as given.
    host: String,
    workload: String,
    state: &'static str,
    /// The next page's query string.
    next: Option<String>,
}

/// `GET /ui/tokens`.
pub async fn page(
    State(st): State<AppState>,
    who: SignedIn,
    RawQuery(q): RawQuery,
) -> Result<Response, UiError> {
    let filter = TokenFilter::parse(q.as_deref()).map_err(|e| UiError::BadRequest {
        what: "token filter",
        reason: e.to_string(),
    })?;
    let now = st.now();
    let rows = st.store.tokens(&filter.query(now)).await?;
    let (tokens, next) = one_page(&filter, rows, TokenCursor::after);
    let workloads: BTreeSet<String> = tokens.iter().map(|t| t.record.workload.clone()).collect();
    html(&TokensPage {
        layout: Layout::new("Tokens", &who, "tokens"),
        total: tokens.len(),
        active: tokens
            .iter()
            .filter(|t| TokenLifecycle::of(t, now) == TokenLifecycle::Active)
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
        host: filter.host.clone().unwrap_or_default(),
        workload: filter.workload.clone().unwrap_or_default(),
        state: filter.state.map_or("", TokenLifecycle::as_str),
        next: next.map(|c| filter.next_page(&c)),
    })
}

#[derive(Template)]
#[template(path = "ui/token.html")]
struct TokenPage {
    layout: Layout,
    token: TokenRow,
    workload_digest: String,
    policy_id: String,
    token_sha256: String,
    status_list: String,
    audit_index: Option<u64>,
    parent: Option<TokenRow>,
    children: Vec<TokenRow>,
    more_children: bool,
}

/// `GET /ui/tokens/{cti}`.
pub async fn show(
    State(st): State<AppState>,
    who: SignedIn,
    Path(cti): Path<String>,
) -> Result<Response, UiError> {
    let id = parse_cti(&cti)?;
    let now = st.now();
    let t = st
        .store
        .token_state(&id)
        .await?
        .ok_or_else(|| UiError::NotFound {
            what: "token",
            id: cti.clone(),
        })?;
    let parent = match &t.parent_cti {
        Some(p) => st.store.token_state(p).await?,
        None => None,
    };
    let mut children = st
        .store
        .token_children(&id, MAX_TOKEN_CHILDREN.saturating_add(1))
        .await?;
    let more_children = children.len() > MAX_TOKEN_CHILDREN as usize;
    children.truncate(MAX_TOKEN_CHILDREN as usize);
    html(&TokenPage {
        layout: Layout::new(format!("Token {cti}"), &who, "tokens"),
        token: TokenRow::of(&t, now),
        workload_digest: if t.record.workload_digest.is_empty() {
            "none".into()
        } else {
            hex::encode(&t.record.workload_digest)
        },
        policy_id: t.record.policy_id.clone(),
        token_sha256: hex::encode(&t.record.token_digest),
        status_list: t.record.status.map_or_else(
            || "none (minted before status lists had indices)".into(),
            |s| format!("epoch {}, index {}", s.epoch, s.idx),
        ),
        audit_index: t.record.audit_index,
        parent: parent.as_ref().map(|p| TokenRow::of(p, now)),
        children: children.iter().map(|c| TokenRow::of(c, now)).collect(),
        more_children,
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
                audit_index: None,
            },
            parent_cti: parent.map(|p| vec![p; 16]),
            revoked,
            revoked_at: None,
            revocation_reason: None,
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
