//! Reference values from a golden host: read this TPM's current PCRs and
//! draft a v0 policy that accepts exactly this state and the given
//! workloads. An operator reviews the draft before activating it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use verifier_lib::crypto::HashAlg;
use verifier_lib::policy::Policy;

use crate::commands::{resolve_program, CommandError};
use crate::tpm::Tpm;

/// Why a PCR list could not be understood.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReferenceError {
    #[error("PCR list {input:?}: {reason}")]
    PcrList { input: String, reason: &'static str },
    #[error("workload {input:?}: expected NAME=PROGRAM")]
    Workload { input: String },
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("TPM: {0}")]
    Tpm(#[from] crate::tpm::TpmError),
    #[error("the drafted policy does not validate: {0}")]
    Draft(#[from] verifier_lib::policy::PolicyError),
}

/// Parse `0-7,16` into PCR indexes (0..=23).
pub fn parse_pcr_list(input: &str) -> Result<Vec<u8>, ReferenceError> {
    let bad = |reason| ReferenceError::PcrList {
        input: input.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<u8>(), b.trim().parse::<u8>()),
            None => (part.parse::<u8>(), part.parse::<u8>()),
        };
        let (lo, hi) = (
            lo.map_err(|_| bad("not a number"))?,
            hi.map_err(|_| bad("not a number"))?,
        );
        if lo > hi || hi > 23 {
            return Err(bad("PCR indexes run from 0 to 23, low-high"));
        }
        out.extend(lo..=hi);
    }
    out.sort_unstable();
    out.dedup();
    if out.is_empty() {
        return Err(bad("empty"));
    }
    Ok(out)
}

/// Draft a policy for this host's current sha256 PCRs and `workloads`
/// (`NAME=PROGRAM`, each program hashed as `run` will hash it).
pub fn draft_policy(
    tpm: &mut Tpm,
    id: &str,
    pcrs: &[u8],
    workloads: &[String],
) -> Result<String, ReferenceError> {
    let values = tpm.pcr_read(&[(HashAlg::Sha256, pcrs.to_vec())])?;
    let bank: BTreeMap<u8, Vec<u8>> = values.get(&HashAlg::Sha256).cloned().unwrap_or_default();
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Drafted by `writ-attester reference` from this host's TPM. Review before activating."
    );
    let _ = writeln!(s, "id = {}\n", toml_string(id));
    let _ = writeln!(
        s,
        "[[groups]]\nname = \"default\"\nhosts = [\"*\"]\npcr_bank = \"sha256\"\n[groups.pcrs]"
    );
    for (pcr, v) in &bank {
        let _ = writeln!(s, "{pcr} = [\"{}\"]", hex::encode(v));
    }
    for w in workloads {
        let (name, program) = w
            .split_once('=')
            .ok_or_else(|| ReferenceError::Workload { input: w.clone() })?;
        let prog = resolve_program(program)?;
        let _ = write!(
            s,
            "\n[[workloads]]\nname = {}\n# {}\ndigests = [\"{}\"]\n",
            toml_string(name),
            prog.path.display(),
            hex::encode(prog.digest)
        );
    }
    Policy::parse_toml(&s)?;
    Ok(s)
}

fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pcr_lists() {
        assert_eq!(
            parse_pcr_list("0-3, 7,16,7").unwrap(),
            vec![0, 1, 2, 3, 7, 16]
        );
        assert!(parse_pcr_list("24").is_err());
        assert!(parse_pcr_list("5-2").is_err());
        assert!(parse_pcr_list("x").is_err());
        assert!(parse_pcr_list("").is_err());
    }

    #[test]
    fn escapes_toml_strings() {
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }
}
