//! The COSE_Sign1 envelope (RFC 9052 §4.2), split without copying:
//! `18([protected: bstr, unprotected: map, payload: bstr / nil, signature: bstr])`,
//! optionally inside CWT tag 61. Header maps are parsed by coset.

use coset::{AsCborValue, Header};

use super::cbor::{self, Decoder};
use super::TokenError;

/// COSE_Sign1 tag (RFC 9052).
pub const COSE_SIGN1_TAG: u64 = 18;
/// CWT tag (RFC 8392); accepted around the COSE_Sign1 tag.
pub const CWT_TAG: u64 = 61;

/// A structurally valid COSE_Sign1, borrowing from the token bytes.
pub(crate) struct Sign1<'a> {
    /// The serialized protected header (the bstr contents, as signed).
    pub(crate) protected_bytes: &'a [u8],
    pub(crate) protected: Header,
    pub(crate) unprotected: Header,
    /// `None` for a detached (nil) payload.
    pub(crate) payload: Option<&'a [u8]>,
    pub(crate) signature: &'a [u8],
}

fn malformed(reason: &str) -> TokenError {
    TokenError::Cose {
        structure: "COSE_Sign1",
        reason: reason.to_string(),
    }
}

fn cose_error(structure: &'static str) -> impl Fn(coset::CoseError) -> TokenError {
    move |e| TokenError::Cose {
        structure,
        reason: e.to_string(),
    }
}

/// Parse the envelope; nothing may follow it.
pub(crate) fn parse(token: &[u8]) -> Result<Sign1<'_>, TokenError> {
    let mut d = Decoder::new(token);
    match d.tag() {
        Some(COSE_SIGN1_TAG) => {}
        Some(CWT_TAG) => match d.tag() {
            Some(COSE_SIGN1_TAG) => {}
            actual => {
                return Err(TokenError::UnexpectedTag {
                    expected: COSE_SIGN1_TAG,
                    actual,
                })
            }
        },
        actual => {
            return Err(TokenError::UnexpectedTag {
                expected: COSE_SIGN1_TAG,
                actual,
            })
        }
    }
    if d.array_len() != Some(4) {
        return Err(malformed("expected an array of 4 items"));
    }
    let protected_bytes = d
        .bstr()
        .ok_or_else(|| malformed("protected header is not a byte string"))?;
    let unprotected_value = d
        .value()
        .ok_or_else(|| malformed("unprotected header is not well-formed CBOR"))?;
    let payload = if d.peek() == Some(0xf6) {
        d.value();
        None
    } else {
        Some(
            d.bstr()
                .ok_or_else(|| malformed("payload is neither a byte string nor nil"))?,
        )
    };
    let signature = d
        .bstr()
        .ok_or_else(|| malformed("signature is not a byte string"))?;
    if d.remaining() != 0 {
        return Err(TokenError::TrailingBytes {
            what: "token",
            count: d.remaining(),
        });
    }
    let protected = if protected_bytes.is_empty() {
        Header::default()
    } else {
        Header::from_cbor_value(cbor::read_exact(protected_bytes, "protected header")?)
            .map_err(cose_error("protected header"))?
    };
    let unprotected =
        Header::from_cbor_value(unprotected_value).map_err(cose_error("unprotected header"))?;
    Ok(Sign1 {
        protected_bytes,
        protected,
        unprotected,
        payload,
        signature,
    })
}

/// RFC 9052 §4.4 Sig_structure for COSE_Sign1 with empty external_aad:
/// `["Signature1", protected, h'', payload]`, written directly.
pub(crate) fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + protected.len() + payload.len());
    out.push(0x84); // array(4)
    out.push(0x6a); // text(10)
    out.extend_from_slice(b"Signature1");
    push_bstr(&mut out, protected);
    push_bstr(&mut out, &[]);
    push_bstr(&mut out, payload);
    out
}

fn push_bstr(out: &mut Vec<u8>, b: &[u8]) {
    let len = b.len() as u64; // usize → u64 is lossless on every supported target
                              // Each arm's range makes its narrowing cast exact.
    match len {
        0..=23 => out.push(0x40 | len as u8),
        24..=0xff => out.extend_from_slice(&[0x58, len as u8]),
        0x100..=0xffff => {
            out.push(0x59);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0x5a);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        _ => {
            out.push(0x5b);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    out.extend_from_slice(b);
}
