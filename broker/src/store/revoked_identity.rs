//! The names under which a host's revocation is recorded, so that the same
//! TPM cannot come back under another host id (`revoked_identities`).

use verifier_lib::ekcert::EkIdentity;
use verifier_lib::tpm::Public;

use super::HostRecord;

/// The revocation names of a host's TPM: `ek-key:<digest>` of its EK key
/// (when its EK public area parses) and `ek-cert:<digest>` of its EK
/// certificate. SNP hosts (no EK) have none: their host id is already
/// their identity (CHIP_ID and MEASUREMENT), and the revoked host row
/// refuses them.
pub fn revocation_names(host: &HostRecord) -> Vec<String> {
    if host.ek_public.is_empty() {
        return Vec::new();
    }
    let mut names = Public::parse(&host.ek_public)
        .map(|p| EkIdentity::of_key(&p.key).revocation_names())
        .unwrap_or_default();
    if !host.ek_cert_digest.is_empty() {
        names.push(format!("ek-cert:{}", hex::encode(&host.ek_cert_digest)));
    }
    names
}
