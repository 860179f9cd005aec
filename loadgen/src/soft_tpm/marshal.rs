//! TPM 2.0 structures as a TPM marshals them (Part 2, big-endian), written
//! here from the specification and not with verifier-lib's parsers, so a
//! bug cannot hide on both sides: `TPMT_PUBLIC` of the EK (TCG default
//! template L-2) and of the AK, object names, `TPMS_ATTEST` of a quote and
//! `TPMT_SIGNATURE` (ECDSA).

use sha2::{Digest, Sha256};

/// `TPM_ALG_SHA256`.
pub const TPM_ALG_SHA256: u16 = 0x000b;
/// `TPM_ALG_NULL`.
const TPM_ALG_NULL: u16 = 0x0010;
/// `TPM_ALG_ECC`.
const TPM_ALG_ECC: u16 = 0x0023;
/// `TPM_ALG_ECDSA`.
const TPM_ALG_ECDSA: u16 = 0x0018;
/// `TPM_ALG_AES`.
const TPM_ALG_AES: u16 = 0x0006;
/// `TPM_ALG_CFB`.
const TPM_ALG_CFB: u16 = 0x0043;
/// `TPM_ECC_NIST_P256`.
const TPM_ECC_NIST_P256: u16 = 0x0003;
/// `TPM_GENERATED_VALUE`.
const TPM_GENERATED_VALUE: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
const TPM_ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ST_ATTEST_CERTIFY`.
const TPM_ST_ATTEST_CERTIFY: u16 = 0x8017;
/// `TPM_RH_OWNER`: the request key's parent hierarchy, for its qualified name.
const TPM_RH_OWNER: u32 = 0x4000_0001;

/// fixedTPM | fixedParent | sensitiveDataOrigin | adminWithPolicy |
/// restricted | decrypt: the EK Credential Profile's template L-2.
const EK_ATTRIBUTES: u32 = 0x0003_00b2;
/// fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted
/// | sign: what `tpm2_createak` and the attester make.
const AK_ATTRIBUTES: u32 = 0x0005_0072;
/// fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | sign: an
/// unrestricted signing key (the attester's request key).
const REQUEST_KEY_ATTRIBUTES: u32 = 0x0004_0072;
/// PolicyA (`TPM2_PolicySecret(TPM_RH_ENDORSEMENT)`, SHA-256), EK Credential
/// Profile 2.5, annex B.3.
const EK_POLICY_A: [u8; 32] = [
    0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc, 0x8d, 0x46, 0xa5, 0xd7, 0x24,
    0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52, 0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa,
];

/// A big-endian byte writer for TPM structures.
#[derive(Debug, Default)]
pub struct TpmWriter(Vec<u8>);

impl TpmWriter {
    pub fn new() -> Self {
        Self(Vec::new())
    }

    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }

    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }

    /// A `TPM2B_*`: u16 size, then the bytes. Every caller passes buffers
    /// of at most a few hundred bytes.
    pub fn tpm2b(&mut self, v: &[u8]) -> &mut Self {
        let size = u16::try_from(v.len()).unwrap_or(u16::MAX);
        self.u16(size);
        self.bytes(&v[..usize::from(size)])
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.0)
    }
}

/// `TPMT_PUBLIC` of an ECC P-256 EK from template L-2, with its point.
pub fn ek_public(x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut w = TpmWriter::new();
    w.u16(TPM_ALG_ECC)
        .u16(TPM_ALG_SHA256)
        .u32(EK_ATTRIBUTES)
        .tpm2b(&EK_POLICY_A)
        // TPMT_SYM_DEF_OBJECT: AES-128-CFB
        .u16(TPM_ALG_AES)
        .u16(128)
        .u16(TPM_ALG_CFB)
        // TPMT_ECC_SCHEME: null
        .u16(TPM_ALG_NULL)
        .u16(TPM_ECC_NIST_P256)
        // TPMT_KDF_SCHEME: null
        .u16(TPM_ALG_NULL)
        .tpm2b(x)
        .tpm2b(y);
    w.finish()
}

/// `TPMT_PUBLIC` of a restricted ECDSA-SHA256 P-256 signing key (the AK).
pub fn ak_public(x: &[u8], y: &[u8]) -> Vec<u8> {
    ecdsa_key_public(AK_ATTRIBUTES, x, y)
}

/// `TPMT_PUBLIC` of an unrestricted ECDSA-SHA256 P-256 signing key (the
/// request key that signs token requests).
pub fn request_key_public(x: &[u8], y: &[u8]) -> Vec<u8> {
    ecdsa_key_public(REQUEST_KEY_ATTRIBUTES, x, y)
}

/// `TPMT_PUBLIC` of an ECDSA-SHA256 P-256 signing key with `attributes`.
fn ecdsa_key_public(attributes: u32, x: &[u8], y: &[u8]) -> Vec<u8> {
    let mut w = TpmWriter::new();
    w.u16(TPM_ALG_ECC)
        .u16(TPM_ALG_SHA256)
        .u32(attributes)
        .tpm2b(&[])
        // TPMT_SYM_DEF_OBJECT: null (a signing key)
        .u16(TPM_ALG_NULL)
        // TPMT_ECC_SCHEME: ECDSA with SHA-256
        .u16(TPM_ALG_ECDSA)
        .u16(TPM_ALG_SHA256)
        .u16(TPM_ECC_NIST_P256)
        .u16(TPM_ALG_NULL)
        .tpm2b(x)
        .tpm2b(y);
    w.finish()
}

/// `TPMS_ATTEST` of TPM2_Certify of the object named `name`, a child of
/// the owner hierarchy (its qualified name: `H(TPM_RH_OWNER ‖ name)`).
pub fn certify_attest(
    signer_name: &[u8],
    extra_data: &[u8],
    clock: ClockInfo,
    firmware_version: u64,
    name: &[u8],
) -> Vec<u8> {
    let mut qualified = TPM_ALG_SHA256.to_be_bytes().to_vec();
    let mut h = Sha256::new();
    h.update(TPM_RH_OWNER.to_be_bytes());
    h.update(name);
    qualified.extend_from_slice(&h.finalize());
    let mut w = TpmWriter::new();
    w.u32(TPM_GENERATED_VALUE)
        .u16(TPM_ST_ATTEST_CERTIFY)
        .tpm2b(signer_name)
        .tpm2b(extra_data)
        .u64(clock.clock)
        .u32(clock.reset_count)
        .u32(clock.restart_count)
        .u8(u8::from(clock.safe))
        .u64(firmware_version)
        .tpm2b(name)
        .tpm2b(&qualified);
    w.finish()
}

/// `TPM2B_PUBLIC`: the size-prefixed `TPMT_PUBLIC` (what tpm2-tools reads).
pub fn tpm2b_public(tpmt: &[u8]) -> Vec<u8> {
    TpmWriter::new().tpm2b(tpmt).finish()
}

/// The object's name: `TPM_ALG_SHA256 ‖ SHA-256(TPMT_PUBLIC)`.
pub fn name(tpmt_public: &[u8]) -> Vec<u8> {
    let mut n = TPM_ALG_SHA256.to_be_bytes().to_vec();
    n.extend_from_slice(&Sha256::digest(tpmt_public));
    n
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered.
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// `TPMS_ATTEST` of a quote over the SHA-256 PCRs `pcrs` (ascending
/// indexes below 24) whose concatenated values hash to `pcr_digest`.
pub fn quote_attest(
    signer_name: &[u8],
    extra_data: &[u8],
    clock: ClockInfo,
    firmware_version: u64,
    pcrs: &[u8],
    pcr_digest: &[u8],
) -> Vec<u8> {
    let mut select = [0u8; 3];
    for &p in pcrs {
        if let Some(byte) = select.get_mut(usize::from(p / 8)) {
            *byte |= 1 << (p % 8);
        }
    }
    let mut w = TpmWriter::new();
    w.u32(TPM_GENERATED_VALUE)
        .u16(TPM_ST_ATTEST_QUOTE)
        .tpm2b(signer_name)
        .tpm2b(extra_data)
        .u64(clock.clock)
        .u32(clock.reset_count)
        .u32(clock.restart_count)
        .u8(u8::from(clock.safe))
        .u64(firmware_version)
        // TPML_PCR_SELECTION with one TPMS_PCR_SELECTION
        .u32(1)
        .u16(TPM_ALG_SHA256)
        .u8(3)
        .bytes(&select)
        .tpm2b(pcr_digest);
    w.finish()
}

/// `TPMT_SIGNATURE` of an ECDSA-SHA256 signature given as fixed-size
/// `r ‖ s`.
pub fn ecdsa_signature(fixed_r_s: &[u8]) -> Vec<u8> {
    let (r, s) = fixed_r_s.split_at(fixed_r_s.len() / 2);
    let mut w = TpmWriter::new();
    w.u16(TPM_ALG_ECDSA).u16(TPM_ALG_SHA256).tpm2b(r).tpm2b(s);
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_layout_puts_the_nonce_after_the_signer_name() {
        let name = [0x00, 0x0b, 1, 2];
        let attest = quote_attest(
            &name,
            &[9; 32],
            ClockInfo {
                clock: 5,
                reset_count: 1,
                restart_count: 0,
                safe: true,
            },
            7,
            &[0, 7, 16],
            &[3; 32],
        );
        assert_eq!(&attest[..6], &[0xff, 0x54, 0x43, 0x47, 0x80, 0x18]);
        assert_eq!(&attest[6..8], &[0, 4]);
        assert_eq!(&attest[12..14], &[0, 32]);
        assert_eq!(&attest[14..46], &[9; 32]);
        // pcrSelect: PCR 0 and 7 in byte 0, PCR 16 in byte 2.
        let sel = &attest[attest.len() - 34 - 3..attest.len() - 34];
        assert_eq!(sel, &[0x81, 0x00, 0x01]);
    }

    #[test]
    fn ecdsa_signature_splits_r_and_s() {
        let mut fixed = vec![1u8; 32];
        fixed.extend(vec![2u8; 32]);
        let sig = ecdsa_signature(&fixed);
        assert_eq!(&sig[..6], &[0x00, 0x18, 0x00, 0x0b, 0x00, 0x20]);
        assert_eq!(sig.len(), 4 + 2 * 34);
        assert_eq!(sig[6 + 32 + 1], 0x20);
    }
}
