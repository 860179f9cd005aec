//! Binding of a token request to the TPM quote that backs it.
//!
//! A token request carries a fresh quote whose `extraData` is
//! `SHA-256(nonce ‖ canonical request)`, so every token is backed by evidence
//! taken for that very request. The canonical request encoding is defined
//! here, once, for the attester (which computes it) and the broker (which
//! checks it).

use crate::crypto::HashAlg;

/// Domain-separation label of the canonical encoding (version 1).
pub const LABEL: &[u8] = b"writ-token-request/v1";

/// The fields of a token request that the quote commits to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequestBinding<'a> {
    pub host_id: &'a str,
    pub workload: &'a str,
    /// SHA-256 of the workload executable.
    pub workload_digest: &'a [u8],
    /// The workload's `cnf` COSE_Key bytes, when the token is key-bound.
    pub cnf_key: Option<&'a [u8]>,
}

impl TokenRequestBinding<'_> {
    /// Canonical encoding: the label, then each field as a big-endian u32
    /// length followed by its bytes (an absent `cnf` is a zero-length field
    /// preceded by a 0 presence byte; a present one by 1). Unambiguous for
    /// any field contents.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(LABEL.len() + 64 + self.host_id.len() + self.workload.len());
        out.extend_from_slice(LABEL);
        for field in [
            self.host_id.as_bytes(),
            self.workload.as_bytes(),
            self.workload_digest,
        ] {
            push_field(&mut out, field);
        }
        match self.cnf_key {
            None => out.push(0),
            Some(k) => {
                out.push(1);
                push_field(&mut out, k);
            }
        }
        out
    }

    /// The quote `extraData` this request must carry: SHA-256(nonce ‖ canonical request).
    pub fn quote_nonce(&self, nonce: &[u8]) -> Vec<u8> {
        HashAlg::Sha256.digest_parts([nonce, self.canonical_bytes().as_slice()])
    }

    /// The SEV-SNP REPORT_DATA this request must carry:
    /// SHA-512(nonce ‖ canonical request), all 64 bytes.
    pub fn snp_report_data(&self, nonce: &[u8]) -> [u8; 64] {
        crate::snp::expected_report_data(nonce, &self.canonical_bytes())
    }
}

fn push_field(out: &mut Vec<u8>, field: &[u8]) {
    // Fields longer than u32::MAX cannot occur in practice (request bodies
    // are size-limited); saturate rather than truncate silently.
    let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_unambiguous() {
        let a = TokenRequestBinding {
            host_id: "ab",
            workload: "c",
            workload_digest: &[1; 32],
            cnf_key: None,
        };
        let b = TokenRequestBinding {
            host_id: "a",
            workload: "bc",
            workload_digest: &[1; 32],
            cnf_key: None,
        };
        assert_ne!(a.canonical_bytes(), b.canonical_bytes());
        let c = TokenRequestBinding {
            cnf_key: Some(&[]),
            ..a.clone()
        };
        assert_ne!(a.canonical_bytes(), c.canonical_bytes());
        assert_eq!(a.quote_nonce(b"n").len(), 32);
        assert_ne!(a.quote_nonce(b"n"), a.quote_nonce(b"m"));
    }
}
