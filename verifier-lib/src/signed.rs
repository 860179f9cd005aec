//! ES256 COSE_Sign1 documents other than tokens (status lists, proofs of
//! possession): the same envelope rules as tokens (tag 18, protected header
//! with `alg` ES256, no `crit`, empty unprotected header), plus a mandatory
//! text content type (3) so that one kind of document can never be mistaken
//! for another — a status list is not a token, a proof is not a status list.
//! Documents with a registered media type of their own (the Token Status
//! List CWT) carry the COSE `typ` header (16) instead of a content type
//! ([`seal_typed`], [`open_typed`]).

use coset::iana;
use coset::{
    CoseSign1Builder, HeaderBuilder, RegisteredLabel, RegisteredLabelWithPrivate,
    TaggedCborSerializable,
};

use crate::token::envelope;
use crate::token::{SigningKey, TokenError, VerifyingKey};

/// Sign `payload` as a tagged COSE_Sign1 with protected header
/// `{1: -7, 3: content_type}` (plus `4: kid` when `with_kid`).
pub(crate) fn seal(
    payload: Vec<u8>,
    key: &SigningKey,
    content_type: &str,
    with_kid: bool,
) -> Result<Vec<u8>, TokenError> {
    let h = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .content_type(content_type.to_owned());
    seal_with(payload, key, h, with_kid)
}

/// COSE header label of `typ` (RFC 9596).
pub(crate) const TYP_LABEL: i64 = 16;

/// Sign `payload` as a tagged COSE_Sign1 with protected header
/// `{1: -7, 4: kid, 16: typ}` (no content type).
pub(crate) fn seal_typed(
    payload: Vec<u8>,
    key: &SigningKey,
    typ: &str,
) -> Result<Vec<u8>, TokenError> {
    let h = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .value(TYP_LABEL, ciborium::value::Value::Text(typ.to_owned()));
    seal_with(payload, key, h, true)
}

fn seal_with(
    payload: Vec<u8>,
    key: &SigningKey,
    mut h: HeaderBuilder,
    with_kid: bool,
) -> Result<Vec<u8>, TokenError> {
    if with_kid {
        h = h.key_id(key.kid().into_bytes());
    }
    CoseSign1Builder::new()
        .protected(h.build())
        .payload(payload)
        .try_create_signature(b"", |tbs| key.sign(tbs))?
        .build()
        .to_tagged_vec()
        .map_err(|_| TokenError::Encode { what: "COSE_Sign1" })
}

/// A structurally valid document whose signature is not yet checked.
pub(crate) struct Opened<'a> {
    pub(crate) kid: Option<String>,
    pub(crate) payload: &'a [u8],
    tbs: Vec<u8>,
    signature: &'a [u8],
}

impl Opened<'_> {
    /// Check the ES256 signature with `key`.
    pub(crate) fn verify_with(&self, key: &VerifyingKey) -> Result<(), TokenError> {
        key.verify(&self.tbs, self.signature)
    }
}

/// Why a document's envelope was refused (beyond [`TokenError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpenError {
    Envelope(TokenError),
    ContentType {
        expected: &'static str,
        actual: Option<String>,
    },
}

/// Parse the envelope and check the header rules and the content type.
pub(crate) fn open<'a>(
    bytes: &'a [u8],
    content_type: &'static str,
) -> Result<Opened<'a>, OpenError> {
    let (opened, marks) = open_marked(bytes).map_err(OpenError::Envelope)?;
    if marks.content_type.as_deref() != Some(content_type) {
        return Err(OpenError::ContentType {
            expected: content_type,
            actual: marks.content_type,
        });
    }
    Ok(opened)
}

/// What a document's protected header says it is.
pub(crate) struct Marks {
    pub(crate) content_type: Option<String>,
    /// `typ` (16), when it is text.
    pub(crate) typ: Option<String>,
}

/// Parse the envelope and check the header rules; the caller checks the
/// returned `typ` / content type.
pub(crate) fn open_typed(bytes: &[u8]) -> Result<(Opened<'_>, Marks), TokenError> {
    open_marked(bytes)
}

fn open_marked(bytes: &[u8]) -> Result<(Opened<'_>, Marks), TokenError> {
    let s = envelope::parse(bytes)?;
    if s.unprotected != coset::Header::default() {
        return Err(TokenError::UnprotectedHeaderNotEmpty {
            labels: vec!["(any)".into()],
        });
    }
    let h = &s.protected;
    if !h.crit.is_empty() {
        return Err(TokenError::CriticalHeader {
            labels: vec!["(any)".into()],
        });
    }
    match &h.alg {
        Some(RegisteredLabelWithPrivate::Assigned(iana::Algorithm::ES256)) => {}
        None => return Err(TokenError::AlgorithmMissing),
        Some(other) => {
            return Err(TokenError::AlgorithmNotAllowed {
                alg: format!("{other:?}"),
            })
        }
    }
    let content_type = match &h.content_type {
        Some(RegisteredLabel::Text(t)) => Some(t.clone()),
        Some(RegisteredLabel::Assigned(a)) => Some(format!("{a:?}")),
        None => None,
    };
    let typ = h
        .rest
        .iter()
        .find_map(|(label, value)| match (label, value) {
            (coset::Label::Int(TYP_LABEL), ciborium::value::Value::Text(t)) => Some(t.clone()),
            _ => None,
        });
    let kid = if h.key_id.is_empty() {
        None
    } else {
        Some(
            String::from_utf8(h.key_id.clone()).map_err(|_| TokenError::KidNotUtf8 {
                kid_hex: hex::encode(&h.key_id),
            })?,
        )
    };
    let payload = s.payload.ok_or(TokenError::DetachedPayload)?;
    Ok((
        Opened {
            kid,
            payload,
            tbs: envelope::sig_structure(s.protected_bytes, payload),
            signature: s.signature,
        },
        Marks { content_type, typ },
    ))
}
