//! Test-only AMD-shaped PKI: an RSA-2048 ARK and ASK signing with
//! RSASSA-PSS SHA-384 (like AMD's, smaller keys), a P-384 VCEK/VLEK with
//! AMD's extensions, CRLs signed by the ARK, and reports signed by the
//! VCEK. Everything is built with a minimal DER writer and aws-lc-rs.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair as RsaKeyPair, KeySize};
use aws_lc_rs::signature::{
    EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PSS_SHA384,
};
use std::sync::OnceLock;
use verifier_lib::snp::Product;

// ---------- DER writer ----------

pub fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let n = content.len();
    if n < 0x80 {
        out.push(n as u8);
    } else if n < 0x100 {
        out.extend_from_slice(&[0x81, n as u8]);
    } else {
        out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]);
    }
    out.extend_from_slice(content);
    out
}

pub fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

pub fn oid(dotted: &str) -> Vec<u8> {
    let arcs: Vec<u64> = dotted.split('.').map(|a| a.parse().unwrap()).collect();
    let mut body = vec![(arcs[0] * 40 + arcs[1]) as u8];
    for &arc in &arcs[2..] {
        let mut chunk = vec![(arc & 0x7f) as u8];
        let mut v = arc >> 7;
        while v > 0 {
            chunk.push(((v & 0x7f) as u8) | 0x80);
            v >>= 7;
        }
        chunk.reverse();
        body.extend(chunk);
    }
    tlv(0x06, &body)
}

pub fn uint(bytes: &[u8]) -> Vec<u8> {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let mut body = bytes[first..].to_vec();
    if body.is_empty() || body[0] & 0x80 != 0 {
        body.insert(0, 0);
    }
    tlv(0x02, &body)
}

fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn utc_time(unix: i64) -> Vec<u8> {
    let (y, m, d) = civil(unix.div_euclid(86_400));
    let s = unix.rem_euclid(86_400);
    let text = format!(
        "{:02}{:02}{:02}{:02}{:02}{:02}Z",
        y % 100,
        m,
        d,
        s / 3600,
        (s / 60) % 60,
        s % 60
    );
    assert!((1950..2050).contains(&y));
    tlv(0x17, text.as_bytes())
}

pub fn name(cn: &str) -> Vec<u8> {
    let attr = |o: &str, v: &str| tlv(0x31, &seq(&[&oid(o), &tlv(0x0c, v.as_bytes())]));
    seq(&[&attr("2.5.4.10", "Writ Test AMD"), &attr("2.5.4.3", cn)])
}

pub fn pss_sha384_alg() -> Vec<u8> {
    let sha384 = seq(&[&oid("2.16.840.1.101.3.4.2.2"), &[0x05, 0x00]]);
    let mgf1 = seq(&[&oid("1.2.840.113549.1.1.8"), &sha384]);
    let params = seq(&[
        &tlv(0xa0, &sha384),
        &tlv(0xa1, &mgf1),
        &tlv(0xa2, &uint(&[48])),
    ]);
    seq(&[&oid("1.2.840.113549.1.1.10"), &params])
}

pub fn ext(o: &str, critical: bool, value: &[u8]) -> Vec<u8> {
    if critical {
        seq(&[&oid(o), &[0x01, 0x01, 0xff], &tlv(0x04, value)])
    } else {
        seq(&[&oid(o), &tlv(0x04, value)])
    }
}

pub fn basic_constraints_ca() -> Vec<u8> {
    ext("2.5.29.19", true, &seq(&[&[0x01, 0x01, 0xff]]))
}

// ---------- keys ----------

pub fn rsa_key(slot: usize) -> &'static RsaKeyPair {
    static KEYS: [OnceLock<RsaKeyPair>; 3] = [OnceLock::new(), OnceLock::new(), OnceLock::new()];
    KEYS[slot].get_or_init(|| RsaKeyPair::generate(KeySize::Rsa2048).unwrap())
}

pub fn ec_key(slot: usize) -> &'static EcdsaKeyPair {
    static KEYS: [OnceLock<EcdsaKeyPair>; 2] = [OnceLock::new(), OnceLock::new()];
    KEYS[slot].get_or_init(|| {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref()).unwrap()
    })
}

fn rsa_spki(key: &RsaKeyPair) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(key.public_key().as_ref());
    seq(&[
        &seq(&[&oid("1.2.840.113549.1.1.1"), &[0x05, 0x00]]),
        &tlv(0x03, &bits),
    ])
}

fn ec_spki(key: &EcdsaKeyPair) -> Vec<u8> {
    let mut bits = vec![0u8];
    bits.extend_from_slice(key.public_key().as_ref());
    seq(&[
        &seq(&[&oid("1.2.840.10045.2.1"), &oid("1.3.132.0.34")]),
        &tlv(0x03, &bits),
    ])
}

pub fn pss_sign(key: &RsaKeyPair, msg: &[u8]) -> Vec<u8> {
    let mut sig = vec![0u8; key.public_modulus_len()];
    key.sign(&RSA_PSS_SHA384, &SystemRandom::new(), msg, &mut sig)
        .unwrap();
    sig
}

pub fn signed(tbs: Vec<u8>, key: &RsaKeyPair) -> Vec<u8> {
    let sig = pss_sign(key, &tbs);
    let mut bits = vec![0u8];
    bits.extend_from_slice(&sig);
    seq(&[&tbs, &pss_sha384_alg(), &tlv(0x03, &bits)])
}

pub struct CertSpec<'a> {
    pub serial: &'a [u8],
    pub issuer: &'a str,
    pub subject: &'a str,
    pub not_before: i64,
    pub not_after: i64,
    pub spki: Vec<u8>,
    pub extensions: Vec<Vec<u8>>,
}

pub fn certificate(spec: &CertSpec<'_>, signer: &RsaKeyPair) -> Vec<u8> {
    let exts: Vec<&[u8]> = spec.extensions.iter().map(Vec::as_slice).collect();
    let tbs = seq(&[
        &tlv(0xa0, &uint(&[2])),
        &uint(spec.serial),
        &pss_sha384_alg(),
        &name(spec.issuer),
        &seq(&[&utc_time(spec.not_before), &utc_time(spec.not_after)]),
        &name(spec.subject),
        &spec.spki,
        &tlv(0xa3, &seq(&exts)),
    ]);
    signed(tbs, signer)
}

// ---------- the test PKI ----------

pub const NOT_BEFORE: i64 = 1_700_000_000; // 2023-11-14
pub const NOT_AFTER: i64 = 2_400_000_000; // 2046-01-19
pub const NOW: i64 = NOT_BEFORE + 86_400;

pub fn product_name(p: Product) -> &'static str {
    match p {
        Product::Milan => "Milan",
        Product::Genoa => "Genoa",
        Product::Turin => "Turin",
        _ => panic!("unknown product"),
    }
}

/// SPLs in the VCEK: (fmc, bootloader, tee, snp, microcode).
#[derive(Clone, Copy, Debug)]
pub struct Spl {
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl Spl {
    /// The TCB_VERSION u64 for this SPL in `product`'s layout.
    pub fn tcb(&self, product: Product) -> u64 {
        let b = match product {
            Product::Turin => [
                self.fmc.unwrap_or(0),
                self.bootloader,
                self.tee,
                self.snp,
                0,
                0,
                0,
                self.microcode,
            ],
            _ => [
                self.bootloader,
                self.tee,
                0,
                0,
                0,
                0,
                self.snp,
                self.microcode,
            ],
        };
        u64::from_le_bytes(b)
    }
}

pub fn default_spl(product: Product) -> Spl {
    Spl {
        fmc: (product == Product::Turin).then_some(1),
        bootloader: 9,
        tee: 0,
        snp: 23,
        microcode: 0xd1,
    }
}

pub fn hw_id(product: Product) -> Vec<u8> {
    let len = if product == Product::Turin { 8 } else { 64 };
    (0..len)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(3))
        .collect()
}

pub struct TestChain {
    pub product: Product,
    pub vlek: bool,
    pub ark: Vec<u8>,
    pub ask: Vec<u8>,
    pub leaf: Vec<u8>,
    pub ask_serial: Vec<u8>,
    pub leaf_serial: Vec<u8>,
    pub spl: Spl,
}

pub fn ark_name(p: Product) -> String {
    format!("ARK-{}", product_name(p))
}

pub fn test_ark(product: Product) -> Vec<u8> {
    let n = ark_name(product);
    certificate(
        &CertSpec {
            serial: &[0x10, 0],
            issuer: &n,
            subject: &n,
            not_before: NOT_BEFORE - 86_400,
            not_after: NOT_AFTER,
            spki: rsa_spki(rsa_key(0)),
            extensions: vec![basic_constraints_ca()],
        },
        rsa_key(0),
    )
}

pub fn build_chain(product: Product, vlek: bool, spl: Spl, leaf_validity: (i64, i64)) -> TestChain {
    let pname = product_name(product);
    let ask_name = if vlek {
        format!("SEV-VLEK-{pname}")
    } else {
        format!("SEV-{pname}")
    };
    let ask_serial = vec![0x10, 0x01];
    let leaf_serial = vec![0x42, 0x99, 0x01];
    let ask = certificate(
        &CertSpec {
            serial: &ask_serial,
            issuer: &ark_name(product),
            subject: &ask_name,
            not_before: NOT_BEFORE - 3600,
            not_after: NOT_AFTER,
            spki: rsa_spki(rsa_key(1)),
            extensions: vec![basic_constraints_ca()],
        },
        rsa_key(0),
    );
    let int = |v: u8| uint(&[v]);
    let mut exts = vec![
        ext("1.3.6.1.4.1.3704.1.1", false, &int(1)),
        ext(
            "1.3.6.1.4.1.3704.1.2",
            false,
            &tlv(0x16, format!("{pname}-B0").as_bytes()),
        ),
        ext("1.3.6.1.4.1.3704.1.3.1", false, &int(spl.bootloader)),
        ext("1.3.6.1.4.1.3704.1.3.2", false, &int(spl.tee)),
        ext("1.3.6.1.4.1.3704.1.3.3", false, &int(spl.snp)),
        ext("1.3.6.1.4.1.3704.1.3.8", false, &int(spl.microcode)),
    ];
    if let Some(fmc) = spl.fmc {
        exts.push(ext("1.3.6.1.4.1.3704.1.3.9", false, &int(fmc)));
    }
    if vlek {
        exts.push(ext(
            "1.3.6.1.4.1.3704.1.5",
            false,
            &tlv(0x16, b"WritTestCloud"),
        ));
    } else {
        exts.push(ext("1.3.6.1.4.1.3704.1.4", false, &hw_id(product)));
    }
    let leaf = certificate(
        &CertSpec {
            serial: &leaf_serial,
            issuer: &ask_name,
            subject: if vlek { "SEV-VLEK" } else { "SEV-VCEK" },
            not_before: leaf_validity.0,
            not_after: leaf_validity.1,
            spki: ec_spki(ec_key(0)),
            extensions: exts,
        },
        rsa_key(1),
    );
    TestChain {
        product,
        vlek,
        ark: test_ark(product),
        ask,
        leaf,
        ask_serial,
        leaf_serial,
        spl,
    }
}

pub fn chain(product: Product) -> TestChain {
    build_chain(
        product,
        false,
        default_spl(product),
        (NOT_BEFORE, NOT_AFTER),
    )
}

/// A CRL issued under `product`'s test ARK name, signed with `signer`.
pub fn crl(
    product: Product,
    revoked: &[&[u8]],
    this_update: i64,
    next_update: i64,
    signer: &RsaKeyPair,
) -> Vec<u8> {
    let entries: Vec<Vec<u8>> = revoked
        .iter()
        .map(|s| seq(&[&uint(s), &utc_time(this_update)]))
        .collect();
    let entry_refs: Vec<&[u8]> = entries.iter().map(Vec::as_slice).collect();
    let mut parts: Vec<Vec<u8>> = vec![
        uint(&[1]),
        pss_sha384_alg(),
        name(&ark_name(product)),
        utc_time(this_update),
        utc_time(next_update),
    ];
    if !entries.is_empty() {
        parts.push(seq(&entry_refs));
    }
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    signed(seq(&refs), signer)
}

// ---------- reports ----------

/// Fields a test report is built from.
#[derive(Clone, Debug)]
pub struct ReportSpec {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: u64,
    pub family_id: [u8; 16],
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub platform_info: u64,
    pub key_info: u32,
    pub report_data: [u8; 64],
    pub measurement: [u8; 48],
    pub host_data: [u8; 32],
    pub id_key_digest: [u8; 48],
    pub author_key_digest: [u8; 48],
    pub report_id_ma: [u8; 32],
    pub reported_tcb: u64,
    pub committed_tcb: u64,
    pub current_tcb: u64,
    pub launch_tcb: u64,
    pub cpuid: Option<[u8; 3]>,
    pub chip_id: [u8; 64],
    pub current_version: [u8; 3],
    pub committed_version: [u8; 3],
}

pub fn cpuid_for(product: Product) -> [u8; 3] {
    match product {
        Product::Milan => [0x19, 0x01, 0x01],
        Product::Genoa => [0x19, 0x11, 0x01],
        _ => [0x1a, 0x02, 0x00],
    }
}

pub fn report_spec(chain: &TestChain) -> ReportSpec {
    let tcb = chain.spl.tcb(chain.product);
    let mut chip_id = [0u8; 64];
    if !chain.vlek {
        let hw = hw_id(chain.product);
        chip_id[..hw.len()].copy_from_slice(&hw);
    }
    ReportSpec {
        version: 3,
        guest_svn: 2,
        policy: 0x30000,
        family_id: [0; 16],
        image_id: [0; 16],
        vmpl: 0,
        platform_info: 0x1,
        key_info: if chain.vlek { 1 << 2 } else { 0 },
        report_data: [0x5a; 64],
        measurement: [0xab; 48],
        host_data: [0; 32],
        id_key_digest: [0; 48],
        author_key_digest: [0; 48],
        report_id_ma: [0xff; 32],
        reported_tcb: tcb,
        committed_tcb: tcb,
        current_tcb: tcb,
        launch_tcb: tcb,
        cpuid: Some(cpuid_for(chain.product)),
        chip_id,
        current_version: [7, 55, 1],
        committed_version: [7, 55, 1],
    }
}

/// The unsigned report bytes (signature region zero).
pub fn report_body(s: &ReportSpec) -> Vec<u8> {
    let mut b = vec![0u8; 0x4a0];
    let put = |b: &mut Vec<u8>, off: usize, bytes: &[u8]| {
        b[off..off + bytes.len()].copy_from_slice(bytes)
    };
    put(&mut b, 0x00, &s.version.to_le_bytes());
    put(&mut b, 0x04, &s.guest_svn.to_le_bytes());
    put(&mut b, 0x08, &s.policy.to_le_bytes());
    put(&mut b, 0x10, &s.family_id);
    put(&mut b, 0x20, &s.image_id);
    put(&mut b, 0x30, &s.vmpl.to_le_bytes());
    put(&mut b, 0x34, &1u32.to_le_bytes());
    put(&mut b, 0x38, &s.current_tcb.to_le_bytes());
    put(&mut b, 0x40, &s.platform_info.to_le_bytes());
    put(&mut b, 0x48, &s.key_info.to_le_bytes());
    put(&mut b, 0x50, &s.report_data);
    put(&mut b, 0x90, &s.measurement);
    put(&mut b, 0xc0, &s.host_data);
    put(&mut b, 0xe0, &s.id_key_digest);
    put(&mut b, 0x110, &s.author_key_digest);
    put(&mut b, 0x140, &[0x11; 32]);
    put(&mut b, 0x160, &s.report_id_ma);
    put(&mut b, 0x180, &s.reported_tcb.to_le_bytes());
    if let Some(c) = s.cpuid {
        put(&mut b, 0x188, &c);
    }
    put(&mut b, 0x1a0, &s.chip_id);
    put(&mut b, 0x1e0, &s.committed_tcb.to_le_bytes());
    put(&mut b, 0x1e8, &s.current_version);
    put(&mut b, 0x1ec, &s.committed_version);
    put(&mut b, 0x1f0, &s.launch_tcb.to_le_bytes());
    b
}

/// Sign `body[..0x2a0]` with the test VCEK/VLEK and write R, S (LE).
pub fn sign_report(mut body: Vec<u8>, key: &EcdsaKeyPair) -> Vec<u8> {
    let sig = key.sign(&SystemRandom::new(), &body[..0x2a0]).unwrap();
    let sig = sig.as_ref();
    let (r, s) = sig.split_at(48);
    for (i, v) in r.iter().rev().enumerate() {
        body[0x2a0 + i] = *v;
    }
    for (i, v) in s.iter().rev().enumerate() {
        body[0x2e8 + i] = *v;
    }
    body
}

pub fn signed_report(spec: &ReportSpec) -> Vec<u8> {
    sign_report(report_body(spec), ec_key(0))
}
