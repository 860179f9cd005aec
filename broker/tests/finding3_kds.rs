//! Finding 3 of the security review: forged SEV-SNP reports naming
//! attacker-chosen chip ids must not make the broker fetch from KDS without
//! bound. A separate local HTTP server stands in for KDS and counts what it
//! is asked; it knows no chip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../verifier-lib/tests/snp_support/mod.rs"]
mod snp_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use base64::Engine as _;
use serde_json::{json, Value};
use snp_support::*;
use verifier_lib::api::SnpEvidence;
use verifier_lib::snp::{expected_report_data, AttestationReport, Product};
use verifier_lib::snp_appraisal::snp_host_id;
use writ_broker::clock::OffsetClock;
use writ_broker::config::{Config, SnpTestRoot};

const BURST: u32 = 5;

async fn start_kds() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    async fn unknown(State(hits): State<Arc<AtomicUsize>>) -> StatusCode {
        hits.fetch_add(1, Ordering::SeqCst);
        StatusCode::NOT_FOUND
    }
    let app = axum::Router::new()
        .route("/{signer}/v1/{product}/{item}", get(unknown))
        .with_state(Arc::clone(&hits));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, hits)
}

fn b64(b: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

/// A broker with an SNP policy for the test chain, fetching from `kds_url`;
/// its address.
async fn snp_broker(
    c: &TestChain,
    kds_url: String,
) -> (tempfile::TempDir, String, writ_broker::state::AppState) {
    let dir = tempfile::tempdir().unwrap();
    // Host data and TCB are not what this test is about: it says so.
    let policy = format!(
        "id = \"kds\"\n[[groups]]\nname = \"snp\"\nhosts = [\"*\"]\n[groups.snp]\n\
         allowed_measurements = [\"{}\"]\ndangerous_allow_extra_root = true\n\
         dangerous_any_host_data = true\ndangerous_accept_any_tcb = true\n",
        hex::encode([0xab; 48])
    );
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    std::fs::write(dir.path().join("ark.der"), &c.ark).unwrap();
    let mut cfg = Config::default();
    cfg.storage.url = format!("sqlite://{}", dir.path().join("w.db").display());
    cfg.keys.dir = dir.path().join("keys");
    cfg.policy.file = dir.path().join("policy.toml");
    cfg.trust.bundled_manufacturers = false;
    cfg.trust.dangerous_snp_test_roots = vec![SnpTestRoot {
        product: "Genoa".into(),
        file: dir.path().join("ark.der"),
    }];
    cfg.snp.cache_dir = dir.path().join("kds-cache");
    cfg.snp.kds_url = kds_url;
    cfg.snp.kds_fetch_burst = BURST;
    cfg.snp.kds_fetches_per_min = 1;
    let st = writ_broker::server::build_state(cfg, Arc::new(OffsetClock::default()))
        .await
        .unwrap();
    let app = writ_broker::app(st.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (dir, url, st)
}

#[tokio::test]
async fn finding3_forged_chip_ids_cause_bounded_kds_fetches() {
    let c = chain(Product::Genoa);
    let (kds_url, hits) = start_kds().await;
    let (_dir, url, st) = snp_broker(&c, kds_url).await;
    let http = reqwest::Client::new();
    let post = |path: &str, body: Value| {
        let req = http.post(format!("{url}{path}")).json(&body);
        async move {
            let r = req.send().await.unwrap();
            let s = r.status();
            (s, r.json::<Value>().await.unwrap())
        }
    };

    let mut spec = report_spec(&c);
    spec.measurement = [0xab; 48];
    let host_id = snp_host_id(&AttestationReport::parse(&signed_report(&spec)).unwrap()).unwrap();
    // A forged report for chip `i`, bound to a fresh challenge.
    let forged = |i: u8, nonce: &[u8]| {
        let mut s = spec.clone();
        s.chip_id = [i; 64];
        s.report_data = expected_report_data(nonce, b"k");
        SnpEvidence {
            report: signed_report(&s),
            vcek: None,
            chain: Vec::new(),
        }
    };
    let attest = |i: u8| {
        let post = &post;
        let host_id = host_id.clone();
        async move {
            let (s, v) = post("/v1/snp/challenge", json!({ "host_id": host_id })).await;
            assert_eq!(s, StatusCode::OK, "{v}");
            let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(v["nonce"].as_str().unwrap())
                .unwrap();
            post(
                "/v1/snp/attest",
                json!({
                    "host_id": host_id,
                    "nonce": b64(&nonce),
                    "attester_key": b64(b"k"),
                    "evidence": forged(i, &nonce),
                }),
            )
            .await
        }
    };

    // 30 distinct chip ids: KDS is asked at most the burst; the rest fail
    // closed with a typed 503.
    let mut busy = 0;
    for i in 1..=30u8 {
        let (s, v) = attest(i).await;
        if s == StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(v["error"]["code"], "kds_busy", "{v}");
            busy += 1;
        } else {
            assert_eq!(v["verdict"], "contraindicated", "{v}");
        }
    }
    assert_eq!(hits.load(Ordering::SeqCst), BURST as usize);
    assert_eq!(busy, 30 - BURST);
    // A chip id KDS said it does not know is not asked again.
    for _ in 0..5 {
        let (s, v) = attest(1).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["verdict"], "contraindicated", "{v}");
    }
    assert_eq!(hits.load(Ordering::SeqCst), BURST as usize);
    // The metrics count the same: KDS asked BURST times (each a 404), the
    // rest refused at the bound, the repeats answered from the remembered
    // negative answer; every appraisal decided is counted.
    let scrape = st.metrics.render(&st).await;
    for line in [
        format!("writ_kds_fetches_total{{result=\"error_status\"}} {BURST}"),
        format!("writ_kds_fetches_total{{result=\"busy\"}} {}", 30 - BURST),
        "writ_kds_fetches_total{result=\"negative_cached\"} 5".to_owned(),
        "writ_kds_fetches_total{result=\"fetched\"} 0".to_owned(),
        format!(
            "writ_appraisals_total{{kind=\"snp\",result=\"contraindicated\"}} {}",
            BURST + 5
        ),
    ] {
        assert!(scrape.lines().any(|l| l == line), "{line} not in\n{scrape}");
    }
}

/// KDS does not answer (nothing listens at its URL) and the guest sent no
/// certificates: the report cannot be checked, so nothing is trusted — a
/// contraindicated appraisal, no registration, and no token.
#[tokio::test]
async fn kds_unreachable_fails_closed() {
    let c = chain(Product::Genoa);
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let kds_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let (_dir, url, st) = snp_broker(&c, kds_url).await;
    let http = reqwest::Client::new();
    let mut spec = report_spec(&c);
    spec.measurement = [0xab; 48];
    let host_id = snp_host_id(&AttestationReport::parse(&signed_report(&spec)).unwrap()).unwrap();
    let v: Value = http
        .post(format!("{url}/v1/snp/challenge"))
        .json(&json!({ "host_id": host_id }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nonce = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(v["nonce"].as_str().unwrap())
        .unwrap();
    spec.report_data = expected_report_data(&nonce, b"k");
    let r = http
        .post(format!("{url}/v1/snp/attest"))
        .json(&json!({
            "host_id": host_id,
            "nonce": b64(&nonce),
            "attester_key": b64(b"k"),
            "evidence": SnpEvidence { report: signed_report(&spec), vcek: None, chain: Vec::new() },
        }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["verdict"], "contraindicated", "{v}");
    assert_eq!(v["host_status"], "unregistered", "{v}");
    assert!(
        v["failures"].to_string().to_lowercase().contains("vcek"),
        "the failure names the missing VCEK: {v}"
    );
    let counts = st.store.counts().await.unwrap();
    assert_eq!((counts.hosts, counts.tokens), (0, 0));
}
