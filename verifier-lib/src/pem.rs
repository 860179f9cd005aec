//! The one PEM-or-DER splitter: certificate (or CRL) files arrive as one
//! DER object or as PEM text with one or more blocks.
//!
//! One rule for every caller: input starting with a DER SEQUENCE tag
//! (0x30) is one DER object and is returned as is (the caller's DER parser
//! checks it); anything else must be PEM with at least one block, every
//! block must carry the expected label, and text between blocks is ignored.

/// The label of an X.509 certificate block.
pub const CERTIFICATE: &str = "CERTIFICATE";
/// The label of an X.509 CRL block.
pub const X509_CRL: &str = "X509 CRL";

/// Why bytes are neither DER nor PEM of the expected label.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    #[error("empty input: expected DER or PEM {expected}")]
    Empty { expected: &'static str },
    #[error("neither DER nor PEM: no PEM {expected} block found")]
    NotPem { expected: &'static str },
    #[error("malformed PEM: {source}")]
    Malformed {
        #[source]
        source: ::pem::PemError,
    },
    #[error("PEM block labelled {actual:?}; expected {expected:?}")]
    Label {
        expected: &'static str,
        actual: String,
    },
}

/// The DER certificates in `bytes`: a DER certificate (returned as is) or
/// PEM with one or more `CERTIFICATE` blocks, in order.
pub fn certificates(bytes: &[u8]) -> Result<Vec<Vec<u8>>, PemError> {
    der_or_blocks(bytes, CERTIFICATE)
}

/// The DER objects in `bytes`: one DER object (returned as is) or PEM whose
/// blocks are all labelled `label`, in order.
pub fn der_or_blocks(bytes: &[u8], label: &'static str) -> Result<Vec<Vec<u8>>, PemError> {
    match bytes.first() {
        None => return Err(PemError::Empty { expected: label }),
        Some(0x30) => return Ok(vec![bytes.to_vec()]),
        Some(_) => {}
    }
    let blocks = ::pem::parse_many(bytes).map_err(|source| PemError::Malformed { source })?;
    if blocks.is_empty() {
        return Err(PemError::NotPem { expected: label });
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == label {
                Ok(block.into_contents())
            } else {
                Err(PemError::Label {
                    expected: label,
                    actual: block.tag().to_owned(),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(label: &str, der: &[u8]) -> String {
        ::pem::encode(&::pem::Pem::new(label, der.to_vec()))
    }

    #[test]
    fn several_blocks_come_back_in_order_ignoring_text_between() {
        let text = format!(
            "subject=leaf\n{}issuer: someone\n{}",
            block(CERTIFICATE, &[0x30, 1, 2]),
            block(CERTIFICATE, &[0x30, 3])
        );
        assert_eq!(
            certificates(text.as_bytes()),
            Ok(vec![vec![0x30, 1, 2], vec![0x30, 3]])
        );
    }

    #[test]
    fn der_passes_through_unchanged() {
        let der = [0x30, 0x03, 0x02, 0x01, 0x00];
        assert_eq!(certificates(&der), Ok(vec![der.to_vec()]));
    }

    #[test]
    fn a_block_with_another_label_is_refused_even_among_certificates() {
        let text = format!(
            "{}{}",
            block(CERTIFICATE, &[0x30]),
            block("PRIVATE KEY", &[1])
        );
        assert_eq!(
            certificates(text.as_bytes()),
            Err(PemError::Label {
                expected: CERTIFICATE,
                actual: "PRIVATE KEY".to_owned()
            })
        );
        assert_eq!(
            der_or_blocks(block(CERTIFICATE, &[0x30]).as_bytes(), X509_CRL),
            Err(PemError::Label {
                expected: X509_CRL,
                actual: CERTIFICATE.to_owned()
            })
        );
        assert_eq!(
            der_or_blocks(block(X509_CRL, &[0x30, 9]).as_bytes(), X509_CRL),
            Ok(vec![vec![0x30, 9]])
        );
    }

    #[test]
    fn garbage_and_empty_input_are_refused() {
        assert_eq!(
            certificates(b"just some text"),
            Err(PemError::NotPem {
                expected: CERTIFICATE
            })
        );
        assert_eq!(
            certificates(&[0xff, 0x00, 0x12]),
            Err(PemError::NotPem {
                expected: CERTIFICATE
            })
        );
        assert_eq!(
            certificates(b""),
            Err(PemError::Empty {
                expected: CERTIFICATE
            })
        );
        assert!(matches!(
            certificates(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            Err(PemError::Malformed { .. })
        ));
    }

    #[cfg(feature = "fuzzing")]
    #[test]
    fn the_fuzz_entry_holds_its_invariants_on_a_real_chain() {
        let chain = include_bytes!("../tests/vectors/sevsnp/virtee-sev/milan-v2/cert_chain.pem");
        let certs = certificates(chain).unwrap();
        assert_eq!(certs.len(), 2);
        assert!(certs.iter().all(|der| der.first() == Some(&0x30)));
        crate::fuzzing::pem_certificates(chain);
        crate::fuzzing::pem_certificates(&certs[0]);
        crate::fuzzing::pem_certificates(b"-----BEGIN X-----\nAA==\n-----END X-----\n");
    }
}
