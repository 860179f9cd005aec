//! Request-signing keys (one per host): what the broker keeps of a key the
//! host's AK certified.

/// A certified request key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKeyRecord {
    pub host_id: String,
    /// TPM name of the key (`nameAlg` ‖ H(TPMT_PUBLIC)).
    pub key_name: Vec<u8>,
    /// Its `TPMT_PUBLIC` or `TPM2B_PUBLIC`, as certified.
    pub key_public: Vec<u8>,
    /// The TPM boot it was certified in (`TPMS_CLOCK_INFO`).
    pub reset_count: u32,
    pub restart_count: u32,
    pub certified_at: i64,
}
