//! SEV-SNP parsers and the fuzz entry points never panic on arbitrary or
//! mutated input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use proptest::prelude::*;
use verifier_lib::snp::{AttestationReport, REPORT_LEN};

const REPORT: &[u8] =
    include_bytes!("vectors/sevsnp/teekit-gcp/milan-v5/report-with-reportdata.bin");
const VCEK: &[u8] = include_bytes!("vectors/sevsnp/virtee-sev/turin-chain-only/vcek.der");

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..1400)) {
        verifier_lib::fuzzing::snp_report(&data);
        verifier_lib::fuzzing::snp_vcek_ext(&data);
    }

    #[test]
    fn mutated_report(edits in proptest::collection::vec((0..REPORT_LEN, any::<u8>()), 1..8)) {
        let mut r = REPORT.to_vec();
        for (i, v) in &edits {
            r[*i] = *v;
        }
        let _ = AttestationReport::parse(&r);
        verifier_lib::fuzzing::snp_report(&r);
    }

    #[test]
    fn mutated_vcek(edits in proptest::collection::vec((0..VCEK.len(), any::<u8>()), 1..8), cut in 0..VCEK.len()) {
        let mut c = VCEK.to_vec();
        for (i, v) in &edits {
            c[*i] = *v;
        }
        verifier_lib::fuzzing::snp_vcek_ext(&c);
        verifier_lib::fuzzing::snp_vcek_ext(&c[..cut]);
    }
}
