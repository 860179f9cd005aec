//! Fuzz entry points for `tpm`.

use crate::crypto::{Curve, PublicKey};
use crate::tpm::{
    verify_certify, verify_quote, verify_request_signature, AkPublic, Attest, PcrSelection,
    PcrValues, Public, Signature,
};

/// `Attest::parse` on the whole input; then the input is split into an attest
/// half and a signature half (a leading big-endian u16 gives the attest
/// length; without it, at the middle) for `Attest::parse`, `Signature::parse`
/// and `verify_quote` (against a fixed, unrelated key) so the verification
/// path sees arbitrary parsed structures. Also `PcrSelection::from_bytes`,
/// `PcrValues::from_json` and the tpm2-tools PCR file parser.
pub fn tpm_attest(data: &[u8]) {
    let _ = PcrValues::from_tpm2_tools_pcr_file(data);
    let _ = Attest::parse(data);
    let _ = PcrSelection::from_bytes(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = PcrValues::from_json(text);
    }
    let (attest, signature) = split(data);
    let parsed_attest = Attest::parse(attest);
    let parsed_signature = Signature::parse(signature);
    if parsed_attest.is_ok() && parsed_signature.is_ok() {
        let mut point = vec![0x04];
        point.extend_from_slice(&[0x11; 64]);
        let ak = AkPublic::Spki(PublicKey::Ec {
            curve: Curve::P256,
            point,
        });
        let _ = verify_quote(
            attest,
            signature,
            &ak,
            &[],
            &PcrValues::default(),
            &PcrSelection::default(),
        );
    }
}

/// `Public::parse` (with `name` and `check_ak_attributes` when it parses)
/// and `AkPublic::parse_any` on the input.
pub fn tpm_public(data: &[u8]) {
    if let Ok(public) = Public::parse(data) {
        let _ = public.name();
        let _ = public.check_ak_attributes();
        let _ = public.check_request_key_attributes();
    }
    if let Ok(ak) = AkPublic::parse_any(data) {
        let _ = ak.key();
        let _ = ak.name();
    }
}

/// The input split as `key public ‖ attest ‖ signature` (two length
/// prefixes, see [`split`]) for `verify_certify` against a fixed, unrelated
/// AK, and the key (when it parses) with `verify_request_signature` over the
/// signature part.
pub fn tpm_certify(data: &[u8]) {
    let (key_public, rest) = split(data);
    let (attest, signature) = split(rest);
    let mut point = vec![0x04];
    point.extend_from_slice(&[0x11; 64]);
    let ak = AkPublic::Spki(PublicKey::Ec {
        curve: Curve::P256,
        point,
    });
    let _ = verify_certify(attest, signature, &ak, key_public, &[]);
    if let Ok(public) = Public::parse(key_public) {
        let _ = verify_request_signature(&public, attest, signature);
    }
}

/// `u16 n ‖ attest[n] ‖ signature`, or the two halves if `n` does not fit.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    if let Some((len, rest)) = data.split_first_chunk::<2>() {
        let n = usize::from(u16::from_be_bytes(*len));
        if n <= rest.len() {
            return rest.split_at(n);
        }
    }
    data.split_at(data.len() / 2)
}
