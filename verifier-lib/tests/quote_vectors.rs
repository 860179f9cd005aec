//! Quote verification against every vector under `tests/vectors/quote/`.
//!
//! Each directory's `vector.json` names the file roles, the nonce and the PCR
//! values; the loader below understands the three shapes used there (one
//! quote with `pcr_bank`/`pcr_values`, one quote with `pcr_values_by_bank`,
//! and a `quotes` map keyed by bank). Nothing is special-cased per file.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use proptest::prelude::*;
use serde_json::Value;
use verifier_lib::crypto::{HashAlg, PublicKey};
use verifier_lib::tpm::{
    verify_quote, verify_quote_with_signature, AkPublic, Attest, Attested, PcrSelection, PcrValues,
    QuoteError, SigAlg, Signature, TpmError,
};
use verifier_lib::wire::WireError;

/// How the signature file is encoded, as stated by `vector.json`.
#[derive(Debug, Clone, Copy)]
enum SigEncoding {
    Tpmt,
    RawRsaPkcs1(HashAlg),
}

#[derive(Debug, Clone)]
struct Case {
    label: String,
    dir: PathBuf,
    attest: Vec<u8>,
    sig: Vec<u8>,
    sig_encoding: SigEncoding,
    /// (file name, bytes) of every AK encoding the vector names.
    aks: Vec<(String, Vec<u8>)>,
    nonce: Vec<u8>,
    pcrs: PcrValues,
    required: PcrSelection,
    pcr_digest: Option<Vec<u8>>,
}

impl Case {
    fn signature(&self, sig: &[u8]) -> Result<Signature, TpmError> {
        match self.sig_encoding {
            SigEncoding::Tpmt => Signature::parse(sig),
            SigEncoding::RawRsaPkcs1(h) => Ok(Signature::from_raw_rsa_pkcs1(h, sig)),
        }
    }

    fn ak(&self) -> AkPublic {
        AkPublic::parse_any(&self.aks[0].1).unwrap()
    }

    /// Verify with possibly modified inputs.
    fn verify_with(
        &self,
        attest: &[u8],
        sig: &[u8],
        ak: &AkPublic,
        nonce: &[u8],
        pcrs: &PcrValues,
        required: &PcrSelection,
    ) -> Result<verifier_lib::tpm::VerifiedQuote, QuoteError> {
        match self.sig_encoding {
            SigEncoding::Tpmt => verify_quote(attest, sig, ak, nonce, pcrs, required),
            SigEncoding::RawRsaPkcs1(_) => {
                let s = self.signature(sig)?;
                verify_quote_with_signature(attest, &s, ak, nonce, pcrs, required)
            }
        }
    }

    fn verify(&self) -> Result<verifier_lib::tpm::VerifiedQuote, QuoteError> {
        self.verify_with(
            &self.attest,
            &self.sig,
            &self.ak(),
            &self.nonce,
            &self.pcrs,
            &self.required,
        )
    }

    fn is_ecc(&self) -> bool {
        matches!(self.ak().key(), PublicKey::Ec { .. })
    }
}

fn vectors_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/quote")
}

fn vector_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            vector_dirs(&p, out);
        } else if p.file_name().is_some_and(|n| n == "vector.json") {
            out.push(dir.to_path_buf());
        }
    }
}

/// Names in a role description ("ak.pub (TPM2B_PUBLIC) / akpub.pem") that are files in `dir`.
fn files_named(dir: &Path, role: &str) -> Vec<String> {
    role.split(|c: char| c.is_whitespace() || "/(),".contains(c))
        .filter(|t| !t.is_empty() && dir.join(t).is_file())
        .map(str::to_owned)
        .collect()
}

fn first_file(dir: &Path, role: &str) -> Vec<u8> {
    let name = files_named(dir, role)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{}: no file in role {role:?}", dir.display()));
    std::fs::read(dir.join(name)).unwrap()
}

fn sig_encoding(role: &str) -> SigEncoding {
    if role.contains("raw PKCS#1") {
        let hash = role
            .split(|c: char| c.is_whitespace() || "(),".contains(c))
            .find_map(|t| HashAlg::from_name(&t.to_ascii_lowercase().replace('-', "")))
            .unwrap_or_else(|| panic!("raw signature without a stated hash: {role}"));
        SigEncoding::RawRsaPkcs1(hash)
    } else {
        SigEncoding::Tpmt
    }
}

fn hex_field(v: &Value, key: &str) -> Vec<u8> {
    hex::decode(v[key].as_str().unwrap_or("")).unwrap()
}

fn opt_hex(v: &Value, key: &str) -> Option<Vec<u8>> {
    v.get(key)
        .and_then(Value::as_str)
        .map(|s| hex::decode(s).unwrap())
}

fn bank_values(bank: HashAlg, values: &Value) -> PcrValues {
    let mut by_bank = serde_json::Map::new();
    by_bank.insert(bank.name().to_owned(), values.clone());
    PcrValues::from_json(&Value::Object(by_bank).to_string()).unwrap()
}

fn selection_of(values: &PcrValues) -> PcrSelection {
    PcrSelection::new(
        values
            .0
            .iter()
            .map(|(bank, pcrs)| (*bank, pcrs.keys().copied().collect())),
    )
}

fn load_cases() -> Vec<Case> {
    let mut dirs = Vec::new();
    vector_dirs(&vectors_root(), &mut dirs);
    let mut cases = Vec::new();
    for dir in dirs {
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("vector.json")).unwrap())
                .unwrap();
        let ak_role = v["ak_public"].as_str().unwrap();
        let aks: Vec<(String, Vec<u8>)> = files_named(&dir, ak_role)
            .into_iter()
            .map(|n| {
                let b = std::fs::read(dir.join(&n)).unwrap();
                (n, b)
            })
            .collect();
        assert!(!aks.is_empty(), "{}: no AK file", dir.display());
        let label = dir
            .strip_prefix(vectors_root())
            .unwrap()
            .display()
            .to_string();
        if let Some(quotes) = v.get("quotes").and_then(Value::as_object) {
            for (bank_name, q) in quotes {
                let bank = HashAlg::from_name(bank_name).unwrap();
                let pcrs = bank_values(bank, &q["pcrs"]);
                let sig_role = q["signature"].as_str().unwrap();
                cases.push(Case {
                    label: format!("{label}/{bank_name}"),
                    attest: first_file(&dir, q["attest"].as_str().unwrap()),
                    sig: first_file(&dir, sig_role),
                    sig_encoding: sig_encoding(sig_role),
                    aks: aks.clone(),
                    nonce: hex_field(q, "nonce_hex"),
                    required: selection_of(&pcrs),
                    pcrs,
                    pcr_digest: opt_hex(q, "pcr_digest"),
                    dir: dir.clone(),
                });
            }
        } else {
            let (pcrs, required) = if let Some(by_bank) = v.get("pcr_values_by_bank") {
                let pcrs = PcrValues::from_json(&by_bank.to_string()).unwrap();
                let sel = selection_of(&pcrs);
                (pcrs, sel)
            } else {
                let bank = HashAlg::from_name(v["pcr_bank"].as_str().unwrap()).unwrap();
                let pcrs = bank_values(bank, &v["pcr_values"]);
                let listed: Vec<u8> = v["pcr_selection"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| u8::try_from(p.as_u64().unwrap()).unwrap())
                    .collect();
                (pcrs, PcrSelection::new([(bank, listed)]))
            };
            let sig_role = v["signature"].as_str().unwrap();
            cases.push(Case {
                label,
                attest: first_file(&dir, v["attest"].as_str().unwrap()),
                sig: first_file(&dir, sig_role),
                sig_encoding: sig_encoding(sig_role),
                aks,
                nonce: hex_field(&v, "nonce_hex"),
                pcrs,
                required,
                pcr_digest: opt_hex(&v, "pcr_digest"),
                dir: dir.clone(),
            });
        }
    }
    assert!(
        cases.iter().any(Case::is_ecc) && cases.iter().any(|c| !c.is_ecc()),
        "expected both ECC and RSA quote vectors"
    );
    cases
}

fn normalized(key: &PublicKey) -> (Vec<u8>, Vec<u8>) {
    fn strip(b: &[u8]) -> Vec<u8> {
        b.iter().copied().skip_while(|&x| x == 0).collect()
    }
    match key {
        PublicKey::Rsa { n, e } => (strip(n), strip(e)),
        PublicKey::Ec { point, .. } => (point.clone(), Vec::new()),
        _ => panic!("unexpected key type"),
    }
}

#[test]
fn every_vector_verifies_with_every_ak_encoding() {
    for case in load_cases() {
        for (ak_file, ak_bytes) in &case.aks {
            let ak = AkPublic::parse_any(ak_bytes)
                .unwrap_or_else(|e| panic!("{} {ak_file}: {e}", case.label));
            let verified = case
                .verify_with(
                    &case.attest,
                    &case.sig,
                    &ak,
                    &case.nonce,
                    &case.pcrs,
                    &case.required,
                )
                .unwrap_or_else(|e| panic!("{} with {ak_file}: {e}", case.label));
            assert_eq!(verified.nonce, case.nonce, "{}", case.label);
            assert_eq!(verified.qualified_signer, verified.attest.qualified_signer);
            let Attested::Quote {
                pcr_select,
                pcr_digest,
            } = &verified.attest.attested
            else {
                panic!("{}: not a quote", case.label)
            };
            assert!(pcr_select.covers(&case.required), "{}", case.label);
            // The returned values are exactly the quoted ones.
            for (bank, pcr) in pcr_select.iter() {
                assert_eq!(
                    verified.pcrs.value(bank, pcr),
                    case.pcrs.value(bank, pcr),
                    "{}",
                    case.label
                );
            }
            let returned = selection_of(&verified.pcrs);
            assert!(
                returned.covers(pcr_select) && pcr_select.covers(&returned),
                "{}: returned {returned}, quoted {pcr_select}",
                case.label
            );
            if let Some(stated) = &case.pcr_digest {
                assert_eq!(pcr_digest, stated, "{}: stated pcr_digest", case.label);
            }
        }
        // Same result with an empty policy selection.
        let ak = case.ak();
        case.verify_with(
            &case.attest,
            &case.sig,
            &ak,
            &case.nonce,
            &case.pcrs,
            &PcrSelection::default(),
        )
        .unwrap_or_else(|e| panic!("{} (empty required): {e}", case.label));
    }
}

/// The PCR file tpm2-tools wrote next to a quote (`tpm2_quote -o`; Keylime
/// keeps it as `quotepcr.out`) holds exactly the vector's PCR values.
#[test]
fn tpm2_tools_pcr_files_hold_the_quoted_values() {
    let mut checked = 0;
    for case in load_cases() {
        for name in ["pcrs.serialized.bin", "quotepcr.out"] {
            let Ok(bytes) = std::fs::read(case.dir.join(name)) else {
                continue;
            };
            let values = PcrValues::from_tpm2_tools_pcr_file(&bytes)
                .unwrap_or_else(|e| panic!("{} {name}: {e}", case.label));
            assert_eq!(values, case.pcrs, "{} {name}", case.label);
            case.verify_with(
                &case.attest,
                &case.sig,
                &case.ak(),
                &case.nonce,
                &values,
                &case.required,
            )
            .unwrap_or_else(|e| panic!("{} {name}: {e}", case.label));
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} PCR files");
}

#[test]
fn tpm2b_attest_verifies_like_raw() {
    for case in load_cases() {
        let raw = Attest::parse(&case.attest).unwrap();
        let mut sized = u16::try_from(raw.marshalled.len())
            .unwrap()
            .to_be_bytes()
            .to_vec();
        sized.extend_from_slice(&raw.marshalled);
        assert_eq!(Attest::parse(&sized).unwrap(), raw, "{}", case.label);
        let a = case
            .verify_with(
                &sized,
                &case.sig,
                &case.ak(),
                &case.nonce,
                &case.pcrs,
                &case.required,
            )
            .unwrap();
        assert_eq!(a, case.verify().unwrap(), "{}", case.label);
    }
}

/// Every single-byte change of attest, signature or nonce is rejected, with
/// the vector's selection and with an empty one.
#[test]
fn every_byte_flip_is_rejected_even_with_empty_policy() {
    let empty = PcrSelection::default();
    for case in load_cases() {
        let ak = case.ak();
        for required in [&case.required, &empty] {
            for mask in [0x01u8, 0x80] {
                for i in 0..case.attest.len() {
                    let mut a = case.attest.clone();
                    a[i] ^= mask;
                    let r = case.verify_with(&a, &case.sig, &ak, &case.nonce, &case.pcrs, required);
                    assert!(
                        r.is_err(),
                        "{}: attest byte {i} ^ {mask:#x} accepted",
                        case.label
                    );
                }
                for i in 0..case.sig.len() {
                    let mut s = case.sig.clone();
                    s[i] ^= mask;
                    let r =
                        case.verify_with(&case.attest, &s, &ak, &case.nonce, &case.pcrs, required);
                    assert!(
                        r.is_err(),
                        "{}: signature byte {i} ^ {mask:#x} accepted",
                        case.label
                    );
                }
                for i in 0..case.nonce.len() {
                    let mut n = case.nonce.clone();
                    n[i] ^= mask;
                    let r =
                        case.verify_with(&case.attest, &case.sig, &ak, &n, &case.pcrs, required);
                    assert!(
                        matches!(r, Err(QuoteError::NonceMismatch { .. })),
                        "{}: nonce byte {i} ^ {mask:#x}: {r:?}",
                        case.label
                    );
                }
            }
            // A longer or shorter nonce is rejected too.
            let mut longer = case.nonce.clone();
            longer.push(0);
            let r = case.verify_with(&case.attest, &case.sig, &ak, &longer, &case.pcrs, required);
            assert!(
                matches!(r, Err(QuoteError::NonceMismatch { .. })),
                "{}",
                case.label
            );
            if let Some((_, shorter)) = case.nonce.split_last() {
                let r =
                    case.verify_with(&case.attest, &case.sig, &ak, shorter, &case.pcrs, required);
                assert!(
                    matches!(r, Err(QuoteError::NonceMismatch { .. })),
                    "{}",
                    case.label
                );
            }
        }
    }
}

#[test]
fn trailing_bytes_are_rejected() {
    for case in load_cases() {
        let ak = case.ak();
        let mut a = case.attest.clone();
        a.push(0);
        let r = case.verify_with(&a, &case.sig, &ak, &case.nonce, &case.pcrs, &case.required);
        assert_eq!(
            r,
            Err(QuoteError::Parse(TpmError::Wire(
                WireError::TrailingBytes { count: 1 }
            ))),
            "{}",
            case.label
        );
        if let SigEncoding::Tpmt = case.sig_encoding {
            let mut s = case.sig.clone();
            s.push(0);
            let r = verify_quote(
                &case.attest,
                &s,
                &ak,
                &case.nonce,
                &case.pcrs,
                &case.required,
            );
            assert_eq!(
                r,
                Err(QuoteError::Parse(TpmError::Wire(
                    WireError::TrailingBytes { count: 1 }
                ))),
                "{}",
                case.label
            );
        }
        for (name, bytes) in &case.aks {
            let mut b = bytes.clone();
            b.extend_from_slice(b"\0\0");
            assert!(AkPublic::parse_any(&b).is_err(), "{} {name}", case.label);
        }
    }
}

/// Every AK encoding in a vector is the same key; TPM public areas are valid
/// AKs and, where the directory states the AK's name (`ak.name`, written by
/// tpm2_createak), hash to that name.
#[test]
fn ak_encodings_agree_and_names_match() {
    let mut named = 0;
    for case in load_cases() {
        let parsed: Vec<AkPublic> = case
            .aks
            .iter()
            .map(|(_, b)| AkPublic::parse_any(b).unwrap())
            .collect();
        for ak in &parsed {
            assert_eq!(
                normalized(ak.key()),
                normalized(parsed[0].key()),
                "{}",
                case.label
            );
        }
        let stated = std::fs::read(case.dir.join("ak.name")).ok();
        for ak in &parsed {
            if let AkPublic::Tpm(public) = ak {
                public
                    .check_ak_attributes()
                    .unwrap_or_else(|e| panic!("{}: {e}", case.label));
                assert_eq!(ak.name(), Some(public.name()));
                if let Some(stated) = &stated {
                    assert_eq!(&public.name(), stated, "{}: AK name", case.label);
                    named += 1;
                }
            } else {
                assert_eq!(ak.name(), None);
            }
        }
    }
    assert!(named > 0, "no vector states an AK name");
}

fn first_case(pred: impl Fn(&Case) -> bool) -> Case {
    load_cases().into_iter().find(|c| pred(c)).unwrap()
}

fn tpm_ak(c: &Case) -> Option<AkPublic> {
    c.aks
        .iter()
        .map(|(_, b)| AkPublic::parse_any(b).unwrap())
        .find(|a| matches!(a, AkPublic::Tpm(_)))
}

#[test]
fn error_variants_name_what_failed() {
    let ecc = first_case(Case::is_ecc);
    let rsa = first_case(|c| !c.is_ecc() && matches!(c.sig_encoding, SigEncoding::Tpmt));
    let run =
        |c: &Case,
         attest: &[u8],
         sig: &[u8],
         ak: &AkPublic,
         nonce: &[u8],
         pcrs: &PcrValues,
         req: &PcrSelection| { c.verify_with(attest, sig, ak, nonce, pcrs, req) };

    // BadMagic (as a parse error).
    let mut a = ecc.attest.clone();
    a[0] = 0;
    let r = run(
        &ecc,
        &a,
        &ecc.sig,
        &ecc.ak(),
        &ecc.nonce,
        &ecc.pcrs,
        &ecc.required,
    );
    assert!(
        matches!(
            r,
            Err(QuoteError::Parse(TpmError::BadMagic {
                expected: 0xff54_4347,
                ..
            }))
        ),
        "{r:?}"
    );

    // WrongType: checked before the signature.
    let mut a = ecc.attest.clone();
    a[4..6].copy_from_slice(&0x8014u16.to_be_bytes());
    let r = run(
        &ecc,
        &a,
        &ecc.sig,
        &ecc.ak(),
        &ecc.nonce,
        &ecc.pcrs,
        &ecc.required,
    );
    assert_eq!(
        r,
        Err(QuoteError::WrongType {
            expected: 0x8018,
            actual: 0x8014
        })
    );

    // SignatureSchemeMismatch: an ECDSA signature with an RSA key.
    let r = run(
        &ecc,
        &ecc.attest,
        &ecc.sig,
        &rsa.ak(),
        &ecc.nonce,
        &ecc.pcrs,
        &ecc.required,
    );
    assert!(
        matches!(
            r,
            Err(QuoteError::SignatureSchemeMismatch {
                signature_scheme: SigAlg::EcDsa,
                ..
            })
        ),
        "{r:?}"
    );
    assert!(r.unwrap_err().to_string().contains("rsa-"));

    // AkSchemeMismatch: the signature claims another hash than the AK's fixed scheme.
    let with_scheme = first_case(|c| {
        matches!(c.sig_encoding, SigEncoding::Tpmt)
            && matches!(tpm_ak(c), Some(AkPublic::Tpm(ref p)) if p.scheme.is_some())
    });
    let mut s = with_scheme.sig.clone();
    s[3] = if s[3] == 0x0b { 0x0c } else { 0x0b };
    let ak = tpm_ak(&with_scheme).unwrap();
    let r = run(
        &with_scheme,
        &with_scheme.attest,
        &s,
        &ak,
        &with_scheme.nonce,
        &with_scheme.pcrs,
        &with_scheme.required,
    );
    assert!(
        matches!(r, Err(QuoteError::AkSchemeMismatch { .. })),
        "{r:?}"
    );

    // WeakSignatureHash: SHA-1 signatures are refused by default, before
    // any verification (SPKI AK: no fixed scheme). tests/quote_sha1.rs has
    // the opt-in.
    let spki = first_case(|c| {
        !c.is_ecc()
            && matches!(c.sig_encoding, SigEncoding::Tpmt)
            && c.aks
                .iter()
                .any(|(_, b)| matches!(AkPublic::parse_any(b), Ok(AkPublic::Spki(_))))
    });
    let spki_ak = spki
        .aks
        .iter()
        .map(|(_, b)| AkPublic::parse_any(b).unwrap())
        .find(|a| matches!(a, AkPublic::Spki(_)))
        .unwrap();
    let mut s = spki.sig.clone();
    s[2..4].copy_from_slice(&[0, 0x04]);
    let r = run(
        &spki,
        &spki.attest,
        &s,
        &spki_ak,
        &spki.nonce,
        &spki.pcrs,
        &spki.required,
    );
    assert!(
        matches!(r, Err(QuoteError::WeakSignatureHash { .. })),
        "{r:?}"
    );

    // SignatureInvalid: the right kind of key, but not this quote's AK.
    let other_rsa =
        first_case(|c| !c.is_ecc() && normalized(c.ak().key()) != normalized(rsa.ak().key()));
    let r = run(
        &rsa,
        &rsa.attest,
        &rsa.sig,
        &AkPublic::Spki(other_rsa.ak().key().clone()),
        &rsa.nonce,
        &rsa.pcrs,
        &rsa.required,
    );
    assert_eq!(r, Err(QuoteError::SignatureInvalid));

    // NonceMismatch shows both values in hex.
    let r = run(
        &ecc,
        &ecc.attest,
        &ecc.sig,
        &ecc.ak(),
        b"\x01\x02",
        &ecc.pcrs,
        &ecc.required,
    );
    assert_eq!(
        r,
        Err(QuoteError::NonceMismatch {
            expected: "0102".into(),
            actual: hex::encode(&ecc.nonce)
        })
    );

    // SelectionDoesNotCover.
    let mut req = ecc.required.clone();
    req.banks.push((HashAlg::Sha512, vec![0]));
    let r = run(
        &ecc,
        &ecc.attest,
        &ecc.sig,
        &ecc.ak(),
        &ecc.nonce,
        &ecc.pcrs,
        &req,
    );
    assert!(
        matches!(r, Err(QuoteError::SelectionDoesNotCover { ref required, .. }) if *required == req),
        "{r:?}"
    );
    assert!(r.unwrap_err().to_string().contains("sha512:0"));

    let (bank, pcr) = ecc.required.iter().next().unwrap();
    // MissingPcrValue names bank and PCR.
    let mut pcrs = ecc.pcrs.clone();
    pcrs.0.get_mut(&bank).unwrap().remove(&pcr);
    let r = run(
        &ecc,
        &ecc.attest,
        &ecc.sig,
        &ecc.ak(),
        &ecc.nonce,
        &pcrs,
        &ecc.required,
    );
    assert_eq!(r, Err(QuoteError::MissingPcrValue { bank, pcr }));

    // PcrValueLength.
    let mut pcrs = ecc.pcrs.clone();
    pcrs.insert(bank, pcr, vec![0; 3]);
    let r = run(
        &ecc,
        &ecc.attest,
        &ecc.sig,
        &ecc.ak(),
        &ecc.nonce,
        &pcrs,
        &ecc.required,
    );
    assert_eq!(
        r,
        Err(QuoteError::PcrValueLength {
            bank,
            pcr,
            expected: bank.output_len(),
            actual: 3
        })
    );

    // PcrDigestMismatch: a changed value, with an empty policy too.
    let mut pcrs = ecc.pcrs.clone();
    let mut v = ecc.pcrs.value(bank, pcr).unwrap().to_vec();
    v[0] ^= 1;
    pcrs.insert(bank, pcr, v);
    for req in [&ecc.required, &PcrSelection::default()] {
        let r = run(
            &ecc,
            &ecc.attest,
            &ecc.sig,
            &ecc.ak(),
            &ecc.nonce,
            &pcrs,
            req,
        );
        assert!(
            matches!(r, Err(QuoteError::PcrDigestMismatch { .. })),
            "{r:?}"
        );
    }

    // Extra values in other banks are ignored and not returned.
    let mut pcrs = ecc.pcrs.clone();
    pcrs.insert(HashAlg::Sha512, 0, vec![0; 64]);
    let ok = run(
        &ecc,
        &ecc.attest,
        &ecc.sig,
        &ecc.ak(),
        &ecc.nonce,
        &pcrs,
        &ecc.required,
    )
    .unwrap();
    assert_eq!(ok.pcrs.value(HashAlg::Sha512, 0), None);
}

/// An ECDSA signature from a larger curve is refused against a smaller-curve AK.
#[test]
fn oversized_ecdsa_components_are_rejected() {
    let cases = load_cases();
    let field = |c: &Case| match c.ak().key() {
        PublicKey::Ec { curve, .. } => Some(curve.field_len()),
        _ => None,
    };
    let small = cases
        .iter()
        .filter(|c| field(c).is_some())
        .min_by_key(|c| field(c))
        .unwrap();
    let large = cases
        .iter()
        .filter(|c| field(c).is_some())
        .max_by_key(|c| field(c))
        .unwrap();
    assert!(field(large) > field(small), "need two ECC curves");
    let sig = Signature::parse(&large.sig).unwrap();
    let r = verify_quote_with_signature(
        &small.attest,
        &Signature {
            hash: HashAlg::Sha256,
            ..sig
        },
        &AkPublic::Spki(small.ak().key().clone()),
        &small.nonce,
        &small.pcrs,
        &small.required,
    );
    assert!(
        matches!(r, Err(QuoteError::EcdsaComponentTooLarge { .. })),
        "{r:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random nonzero masks at random positions of attest ‖ signature ‖ nonce.
    #[test]
    fn random_masks_are_rejected(pick in any::<usize>(), pos in any::<usize>(), mask in 1u8..=255, empty_policy in any::<bool>()) {
        let cases = load_cases();
        let case = &cases[pick % cases.len()];
        let total = case.attest.len() + case.sig.len() + case.nonce.len();
        let pos = pos % total;
        let (mut a, mut s, mut n) = (case.attest.clone(), case.sig.clone(), case.nonce.clone());
        if pos < a.len() {
            a[pos] ^= mask;
        } else if pos < a.len() + s.len() {
            s[pos - a.len()] ^= mask;
        } else {
            n[pos - a.len() - s.len()] ^= mask;
        }
        let required = if empty_policy { PcrSelection::default() } else { case.required.clone() };
        let r = case.verify_with(&a, &s, &case.ak(), &n, &case.pcrs, &required);
        prop_assert!(r.is_err(), "{}: position {} ^ {:#x} accepted", case.label, pos, mask);
    }
}
