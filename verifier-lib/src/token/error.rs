//! Why a token, a key or a key set was not accepted.

/// Every way minting, decoding or verifying a Writ token can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    // ---- CBOR / COSE structure -------------------------------------------
    /// `what` is not well-formed CBOR (or exceeds the nesting limit).
    #[error("{what}: not well-formed CBOR")]
    Cbor { what: &'static str },
    /// Bytes follow the single CBOR item of `what`.
    #[error("{what}: {count} trailing bytes after the CBOR item")]
    TrailingBytes { what: &'static str, count: usize },
    /// The token is not a tagged COSE_Sign1 (tag 18, optionally inside CWT tag 61).
    #[error("token: expected CBOR tag {expected}, found {}", actual.map_or_else(|| "no tag".to_string(), |t| format!("tag {t}")))]
    UnexpectedTag { expected: u64, actual: Option<u64> },
    /// coset rejected the COSE structure `structure`; `reason` is coset's message.
    #[error("{structure}: malformed COSE structure ({reason})")]
    Cose {
        structure: &'static str,
        reason: String,
    },
    /// The COSE_Sign1 has a detached (nil) payload.
    #[error("COSE_Sign1 payload: detached payloads are not accepted")]
    DetachedPayload,

    // ---- protected header ------------------------------------------------
    /// The protected header has no `alg` (1).
    #[error("protected header: alg (1) is missing")]
    AlgorithmMissing,
    /// The protected header's `alg` is not ES256 (-7).
    #[error("protected header: alg {alg} is not allowed (only ES256, -7)")]
    AlgorithmNotAllowed { alg: String },
    /// The protected header lists critical header parameters; Writ understands none.
    #[error(
        "protected header: crit (2) lists {labels:?}; Writ understands no critical parameters"
    )]
    CriticalHeader { labels: Vec<String> },
    /// The unprotected header carries parameters; Writ tokens keep it empty.
    #[error("unprotected header: must be empty, found labels {labels:?}")]
    UnprotectedHeaderNotEmpty { labels: Vec<String> },
    /// The protected header has no `kid` (4).
    #[error("protected header: kid (4) is missing")]
    KidMissing,
    /// The `kid` is not UTF-8 text (Writ kids are RFC 7638 thumbprints).
    #[error("protected header: kid is not UTF-8 (hex {kid_hex})")]
    KidNotUtf8 { kid_hex: String },
    /// No key with this `kid` is in the verifier's key set.
    #[error("kid {kid}: no such key in the key set")]
    UnknownKey { kid: String },
    /// The ES256 signature over the Sig_structure does not verify.
    #[error("COSE_Sign1 signature: does not verify")]
    BadSignature,

    // ---- claims ----------------------------------------------------------
    /// A required claim is absent.
    #[error("claim {claim}: missing")]
    ClaimMissing { claim: &'static str },
    /// A claim has the wrong CBOR type or an out-of-range value.
    #[error("claim {claim}: expected {expected}")]
    ClaimType {
        claim: String,
        expected: &'static str,
    },
    /// A byte-string claim has the wrong length.
    #[error("claim {claim}: expected {expected} bytes, found {actual}")]
    ClaimLength {
        claim: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A map key appears twice (in the claims set or any nested map).
    #[error("claim {claim}: duplicated map key")]
    DuplicateClaim { claim: String },
    /// `eat_profile` is not Writ's profile.
    #[error("claim eat_profile: expected {expected}, found {actual}")]
    ProfileMismatch { expected: String, actual: String },
    /// `iss` is not the expected issuer.
    #[error("claim iss: expected {expected}, found {actual}")]
    IssuerMismatch { expected: String, actual: String },
    /// `aud` is not the expected audience.
    #[error("claim aud: expected {expected}, found {actual}")]
    AudienceMismatch { expected: String, actual: String },
    /// `now` is at or past `exp` + leeway.
    #[error("claim exp: token expired at {exp}, now {now}")]
    Expired { exp: i64, now: i64 },
    /// `now` + leeway is before `nbf`.
    #[error("claim nbf: token not valid before {nbf}, now {now}")]
    NotYetValid { nbf: i64, now: i64 },
    /// `iat` is later than `now` + leeway.
    #[error("claim iat: token issued in the future at {iat}, now {now}")]
    IssuedInFuture { iat: i64, now: i64 },
    /// `exp` is not after `iat`.
    #[error("claim exp: {exp} is not after iat {iat}")]
    ExpiresBeforeIssued { iat: i64, exp: i64 },
    /// `exp` − `iat` exceeds the verifier's maximum lifetime.
    #[error("claims exp/iat: lifetime {actual} s exceeds maximum {max} s")]
    LifetimeTooLong { max: i64, actual: i64 },
    /// The verifier requires a workload digest and the token has none.
    #[error("claim writ.workload-digest: required by the verifier but missing")]
    WorkloadDigestMissing,

    // ---- keys --------------------------------------------------------------
    /// Key material is not a valid P-256 key of the expected form.
    #[error("{what}: key rejected")]
    KeyRejected { what: &'static str },
    /// A COSE_Key or JWK field is missing or has the wrong type/value.
    #[error("{format} field {field}: expected {expected}")]
    KeyField {
        format: &'static str,
        field: &'static str,
        expected: &'static str,
    },
    /// A public-key document carries a private key component.
    #[error("{format}: contains a private key component (field {field})")]
    PrivateKeyComponent {
        format: &'static str,
        field: &'static str,
    },
    /// A key's stated `kid` differs from its RFC 7638 thumbprint.
    #[error("key kid: stated {actual}, but the RFC 7638 thumbprint is {expected}")]
    KidMismatch { expected: String, actual: String },
    /// Two keys in one key set have the same `kid`.
    #[error("key set: kid {kid} appears twice")]
    DuplicateKey { kid: String },
    /// A PEM document is unreadable or has the wrong label.
    #[error("PEM: expected label {expected}, found {actual}")]
    PemLabel {
        expected: &'static str,
        actual: String,
    },
    /// A PEM document could not be parsed at all.
    #[error("PEM: not a PEM document")]
    PemMalformed,

    /// A COSE structure has the wrong content type (header 3).
    #[error("protected header: content type expected {expected}, found {actual:?}")]
    ContentTypeMismatch {
        expected: &'static str,
        actual: Option<String>,
    },
    /// None of the keys a server offers is pinned or endorsed by a pinned key.
    #[error("key set: none of the served keys {served:?} is pinned or endorsed by a pinned key {pinned:?}")]
    NoPinnedKey {
        pinned: Vec<String>,
        served: Vec<String>,
    },
    /// A list of endorsements is longer than accepted.
    #[error("key endorsements: {actual} entries, at most {max} accepted")]
    TooManyEndorsements { max: usize, actual: usize },

    // ---- producing tokens ------------------------------------------------
    /// A cryptographic operation failed inside aws-lc-rs.
    #[error("crypto: {operation} failed")]
    Crypto { operation: &'static str },
    /// Serializing `what` to CBOR failed.
    #[error("{what}: CBOR encoding failed")]
    Encode { what: &'static str },
}
