//! The Azure confidential-VM "HCL report": a 32-byte `HCLA` header, the
//! SNP report, then the IGVM runtime-data header (5 × u32 LE) and the
//! runtime JSON whose hash the guest placed in REPORT_DATA.

use super::{AttestationReport, SnpError, REPORT_LEN};
use crate::crypto::{ct_eq, HashAlg};
use crate::wire::Reader;
use serde::Serialize;

const HCL_MAGIC: &[u8; 4] = b"HCLA";
const HCL_HEADER_LEN: usize = 32;
const RUNTIME_HEADER_LEN: usize = 20;
const REPORT_TYPE_SNP: u32 = 2;
/// Upper bound on the runtime JSON (the vTPM NV index is a few KiB).
const MAX_RUNTIME_DATA: usize = 64 * 1024;

/// The parts of an Azure HCL report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HclReport {
    /// The raw 1184-byte SNP report, to pass to [`super::verify_report`].
    #[serde(serialize_with = "super::hex_serde::ser")]
    pub snp_report: Vec<u8>,
    /// The runtime JSON exactly as hashed into REPORT_DATA.
    #[serde(serialize_with = "super::hex_serde::ser")]
    pub runtime_json: Vec<u8>,
    /// The `HCLAkPub` JWK (the vTPM attestation key) if the JSON has one.
    pub ak_pub_jwk: Option<serde_json::Value>,
}

fn malformed(field: &'static str) -> SnpError {
    SnpError::HclMalformed { field }
}

/// Parse an HCL report and check that REPORT_DATA starts with the hash
/// (the algorithm the runtime header names) of the runtime JSON and is zero
/// after it. The SNP report's signature is NOT verified here.
pub fn parse_hcl_report(bytes: &[u8]) -> Result<HclReport, SnpError> {
    let mut r = Reader::new(bytes);
    let magic = r.bytes(4, "hcl_magic")?;
    if magic != HCL_MAGIC {
        return Err(malformed("magic"));
    }
    let _version = r.u32_le("hcl_version")?;
    let total = usize::try_from(r.u32_le("hcl_report_size")?).map_err(|_| malformed("size"))?;
    let _request_type = r.u32_le("hcl_request_type")?;
    let _status = r.u32_le("hcl_status")?;
    r.bytes(HCL_HEADER_LEN - 20, "hcl_reserved")?;
    let snp_report = r.bytes(REPORT_LEN, "snp_report")?.to_vec();
    let data_size = r.u32_le("runtime_data_size")?;
    let _runtime_version = r.u32_le("runtime_version")?;
    let report_type = r.u32_le("runtime_report_type")?;
    if report_type != REPORT_TYPE_SNP {
        return Err(malformed("runtime_report_type"));
    }
    let hash = match r.u32_le("runtime_hash_type")? {
        1 => HashAlg::Sha256,
        2 => HashAlg::Sha384,
        3 => HashAlg::Sha512,
        _ => return Err(malformed("runtime_hash_type")),
    };
    let json_len = usize::try_from(r.u32_le("runtime_variable_data_size")?)
        .map_err(|_| malformed("runtime_variable_data_size"))?;
    if json_len > MAX_RUNTIME_DATA
        || usize::try_from(data_size).ok() != json_len.checked_add(RUNTIME_HEADER_LEN)
    {
        return Err(malformed("runtime_data_size"));
    }
    let runtime_json = r.bytes(json_len, "runtime_json")?.to_vec();
    if r.offset() != total {
        return Err(malformed("hcl_report_size"));
    }
    if r.rest().iter().any(|&b| b != 0) {
        return Err(malformed("padding"));
    }

    let report = AttestationReport::parse(&snp_report)?;
    let digest = hash.digest(&runtime_json);
    let (bound, rest) = report.report_data.split_at(digest.len().min(64));
    if !ct_eq(bound, &digest) || rest.iter().any(|&b| b != 0) {
        return Err(SnpError::HclRuntimeDataMismatch {
            expected: hex::encode(&digest),
            actual: hex::encode(report.report_data),
        });
    }
    let json: serde_json::Value =
        serde_json::from_slice(&runtime_json).map_err(|_| malformed("runtime_json"))?;
    let ak_pub_jwk = json
        .get("keys")
        .and_then(|k| k.as_array())
        .and_then(|keys| {
            keys.iter()
                .find(|k| k.get("kid").and_then(|v| v.as_str()) == Some("HCLAkPub"))
        })
        .cloned();
    Ok(HclReport {
        snp_report,
        runtime_json,
        ak_pub_jwk,
    })
}
