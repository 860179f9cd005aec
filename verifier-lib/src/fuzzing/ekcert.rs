//! Fuzz entry points for `ekcert`.

use crate::ekcert::{parse_ek_certificate, verify_ek_chain, TrustStore};

/// A fixed verification time (2024-01-01T00:00:00Z): fuzzing never reads the clock.
const FUZZ_NOW: i64 = 1_704_067_200;

/// Parse arbitrary bytes as an EK certificate (PEM or DER with NV padding)
/// and, if that succeeds, run chain building against an empty store (which
/// must fail) and against the bundled manufacturer store.
pub fn ek_cert(data: &[u8]) {
    let Ok(ek) = parse_ek_certificate(data) else {
        return;
    };
    let verified = verify_ek_chain(&ek, &[], &TrustStore::empty(), FUZZ_NOW);
    debug_assert!(verified.is_err());
    let _ = crate::ekcert::check_ek_public(&ek, &ek.public_key);
    // The input doubles as a presented intermediate.
    let _ = verify_ek_chain(&ek, &[data.to_vec()], &TrustStore::empty(), FUZZ_NOW);
}

/// Split arbitrary bytes with the shared PEM rule: DER comes back as is,
/// and accepted PEM re-encodes to blocks that split to the same objects.
pub fn pem_certificates(data: &[u8]) {
    let Ok(certs) = crate::pem::certificates(data) else {
        return;
    };
    if data.first() == Some(&0x30) {
        debug_assert!(certs == [data.to_vec()]);
        return;
    }
    let again: String = certs
        .iter()
        .map(|der| pem::encode(&pem::Pem::new(crate::pem::CERTIFICATE, der.clone())))
        .collect();
    debug_assert!(crate::pem::certificates(again.as_bytes()).is_ok_and(|c| c == certs));
}
