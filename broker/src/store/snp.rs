//! SEV-SNP hosts: registered at the first affirming appraisal, in the same
//! transaction as the appraisal, the host status and the token
//! (`StateChange::SnpAppraisal`).

/// What the broker keeps of a registered SNP host (all from a verified report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnpHostRecord {
    pub host_id: String,
    pub chip_id: Vec<u8>,
    pub measurement: Vec<u8>,
    pub host_data: Vec<u8>,
    /// `Milan`, `Genoa` or `Turin`.
    pub product: String,
    /// `vcek` or `vlek`.
    pub signer: String,
    /// SHA-256 of the VCEK/VLEK (kept in `hosts.ek_cert_digest`).
    pub signer_cert_digest: Vec<u8>,
    pub registered_at: i64,
}
