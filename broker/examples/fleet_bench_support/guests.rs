//! Simulated SEV-SNP guests for the fleet benchmark: one test ARK/ASK
//! (`snp_support`), and per guest a distinct chip id with its own P-384
//! VCEK certified by the ASK; a local KDS serving the ASK/ARK chain, the
//! CRL and every VCEK; the policy that accepts the guests.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use verifier_lib::api::{SnpEvidence, SnpTokenRequest};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::snp::{AttestationReport, Product, TcbVersion};
use verifier_lib::snp_appraisal::snp_host_id;

use crate::snp_support::{
    certificate, chain, crl, ext, report_body, report_spec, rsa_key, seq, sign_report, tlv, uint,
    CertSpec, ReportSpec, TestChain, NOT_AFTER, NOT_BEFORE,
};

pub const PRODUCT: Product = Product::Genoa;
pub const MEASUREMENT: [u8; 48] = [0xab; 48];
pub const WORKLOAD: &str = "hello";
pub const WORKLOAD_DIGEST: [u8; 32] = [0x77; 32];

/// One simulated guest: its own chip, VCEK key and host id.
pub struct Guest {
    pub host_id: String,
    pub hwid: Vec<u8>,
    pub vcek: Vec<u8>,
    spec: ReportSpec,
    key: EcdsaKeyPair,
}

impl Guest {
    /// The token request for `nonce`: a report signed now, whose
    /// REPORT_DATA binds the nonce and the canonical request.
    pub fn token_request(&self, nonce: Vec<u8>) -> SnpTokenRequest {
        let binding = TokenRequestBinding {
            host_id: &self.host_id,
            workload: WORKLOAD,
            workload_digest: &WORKLOAD_DIGEST,
            cnf_key: None,
        };
        let mut spec = self.spec.clone();
        spec.report_data = binding.snp_report_data(&nonce);
        SnpTokenRequest {
            host_id: self.host_id.clone(),
            workload: WORKLOAD.into(),
            workload_digest: WORKLOAD_DIGEST.to_vec(),
            cnf: None,
            nonce,
            evidence: SnpEvidence {
                report: sign_report(report_body(&spec), &self.key),
                vcek: None,
                chain: Vec::new(),
            },
        }
    }
}

fn ec_spki(key: &EcdsaKeyPair) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(key.public_key().as_ref());
    seq(&[
        &seq(&[
            &crate::snp_support::oid("1.2.840.10045.2.1"),
            &crate::snp_support::oid("1.3.132.0.34"),
        ]),
        &tlv(0x03, &bits),
    ])
}

/// A VCEK for chip `hwid` with the chain's SPLs, signed by the test ASK
/// (as `snp_support::build_chain` builds its one VCEK).
fn vcek_for(c: &TestChain, hwid: &[u8], serial: &[u8], key: &EcdsaKeyPair) -> Vec<u8> {
    let int = |v: u8| uint(&[v]);
    let exts = vec![
        ext("1.3.6.1.4.1.3704.1.1", false, &int(1)),
        ext("1.3.6.1.4.1.3704.1.2", false, &tlv(0x16, b"Genoa-B0")),
        ext("1.3.6.1.4.1.3704.1.3.1", false, &int(c.spl.bootloader)),
        ext("1.3.6.1.4.1.3704.1.3.2", false, &int(c.spl.tee)),
        ext("1.3.6.1.4.1.3704.1.3.3", false, &int(c.spl.snp)),
        ext("1.3.6.1.4.1.3704.1.3.8", false, &int(c.spl.microcode)),
        ext("1.3.6.1.4.1.3704.1.4", false, hwid),
    ];
    certificate(
        &CertSpec {
            serial,
            issuer: "SEV-Genoa",
            subject: "SEV-VCEK",
            not_before: NOT_BEFORE,
            not_after: NOT_AFTER,
            spki: ec_spki(key),
            extensions: exts,
        },
        rsa_key(1),
    )
}

/// The test PKI and `count` guests on distinct chips.
pub struct Fleet {
    pub chain: TestChain,
    pub guests: Arc<Vec<Guest>>,
}

impl Fleet {
    pub fn new(count: usize) -> Fleet {
        let c = chain(PRODUCT);
        let rng = SystemRandom::new();
        let guests = (0..count)
            .map(|i| {
                let n = u32::try_from(i).unwrap();
                let mut hwid = vec![0x5a; 64];
                hwid[..4].copy_from_slice(&(n + 1).to_be_bytes());
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
                let key =
                    EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref())
                        .unwrap();
                let mut serial = vec![0x43];
                serial.extend_from_slice(&(n + 1).to_be_bytes());
                let vcek = vcek_for(&c, &hwid, &serial, &key);
                let mut spec = report_spec(&c);
                spec.measurement = MEASUREMENT;
                spec.chip_id.copy_from_slice(&hwid);
                let probe = sign_report(report_body(&spec), &key);
                let host_id = snp_host_id(&AttestationReport::parse(&probe).unwrap()).unwrap();
                Guest {
                    host_id,
                    hwid,
                    vcek,
                    spec,
                    key,
                }
            })
            .collect();
        Fleet {
            chain: c,
            guests: Arc::new(guests),
        }
    }

    /// The reported TCB of every guest's reports.
    pub fn reported_tcb(&self) -> TcbVersion {
        TcbVersion(self.chain.spl.tcb(PRODUCT))
    }

    /// Pre-seed a broker's KDS cache with every guest's VCEK (as
    /// docs/operations.md advises for large roll-outs: the KDS fetch
    /// bucket would otherwise refuse most first appraisals with
    /// `kds_busy`). The chain and the CRL still come from the local KDS.
    pub fn seed_cache(&self, cache_dir: &Path) {
        for g in self.guests.iter() {
            let rel = writ_broker::tee::snp::kds::vcek_path(PRODUCT, &g.hwid, self.reported_tcb());
            let path = cache_dir.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &g.vcek).unwrap();
        }
    }

    /// The broker policy: the guests' measurement, HOST_DATA zero, the
    /// test root acknowledged, the workload allowed.
    pub fn policy(&self) -> String {
        format!(
            r#"id = "fleet-bench"

[[groups]]
name = "snp"
hosts = ["*"]
[groups.snp]
allowed_measurements = ["{m}"]
allowed_host_data = ["{h}"]
dangerous_allow_extra_root = true
[groups.snp.min_reported_tcb]
snp = 23

[[workloads]]
name = "{WORKLOAD}"
digests = ["{d}"]
"#,
            m = hex::encode(MEASUREMENT),
            h = hex::encode([0u8; 32]),
            d = hex::encode(WORKLOAD_DIGEST),
        )
    }
}

// ---------- a local KDS ----------

#[derive(Clone)]
struct Kds {
    chain_pem: Arc<String>,
    crl: Arc<Vec<u8>>,
    vceks: Arc<HashMap<String, Vec<u8>>>,
}

async fn kds_handler(
    State(kds): State<Kds>,
    UrlPath((signer, product, item)): UrlPath<(String, String, String)>,
) -> axum::response::Response {
    if signer != "vcek" || product != "Genoa" {
        return StatusCode::NOT_FOUND.into_response();
    }
    match item.as_str() {
        "cert_chain" => kds.chain_pem.as_str().to_owned().into_response(),
        "crl" => kds.crl.as_ref().clone().into_response(),
        hwid => match kds.vceks.get(hwid) {
            Some(v) => v.clone().into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
    }
}

/// Serve the fleet's chain, a current empty CRL and the VCEKs on
/// 127.0.0.1; returns the base URL.
pub async fn start_kds(fleet: &Fleet) -> String {
    let c = &fleet.chain;
    let chain_pem: String = [&c.ask, &c.ark]
        .iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let kds = Kds {
        chain_pem: Arc::new(chain_pem),
        crl: Arc::new(crl(PRODUCT, &[], now - 3600, now + 86_400, rsa_key(0))),
        vceks: Arc::new(
            fleet
                .guests
                .iter()
                .map(|g| (hex::encode(&g.hwid), g.vcek.clone()))
                .collect(),
        ),
    };
    let app = axum::Router::new()
        .route("/{signer}/v1/{product}/{item}", get(kds_handler))
        .with_state(kds);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    url
}
