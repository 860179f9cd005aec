//! Writ's side of the Keylime side-by-side (`bench/peers/keylime.sh`): the
//! rate of one thread checking one tpm2-tools quote from its files, doing
//! per call what Keylime's `tpm_util.checkquote` does per call: parse the
//! AK's PEM and the tpm2-tools PCR file, verify the signature over the
//! attest, compare the nonce with `extraData` and the PCR digest with the
//! PCR values.
//!
//! ```sh
//! cargo run --release -p verifier-lib --example quote_check_rate -- DIR SECONDS
//! ```
//!
//! DIR holds `akpub.pem`, `quote.out`, `quotesig.out`, `quotepcr.out` and
//! `vector.json` (its `nonce_hex`), as in
//! `verifier-lib/tests/vectors/quote/keylime-swtpm/*/`. Prints one line:
//! `writ checks_per_sec=R checks=N seconds=S`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use verifier_lib::tpm::{verify_quote, AkPublic, PcrSelection, PcrValues};

struct Files {
    ak_pem: Vec<u8>,
    attest: Vec<u8>,
    signature: Vec<u8>,
    pcr_file: Vec<u8>,
    nonce: Vec<u8>,
}

fn check(f: &Files) -> Result<(), String> {
    let ak = AkPublic::parse_any(black_box(&f.ak_pem)).map_err(|e| e.to_string())?;
    let pcrs =
        PcrValues::from_tpm2_tools_pcr_file(black_box(&f.pcr_file)).map_err(|e| e.to_string())?;
    let required = PcrSelection::new(
        pcrs.0
            .iter()
            .map(|(bank, values)| (*bank, values.keys().copied().collect())),
    );
    verify_quote(
        black_box(&f.attest),
        black_box(&f.signature),
        &ak,
        &f.nonce,
        &pcrs,
        &required,
    )
    .map_err(|e| e.to_string())?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(seconds)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: quote_check_rate DIR SECONDS");
        std::process::exit(2);
    };
    let dir = Path::new(dir);
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    let vector: serde_json::Value = serde_json::from_slice(&read("vector.json")).unwrap();
    let files = Files {
        ak_pem: read("akpub.pem"),
        attest: read("quote.out"),
        signature: read("quotesig.out"),
        pcr_file: read("quotepcr.out"),
        nonce: hex::decode(vector["nonce_hex"].as_str().unwrap()).unwrap(),
    };
    // A flipped signature bit must fail, or the rate means nothing.
    let mut forged = read("quotesig.out");
    let last = forged.len() - 1;
    forged[last] ^= 1;
    let forged_files = Files {
        ak_pem: files.ak_pem.clone(),
        attest: files.attest.clone(),
        signature: forged,
        pcr_file: files.pcr_file.clone(),
        nonce: files.nonce.clone(),
    };
    assert!(check(&forged_files).is_err(), "a forged signature passed");
    check(&files).unwrap();

    let budget = Duration::from_secs_f64(seconds.parse().unwrap());
    for _ in 0..200 {
        check(&files).unwrap();
    }
    let start = Instant::now();
    let mut n: u64 = 0;
    while start.elapsed() < budget {
        for _ in 0..100 {
            check(&files).unwrap();
        }
        n += 100;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "writ checks_per_sec={:.0} checks={n} seconds={secs:.2}",
        n as f64 / secs
    );
}
