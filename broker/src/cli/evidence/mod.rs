//! Offline evidence checks: `writ-broker evidence quote|ekcert`.
//!
//! Every command prints one JSON object — the verdict, the parsed fields and,
//! on failure, the typed reason — and exits 0 when the evidence is valid, 1
//! when it is invalid and 2 when the input is unusable (unreadable or
//! unparseable). `evidence quote` has a fourth verdict, `valid_weak` (exit
//! 3): every check passed, but the quote is signed with SHA-1, which a
//! broker accepts only where the policy sets
//! `dangerous_accept_sha1_signatures`. Time-dependent checks (`ekcert`,
//! `snp`: certificate validity) use `--at RFC3339` (default: now); a quote
//! has none, so `evidence quote` takes no `--at`.

mod at;
mod boot;
mod output;
mod snp;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Subcommand;
use serde_json::{json, Value};
use verifier_lib::ekcert::{self, TrustStore};
use verifier_lib::tpm::{self, AkPublic, Attest, PcrSelection, QuoteOptions, Signature};

/// `writ-broker evidence ...`
#[derive(Debug, Subcommand)]
pub enum EvidenceCommand {
    /// Verify a TPM quote.
    Quote {
        /// TPMS_ATTEST or TPM2B_ATTEST.
        #[arg(long)]
        attest: PathBuf,
        /// TPMT_SIGNATURE.
        #[arg(long)]
        signature: PathBuf,
        /// AK public key: PEM or DER SubjectPublicKeyInfo, TPMT_PUBLIC or TPM2B_PUBLIC.
        #[arg(long)]
        ak: PathBuf,
        /// Expected nonce (extraData), hex. Without it the nonce is reported, not checked.
        #[arg(long)]
        nonce: Option<String>,
        /// PCR values: JSON {"sha256": {"0": "hex", ...}}, or the PCR file
        /// `tpm2_quote -o` writes (auto-detected). Without it the PCR digest
        /// is not checked.
        #[arg(long)]
        pcrs: Option<PathBuf>,
    },
    /// Verify an EK certificate chain.
    Ekcert {
        /// The EK certificate (PEM or DER, NV padding allowed).
        #[arg(long)]
        cert: PathBuf,
        /// Extra trusted roots: files or directories (PEM/DER). Repeatable.
        #[arg(long = "roots")]
        roots: Vec<PathBuf>,
        /// Intermediate certificates: files or directories. Repeatable.
        #[arg(long = "intermediates")]
        intermediates: Vec<PathBuf>,
        /// Do not use the bundled TPM manufacturer CA store.
        #[arg(long)]
        no_bundled: bool,
        /// Judge certificate validity at this instant (RFC 3339).
        #[arg(long)]
        at: Option<String>,
    },
    /// Verify an AMD SEV-SNP attestation report (raw or Azure HCL).
    Snp(snp::SnpArgs),
    /// Replay a TCG event log: PCRs per bank and boot-state claims.
    Eventlog {
        /// The log (`binary_bios_measurements`).
        log: PathBuf,
        /// PCR values to compare with: JSON {"sha256": {"0": "hex", ...}},
        /// or a tpm2-tools PCR file (`tpm2_quote -o`, auto-detected).
        #[arg(long)]
        pcrs: Option<PathBuf>,
    },
    /// Replay an IMA measurement list (ASCII or binary, auto-detected):
    /// PCR 10 in the sha1 and sha256 banks.
    Ima {
        /// The list (`ascii_runtime_measurements` or `binary_runtime_measurements`).
        list: PathBuf,
        /// Expected PCR 10 (hex; 20 bytes: sha1 bank, 32 bytes: sha256 bank).
        #[arg(long)]
        pcr10: Option<String>,
    },
}

/// Unusable input: exit 2.
struct Unusable(Value);

/// What a check found in usable input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Checked {
    /// Exit 0.
    Valid,
    /// Exit 3: valid, but only under a weak (SHA-1) signature hash.
    ValidWeak,
    /// Exit 1.
    Invalid,
}

impl From<bool> for Checked {
    fn from(valid: bool) -> Checked {
        if valid {
            Checked::Valid
        } else {
            Checked::Invalid
        }
    }
}

fn unusable(field: &str, message: impl std::fmt::Display) -> Unusable {
    Unusable(
        json!({ "verdict": "unusable", "reason": { "field": field, "message": message.to_string() } }),
    )
}

/// Run an evidence command and print its JSON verdict.
pub fn run(cmd: EvidenceCommand) -> ExitCode {
    let result = match cmd {
        EvidenceCommand::Quote {
            attest,
            signature,
            ak,
            nonce,
            pcrs,
        } => quote(&attest, &signature, &ak, nonce.as_deref(), pcrs.as_deref()),
        EvidenceCommand::Ekcert {
            cert,
            roots,
            intermediates,
            no_bundled,
            at,
        } => ek_cert(&cert, &roots, &intermediates, no_bundled, at.as_deref())
            .map(|(v, ok)| (v, ok.into())),
        EvidenceCommand::Snp(args) => return snp::exit(&args),
        EvidenceCommand::Eventlog { log, pcrs } => boot::eventlog(&log, pcrs.as_deref())
            .map(|(v, ok)| (v, ok.into()))
            .map_err(Unusable),
        EvidenceCommand::Ima { list, pcr10 } => boot::ima(&list, pcr10.as_deref())
            .map(|(v, ok)| (v, ok.into()))
            .map_err(Unusable),
    };
    let (value, code) = match result {
        Ok((v, Checked::Valid)) => (v, ExitCode::SUCCESS),
        Ok((v, Checked::Invalid)) => (v, ExitCode::from(1)),
        Ok((v, Checked::ValidWeak)) => (v, ExitCode::from(3)),
        Err(Unusable(v)) => (v, ExitCode::from(2)),
    };
    output::emit(&value);
    code
}

fn read(field: &str, p: &Path) -> Result<Vec<u8>, Unusable> {
    std::fs::read(p).map_err(|e| unusable(field, format!("{}: {e}", p.display())))
}

/// `now`, or the instant given with `--at`.
fn instant(at: Option<&str>) -> Result<i64, Unusable> {
    at::instant(at).map_err(Unusable)
}

/// The typed reason of a failure: its variant, its message and its fields.
fn reason(stage: &str, e: &(impl std::fmt::Display + std::fmt::Debug)) -> Value {
    let debug = format!("{e:?}");
    let kind: String = debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    json!({ "stage": stage, "kind": kind, "message": e.to_string(), "detail": debug })
}

fn quote(
    attest_path: &Path,
    sig_path: &Path,
    ak_path: &Path,
    nonce: Option<&str>,
    pcrs_path: Option<&Path>,
) -> Result<(Value, Checked), Unusable> {
    let attest_bytes = read("attest", attest_path)?;
    let sig_bytes = read("signature", sig_path)?;
    let ak_bytes = read("ak", ak_path)?;
    let attest = Attest::parse(&attest_bytes)
        .map_err(|e| Unusable(json!({"verdict": "unusable", "reason": reason("attest", &e)})))?;
    let attest_format = if attest.marshalled.len() == attest_bytes.len() {
        "TPMS_ATTEST"
    } else {
        "TPM2B_ATTEST"
    };
    let signature = Signature::parse(&sig_bytes)
        .map_err(|e| Unusable(json!({"verdict": "unusable", "reason": reason("signature", &e)})))?;
    let ak = AkPublic::parse_any(&ak_bytes)
        .map_err(|e| Unusable(json!({"verdict": "unusable", "reason": reason("ak", &e)})))?;
    let nonce = nonce
        .map(|n| hex::decode(n.trim()).map_err(|e| unusable("nonce", format!("not hex: {e}"))))
        .transpose()?;
    let pcrs = pcrs_path
        .map(boot::pcr_file)
        .transpose()
        .map_err(Unusable)?;
    let input = json!({
        "attest_format": attest_format,
        "ak_format": match &ak { AkPublic::Tpm(_) => "tpm-public", _ => "spki" },
        "ak_name": ak.name().map(hex::encode),
        "signature": { "scheme": format!("{:?}", signature.scheme), "hash": signature.hash },
        "nonce_checked": nonce.is_some(),
        "pcr_digest_checked": pcrs.is_some(),
        "pcrs_format": pcrs.as_ref().map(|(_, format)| format),
    });
    // Offline, the truth is reported: a SHA-1 signature is verified, and a
    // quote valid only under it is `valid_weak`, not `valid`.
    let options = QuoteOptions {
        dangerous_accept_sha1_signatures: true,
    };
    let result = match pcrs.as_ref().map(|(values, _)| values) {
        Some(values) => {
            // The quote's own selection is what must be covered offline.
            let required = PcrSelection::default();
            let expected_nonce = nonce.clone().unwrap_or_else(|| attest.extra_data.clone());
            tpm::verify_quote_with_options(
                &attest_bytes,
                &signature,
                &ak,
                &expected_nonce,
                values,
                &required,
                options,
            )
            .map(|q| {
                let weak = q.accepted_weak_hash;
                (serde_json::to_value(&q).unwrap_or(Value::Null), weak)
            })
        }
        None => tpm::verify_quote_signature_only(
            &attest_bytes,
            &signature,
            &ak,
            nonce.as_deref(),
            options,
        )
        .map(|(a, weak)| {
            (
                json!({ "attest": serde_json::to_value(&a).unwrap_or(Value::Null) }),
                weak,
            )
        }),
    };
    Ok(match result {
        Ok((q, None)) => (
            json!({ "verdict": "valid", "input": input, "quote": q }),
            Checked::Valid,
        ),
        Ok((q, Some(hash))) => (
            json!({
                "verdict": "valid_weak",
                "input": input,
                "quote": q,
                "weak_hash": hash,
                "note": "the quote verifies, but its signature uses SHA-1: a broker accepts it only where the policy sets dangerous_accept_sha1_signatures",
            }),
            Checked::ValidWeak,
        ),
        Err(e) => (
            json!({
                "verdict": "invalid",
                "input": input,
                "attest": serde_json::to_value(&attest).unwrap_or(Value::Null),
                "reason": reason("quote", &e),
            }),
            Checked::Invalid,
        ),
    })
}

/// Files named on the command line: a file, or every file in a directory.
fn cert_files(field: &str, paths: &[PathBuf]) -> Result<Vec<(PathBuf, Vec<u8>)>, Unusable> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| unusable(field, format!("{}: {e}", p.display())))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            entries.sort();
            for f in entries {
                let b = read(field, &f)?;
                out.push((f, b));
            }
        } else {
            out.push((p.clone(), read(field, p)?));
        }
    }
    Ok(out)
}

fn ek_cert(
    cert_path: &Path,
    roots: &[PathBuf],
    intermediates: &[PathBuf],
    no_bundled: bool,
    at: Option<&str>,
) -> Result<(Value, bool), Unusable> {
    let now = instant(at)?;
    let bytes = read("cert", cert_path)?;
    let cert = ekcert::parse_ek_certificate(&bytes)
        .map_err(|e| Unusable(json!({"verdict": "unusable", "reason": reason("cert", &e)})))?;
    let mut store = if no_bundled {
        TrustStore::empty()
    } else {
        TrustStore::manufacturers().map_err(|e| unusable("bundled store", e))?
    };
    for (p, b) in cert_files("roots", roots)? {
        store
            .add_root_pem_or_der(&b)
            .map_err(|e| unusable("roots", format!("{}: {e}", p.display())))?;
    }
    let mut presented = Vec::new();
    for (p, b) in cert_files("intermediates", intermediates)? {
        // Presented intermediates are untrusted path-building material.
        let certs = verifier_lib::pem::certificates(&b)
            .map_err(|e| unusable("intermediates", format!("{}: {e}", p.display())))?;
        presented.extend(certs);
    }
    let parsed = json!({
        "subject": cert.subject,
        "issuer": cert.issuer,
        "serial": cert.serial_hex,
        "not_before": cert.not_before,
        "not_after": cert.not_after,
        "tpm_manufacturer": cert.tpm_manufacturer,
        "tpm_model": cert.tpm_model,
        "tpm_version": cert.tpm_version,
        "trailing_padding": cert.trailing_padding,
        "public_key": ekcert::key_fingerprint(&cert.public_key),
    });
    Ok(
        match ekcert::verify_ek_chain(&cert, &presented, &store, now) {
            Ok(chain) => (
                json!({
                    "verdict": "valid",
                    "certificate": parsed,
                    "chain": chain.chain.iter().map(|c| json!({"subject": c.subject, "serial": c.serial_hex, "not_after": c.not_after})).collect::<Vec<_>>(),
                    "at": now,
                }),
                true,
            ),
            Err(e) => (
                json!({ "verdict": "invalid", "certificate": parsed, "reason": reason("chain", &e), "at": now }),
                false,
            ),
        },
    )
}
