//! Writ's signed Merkle audit log: leaf encoding, RFC 9162 tree and proofs,
//! C2SP checkpoints, and the whole-log audit behind `writ-broker audit verify`.
//!
//! # Leaves
//!
//! The broker appends one [`Leaf`] per decision. A leaf is encoded as RFC 8949
//! §4.2.1 core deterministic CBOR: definite lengths, shortest integer and
//! length forms, map keys sorted by their encoded bytes (for the text keys
//! used here: shorter key first, then bytewise), no tags, floats or `null`.
//! An absent optional field is an absent key. Digests are byte strings.
//!
//! ```text
//! { "time": int (unix secs), "schema": 1, "decision": { "kind": text, ... } }
//! ```
//!
//! | kind | fields (`?` = optional) |
//! |---|---|
//! | `enrollment` | host: text, accepted: bool, ek_cert_digest?: bytes, ak_name: bytes, reason?: text |
//! | `nonce_issued` | host: text, nonce_digest: bytes |
//! | `appraisal` | host: text, evidence_digest: bytes, policy_id: text, policy_hash: bytes, policy_signer?: text, verdict: "pass"/"fail", failures: [text], warnings?: [text] (non-empty), tpm_clock?, nonce_digest?: bytes |
//! | `token_minted` | cti, sub, aud: text, exp: int, parent_cti?: text, token_digest: bytes |
//! | `token_revoked` | cti: text, reason: text |
//! | `host_revoked` | host: text, reason: text |
//! | `workload_revoked` | workload: text, reason: text |
//! | `request_key_certified` | host: text, key_name: bytes |
//! | `host_state_changed` | host, from, to, reason: text |
//! | `policy_activated` | policy_id: text, policy_hash: bytes |
//! | `operator_action` | who: text, what: text |
//!
//! [`Leaf::decode`] accepts exactly the bytes [`Leaf::encode`] would produce
//! for the decoded value: anything else (trailing bytes, non-canonical
//! forms, unknown or duplicate keys) is an error.
//!
//! # Tree
//!
//! RFC 9162 §2.1: leaf hash SHA-256(0x00 ‖ leaf), node hash
//! SHA-256(0x01 ‖ left ‖ right), empty tree SHA-256(""). The slice functions
//! ([`root`], [`inclusion_proof`], [`consistency_proof`]) hash O(n);
//! [`MerkleTree`] caches every complete subtree so roots and proofs at any
//! size are O(log n).
//!
//! # Checkpoints
//!
//! C2SP tlog-checkpoint bodies (`origin`, decimal size, base64 root, optional
//! extension lines) in C2SP signed notes with Ed25519 keys; see
//! [`checkpoint`](self::checkpoint) for the exact text formats.
//!
//! # Whole-log audit
//!
//! [`verify_log_rows`] takes the broker's rows `(index, leaf bytes, stored
//! leaf hash)`. Storing the leaf hash next to each row lets the audit name
//! the exact row that was edited ([`LogError::LeafHashMismatch`]); a deleted,
//! inserted or reordered row shows up as [`LogError::IndexGap`] at the first
//! position whose index is wrong. An edit that also rewrote the stored hash
//! (or a log without stored hashes, [`verify_log`]) is caught by the
//! checkpoints: [`LogError::CheckpointRootMismatch`] names the first
//! checkpoint whose root differs and the range of leaves between the last
//! matching checkpoint and it, which holds the first altered leaf.

pub mod checkpoint;
mod leaf;
mod log;
mod proof;
mod tree;

pub use self::checkpoint::{
    open_checkpoint, open_checkpoint_with, open_note, open_note_with, sign_checkpoint, Checkpoint,
    CheckpointSigner, VerifierKey,
};
pub use self::leaf::{ClockBaseline, Decision, Leaf, Verdict, LEAF_SCHEMA, MAX_LEAF_LEN};
pub use self::log::{verify_log, verify_log_hashes, verify_log_rows, LogError, LogReport, LogRow};
pub use self::proof::{consistency_proof, inclusion_proof, verify_consistency, verify_inclusion};
pub use self::tree::{empty_root, leaf_hash, node_hash, root, Hash, MerkleTree};

/// Errors from leaf decoding, tree proofs and checkpoint notes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("leaf: {actual} bytes exceeds the {max}-byte limit")]
    LeafTooLarge { max: usize, actual: usize },
    #[error("leaf: not well-formed CBOR")]
    LeafCbor,
    #[error("leaf: {count} trailing bytes after the CBOR item")]
    LeafTrailingBytes { count: usize },
    #[error("leaf: encoding is not deterministic CBOR (RFC 8949 §4.2.1)")]
    LeafNotCanonical,
    #[error("leaf: field {field} must be {expected}")]
    LeafField {
        field: &'static str,
        expected: &'static str,
    },
    #[error("leaf: missing field {field}")]
    LeafMissingField { field: &'static str },
    #[error("leaf: unknown field {key:?} in {context}")]
    LeafUnknownField { context: &'static str, key: String },
    #[error("leaf: duplicate key {key:?}")]
    LeafDuplicateKey { key: String },
    #[error("leaf: schema {actual}, expected {expected}")]
    LeafSchema { expected: u32, actual: i64 },
    #[error("leaf: unknown decision kind {kind:?}")]
    LeafUnknownKind { kind: String },
    #[error("tree: leaf index {index} is not below tree size {size}")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("tree: size {size} exceeds the {available} leaves available")]
    SizeBeyondTree { size: u64, available: u64 },
    #[error("tree: old size {old} is larger than new size {new}")]
    OldSizeLarger { old: u64, new: u64 },
    #[error("proof: {actual} hashes, expected {expected}")]
    ProofLength { expected: usize, actual: usize },
    #[error("proof: computed root {computed}, expected {expected}")]
    RootMismatch { expected: String, computed: String },
    #[error("note: malformed {field}")]
    NoteMalformed { field: &'static str },
    #[error("note: signature by {key} does not verify")]
    NoteSignatureInvalid { key: String },
    #[error("note: no signature by {key}")]
    NoteNotSignedByKey { key: String },
    #[error("checkpoint: malformed {field} (line {line})")]
    CheckpointMalformed { line: usize, field: &'static str },
    #[error("checkpoint: origin {actual:?}, expected {expected:?}")]
    OriginMismatch { expected: String, actual: String },
    #[error("verifier key: malformed {field}")]
    VerifierKeyMalformed { field: &'static str },
    #[error("verifier key: unsupported algorithm byte {alg:#04x}")]
    VerifierKeyAlgorithm { alg: u8 },
    #[error("verifier key: key hash {actual}, computed {expected}")]
    VerifierKeyHashMismatch { expected: String, actual: String },
    #[error("signing key: rejected or could not be generated")]
    SigningKey,
}
