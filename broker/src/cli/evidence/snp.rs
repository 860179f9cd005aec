//! `writ-broker evidence snp`: verify an SEV-SNP report offline.
//!
//! The report is a raw 1184-byte ATTESTATION_REPORT or an Azure HCL report
//! (auto-detected by its `HCLA` magic). The chain must end in a pinned AMD
//! ARK. Revocation is mandatory: without `--crl` the verdict is invalid
//! (CRL unavailable) unless `--dangerous-skip-crl` is given. Exit codes as
//! for the other evidence commands: 0 valid, 1 invalid, 2 unusable input.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use verifier_lib::pem;
use verifier_lib::snp::{
    self, parse_hcl_report, AttestationReport, Crl, CrlInput, SnpTrustAnchors,
};
use verifier_lib::snp_appraisal::select_intermediate;

/// Arguments of `writ-broker evidence snp`.
#[derive(Debug, Clone, clap::Args)]
pub struct SnpArgs {
    /// The report: raw 1184 bytes, or an Azure HCL report.
    #[arg(long)]
    pub report: PathBuf,
    /// The VCEK (PEM or DER).
    #[arg(long, conflicts_with = "vlek")]
    pub vcek: Option<PathBuf>,
    /// The VLEK (PEM or DER).
    #[arg(long)]
    pub vlek: Option<PathBuf>,
    /// ASK/ASVK (and ARK) certificates, PEM or DER. Default: the bundled ones.
    #[arg(long)]
    pub chain: Option<PathBuf>,
    /// The AMD CRL (DER or PEM) signed by the ARK.
    #[arg(long, conflicts_with = "dangerous_skip_crl")]
    pub crl: Option<PathBuf>,
    /// Do not check revocation (insecure; the verdict says so).
    #[arg(long)]
    pub dangerous_skip_crl: bool,
    /// Expected nonce (hex): REPORT_DATA must be SHA-512(nonce ‖ bound key).
    #[arg(long)]
    pub nonce: Option<String>,
    /// The key bound with the nonce (file, exact bytes). Default: empty.
    #[arg(long, requires = "nonce")]
    pub bound_key: Option<PathBuf>,
    /// Judge validity at this instant (RFC 3339). Default: now.
    #[arg(long)]
    pub at: Option<String>,
}

struct Unusable(Value);

fn unusable(field: &str, message: impl std::fmt::Display) -> Unusable {
    Unusable(
        json!({ "verdict": "unusable", "reason": { "field": field, "message": message.to_string() } }),
    )
}

fn read(field: &str, p: &Path) -> Result<Vec<u8>, Unusable> {
    std::fs::read(p).map_err(|e| unusable(field, format!("{}: {e}", p.display())))
}

fn reason<E: std::fmt::Debug + std::fmt::Display>(stage: &str, e: &E) -> Value {
    let debug = format!("{e:?}");
    let kind: String = debug
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    json!({ "stage": stage, "kind": kind, "message": e.to_string(), "detail": debug })
}

/// Run the command: the JSON verdict and whether it is valid, or unusable.
fn run(args: &SnpArgs) -> Result<(Value, bool), Unusable> {
    let now = super::at::instant(args.at.as_deref()).map_err(Unusable)?;
    let input = read("report", &args.report)?;
    let (raw, format, hcl) = if input.starts_with(b"HCLA") {
        let h = parse_hcl_report(&input)
            .map_err(|e| Unusable(json!({"verdict": "unusable", "reason": reason("hcl", &e)})))?;
        (h.snp_report.clone(), "azure-hcl", Some(h))
    } else {
        (input, "raw", None)
    };
    let report = AttestationReport::parse(&raw)
        .map_err(|e| Unusable(json!({"verdict": "unusable", "reason": reason("report", &e)})))?;
    let leaf_path = args.vcek.as_ref().or(args.vlek.as_ref()).ok_or_else(|| {
        unusable(
            "vcek",
            "give --vcek or --vlek (this offline check fetches nothing)",
        )
    })?;
    let leaf = pem::certificates(&read("vcek", leaf_path)?)
        .map_err(|e| unusable("vcek", e))?
        .into_iter()
        .next()
        .unwrap_or_default();
    let chain = match &args.chain {
        Some(p) => pem::certificates(&read("chain", p)?).map_err(|e| unusable("chain", e))?,
        None => Vec::new(),
    };
    let crl = match &args.crl {
        Some(p) => {
            let der = pem::der_or_blocks(&read("crl", p)?, pem::X509_CRL)
                .map_err(|e| Unusable(json!({"verdict": "unusable", "reason": reason("crl", &e)})))?
                .into_iter()
                .next()
                .unwrap_or_default();
            Some(Crl::parse(&der).map_err(|e| {
                Unusable(json!({"verdict": "unusable", "reason": reason("crl", &e)}))
            })?)
        }
        None => None,
    };
    let expected = match &args.nonce {
        Some(n) => {
            if hcl.is_some() {
                return Err(unusable(
                    "nonce",
                    "an HCL report binds its runtime data, not a nonce: check the runtime JSON instead",
                ));
            }
            let nonce =
                hex::decode(n.trim()).map_err(|e| unusable("nonce", format!("not hex: {e}")))?;
            let key = match &args.bound_key {
                Some(p) => read("bound_key", p)?,
                None => Vec::new(),
            };
            Some(snp::expected_report_data(&nonce, &key))
        }
        None => None,
    };
    let trust = SnpTrustAnchors::amd_pinned().map_err(|e| unusable("pinned ARKs", e))?;
    let revocation = match (&crl, args.dangerous_skip_crl) {
        (Some(c), _) => CrlInput::Fresh(c),
        (None, true) => CrlInput::DangerousSkip,
        (None, false) => CrlInput::Unavailable,
    };
    let intermediate = select_intermediate(&leaf, &chain);
    let input_info = json!({
        "format": format,
        "signer_certificate": if args.vlek.is_some() { "vlek" } else { "vcek" },
        "intermediate": if intermediate.is_some() { "given" } else { "bundled" },
        "revocation": match revocation {
            CrlInput::Fresh(_) => "crl",
            CrlInput::DangerousSkip => "dangerous-skip",
            CrlInput::Unavailable => "unavailable",
        },
        "report_data_checked": expected.is_some(),
        "hcl_runtime_json": hcl.as_ref().map(|h| String::from_utf8_lossy(&h.runtime_json).into_owned()),
        "at": now,
    });
    let parsed = serde_json::to_value(&report).unwrap_or(Value::Null);
    Ok(
        match snp::verify_report(
            &raw,
            &leaf,
            intermediate,
            &trust,
            revocation,
            expected.as_ref(),
            now,
        ) {
            Ok(v) => (
                json!({
                    "verdict": "valid",
                    "input": input_info,
                    "report": parsed,
                    "verified": {
                        "product": v.product,
                        "signer": v.signer,
                        "chip_id": v.chip_id.as_ref().map(hex::encode),
                        "chip_id_masked": v.chip_id_masked,
                        "measurement": hex::encode(v.measurement),
                        "reported_tcb": v.reported_tcb,
                        "revocation_checked": v.revocation_checked,
                        "csp_id": v.csp_id,
                    },
                }),
                true,
            ),
            Err(e) => (
                json!({
                    "verdict": "invalid",
                    "input": input_info,
                    "report": parsed,
                    "reason": reason("verify", &e),
                }),
                false,
            ),
        },
    )
}

/// Print the verdict and map it to the exit code.
pub fn exit(args: &SnpArgs) -> std::process::ExitCode {
    let (value, code) = match run(args) {
        Ok((v, true)) => (v, std::process::ExitCode::SUCCESS),
        Ok((v, false)) => (v, std::process::ExitCode::from(1)),
        Err(Unusable(v)) => (v, std::process::ExitCode::from(2)),
    };
    super::output::emit(&value);
    code
}
