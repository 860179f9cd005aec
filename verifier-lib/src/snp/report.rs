//! The SEV-SNP `ATTESTATION_REPORT` (AMD SEV-SNP ABI specification, table
//! "ATTESTATION_REPORT Structure"): 1184 little-endian bytes, signed over
//! bytes `0x000..0x2A0` with ECDSA P-384 / SHA-384.

use super::{hex_serde, Product, SignerKind, SnpError};
use crate::crypto::{self, Curve, HashAlg, PublicKey, SigScheme};
use crate::wire::Reader;
use serde::Serialize;

/// Size of an attestation report.
pub const REPORT_LEN: usize = 0x4A0;
/// End of the signed region (exclusive); the signature starts here.
pub const SIGNED_LEN: usize = 0x2A0;
/// Offset of the signature (R then S, 72 bytes little-endian each).
pub const SIGNATURE_OFFSET: usize = SIGNED_LEN;
/// Bytes of R and S in the signature.
pub const SIGNATURE_RS_LEN: usize = 144;

const ECDSA_P384_SHA384: u32 = 1;
const COMPONENT_LEN: usize = 72;
const SCALAR_LEN: usize = 48;

/// A TCB_VERSION value. Its byte layout depends on the product: decode it
/// with [`TcbVersion::parts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TcbVersion(pub u64);

/// One security patch level of a TCB version.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TcbComponent {
    /// Firmware-mask-ROM / FMC SPL (Turin and later only).
    Fmc,
    Bootloader,
    Tee,
    Snp,
    Microcode,
}

/// The decoded security patch levels of a TCB version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TcbParts {
    /// Only Turin and later carry an FMC SPL.
    pub fmc: Option<u8>,
    pub bootloader: u8,
    pub tee: u8,
    pub snp: u8,
    pub microcode: u8,
}

impl TcbParts {
    /// The SPL of one component (`None` for FMC before Turin).
    pub fn component(&self, c: TcbComponent) -> Option<u8> {
        match c {
            TcbComponent::Fmc => self.fmc,
            TcbComponent::Bootloader => Some(self.bootloader),
            TcbComponent::Tee => Some(self.tee),
            TcbComponent::Snp => Some(self.snp),
            TcbComponent::Microcode => Some(self.microcode),
        }
    }
}

impl TcbVersion {
    /// Decode the SPLs. Milan and Genoa: byte 0 bootloader, 1 TEE, 2..6
    /// reserved, 6 SNP, 7 microcode. Turin: byte 0 FMC, 1 bootloader, 2 TEE,
    /// 3 SNP, 4..7 reserved, 7 microcode.
    pub fn parts(self, product: Product) -> TcbParts {
        let b = self.0.to_le_bytes();
        match product {
            Product::Milan | Product::Genoa => TcbParts {
                fmc: None,
                bootloader: b[0],
                tee: b[1],
                snp: b[6],
                microcode: b[7],
            },
            Product::Turin => TcbParts {
                fmc: Some(b[0]),
                bootloader: b[1],
                tee: b[2],
                snp: b[3],
                microcode: b[7],
            },
        }
    }
}

/// The guest policy (report offset 0x08).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GuestPolicy(pub u64);

impl GuestPolicy {
    /// Bits 26..63 are reserved.
    const RESERVED_MASK: u64 = !((1u64 << 26) - 1);
    const RESERVED_ONE: u64 = 1 << 17;

    fn bit(self, n: u32) -> bool {
        self.0 & (1u64 << n) != 0
    }
    /// Minimum ABI minor version.
    pub fn abi_minor(self) -> u8 {
        self.0.to_le_bytes()[0]
    }
    /// Minimum ABI major version.
    pub fn abi_major(self) -> u8 {
        self.0.to_le_bytes()[1]
    }
    /// Host SMT is allowed.
    pub fn smt_allowed(self) -> bool {
        self.bit(16)
    }
    /// A migration agent may be associated.
    pub fn migrate_ma(self) -> bool {
        self.bit(18)
    }
    /// Debugging (host decryption) is allowed.
    pub fn debug(self) -> bool {
        self.bit(19)
    }
    /// The guest may run on one socket only.
    pub fn single_socket(self) -> bool {
        self.bit(20)
    }
    /// CXL may be populated.
    pub fn cxl_allowed(self) -> bool {
        self.bit(21)
    }
    /// AES-256-XTS memory encryption is required.
    pub fn mem_aes_256_xts(self) -> bool {
        self.bit(22)
    }
    /// RAPL must be disabled.
    pub fn rapl_disabled(self) -> bool {
        self.bit(23)
    }
    /// DRAM ciphertext hiding is required.
    pub fn ciphertext_hiding(self) -> bool {
        self.bit(24)
    }
    /// Page swap commands are disabled.
    pub fn page_swap_disabled(self) -> bool {
        self.bit(25)
    }
}

impl Serialize for GuestPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("GuestPolicy", 12)?;
        st.serialize_field("raw", &format!("{:#x}", self.0))?;
        st.serialize_field("abi_major", &self.abi_major())?;
        st.serialize_field("abi_minor", &self.abi_minor())?;
        st.serialize_field("smt_allowed", &self.smt_allowed())?;
        st.serialize_field("migrate_ma", &self.migrate_ma())?;
        st.serialize_field("debug", &self.debug())?;
        st.serialize_field("single_socket", &self.single_socket())?;
        st.serialize_field("cxl_allowed", &self.cxl_allowed())?;
        st.serialize_field("mem_aes_256_xts", &self.mem_aes_256_xts())?;
        st.serialize_field("rapl_disabled", &self.rapl_disabled())?;
        st.serialize_field("ciphertext_hiding", &self.ciphertext_hiding())?;
        st.serialize_field("page_swap_disabled", &self.page_swap_disabled())?;
        st.end()
    }
}

/// PLATFORM_INFO (report offset 0x40). Unknown bits are kept in `raw` and
/// not rejected: they describe the platform, not the guest's promises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PlatformInfo(pub u64);

impl PlatformInfo {
    fn bit(self, n: u32) -> bool {
        self.0 & (1u64 << n) != 0
    }
    /// SMT is enabled on the platform.
    pub fn smt_enabled(self) -> bool {
        self.bit(0)
    }
    /// TSME is enabled.
    pub fn tsme_enabled(self) -> bool {
        self.bit(1)
    }
    /// ECC memory is in use.
    pub fn ecc_enabled(self) -> bool {
        self.bit(2)
    }
    /// RAPL is disabled.
    pub fn rapl_disabled(self) -> bool {
        self.bit(3)
    }
    /// DRAM ciphertext hiding is enabled.
    pub fn ciphertext_hiding_enabled(self) -> bool {
        self.bit(4)
    }
    /// The DRAM alias check completed (BadRAM mitigation).
    pub fn alias_check_complete(self) -> bool {
        self.bit(5)
    }
}

impl Serialize for PlatformInfo {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("PlatformInfo", 7)?;
        st.serialize_field("raw", &format!("{:#x}", self.0))?;
        st.serialize_field("smt_enabled", &self.smt_enabled())?;
        st.serialize_field("tsme_enabled", &self.tsme_enabled())?;
        st.serialize_field("ecc_enabled", &self.ecc_enabled())?;
        st.serialize_field("rapl_disabled", &self.rapl_disabled())?;
        st.serialize_field(
            "ciphertext_hiding_enabled",
            &self.ciphertext_hiding_enabled(),
        )?;
        st.serialize_field("alias_check_complete", &self.alias_check_complete())?;
        st.end()
    }
}

/// The key-info field (report offset 0x48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct KeyInfo {
    /// AUTHOR_KEY_EN: the ID block carried an author key.
    pub author_key_en: bool,
    /// MASK_CHIP_KEY: the host masked CHIP_ID to zero.
    pub mask_chip_key: bool,
    /// SIGNING_KEY: which key signed the report.
    pub signing_key: SignerKind,
}

/// An AMD-SP firmware version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct FirmwareVersion {
    pub major: u8,
    pub minor: u8,
    pub build: u8,
}

/// CPUID family / model / stepping (report v3 and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Cpuid {
    /// Combined extended family + family.
    pub family: u8,
    /// Combined extended model + model.
    pub model: u8,
    pub stepping: u8,
}

impl Cpuid {
    /// The product this CPUID identifies. Family 19h models 00h–0Fh are
    /// Milan; 10h–1Fh and A0h–AFh (Bergamo/Siena, served under Genoa's
    /// ARK/ASK) are Genoa; family 1Ah models 00h–11h are Turin.
    pub fn product(self) -> Result<Product, SnpError> {
        match (self.family, self.model) {
            (0x19, 0x00..=0x0F) => Ok(Product::Milan),
            (0x19, 0x10..=0x1F) | (0x19, 0xA0..=0xAF) => Ok(Product::Genoa),
            (0x1A, 0x00..=0x11) => Ok(Product::Turin),
            (family, model) => Err(SnpError::UnknownCpuid { family, model }),
        }
    }
}

/// A parsed, structurally checked attestation report. Its signature has
/// NOT been verified: use [`super::verify_report`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AttestationReport {
    pub version: u32,
    pub guest_svn: u32,
    pub policy: GuestPolicy,
    #[serde(serialize_with = "hex_serde::ser")]
    pub family_id: [u8; 16],
    #[serde(serialize_with = "hex_serde::ser")]
    pub image_id: [u8; 16],
    pub vmpl: u32,
    pub signature_algo: u32,
    pub current_tcb: TcbVersion,
    pub platform_info: PlatformInfo,
    pub key_info: KeyInfo,
    #[serde(serialize_with = "hex_serde::ser")]
    pub report_data: [u8; 64],
    #[serde(serialize_with = "hex_serde::ser")]
    pub measurement: [u8; 48],
    #[serde(serialize_with = "hex_serde::ser")]
    pub host_data: [u8; 32],
    #[serde(serialize_with = "hex_serde::ser")]
    pub id_key_digest: [u8; 48],
    #[serde(serialize_with = "hex_serde::ser")]
    pub author_key_digest: [u8; 48],
    #[serde(serialize_with = "hex_serde::ser")]
    pub report_id: [u8; 32],
    #[serde(serialize_with = "hex_serde::ser")]
    pub report_id_ma: [u8; 32],
    pub reported_tcb: TcbVersion,
    /// Present from report version 3.
    pub cpuid: Option<Cpuid>,
    #[serde(serialize_with = "hex_serde::ser")]
    pub chip_id: [u8; 64],
    pub committed_tcb: TcbVersion,
    pub current_version: FirmwareVersion,
    pub committed_version: FirmwareVersion,
    pub launch_tcb: TcbVersion,
    /// Present from report version 5.
    pub launch_mit_vector: Option<u64>,
    /// Present from report version 5.
    pub current_mit_vector: Option<u64>,
    /// ECDSA R, big-endian.
    #[serde(serialize_with = "hex_serde::ser")]
    pub signature_r: [u8; 48],
    /// ECDSA S, big-endian.
    #[serde(serialize_with = "hex_serde::ser")]
    pub signature_s: [u8; 48],
    #[serde(skip)]
    raw: Vec<u8>,
}

fn require_zero(bytes: &[u8], base: usize) -> Result<(), SnpError> {
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => Err(SnpError::ReservedNonZero {
            offset: base.saturating_add(i),
        }),
        None => Ok(()),
    }
}

fn reserved(r: &mut Reader<'_>, n: usize, field: &'static str) -> Result<(), SnpError> {
    let base = r.offset();
    let bytes = r.bytes(n, field)?;
    require_zero(bytes, base)
}

/// Little-endian 72-byte component → big-endian 48-byte scalar.
fn ecdsa_component(le: &[u8], component: &'static str) -> Result<[u8; 48], SnpError> {
    let (low, high) = (le.get(..SCALAR_LEN), le.get(SCALAR_LEN..COMPONENT_LEN));
    let (Some(low), Some(high)) = (low, high) else {
        return Err(SnpError::SignatureComponentTooLarge { component });
    };
    if high.iter().any(|&b| b != 0) {
        return Err(SnpError::SignatureComponentTooLarge { component });
    }
    let mut out = [0u8; 48];
    for (o, b) in out.iter_mut().zip(low.iter().rev()) {
        *o = *b;
    }
    Ok(out)
}

impl AttestationReport {
    /// Parse exactly 1184 bytes. Checks the version (2, 3, 5), the
    /// signature algorithm, the signing-key kind and that every reserved
    /// field is zero; does not verify the signature.
    pub fn parse(bytes: &[u8]) -> Result<Self, SnpError> {
        if bytes.len() != REPORT_LEN {
            return Err(SnpError::InvalidLength {
                expected: REPORT_LEN,
                actual: bytes.len(),
            });
        }
        let mut r = Reader::new(bytes);
        let version = r.u32_le("version")?;
        if !matches!(version, 2 | 3 | 5) {
            return Err(SnpError::UnsupportedVersion { actual: version });
        }
        let guest_svn = r.u32_le("guest_svn")?;
        let policy = GuestPolicy(r.u64_le("policy")?);
        if policy.0 & GuestPolicy::RESERVED_MASK != 0 {
            return Err(SnpError::ReservedNonZero { offset: 0x08 });
        }
        if policy.0 & GuestPolicy::RESERVED_ONE == 0 {
            return Err(SnpError::PolicyReservedBitClear { policy: policy.0 });
        }
        let family_id = r.array("family_id")?;
        let image_id = r.array("image_id")?;
        let vmpl = r.u32_le("vmpl")?;
        let signature_algo = r.u32_le("signature_algo")?;
        if signature_algo != ECDSA_P384_SHA384 {
            return Err(SnpError::UnsupportedSignatureAlgorithm {
                actual: signature_algo,
            });
        }
        let current_tcb = TcbVersion(r.u64_le("current_tcb")?);
        let platform_info = PlatformInfo(r.u64_le("platform_info")?);
        let key_info_raw = r.u32_le("key_info")?;
        if key_info_raw >> 5 != 0 {
            return Err(SnpError::ReservedNonZero { offset: 0x48 });
        }
        let signing_key = match (key_info_raw >> 2) & 0x7 {
            0 => SignerKind::Vcek,
            1 => SignerKind::Vlek,
            other => {
                return Err(SnpError::UnsupportedSigningKey {
                    actual: u8::try_from(other).unwrap_or(u8::MAX),
                })
            }
        };
        let key_info = KeyInfo {
            author_key_en: key_info_raw & 1 != 0,
            mask_chip_key: key_info_raw & 2 != 0,
            signing_key,
        };
        reserved(&mut r, 4, "reserved_0x4c")?;
        let report_data = r.array("report_data")?;
        let measurement = r.array("measurement")?;
        let host_data = r.array("host_data")?;
        let id_key_digest = r.array("id_key_digest")?;
        let author_key_digest = r.array("author_key_digest")?;
        let report_id = r.array("report_id")?;
        let report_id_ma = r.array("report_id_ma")?;
        let reported_tcb = TcbVersion(r.u64_le("reported_tcb")?);
        let cpuid = if version >= 3 {
            let [family, model, stepping] = r.array::<3>("cpuid")?;
            reserved(&mut r, 21, "reserved_0x18b")?;
            Some(Cpuid {
                family,
                model,
                stepping,
            })
        } else {
            reserved(&mut r, 24, "reserved_0x188")?;
            None
        };
        let chip_id = r.array("chip_id")?;
        let committed_tcb = TcbVersion(r.u64_le("committed_tcb")?);
        let [build, minor, major] = r.array::<3>("current_version")?;
        let current_version = FirmwareVersion {
            major,
            minor,
            build,
        };
        reserved(&mut r, 1, "reserved_0x1eb")?;
        let [build, minor, major] = r.array::<3>("committed_version")?;
        let committed_version = FirmwareVersion {
            major,
            minor,
            build,
        };
        reserved(&mut r, 1, "reserved_0x1ef")?;
        let launch_tcb = TcbVersion(r.u64_le("launch_tcb")?);
        let (launch_mit_vector, current_mit_vector) = if version >= 5 {
            let l = r.u64_le("launch_mit_vector")?;
            let c = r.u64_le("current_mit_vector")?;
            (Some(l), Some(c))
        } else {
            (None, None)
        };
        let rest = SIGNED_LEN.saturating_sub(r.offset());
        reserved(&mut r, rest, "reserved_before_signature")?;
        let r_le = r.bytes(COMPONENT_LEN, "signature_r")?;
        let s_le = r.bytes(COMPONENT_LEN, "signature_s")?;
        let rest = REPORT_LEN.saturating_sub(r.offset());
        reserved(&mut r, rest, "signature_reserved")?;
        r.finish()?;
        let signature_r = ecdsa_component(r_le, "r")?;
        let signature_s = ecdsa_component(s_le, "s")?;
        Ok(AttestationReport {
            version,
            guest_svn,
            policy,
            family_id,
            image_id,
            vmpl,
            signature_algo,
            current_tcb,
            platform_info,
            key_info,
            report_data,
            measurement,
            host_data,
            id_key_digest,
            author_key_digest,
            report_id,
            report_id_ma,
            reported_tcb,
            cpuid,
            chip_id,
            committed_tcb,
            current_version,
            committed_version,
            launch_tcb,
            launch_mit_vector,
            current_mit_vector,
            signature_r,
            signature_s,
            raw: bytes.to_vec(),
        })
    }

    /// The raw report bytes exactly as received.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The signed region, bytes `0x000..0x2A0`, exactly as received.
    pub fn signed_bytes(&self) -> &[u8] {
        self.raw.get(..SIGNED_LEN).unwrap_or_default()
    }

    /// The product named by the CPUID fields (`None` for v2 reports).
    pub fn cpuid_product(&self) -> Option<Result<Product, SnpError>> {
        self.cpuid.map(Cpuid::product)
    }

    /// Whether CHIP_ID is all zero (masked).
    pub fn chip_id_is_zero(&self) -> bool {
        self.chip_id.iter().all(|&b| b == 0)
    }

    /// Verify the ECDSA P-384 / SHA-384 signature over the raw signed
    /// bytes with `key` (the VCEK or VLEK public key).
    pub fn verify_signature(&self, key: &PublicKey) -> Result<(), SnpError> {
        let mut sig = [0u8; 96];
        let (r, s) = sig.split_at_mut(48);
        r.copy_from_slice(&self.signature_r);
        s.copy_from_slice(&self.signature_s);
        let p384 = matches!(
            key,
            PublicKey::Ec {
                curve: Curve::P384,
                ..
            }
        );
        if !p384 {
            return Err(SnpError::ReportSignatureInvalid {
                signer: self.key_info.signing_key,
            });
        }
        crypto::verify(
            key,
            SigScheme::EcdsaFixed(HashAlg::Sha384),
            self.signed_bytes(),
            &sig,
        )
        .map_err(|_| SnpError::ReportSignatureInvalid {
            signer: self.key_info.signing_key,
        })
    }
}
