//! Token lineage: derived tokens are narrower than their parents, and a chain
//! of tokens can be checked link by link ([`verify_lineage`]).
//!
//! Narrowing rules (`docs/token-profile.md`, "Token lineage"):
//! * `sub` and `iss` are the parent's;
//! * `aud` is the parent's or a sub-workload of it (`parent-aud/…`);
//! * `scope`: an empty scope means the workload's full authority; a child of
//!   an unscoped parent may carry any scope, a child of a scoped parent must
//!   carry a non-empty subset of it;
//! * `exp ≤ parent.exp`, `nbf ≥ parent.nbf`;
//! * `lineage = {parent cti, SHA-256(parent token bytes), parent depth + 1}`,
//!   depth ≤ [`MAX_LINEAGE_DEPTH`];
//! * a derived token is key-bound (`cnf` present).

use crate::token::{
    Audience, Claims, Expectations, TokenError, TokenVerifier, VerifiedToken, MAX_LINEAGE_DEPTH,
};

/// Why a derivation or a chain was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LineageError {
    #[error("lineage: empty chain")]
    EmptyChain,
    #[error("lineage: token {index} does not verify: {source}")]
    Token { index: usize, source: TokenError },
    #[error("lineage: the first token of the chain has a lineage claim (it is not a root)")]
    RootHasLineage,
    #[error("lineage: token {index} has no lineage claim")]
    LineageMissing { index: usize },
    #[error("lineage: token {index} names parent {field} {actual}, the parent has {expected}")]
    ParentMismatch {
        index: usize,
        field: &'static str,
        expected: String,
        actual: String,
    },
    #[error("lineage: depth {actual} at token {index}, expected {expected}")]
    DepthMismatch {
        index: usize,
        expected: u8,
        actual: u8,
    },
    #[error("lineage: depth {depth} exceeds the maximum {max}")]
    TooDeep { depth: u16, max: u8 },
    #[error("lineage: child {field} {child} is not within the parent's {parent}")]
    Wider {
        field: &'static str,
        parent: String,
        child: String,
    },
    #[error("lineage: derived tokens must carry a cnf key")]
    CnfMissing,
}

impl LineageError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            LineageError::EmptyChain => "lineage_empty",
            LineageError::Token { .. } => "lineage_token_invalid",
            LineageError::RootHasLineage | LineageError::LineageMissing { .. } => "lineage_broken",
            LineageError::ParentMismatch { .. } | LineageError::DepthMismatch { .. } => {
                "lineage_broken"
            }
            LineageError::TooDeep { .. } => "lineage_too_deep",
            LineageError::Wider { .. } => "lineage_wider_than_parent",
            LineageError::CnfMissing => "lineage_cnf_missing",
        }
    }
}

/// The depth a child of `parent` gets, if allowed.
pub fn child_depth(parent: &Claims) -> Result<u8, LineageError> {
    let depth = u16::from(parent.lineage.as_ref().map_or(0, |l| l.depth)) + 1;
    match u8::try_from(depth) {
        Ok(d) if d <= MAX_LINEAGE_DEPTH => Ok(d),
        _ => Err(LineageError::TooDeep {
            depth,
            max: MAX_LINEAGE_DEPTH,
        }),
    }
}

/// Whether `child_aud` is the parent's audience or a sub-workload of it.
pub fn audience_within(parent_aud: &str, child_aud: &str) -> bool {
    child_aud == parent_aud
        || child_aud
            .strip_prefix(parent_aud)
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('/'))
}

/// Whether `child` scope is within `parent` scope (empty = unrestricted).
pub fn scope_within(parent: &[String], child: &[String]) -> Result<(), LineageError> {
    if parent.is_empty() {
        return Ok(());
    }
    let wider = child.is_empty() || child.iter().any(|c| !parent.contains(c));
    if wider {
        return Err(LineageError::Wider {
            field: "scope",
            parent: format!("{parent:?}"),
            child: if child.is_empty() {
                "(unrestricted)".into()
            } else {
                format!("{child:?}")
            },
        });
    }
    Ok(())
}

/// Check the narrowing rules of `child` against `parent` (everything except
/// the lineage claim itself, which [`check_link`] adds).
pub fn check_narrower(parent: &Claims, child: &Claims) -> Result<(), LineageError> {
    let wider = |field, p: String, c: String| LineageError::Wider {
        field,
        parent: p,
        child: c,
    };
    if child.sub != parent.sub {
        return Err(wider("sub", parent.sub.clone(), child.sub.clone()));
    }
    if child.iss != parent.iss {
        return Err(wider("iss", parent.iss.clone(), child.iss.clone()));
    }
    if !audience_within(&parent.aud, &child.aud) {
        return Err(wider("aud", parent.aud.clone(), child.aud.clone()));
    }
    scope_within(&parent.scope, &child.scope)?;
    if child.exp > parent.exp {
        return Err(wider("exp", parent.exp.to_string(), child.exp.to_string()));
    }
    if child.nbf < parent.nbf {
        return Err(wider("nbf", parent.nbf.to_string(), child.nbf.to_string()));
    }
    if child.offline_ok && !parent.offline_ok {
        return Err(wider("offline_ok", "false".into(), "true".into()));
    }
    if child.cnf.is_none() {
        return Err(LineageError::CnfMissing);
    }
    Ok(())
}

/// Check one link: `child` (at chain position `index`) derives from the
/// verified `parent`.
pub fn check_link(
    parent: &VerifiedToken,
    child: &Claims,
    index: usize,
) -> Result<(), LineageError> {
    let l = child
        .lineage
        .as_ref()
        .ok_or(LineageError::LineageMissing { index })?;
    if l.parent_cti != parent.claims.cti {
        return Err(LineageError::ParentMismatch {
            index,
            field: "cti",
            expected: hex::encode(&parent.claims.cti),
            actual: hex::encode(&l.parent_cti),
        });
    }
    if l.parent_digest != parent.digest {
        return Err(LineageError::ParentMismatch {
            index,
            field: "digest",
            expected: hex::encode(&parent.digest),
            actual: hex::encode(&l.parent_digest),
        });
    }
    let expected = child_depth(&parent.claims)?;
    if l.depth != expected {
        return Err(LineageError::DepthMismatch {
            index,
            expected,
            actual: l.depth,
        });
    }
    check_narrower(&parent.claims, child)
}

/// Verify a chain `[root, child, grandchild, …]` at `now`: every token with
/// `verifier`'s keys and rules (the audience expectation applies to the
/// last token only), the root has no lineage, and every link holds.
/// Returns the verified tokens in chain order.
pub fn verify_lineage(
    chain: &[&[u8]],
    verifier: &TokenVerifier,
    now: i64,
) -> Result<Vec<VerifiedToken>, LineageError> {
    let (last, ancestors) = chain.split_last().ok_or(LineageError::EmptyChain)?;
    let relaxed = TokenVerifier::new(
        verifier.keys().clone(),
        Expectations {
            audience: Audience::Any,
            ..verifier.expectations().clone()
        },
    );
    let mut out: Vec<VerifiedToken> = Vec::with_capacity(chain.len());
    let all = ancestors
        .iter()
        .map(|t| (t, &relaxed))
        .chain([(last, verifier)]);
    for (index, (bytes, v)) in all.enumerate() {
        let token = v
            .verify(bytes, now)
            .map_err(|source| LineageError::Token { index, source })?;
        match out.last() {
            None if token.claims.lineage.is_some() => return Err(LineageError::RootHasLineage),
            None => {}
            Some(parent) => check_link(parent, &token.claims, index)?,
        }
        out.push(token);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{mint, Appraisal, EarStatus, KeySet, Lineage, SigningKey, TrustVector};

    fn root() -> Claims {
        Claims {
            iss: "writ-broker".into(),
            sub: "h".into(),
            aud: "svc".into(),
            exp: 2000,
            nbf: 1000,
            iat: 1000,
            cti: vec![1; 16],
            eat_nonce: None,
            eat_profile: crate::token::PROFILE.into(),
            appraisal: Appraisal {
                status: EarStatus::Affirming,
                trust_vector: TrustVector::default(),
                policy_id: "p".into(),
                verifier_id: "v".into(),
                submods: Default::default(),
            },
            workload_digest: None,
            cnf: Some(SigningKey::generate().unwrap().verifying_key()),
            lineage: None,
            scope: vec![],
            audit_index: None,
            offline_ok: false,
            status: None,
        }
    }

    fn child_of(parent: &Claims, parent_bytes: &[u8], cti: u8, scope: &[&str]) -> Claims {
        let mut c = parent.clone();
        c.cti = vec![cti; 16];
        c.iat = 1100;
        c.nbf = 1100;
        c.exp = 1900;
        c.scope = scope.iter().map(|s| s.to_string()).collect();
        c.lineage = Some(Lineage {
            parent_cti: parent.cti.clone(),
            parent_digest: crate::crypto::HashAlg::Sha256.digest(parent_bytes),
            depth: child_depth(parent).unwrap(),
        });
        c
    }

    fn verifier(k: &SigningKey) -> TokenVerifier {
        TokenVerifier::new(
            KeySet::new(vec![k.verifying_key()]).unwrap(),
            Expectations::any_audience("writ-broker"),
        )
    }

    #[test]
    fn a_narrowing_chain_verifies() {
        let k = SigningKey::generate().unwrap();
        let r = root();
        let rb = mint(&r, &k).unwrap();
        let c = child_of(&r, &rb, 2, &["read", "write"]);
        let cb = mint(&c, &k).unwrap();
        let mut g = child_of(&c, &cb, 3, &["read"]);
        g.aud = "svc/reports".into();
        let gb = mint(&g, &k).unwrap();
        let out = verify_lineage(&[&rb, &cb, &gb], &verifier(&k), 1500).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[2].claims.lineage.as_ref().unwrap().depth, 2);
    }

    #[test]
    fn wider_swapped_or_broken_links_are_refused() {
        let k = SigningKey::generate().unwrap();
        let r = root();
        let rb = mint(&r, &k).unwrap();
        let c = child_of(&r, &rb, 2, &["read"]);
        let cb = mint(&c, &k).unwrap();
        let v = verifier(&k);
        // Wider scope than the parent.
        let g = child_of(&c, &cb, 3, &["read", "admin"]);
        let gb = mint(&g, &k).unwrap();
        let e = verify_lineage(&[&rb, &cb, &gb], &v, 1500).unwrap_err();
        assert!(
            matches!(e, LineageError::Wider { field: "scope", .. }),
            "{e:?}"
        );
        assert_eq!(e.code(), "lineage_wider_than_parent");
        // Unscoped child of a scoped parent is wider too.
        assert!(matches!(
            scope_within(&["read".into()], &[]),
            Err(LineageError::Wider { .. })
        ));
        // Longer-lived than the parent.
        let mut late = child_of(&r, &rb, 4, &[]);
        late.exp = 2100;
        let lb = mint(&late, &k).unwrap();
        assert!(matches!(
            verify_lineage(&[&rb, &lb], &v, 1500),
            Err(LineageError::Wider { field: "exp", .. })
        ));
        // Allowed offline when the parent is not.
        let mut offline = child_of(&r, &rb, 6, &[]);
        offline.offline_ok = true;
        let fb = mint(&offline, &k).unwrap();
        assert!(matches!(
            verify_lineage(&[&rb, &fb], &v, 1500),
            Err(LineageError::Wider {
                field: "offline_ok",
                ..
            })
        ));
        // Another audience.
        let mut other = child_of(&r, &rb, 5, &[]);
        other.aud = "svcx".into();
        let ob = mint(&other, &k).unwrap();
        assert!(matches!(
            verify_lineage(&[&rb, &ob], &v, 1500),
            Err(LineageError::Wider { field: "aud", .. })
        ));
        // A parent swapped for another token with the same cti.
        let mut r2 = r.clone();
        r2.scope = vec!["x".into()];
        let r2b = mint(&r2, &k).unwrap();
        assert!(matches!(
            verify_lineage(&[&r2b, &cb], &v, 1500),
            Err(LineageError::ParentMismatch {
                field: "digest",
                ..
            })
        ));
        // A child presented as a root.
        assert_eq!(
            verify_lineage(&[&cb], &v, 1500),
            Err(LineageError::RootHasLineage)
        );
        assert_eq!(verify_lineage(&[], &v, 1500), Err(LineageError::EmptyChain));
    }

    #[test]
    fn depth_is_bounded() {
        let mut c = root();
        c.lineage = Some(Lineage {
            parent_cti: vec![0; 16],
            parent_digest: vec![0; 32],
            depth: MAX_LINEAGE_DEPTH,
        });
        assert_eq!(
            child_depth(&c),
            Err(LineageError::TooDeep {
                depth: u16::from(MAX_LINEAGE_DEPTH) + 1,
                max: MAX_LINEAGE_DEPTH
            })
        );
        assert!(audience_within("svc", "svc/a"));
        assert!(!audience_within("svc", "svc/"));
        assert!(!audience_within("svc", "svcx"));
    }
}
