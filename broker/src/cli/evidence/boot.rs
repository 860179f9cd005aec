//! `writ-broker evidence eventlog|ima`: replay a TCG event log or an IMA
//! list (ASCII or binary, auto-detected) offline and print PCRs and claims
//! as JSON. Exit 0 when the replay matches the given PCRs (or none were
//! given), 1 on mismatch, 2 when the input is unusable. Also the `--pcrs`
//! file reader every evidence command shares ([`pcr_file`]).

use std::path::Path;

use serde_json::{json, Value};
use verifier_lib::appraisal::boot_rules::{boot_apps, cmdlines, initrds, kernels};
use verifier_lib::crypto::HashAlg;
use verifier_lib::eventlog::{compare_with_quirks, BootState, EventLog};
use verifier_lib::ima::{replay_from, ImaCursor, ImaLog};
use verifier_lib::tpm::PcrValues;

fn unusable(field: &str, message: impl std::fmt::Display) -> Value {
    json!({ "verdict": "unusable", "reason": { "field": field, "message": message.to_string() } })
}

fn read(field: &str, p: &Path) -> Result<Vec<u8>, Value> {
    std::fs::read(p).map_err(|e| unusable(field, format!("{}: {e}", p.display())))
}

/// PCR values JSON, bare (`{"sha256": {...}}`) or wrapped (`{"pcrs": {...}, ...}`,
/// the shape of the test vectors' `expected_pcrs.json`).
fn pcr_values(text: &str) -> Result<PcrValues, verifier_lib::tpm::TpmError> {
    PcrValues::from_json(text).or_else(|e| {
        match serde_json::from_str::<Value>(text)
            .ok()
            .and_then(|v| v.get("pcrs").cloned())
        {
            Some(inner) => PcrValues::from_json(&inner.to_string()),
            None => Err(e),
        }
    })
}

/// The `--pcrs` file: PCR values JSON (bare or wrapped; it starts with
/// `{`) or, auto-detected, the PCR file tpm2-tools writes (`tpm2_quote -o`,
/// as Keylime keeps it). Returns the values and the format's name.
pub fn pcr_file(path: &Path) -> Result<(PcrValues, &'static str), Value> {
    let bytes = read("pcrs", path)?;
    let json = bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if !json {
        return PcrValues::from_tpm2_tools_pcr_file(&bytes)
            .map(|v| (v, "tpm2-tools"))
            .map_err(|e| unusable("pcrs", format!("tpm2-tools PCR file: {e}")));
    }
    let text = String::from_utf8(bytes).map_err(|e| unusable("pcrs", e))?;
    pcr_values(&text)
        .map(|v| (v, "json"))
        .map_err(|e| unusable("pcrs", e))
}

/// `evidence eventlog LOG [--pcrs FILE]`.
pub fn eventlog(log_path: &Path, pcrs_path: Option<&Path>) -> Result<(Value, bool), Value> {
    let bytes = read("eventlog", log_path)?;
    let log = EventLog::parse(&bytes).map_err(|e| unusable("eventlog", e))?;
    let pcrs = pcrs_path.map(pcr_file).transpose()?.map(|(v, _)| v);
    let replayed = log.replay();
    let state = BootState::from_log(&log);
    let mut out = json!({
        "format": log.format,
        "events": log.events.len(),
        "banks": log.banks(),
        "startup_locality": replayed.startup_locality,
        "pcrs": replayed,
        "claims": {
            "secure_boot": state.secure_boot,
            "boot_apps": boot_apps(&state),
            "kernels": kernels(&state),
            "initrds": initrds(&state),
            "cmdlines": cmdlines(&state).into_iter().map(|(i, t)| json!({"event_index": i, "text": t})).collect::<Vec<_>>(),
            "scrtm_version": state.scrtm_version,
            "error_separator": state.has_error_separator(),
        },
        "boot_state": state,
    });
    let ok = match &pcrs {
        None => {
            out["verdict"] = json!("replayed");
            true
        }
        Some(quoted) => match compare_with_quirks(&log, &quoted.0) {
            Ok(outcome) => {
                out["verdict"] = json!("valid");
                out["quirk"] = json!(outcome.applied);
                true
            }
            Err(mismatches) => {
                out["verdict"] = json!("invalid");
                out["mismatches"] = json!(mismatches);
                false
            }
        },
    };
    Ok((out, ok))
}

/// `evidence ima LIST [--pcr10 HEX]`: LIST is `ascii_runtime_measurements`
/// or `binary_runtime_measurements`, told apart by the first byte (an
/// ASCII list starts with the PCR number's digit, a binary one with the
/// little-endian PCR number, `0a 00 00 00` for PCR 10).
pub fn ima(list_path: &Path, pcr10: Option<&str>) -> Result<(Value, bool), Value> {
    let bytes = read("ima", list_path)?;
    let ascii = bytes.first().is_none_or(u8::is_ascii_digit);
    let list = if ascii {
        let text = std::str::from_utf8(&bytes).map_err(|e| unusable("ima", e))?;
        ImaLog::parse_ascii(text).map_err(|e| unusable("ima", e))?
    } else {
        ImaLog::parse_binary(&bytes).map_err(|e| unusable("ima", e))?
    };
    let expected = match pcr10 {
        None => None,
        Some(h) => Some(hex::decode(h.trim()).map_err(|e| unusable("pcr10", e))?),
    };
    let cursor = replay_from(&ImaCursor::new(), &list.entries);
    let mut templates = std::collections::BTreeMap::<&str, u64>::new();
    for e in &list.entries {
        *templates.entry(e.template_name.as_str()).or_default() += 1;
    }
    let violations = list.entries.iter().filter(|e| e.violation).count();
    let boot_aggregate = list
        .entries
        .first()
        .filter(|e| e.path == "boot_aggregate")
        .and_then(|e| e.file_digest.as_ref())
        .map(|(a, d)| format!("{a}:{}", hex::encode(d)));
    let mut out = json!({
        "format": if ascii { "ascii" } else { "binary" },
        "entries": list.entries.len(),
        "templates": templates,
        "violations": violations,
        "boot_aggregate": boot_aggregate,
        "pcr10": { "sha1": hex::encode(&cursor.pcr10_sha1), "sha256": hex::encode(&cursor.pcr10_sha256) },
    });
    let ok = match expected {
        None => {
            out["verdict"] = json!("replayed");
            true
        }
        Some(want) => {
            let bank = if want.len() == HashAlg::Sha1.output_len() {
                Some((HashAlg::Sha1, &cursor.pcr10_sha1))
            } else if want.len() == HashAlg::Sha256.output_len() {
                Some((HashAlg::Sha256, &cursor.pcr10_sha256))
            } else {
                None
            };
            let Some((bank, got)) = bank else {
                return Err(unusable(
                    "pcr10",
                    "expected 20 (sha1) or 32 (sha256) bytes of hex",
                ));
            };
            let ok = *got == want;
            out["verdict"] = json!(if ok { "valid" } else { "invalid" });
            out["bank"] = json!(bank);
            ok
        }
    };
    Ok((out, ok))
}
