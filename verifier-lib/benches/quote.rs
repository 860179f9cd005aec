//! Quote verification throughput: an ECDSA P-256 quote and an RSA-2048
//! RSASSA quote, against a raw aws-lc-rs ES256 verify measured in the same run.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use criterion::Criterion;
use verifier_lib::tpm::{verify_quote, AkPublic, PcrSelection, PcrValues};

macro_rules! vector {
    ($path:literal) => {
        include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/vectors/quote/",
            $path
        ))
    };
}

struct QuoteInput {
    name: &'static str,
    attest: &'static [u8],
    signature: &'static [u8],
    ak: AkPublic,
    nonce: Vec<u8>,
    pcrs: PcrValues,
    required: PcrSelection,
}

impl QuoteInput {
    fn new(
        name: &'static str,
        attest: &'static [u8],
        signature: &'static [u8],
        ak: &[u8],
        vector_json: &[u8],
    ) -> QuoteInput {
        let v: serde_json::Value = serde_json::from_slice(vector_json).unwrap();
        let pcrs = match v.get("pcr_values_by_bank") {
            Some(by_bank) => PcrValues::from_json(&by_bank.to_string()).unwrap(),
            None => PcrValues::from_json(
                &serde_json::json!({ v["pcr_bank"].as_str().unwrap(): v["pcr_values"] })
                    .to_string(),
            )
            .unwrap(),
        };
        let required = PcrSelection::new(
            pcrs.0
                .iter()
                .map(|(bank, values)| (*bank, values.keys().copied().collect())),
        );
        let input = QuoteInput {
            name,
            attest,
            signature,
            ak: AkPublic::parse_any(ak).unwrap(),
            nonce: hex::decode(v["nonce_hex"].as_str().unwrap()).unwrap(),
            pcrs,
            required,
        };
        input.run();
        input
    }

    fn run(&self) {
        verify_quote(
            black_box(self.attest),
            black_box(self.signature),
            &self.ak,
            &self.nonce,
            &self.pcrs,
            &self.required,
        )
        .unwrap();
    }
}

fn inputs() -> (QuoteInput, QuoteInput) {
    let ecc = QuoteInput::new(
        "quote ECDSA P-256 (swtpm; 7 PCRs in 2 banks)",
        vector!("swtpm/ecc-p256-ecdsa-sha256/quote.attest.bin"),
        vector!("swtpm/ecc-p256-ecdsa-sha256/quote.sig.tpmt.bin"),
        vector!("swtpm/ecc-p256-ecdsa-sha256/ak.pub"),
        vector!("swtpm/ecc-p256-ecdsa-sha256/vector.json"),
    );
    let rsa = QuoteInput::new(
        "quote RSA-2048 RSASSA (keylime swtpm; 3 PCRs)",
        vector!("keylime-swtpm/sha256-pcr15-16-22/quote.out"),
        vector!("keylime-swtpm/sha256-pcr15-16-22/quotesig.out"),
        vector!("keylime-swtpm/sha256-pcr15-16-22/ak.pub"),
        vector!("keylime-swtpm/sha256-pcr15-16-22/vector.json"),
    );
    (ecc, rsa)
}

/// A raw ES256 verification over a message the size of the ECC quote's attest.
struct Baseline {
    public: Vec<u8>,
    message: Vec<u8>,
    signature: Vec<u8>,
}

impl Baseline {
    fn new(message: &[u8]) -> Baseline {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let kp =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
        let signature = kp.sign(&rng, message).unwrap().as_ref().to_vec();
        Baseline {
            public: kp.public_key().as_ref().to_vec(),
            message: message.to_vec(),
            signature,
        }
    }

    fn run(&self) {
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &self.public)
            .verify(black_box(&self.message), black_box(&self.signature))
            .unwrap();
    }
}

fn ops_per_sec(f: &dyn Fn(), budget: Duration) -> f64 {
    for _ in 0..100 {
        f();
    }
    let start = Instant::now();
    let mut n: u32 = 0;
    while start.elapsed() < budget {
        for _ in 0..100 {
            f();
        }
        n += 100;
    }
    f64::from(n) / start.elapsed().as_secs_f64()
}

fn main() {
    let (ecc, rsa) = inputs();
    let baseline = Baseline::new(ecc.attest);

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("quote");
    group.bench_function("baseline aws-lc-rs ES256 verify", |b| {
        b.iter(|| baseline.run())
    });
    group.bench_function(ecc.name, |b| b.iter(|| ecc.run()));
    group.bench_function(rsa.name, |b| b.iter(|| rsa.run()));
    group.finish();
    c.final_summary();

    // Ratios to the baseline, measured back to back in this process.
    let budget = Duration::from_secs(1);
    let base = ops_per_sec(&|| baseline.run(), budget);
    println!("\n{:<50} {:>10} {:>9}", "operation", "ops/s", "vs ES256");
    println!(
        "{:<50} {:>10.0} {:>9.2}",
        "baseline aws-lc-rs ES256 verify", base, 1.0
    );
    for q in [&ecc, &rsa] {
        let ops = ops_per_sec(&|| q.run(), budget);
        println!("{:<50} {:>10.0} {:>9.2}", q.name, ops, ops / base);
    }
}
