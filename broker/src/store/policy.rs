//! Policy versions (migrations sqlite 0011 and 0013, postgres 0004 and
//! 0006): every imported
//! policy document is a row identified by the SHA-256 of its text; the
//! `active` and `shadow` versions are pointers; each activation leaves a
//! history row. Shadow evaluation records where a candidate's verdict
//! differs from the active policy's ([`ShadowDifference`]).

use serde::Serialize;

/// One stored policy version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyVersion {
    pub id: i64,
    /// SHA-256 of the exact document text, hex.
    pub hash: String,
    /// The document's own `id`.
    pub policy_id: String,
    /// The document text (TOML).
    pub body: String,
    /// Who signed the document: the kid of the operator key (`None`:
    /// imported unsigned).
    pub signer: Option<String>,
    /// The detached COSE_Sign1 signature over `body`, re-checked whenever
    /// a broker that requires signatures loads the version.
    #[serde(skip)]
    pub signature: Option<Vec<u8>>,
    pub created_at: i64,
    /// When it last became the active version.
    pub activated_at: Option<i64>,
}

/// A policy version to import ([`super::StateStore::insert_policy_version`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewPolicyVersion<'a> {
    pub hash: &'a str,
    pub policy_id: &'a str,
    pub body: &'a str,
    pub signer: Option<&'a str>,
    /// Stored with `signer`; a version first imported unsigned gets the
    /// signature of a later signed import of the same text.
    pub signature: Option<&'a [u8]>,
    pub created_at: i64,
}

/// Which pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicySlot {
    /// The version every appraisal is decided under.
    Active,
    /// A candidate every appraisal is also decided under, for the record.
    Shadow,
}

impl PolicySlot {
    /// The slot's name in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicySlot::Active => "active",
            PolicySlot::Shadow => "shadow",
        }
    }
}

/// The version ids the two pointers name (cheap to poll).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PolicyPointers {
    pub active: Option<i64>,
    pub shadow: Option<i64>,
}

/// One activation, newest first in [`super::StateStore::policy_history`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyActivation {
    pub seq: i64,
    pub at: i64,
    pub version_id: i64,
    pub hash: String,
    pub policy_id: String,
    /// The version active before (`None`: the first activation).
    pub previous_hash: Option<String>,
    pub previous_version_id: Option<i64>,
    /// Since when the version had been the shadow candidate when it was
    /// activated (`None`: never evaluated in shadow, so the hosts it
    /// affected are not known).
    pub shadowed_since: Option<i64>,
}

/// An appraisal whose verdict under the shadow policy differs from the
/// verdict under the active one. Recorded, never acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShadowDifference {
    pub host_id: String,
    pub at: i64,
    pub active_hash: String,
    pub shadow_hash: String,
    /// `affirming` or `contraindicated`.
    pub active_verdict: String,
    pub shadow_verdict: String,
    /// JSON arrays of the failures under each policy.
    pub active_failures: String,
    pub shadow_failures: String,
}

/// The most rows a history or difference read returns.
pub const MAX_POLICY_ROWS: u32 = 1000;
