//! SEV-SNP end to end without SNP hardware: a test ARK/ASK/VCEK chain
//! (trusted only through `trust.dangerous_snp_test_roots` and the policy's
//! `dangerous_allow_extra_root`), a local KDS over HTTP serving that chain
//! and its CRL, and reports signed in the test whose REPORT_DATA binds the
//! broker's nonce. Drives challenge → report → appraisal → token → token
//! verification over real HTTP, and every deny case.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../verifier-lib/tests/snp_support/mod.rs"]
mod snp_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde_json::{json, Value};
use snp_support::*;
use verifier_lib::api::{SnpEvidence, SnpTokenRequest};
use verifier_lib::audit::{Decision, Leaf};
use verifier_lib::request::TokenRequestBinding;
use verifier_lib::snp::{expected_report_data, AttestationReport, Product};
use verifier_lib::snp_appraisal::snp_host_id;
use verifier_lib::token::{ClaimValue, Expectations, TokenVerifier};
use writ_broker::clock::OffsetClock;
use writ_broker::config::{Config, SnpTestRoot};
use writ_broker::state::AppState;

const PRODUCT: Product = Product::Genoa;
const MEASUREMENT: [u8; 48] = [0xab; 48];
const WORKLOAD_DIGEST: [u8; 32] = [0x77; 32];

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn pem_chain(c: &TestChain) -> String {
    [&c.ask, &c.ark]
        .iter()
        .map(|der| pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec())))
        .collect()
}

/// A CRL under the test ARK, current from an hour ago for `valid_for` seconds.
fn test_crl(revoked: &[&[u8]], valid_for: i64) -> Vec<u8> {
    let now = unix_now();
    crl(PRODUCT, revoked, now - 3600, now + valid_for, rsa_key(0))
}

// ---------- a local KDS ----------

/// The VCEK (DER) and the ASK+ARK (PEM) the local KDS serves.
type Served = Option<(Vec<u8>, String)>;

#[derive(Clone, Default)]
struct KdsState {
    chain: Arc<Mutex<Served>>,
    crl: Arc<Mutex<Option<Vec<u8>>>>,
    hits: Arc<Mutex<BTreeMap<String, usize>>>,
}

impl KdsState {
    fn hits(&self, kind: &str) -> usize {
        self.hits.lock().unwrap().get(kind).copied().unwrap_or(0)
    }
    fn set_crl(&self, crl: Option<Vec<u8>>) {
        *self.crl.lock().unwrap() = crl;
    }
}

async fn kds_handler(
    State(st): State<KdsState>,
    UrlPath((signer, product, item)): UrlPath<(String, String, String)>,
) -> axum::response::Response {
    let kind = match item.as_str() {
        "cert_chain" | "crl" => item.clone(),
        _ => "vcek".to_owned(),
    };
    *st.hits.lock().unwrap().entry(kind.clone()).or_default() += 1;
    if signer != "vcek" || product != "Genoa" {
        return StatusCode::NOT_FOUND.into_response();
    }
    let chain = st.chain.lock().unwrap().clone();
    match (kind.as_str(), chain) {
        ("cert_chain", Some((_, pem))) => pem.into_response(),
        ("vcek", Some((leaf, _))) if item == hex::encode(hw_id(PRODUCT)) => leaf.into_response(),
        ("crl", _) => match st.crl.lock().unwrap().clone() {
            Some(c) => c.into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        },
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn start_kds(c: &TestChain, crl: Option<Vec<u8>>) -> (String, KdsState) {
    let st = KdsState::default();
    *st.chain.lock().unwrap() = Some((c.leaf.clone(), pem_chain(c)));
    st.set_crl(crl);
    let app = axum::Router::new()
        .route("/{signer}/v1/{product}/{item}", get(kds_handler))
        .with_state(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, st)
}

// ---------- the broker ----------

struct Broker {
    url: String,
    state: AppState,
    clock: OffsetClock,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

struct BrokerSetup<'a> {
    policy: String,
    kds_url: Option<&'a str>,
    offline_dir: Option<&'a Path>,
}

fn broker_config(dir: &Path, setup: &BrokerSetup<'_>, ark: &[u8]) -> Config {
    let policy_path = dir.join("policy.toml");
    std::fs::write(&policy_path, &setup.policy).unwrap();
    let ark_path = dir.join("test-ark.der");
    std::fs::write(&ark_path, ark).unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = format!("sqlite://{}", dir.join("writ.db").display());
    cfg.keys.dir = dir.join("keys");
    cfg.policy.file = policy_path;
    cfg.trust.bundled_manufacturers = false;
    cfg.trust.dangerous_snp_test_roots = vec![SnpTestRoot {
        product: "Genoa".into(),
        file: ark_path,
    }];
    cfg.snp.cache_dir = dir.join("kds-cache");
    match setup.kds_url {
        Some(u) => cfg.snp.kds_url = u.to_owned(),
        None => cfg.snp.kds_fetch = false,
    }
    cfg.snp.offline_dir = setup.offline_dir.map(Path::to_owned);
    cfg
}

async fn start_broker(c: &TestChain, setup: BrokerSetup<'_>) -> Broker {
    let dir = tempfile::tempdir().unwrap();
    let cfg = broker_config(dir.path(), &setup, &c.ark);
    let clock = OffsetClock::default();
    let state = writ_broker::server::build_state(cfg, Arc::new(clock.clone()))
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = writ_broker::app(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Broker {
        url,
        state,
        clock,
        http: reqwest::Client::new(),
        _dir: dir,
    }
}

fn policy(extra: &str, tcb_floor: u8) -> String {
    format!(
        r#"id = "snp-e2e"

[[groups]]
name = "snp"
hosts = ["*"]
[groups.snp]
allowed_measurements = ["{m}"]
allowed_host_data = ["{h0}", "{h42}"]
dangerous_allow_extra_root = true
{extra}
[groups.snp.min_reported_tcb]
snp = {tcb_floor}

[[workloads]]
name = "hello"
digests = ["{d}"]
"#,
        m = hex::encode(MEASUREMENT),
        h0 = hex::encode([0u8; 32]),
        h42 = hex::encode([0x42u8; 32]),
        d = hex::encode(WORKLOAD_DIGEST),
    )
}

impl Broker {
    async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        (status, r.json().await.unwrap())
    }

    async fn challenge(&self, host_id: &str) -> Vec<u8> {
        let (s, v) = self
            .post("/v1/snp/challenge", &json!({ "host_id": host_id }))
            .await;
        assert_eq!(s, StatusCode::OK, "{v}");
        b64d(v["nonce"].as_str().unwrap())
    }

    async fn attest(
        &self,
        host_id: &str,
        nonce: &[u8],
        key: &[u8],
        ev: &SnpEvidence,
    ) -> (StatusCode, Value) {
        self.post(
            "/v1/snp/attest",
            &json!({
                "host_id": host_id,
                "nonce": b64e(nonce),
                "attester_key": b64e(key),
                "evidence": ev,
            }),
        )
        .await
    }

    async fn token(&self, req: &SnpTokenRequest) -> (StatusCode, Value) {
        self.post("/v1/snp/tokens", &serde_json::to_value(req).unwrap())
            .await
    }

    fn verifier(&self) -> TokenVerifier {
        TokenVerifier::new(
            (*self.state.key_set).clone(),
            Expectations {
                require_workload_digest: true,
                ..Expectations::new(self.state.config.tokens.issuer.clone(), "hello")
            },
        )
    }
}

fn b64e(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn b64d(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

// ---------- a simulated guest ----------

struct Guest {
    spec: ReportSpec,
}

impl Guest {
    fn new(c: &TestChain) -> Guest {
        let mut spec = report_spec(c);
        spec.measurement = MEASUREMENT;
        Guest { spec }
    }

    fn report(&self, report_data: [u8; 64]) -> Vec<u8> {
        let mut s = self.spec.clone();
        s.report_data = report_data;
        signed_report(&s)
    }

    /// What the guest computes from any report of its own.
    fn host_id(&self) -> String {
        snp_host_id(&AttestationReport::parse(&self.report([0; 64])).unwrap()).unwrap()
    }

    fn evidence(&self, report_data: [u8; 64]) -> SnpEvidence {
        SnpEvidence {
            report: self.report(report_data),
            vcek: None,
            chain: Vec::new(),
        }
    }

    /// Challenge, then a token request backed by a report bound to it.
    async fn request_token(&self, b: &Broker, workload_digest: [u8; 32]) -> (StatusCode, Value) {
        let host_id = self.host_id();
        let nonce = b.challenge(&host_id).await;
        let binding = TokenRequestBinding {
            host_id: &host_id,
            workload: "hello",
            workload_digest: &workload_digest,
            cnf_key: None,
        };
        let rd = binding.snp_report_data(&nonce);
        b.token(&SnpTokenRequest {
            host_id: host_id.clone(),
            workload: "hello".into(),
            workload_digest: workload_digest.to_vec(),
            cnf: None,
            nonce,
            evidence: self.evidence(rd),
        })
        .await
    }
}

impl Guest {
    /// Like `request_token`, but a refused challenge is an answer too.
    async fn try_token(&self, b: &Broker) -> (StatusCode, Value) {
        let host_id = self.host_id();
        let (s, v) = b
            .post("/v1/snp/challenge", &json!({ "host_id": host_id }))
            .await;
        if s != StatusCode::OK {
            return (s, v);
        }
        let nonce = b64d(v["nonce"].as_str().unwrap());
        let binding = TokenRequestBinding {
            host_id: &host_id,
            workload: "hello",
            workload_digest: &WORKLOAD_DIGEST,
            cnf_key: None,
        };
        let rd = binding.snp_report_data(&nonce);
        b.token(&SnpTokenRequest {
            host_id: host_id.clone(),
            workload: "hello".into(),
            workload_digest: WORKLOAD_DIGEST.to_vec(),
            cnf: None,
            nonce,
            evidence: self.evidence(rd),
        })
        .await
    }
}

fn failures(v: &Value) -> String {
    let f = if v.get("failures").is_some() {
        &v["failures"]
    } else {
        &v["error"]["details"]["failures"]
    };
    f.to_string()
}

async fn assert_denied(b: &Broker, g: &Guest, needle: &str) {
    let (s, v) = g.request_token(b, WORKLOAD_DIGEST).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "denied", "{v}");
    assert!(failures(&v).contains(needle), "{needle} not in {v}");
    let counts = b.state.store.counts().await.unwrap();
    assert_eq!(counts.tokens, 0);
    assert_eq!(counts.hosts, 0, "a denied host is not registered");
}

// ---------- tests ----------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attest_token_and_verify_through_a_local_kds() {
    let c = chain(PRODUCT);
    let (kds_url, kds) = start_kds(&c, Some(test_crl(&[&[0x01]], 86_400))).await;
    let b = start_broker(
        &c,
        BrokerSetup {
            policy: policy("", 23),
            kds_url: Some(&kds_url),
            offline_dir: None,
        },
    )
    .await;
    let g = Guest::new(&c);
    let host_id = g.host_id();

    // Attest: REPORT_DATA = SHA-512(nonce ‖ attester key).
    let key = b"attester public key bytes";
    let nonce = b.challenge(&host_id).await;
    let ev = g.evidence(expected_report_data(&nonce, key));
    let (s, v) = b.attest(&host_id, &nonce, key, &ev).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["verdict"], "affirming", "{v}");
    assert_eq!(v["host_status"], "trusted");
    let reg = b.state.store.snp_host(&host_id).await.unwrap().unwrap();
    assert_eq!(reg.chip_id, {
        let mut c = hw_id(PRODUCT);
        c.resize(64, 0);
        c
    });
    assert_eq!(reg.measurement, MEASUREMENT.to_vec());
    assert_eq!(reg.product, "Genoa");
    // The same nonce cannot be used twice.
    let (s, v) = b.attest(&host_id, &nonce, key, &ev).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "nonce_reused");

    // Token: REPORT_DATA = SHA-512(nonce ‖ canonical request).
    let (s, v) = g.request_token(&b, WORKLOAD_DIGEST).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let token = b64d(v["token"].as_str().unwrap());
    let verified = b.verifier().verify(&token, b.clock_now()).unwrap();
    assert_eq!(verified.claims.sub, host_id);
    assert_eq!(verified.claims.aud, "hello");
    let cpu = &verified.claims.appraisal.submods["cpu"];
    assert_eq!(cpu["measurement"], ClaimValue::Bytes(MEASUREMENT.to_vec()));
    assert_eq!(cpu["chip-id"], ClaimValue::Bytes(hw_id(PRODUCT)));
    assert_eq!(cpu["reported-tcb-snp"], ClaimValue::Int(23));
    assert_eq!(cpu["product"], ClaimValue::Text("Genoa".into()));
    assert_eq!(cpu["revocation-checked"], ClaimValue::Bool(true));
    assert_eq!(cpu["dangerous-test-root"], ClaimValue::Bool(true));
    assert!(!verified.claims.appraisal.submods.contains_key("tpm"));
    let counts = b.state.store.counts().await.unwrap();
    assert_eq!((counts.hosts, counts.tokens, counts.appraisals), (1, 1, 2));

    // Every decision is in the audit log, the token at its own audit_index.
    let rows = b.state.store.audit_leaves(0, 1 << 20).await.unwrap();
    let decisions: Vec<Decision> = rows
        .iter()
        .map(|r| Leaf::decode(&r.leaf).unwrap().decision)
        .collect();
    let kinds: Vec<&str> = decisions.iter().map(Decision::kind).collect();
    assert_eq!(
        kinds,
        [
            "policy_activated",
            "enrollment",
            "appraisal",
            "host_state_changed",
            "appraisal",
            "token_minted"
        ]
    );
    let Decision::Enrollment { host, accepted, .. } = &decisions[1] else {
        panic!("{:?}", decisions[1]);
    };
    assert!(*accepted && *host == host_id);
    // Issuing the challenge was not logged; the appraisal that consumed it
    // records its digest (finding 3).
    let Decision::Appraisal { nonce_digest, .. } = &decisions[2] else {
        panic!("{:?}", decisions[2]);
    };
    assert_eq!(
        nonce_digest.as_deref(),
        Some(
            verifier_lib::crypto::HashAlg::Sha256
                .digest(&nonce)
                .as_slice()
        )
    );
    let index = verified.claims.audit_index.unwrap();
    assert_eq!(index, rows[5].index);
    let Decision::TokenMinted { cti, .. } = &decisions[5] else {
        panic!("{:?}", decisions[5]);
    };
    assert_eq!(*cti, hex::encode(&verified.claims.cti));

    // Everything came from KDS once and then from the cache.
    assert_eq!(
        (kds.hits("vcek"), kds.hits("cert_chain"), kds.hits("crl")),
        (1, 1, 1)
    );
    let (s, _) = g.request_token(&b, WORKLOAD_DIGEST).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(
        (kds.hits("vcek"), kds.hits("cert_chain"), kds.hits("crl")),
        (1, 1, 1)
    );

    // Near the CRL's nextUpdate the CRL is re-fetched.
    kds.set_crl(Some(test_crl(&[], 3 * 86_400)));
    b.clock.advance(86_400 - 1800);
    let (s, v) = g.request_token(&b, WORKLOAD_DIGEST).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(kds.hits("crl"), 2);

    // A workload digest the policy does not allow.
    let (s, v) = g.request_token(&b, [0x78; 32]).await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert!(failures(&v).contains("workload_digest_not_allowed"), "{v}");
}

impl Broker {
    fn clock_now(&self) -> i64 {
        use writ_broker::clock::Clock;
        self.clock.now()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_with_its_own_certificates_needs_no_kds_fetch_but_a_crl() {
    let c = chain(PRODUCT);
    let (kds_url, kds) = start_kds(&c, None).await;
    let b = start_broker(
        &c,
        BrokerSetup {
            policy: policy("", 23),
            kds_url: Some(&kds_url),
            offline_dir: None,
        },
    )
    .await;
    let g = Guest::new(&c);
    let host_id = g.host_id();
    let key = b"k";
    // No CRL anywhere: CrlUnavailable, and nothing registered.
    let nonce = b.challenge(&host_id).await;
    let mut ev = g.evidence(expected_report_data(&nonce, key));
    ev.vcek = Some(c.leaf.clone());
    ev.chain = vec![c.ark.clone(), c.ask.clone()];
    let (s, v) = b.attest(&host_id, &nonce, key, &ev).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(v["verdict"], "contraindicated");
    assert!(failures(&v).contains("no CRL available"), "{v}");
    assert_eq!(v["host_status"], "unregistered");
    assert_eq!(kds.hits("vcek"), 0);
    assert_eq!(kds.hits("cert_chain"), 0);
    assert_eq!(b.state.store.counts().await.unwrap().hosts, 0);

    // With a CRL served, the same kind of evidence passes.
    kds.set_crl(Some(test_crl(&[], 86_400)));
    let nonce = b.challenge(&host_id).await;
    let mut ev = g.evidence(expected_report_data(&nonce, key));
    ev.vcek = Some(c.leaf.clone());
    ev.chain = vec![c.ask.clone()];
    let (_, v) = b.attest(&host_id, &nonce, key, &ev).await;
    assert_eq!(v["verdict"], "affirming", "{v}");
    assert_eq!(kds.hits("vcek"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_deny_case() {
    let c = chain(PRODUCT);
    let (kds_url, kds) = start_kds(&c, Some(test_crl(&[], 86_400))).await;
    let setup = |policy: String| BrokerSetup {
        policy,
        kds_url: Some(&kds_url),
        offline_dir: None,
    };
    let b = start_broker(&c, setup(policy("", 23))).await;
    let g = Guest::new(&c);
    let host_id = g.host_id();

    // Wrong REPORT_DATA: bound to another nonce; the host is not marked.
    let n1 = b.challenge(&host_id).await;
    let n2 = b.challenge(&host_id).await;
    let ev = g.evidence(expected_report_data(&n2, b"k"));
    let (_, v) = b.attest(&host_id, &n1, b"k", &ev).await;
    assert_eq!(v["verdict"], "contraindicated");
    assert!(failures(&v).contains("report_data mismatch"), "{v}");
    // Bound to the right nonce but another key.
    let ev = g.evidence(expected_report_data(&n2, b"other key"));
    let (_, v) = b.attest(&host_id, &n2, b"k", &ev).await;
    assert!(failures(&v).contains("report_data mismatch"), "{v}");
    // Truncated REPORT_DATA binding (32 bytes + zero padding) is refused.
    let n3 = b.challenge(&host_id).await;
    let mut rd = expected_report_data(&n3, b"k");
    rd[32..].fill(0);
    let (_, v) = b.attest(&host_id, &n3, b"k", &g.evidence(rd)).await;
    assert!(failures(&v).contains("report_data mismatch"), "{v}");
    assert_eq!(b.state.store.counts().await.unwrap().hosts, 0);

    // Another guest's host id: the report identifies someone else.
    let mut other = Guest::new(&c);
    other.spec.measurement = [0x42; 48];
    let n = b.challenge(&other.host_id()).await;
    let (_, v) = b
        .attest(
            &other.host_id(),
            &n,
            b"k",
            &g.evidence(expected_report_data(&n, b"k")),
        )
        .await;
    assert!(failures(&v).contains("snp_host"), "{v}");
    // Malformed host ids are refused before any nonce is stored.
    let (s, v) = b
        .post("/v1/snp/challenge", &json!({"host_id": "not-snp"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], "invalid_snp_host_id");

    // Measurement not allowed.
    let mut m = Guest::new(&c);
    m.spec.measurement = [0xcd; 48];
    assert_denied(&b, &m, "\"snp_rule\":\"measurement\"").await;

    // Debug allowed by the guest policy.
    let mut d = Guest::new(&c);
    d.spec.policy |= 1 << 19;
    assert_denied(&b, &d, "\"snp_rule\":\"debug\"").await;

    // TCB below the floor.
    let floor = start_broker(&c, setup(policy("", 24))).await;
    assert_denied(&floor, &g, "min_reported_tcb").await;

    // No [groups.snp]: no challenge at all.
    let no_snp = start_broker(
        &c,
        setup(format!(
            "id = \"tpm-only\"
[[groups]]
name = \"g\"
hosts = [\"*\"]
[groups.pcrs]
7 = [\"{}\"]
",
            hex::encode([0u8; 32])
        )),
    )
    .await;
    let (s, v) = no_snp
        .post("/v1/snp/challenge", &json!({"host_id": host_id}))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "snp_not_allowed");
    // The client is not told the policy's group names (finding 6).
    assert!(
        !v.to_string().contains("group g") && !v.to_string().contains("[groups.snp]"),
        "{v}"
    );

    // The CRL from KDS lists the test VCEK.
    kds.set_crl(Some(test_crl(&[&c.leaf_serial], 86_400)));
    let revoked = start_broker(&c, setup(policy("", 23))).await;
    assert_denied(&revoked, &g, "revoked").await;

    // No CRL at all: CrlUnavailable denies...
    kds.set_crl(None);
    let no_crl = start_broker(&c, setup(policy("", 23))).await;
    assert_denied(&no_crl, &g, "no CRL available").await;
    // ...unless the policy dangerously skips revocation, which the token says.
    let skip = start_broker(
        &c,
        setup(policy("dangerous_allow_unchecked_revocation = true", 23)),
    )
    .await;
    let (s, v) = g.request_token(&skip, WORKLOAD_DIGEST).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let t = skip
        .verifier()
        .verify(&b64d(v["token"].as_str().unwrap()), skip.clock_now())
        .unwrap();
    assert_eq!(
        t.claims.appraisal.submods["cpu"]["revocation-checked"],
        ClaimValue::Bool(false)
    );

    // A chain ending in the test root without the policy's explicit
    // acknowledgement is refused even with everything else right.
    kds.set_crl(Some(test_crl(&[], 86_400)));
    let strict = start_broker(
        &c,
        setup(policy("", 23).replace("dangerous_allow_extra_root = true\n", "")),
    )
    .await;
    assert_denied(&strict, &g, "trusted_root").await;
}

fn write_bundle(dir: &Path, c: &TestChain, crl: &[u8]) -> PathBuf {
    let root = dir.join("bundle");
    let product = root.join("Genoa");
    std::fs::create_dir_all(product.join("vcek")).unwrap();
    std::fs::write(product.join("cert_chain.pem"), pem_chain(c)).unwrap();
    std::fs::write(product.join("crl.der"), crl).unwrap();
    let tcb = c.spl.tcb(PRODUCT);
    std::fs::write(
        product
            .join("vcek")
            .join(format!("{}-{tcb:016x}.der", hex::encode(hw_id(PRODUCT)))),
        &c.leaf,
    )
    .unwrap();
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_bundle_for_air_gapped_sites() {
    let c = chain(PRODUCT);
    let g = Guest::new(&c);
    let dir = tempfile::tempdir().unwrap();

    // A clean bundle: no network needed (fetching is off).
    let clean = write_bundle(&dir.path().join("clean"), &c, &test_crl(&[], 86_400));
    let b = start_broker(
        &c,
        BrokerSetup {
            policy: policy("", 23),
            kds_url: None,
            offline_dir: Some(&clean),
        },
    )
    .await;
    let (s, v) = g.request_token(&b, WORKLOAD_DIGEST).await;
    assert_eq!(s, StatusCode::OK, "{v}");

    // The bundle's CRL lists the VCEK.
    let revoked = write_bundle(
        &dir.path().join("revoked"),
        &c,
        &test_crl(&[&c.leaf_serial], 86_400),
    );
    let b = start_broker(
        &c,
        BrokerSetup {
            policy: policy("", 23),
            kds_url: None,
            offline_dir: Some(&revoked),
        },
    )
    .await;
    assert_denied(&b, &g, "revoked").await;

    // The bundle's CRL is past its nextUpdate: unavailable, deny.
    let now = unix_now();
    let stale_crl = crl(PRODUCT, &[], now - 7200, now - 60, rsa_key(0));
    let stale = write_bundle(&dir.path().join("stale"), &c, &stale_crl);
    let b = start_broker(
        &c,
        BrokerSetup {
            policy: policy("", 23),
            kds_url: None,
            offline_dir: Some(&stale),
        },
    )
    .await;
    assert_denied(&b, &g, "no CRL available").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_dangerous_test_roots() {
    let c = chain(PRODUCT);
    let dir = tempfile::tempdir().unwrap();
    let cfg = broker_config(
        dir.path(),
        &BrokerSetup {
            policy: policy("", 23),
            kds_url: None,
            offline_dir: None,
        },
        &c.ark,
    );
    let err = writ_broker::server::serve(cfg).await.unwrap_err();
    assert!(
        matches!(
            err,
            writ_broker::server::ServeError::Dangerous {
                setting: "trust.dangerous_snp_test_roots"
            }
        ),
        "{err}"
    );
    // Nothing was created: the refusal comes before any state.
    assert!(!dir.path().join("writ.db").exists());
}

/// Regression (broker redesign): a token request racing an operator's
/// revocation of its host is either minted before the revocation (and
/// revoked by it) or refused; no token is valid after it. Before, the
/// host's status was checked before the transaction and not again by the
/// token insert, so a token could be minted after the revoke, unrevoked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_requests_racing_a_revocation_leave_no_valid_token() {
    let c = chain(PRODUCT);
    let (kds_url, _kds) = start_kds(&c, Some(test_crl(&[], 86_400))).await;
    let b = Arc::new(
        start_broker(
            &c,
            BrokerSetup {
                policy: policy("", 23),
                kds_url: Some(&kds_url),
                offline_dir: None,
            },
        )
        .await,
    );
    let g = Arc::new(Guest::new(&c));
    let host_id = g.host_id();
    let (s, v) = g.request_token(&b, WORKLOAD_DIGEST).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut minted = vec![b64d(v["cti"].as_str().unwrap())];

    // Four clients request tokens back to back while the host is revoked.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (b, g) = (Arc::clone(&b), Arc::clone(&g));
        clients.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut refused = Vec::new();
            for _ in 0..15 {
                let (s, v) = g.try_token(&b).await;
                match s {
                    StatusCode::OK => got.push(b64d(v["cti"].as_str().unwrap())),
                    _ => refused.push(v["error"]["code"].as_str().unwrap_or("").to_owned()),
                }
            }
            (got, refused)
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(150)).await;
    let op = writ_broker::config::Operator {
        name: "race-test".into(),
    };
    writ_broker::decision::operator::revoke_host(&b.state, &op, &host_id, "race")
        .await
        .unwrap();
    let mut refusals = Vec::new();
    for c in clients {
        let (got, refused) = c.await.unwrap();
        minted.extend(got);
        refusals.extend(refused);
    }
    // Every refusal after the revoke is typed; the challenge is refused too.
    for code in &refusals {
        assert!(
            ["host_revoked", "decision_conflict"].contains(&code.as_str()),
            "{refusals:?}"
        );
    }
    assert!(!refusals.is_empty(), "no request came after the revocation");
    // Every token any client received is revoked in the store, and listed
    // by the status list.
    let (_, listed) = b.state.store.revoked_ctis(0).await.unwrap();
    for cti in &minted {
        let t = b.state.store.token_state(cti).await.unwrap().unwrap();
        assert!(
            t.revoked,
            "token {} is valid after the revoke",
            hex::encode(cti)
        );
        assert!(listed.contains(cti));
    }
    let (s, v) = b
        .post("/v1/snp/challenge", &json!({ "host_id": host_id }))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    assert_eq!(v["error"]["code"], "host_revoked");
}

/// Finding 1: a revoked SNP guest cannot come back by launching with
/// another HOST_DATA (or VMPL): the host id is CHIP_ID and MEASUREMENT
/// only, so the revoked host refuses it. Before, HOST_DATA was part of the
/// host id and such a guest was a new, trusted host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding1_revoked_guest_with_other_host_data_is_refused() {
    let c = chain(PRODUCT);
    let (kds_url, _kds) = start_kds(&c, Some(test_crl(&[], 86_400))).await;
    let b = start_broker(
        &c,
        BrokerSetup {
            policy: policy("", 23),
            kds_url: Some(&kds_url),
            offline_dir: None,
        },
    )
    .await;
    let g = Guest::new(&c);
    let (s, v) = g.request_token(&b, WORKLOAD_DIGEST).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let host_id = g.host_id();
    let op = writ_broker::config::Operator {
        name: "finding1".into(),
    };
    writ_broker::decision::operator::revoke_host(&b.state, &op, &host_id, "finding 1")
        .await
        .unwrap();

    // The same guest image on the same chip, with HOST_DATA the policy
    // allows too, and another VMPL: the same host, revoked.
    let mut relaunched = Guest::new(&c);
    relaunched.spec.host_data = [0x42; 32];
    relaunched.spec.vmpl = 1;
    assert_eq!(relaunched.host_id(), host_id);
    let (s, v) = relaunched.try_token(&b).await;
    assert_eq!(s, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "host_revoked", "{v}");
    let counts = b.state.store.counts().await.unwrap();
    assert_eq!(counts.hosts, 1);
    assert_eq!(counts.tokens, 1);
}

/// Finding 1: with a HOST_DATA allow-list, a HOST_DATA not on it is denied
/// (an empty list is refused at policy load unless
/// `dangerous_any_host_data = true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding1_unlisted_host_data_is_denied() {
    let c = chain(PRODUCT);
    let (kds_url, _kds) = start_kds(&c, Some(test_crl(&[], 86_400))).await;
    let b = start_broker(
        &c,
        BrokerSetup {
            policy: policy("", 23),
            kds_url: Some(&kds_url),
            offline_dir: None,
        },
    )
    .await;
    let mut g = Guest::new(&c);
    g.spec.host_data = [0x77; 32];
    assert_denied(&b, &g, "\"snp_rule\":\"host_data\"").await;
}
