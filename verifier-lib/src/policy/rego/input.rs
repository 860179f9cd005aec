//! The input document a group's Rego module judges: authenticated evidence
//! only (a module never sees a forged quote or report), laid out as JSON.
//! Byte strings are lower-case hex; PCR indexes are object keys ("0").
//!
//! ```json
//! {
//!   "tee": "tpm",                      // or "snp"
//!   "host": {"id": "…", "group": "…"},
//!   "tpm": {"pcrs": {"sha256": {"0": "…"}}, "firmware_version": 0,
//!           "clock": {"clock": 0, "reset_count": 0, "restart_count": 0, "safe": true},
//!           "weak_signature_hash": null},
//!   "boot": null | {"secure_boot": true, "kernels": [...], "initrds": [...],
//!           "boot_apps": [...], "cmdlines": [{"event_index": 0, "text": "…"}],
//!           "dbx_sha256": ["…"], "scrtm_version": "…"},
//!   "ima": null | {"from": 0, "restarted": false, "entries": [...]},
//!   "snp": null | {"measurement": "…", "host_data": "…", "reported_tcb_snp": 22, …}
//! }
//! ```
//!
//! `boot` is present when an event log came with the quote and replayed to
//! it; `ima` when the group quotes PCR 10 and an IMA list came, holding the
//! entries new since the host's last accepted appraisal (as the TOML IMA
//! rules see them). The SNP claims use the names of CoCo Trustee's parsed
//! claims where Trustee has one, so its rules move with few changes.

use serde_json::{json, Map, Value};

use crate::appraisal::boot_rules::BootComponent;
use crate::appraisal::boot_rules::{boot_apps, cmdlines, dbx_sha256_entries, initrds, kernels};
use crate::eventlog::{BootState, EventLog};
use crate::ima::ImaEntry;
use crate::snp::VerifiedReport;
use crate::tpm::VerifiedQuote;

/// The IMA entries one appraisal judged.
#[derive(Debug, Clone, Copy)]
pub struct ImaFacts<'a> {
    /// Entries before these, accepted earlier in the same boot.
    pub from: u64,
    /// The TPM reset or restarted since the stored cursor.
    pub restarted: bool,
    pub entries: &'a [ImaEntry],
}

/// The input for a TPM appraisal of `host_id` in `group`.
pub fn tpm(
    host_id: &str,
    group: &str,
    quote: &VerifiedQuote,
    boot: Option<&Value>,
    ima: Option<ImaFacts<'_>>,
) -> Value {
    let mut pcrs = Map::new();
    for (bank, values) in &quote.pcrs.0 {
        let bank_values: Map<String, Value> = values
            .iter()
            .map(|(pcr, v)| (pcr.to_string(), Value::String(hex::encode(v))))
            .collect();
        pcrs.insert(bank.name().to_owned(), Value::Object(bank_values));
    }
    json!({
        "tee": "tpm",
        "host": {"id": host_id, "group": group},
        "tpm": {
            "pcrs": pcrs,
            "firmware_version": quote.firmware_version,
            "clock": {
                "clock": quote.clock_info.clock,
                "reset_count": quote.clock_info.reset_count,
                "restart_count": quote.clock_info.restart_count,
                "safe": quote.clock_info.safe,
            },
            "weak_signature_hash": quote.accepted_weak_hash.map(|h| h.name()),
        },
        "boot": boot.cloned().unwrap_or(Value::Null),
        "ima": ima.map_or(Value::Null, self::ima),
        "snp": Value::Null,
    })
}

/// The `boot` part: the claims of an event log that replayed to the quote.
pub fn boot(log: &EventLog, state: &BootState) -> Value {
    let (_, dbx) = dbx_sha256_entries(log, state);
    json!({
        "secure_boot": state.secure_boot,
        "kernels": components(&kernels(state)),
        "initrds": components(&initrds(state)),
        "boot_apps": components(&boot_apps(state)),
        "cmdlines": cmdlines(state)
            .into_iter()
            .map(|(event_index, text)| json!({"event_index": event_index, "text": text}))
            .collect::<Vec<_>>(),
        "dbx_sha256": dbx.iter().map(hex::encode).collect::<Vec<_>>(),
        "scrtm_version": state.scrtm_version,
    })
}

fn components(list: &[BootComponent]) -> Vec<Value> {
    list.iter()
        .map(|c| {
            json!({
                "event_index": c.event_index,
                "name": c.name,
                "digest": c.digest.as_ref().map(|d| hex::encode(&d.value)),
                "digest_alg": c.digest.as_ref().map(|d| d.alg.name()),
            })
        })
        .collect()
}

/// The `ima` part: the entries one appraisal judged.
pub fn ima(ima: ImaFacts<'_>) -> Value {
    let entries: Vec<Value> = ima
        .entries
        .iter()
        .map(|e| {
            json!({
                "index": e.index,
                "path": e.path,
                "template": e.template_name,
                "digest": e.file_digest.as_ref().map(|(_, d)| hex::encode(d)),
                "digest_alg": e.file_digest.as_ref().map(|(a, _)| a),
                "signature": e.signature.as_ref().map(hex::encode),
                "violation": e.violation,
            })
        })
        .collect();
    json!({"from": ima.from, "restarted": ima.restarted, "entries": entries})
}

/// The input for an SEV-SNP appraisal of `host_id` in `group`.
pub fn snp(host_id: &str, group: &str, v: &VerifiedReport) -> Value {
    let r = &v.report;
    let mut claims = json!({
        "measurement": hex::encode(r.measurement),
        "host_data": hex::encode(r.host_data),
        "init_data": hex::encode(r.host_data),
        "report_data": hex::encode(r.report_data),
        "family_id": hex::encode(r.family_id),
        "image_id": hex::encode(r.image_id),
        "id_key_digest": hex::encode(r.id_key_digest),
        "author_key_digest": hex::encode(r.author_key_digest),
        "chip_id": hex::encode(r.chip_id),
        "chip_id_masked": v.chip_id_masked,
        "guest_svn": r.guest_svn,
        "vmpl": r.vmpl,
        "version": r.version,
        "product": v.product.as_str(),
        "signer": v.signer.as_str(),
        "policy_abi_major": r.policy.abi_major(),
        "policy_abi_minor": r.policy.abi_minor(),
        "policy_smt_allowed": r.policy.smt_allowed(),
        "policy_migrate_ma": r.policy.migrate_ma(),
        "policy_debug_allowed": r.policy.debug(),
        "policy_single_socket": r.policy.single_socket(),
        "platform_smt_enabled": r.platform_info.smt_enabled(),
        "platform_tsme_enabled": r.platform_info.tsme_enabled(),
        "firmware_version": {
            "major": r.current_version.major,
            "minor": r.current_version.minor,
            "build": r.current_version.build,
        },
        "revocation_checked": v.revocation_checked,
    });
    if let Value::Object(map) = &mut claims {
        for (prefix, tcb) in [
            ("reported_tcb", &v.reported_tcb),
            ("committed_tcb", &v.committed_tcb),
            ("current_tcb", &v.current_tcb),
            ("launch_tcb", &v.launch_tcb),
        ] {
            map.insert(format!("{prefix}_bootloader"), tcb.bootloader.into());
            map.insert(format!("{prefix}_tee"), tcb.tee.into());
            map.insert(format!("{prefix}_snp"), tcb.snp.into());
            map.insert(format!("{prefix}_microcode"), tcb.microcode.into());
            map.insert(
                format!("{prefix}_fmc"),
                tcb.fmc.map_or(Value::Null, Value::from),
            );
        }
    }
    json!({
        "tee": "snp",
        "host": {"id": host_id, "group": group},
        "tpm": Value::Null,
        "boot": Value::Null,
        "ima": Value::Null,
        "snp": claims,
    })
}
