//! Appraisal of a verified report against a guest-owner policy, modelled
//! on go-sev-guest's validation options. Every failing rule is reported.

use super::{hex_serde, Product, SignerKind, TcbComponent, TcbParts, VerifiedReport};
use serde::{Deserialize, Serialize};

/// Per-component minimum security patch levels (unset = no minimum).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TcbMinimum {
    /// Only Turin reports carry an FMC SPL; a minimum here fails elsewhere.
    pub fmc: Option<u8>,
    pub bootloader: Option<u8>,
    pub tee: Option<u8>,
    pub snp: Option<u8>,
    pub microcode: Option<u8>,
}

/// A minimum AMD-SP firmware `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MinFirmwareVersion {
    pub major: u8,
    pub minor: u8,
}

/// What a guest owner accepts. Byte strings are hex in TOML/JSON.
///
/// `allowed_measurements` empty means NO measurement is accepted unless
/// `dangerous_any_measurement` is set; likewise `allowed_host_data` empty
/// means no HOST_DATA is accepted unless `dangerous_any_host_data` is set
/// (HOST_DATA is chosen by the hypervisor, so "anything" must be said
/// explicitly; a policy saying neither is refused at load, see
/// [`SnpPolicy::check_host_data_rule`]). A policy group's SNP table must set
/// a TCB floor (some `min_*_tcb` component above 0) unless it says
/// `dangerous_accept_any_tcb`, and only VMPL 0 is accepted unless
/// `max_vmpl` says otherwise. The other allow-lists
/// (`allowed_id_key_digests`, `allowed_author_key_digests`,
/// `allowed_products`) accept anything when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnpPolicy {
    #[serde(
        serialize_with = "hex_serde::ser_vec",
        deserialize_with = "hex_serde::de_vec"
    )]
    pub allowed_measurements: Vec<[u8; 48]>,
    /// Accept any launch measurement (insecure).
    pub dangerous_any_measurement: bool,
    #[serde(
        serialize_with = "hex_serde::ser_vec",
        deserialize_with = "hex_serde::de_vec"
    )]
    pub allowed_host_data: Vec<[u8; 32]>,
    /// Accept any HOST_DATA (the hypervisor's choice; insecure).
    pub dangerous_any_host_data: bool,
    #[serde(
        serialize_with = "hex_serde::ser_vec",
        deserialize_with = "hex_serde::de_vec"
    )]
    pub allowed_id_key_digests: Vec<[u8; 48]>,
    #[serde(
        serialize_with = "hex_serde::ser_vec",
        deserialize_with = "hex_serde::de_vec"
    )]
    pub allowed_author_key_digests: Vec<[u8; 48]>,
    #[serde(
        serialize_with = "hex_serde::ser_opt",
        deserialize_with = "hex_serde::de_opt"
    )]
    pub family_id: Option<[u8; 16]>,
    #[serde(
        serialize_with = "hex_serde::ser_opt",
        deserialize_with = "hex_serde::de_opt"
    )]
    pub image_id: Option<[u8; 16]>,
    pub min_guest_svn: Option<u32>,
    pub min_reported_tcb: TcbMinimum,
    pub min_committed_tcb: TcbMinimum,
    pub min_launch_tcb: TcbMinimum,
    pub min_current_tcb: TcbMinimum,
    /// Minimum firmware version, checked against current and committed.
    pub min_firmware_version: Option<MinFirmwareVersion>,
    /// Minimum firmware build, checked against current and committed.
    pub min_build: Option<u8>,
    /// Reject guests whose policy allows debugging (default true).
    pub require_no_debug: bool,
    /// Accept a guest policy allowing a migration agent, and a REPORT_ID_MA
    /// other than all-zero / all-ones.
    pub allow_migration_agent: bool,
    /// Require PLATFORM_INFO.SMT_EN = 0.
    pub require_smt_disabled: bool,
    /// Require the guest policy's SINGLE_SOCKET bit.
    pub require_single_socket: bool,
    /// Highest acceptable VMPL (default 0; 3 accepts every VMPL).
    pub max_vmpl: u32,
    pub allowed_products: Vec<Product>,
    /// Reject VLEK-signed reports.
    pub require_vcek: bool,
    /// Accept reports with MASK_CHIP_KEY set (CHIP_ID not bound).
    pub allow_masked_chip_id: bool,
    /// Require an ID block (non-zero ID_KEY_DIGEST).
    pub require_id_block: bool,
    /// Require an author key (AUTHOR_KEY_EN and non-zero digest).
    pub require_author_key: bool,
    /// Accept a verdict whose CRL check was skipped (insecure).
    pub dangerous_allow_unchecked_revocation: bool,
    /// Accept a chain ending in a dangerous extra root (tests only).
    pub dangerous_allow_extra_root: bool,
    /// Load without a TCB floor (insecure: firmware with known flaws passes).
    pub dangerous_accept_any_tcb: bool,
}

impl Default for SnpPolicy {
    fn default() -> Self {
        SnpPolicy {
            allowed_measurements: Vec::new(),
            dangerous_any_measurement: false,
            allowed_host_data: Vec::new(),
            dangerous_any_host_data: false,
            allowed_id_key_digests: Vec::new(),
            allowed_author_key_digests: Vec::new(),
            family_id: None,
            image_id: None,
            min_guest_svn: None,
            min_reported_tcb: TcbMinimum::default(),
            min_committed_tcb: TcbMinimum::default(),
            min_launch_tcb: TcbMinimum::default(),
            min_current_tcb: TcbMinimum::default(),
            min_firmware_version: None,
            min_build: None,
            require_no_debug: true,
            allow_migration_agent: false,
            require_smt_disabled: false,
            require_single_socket: false,
            max_vmpl: 0,
            allowed_products: Vec::new(),
            require_vcek: false,
            allow_masked_chip_id: false,
            require_id_block: false,
            require_author_key: false,
            dangerous_allow_unchecked_revocation: false,
            dangerous_allow_extra_root: false,
            dangerous_accept_any_tcb: false,
        }
    }
}

impl SnpPolicy {
    /// Whether some `min_*_tcb` component is above 0: a firmware floor.
    pub fn has_tcb_floor(&self) -> bool {
        [
            &self.min_reported_tcb,
            &self.min_committed_tcb,
            &self.min_launch_tcb,
            &self.min_current_tcb,
        ]
        .iter()
        .any(|m| {
            [m.fmc, m.bootloader, m.tee, m.snp, m.microcode]
                .iter()
                .any(|c| c.is_some_and(|v| v > 0))
        })
    }
}

/// The rule a violation broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SnpRule {
    Measurement,
    HostData,
    IdKeyDigest,
    AuthorKeyDigest,
    FamilyId,
    ImageId,
    GuestSvn,
    MinReportedTcb(TcbComponent),
    MinCommittedTcb(TcbComponent),
    MinLaunchTcb(TcbComponent),
    MinCurrentTcb(TcbComponent),
    CurrentFirmwareVersion,
    CommittedFirmwareVersion,
    CurrentBuild,
    CommittedBuild,
    Debug,
    MigrationAgent,
    ReportIdMa,
    SmtDisabled,
    SingleSocket,
    Vmpl,
    Product,
    Signer,
    MaskedChipId,
    IdBlock,
    AuthorKey,
    Revocation,
    TrustedRoot,
}

/// One failed rule, with what the policy wanted and what the report had.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnpPolicyViolation {
    pub rule: SnpRule,
    pub expected: String,
    pub actual: String,
}

struct Findings(Vec<SnpPolicyViolation>);

impl Findings {
    fn fail(&mut self, rule: SnpRule, expected: impl Into<String>, actual: impl Into<String>) {
        self.0.push(SnpPolicyViolation {
            rule,
            expected: expected.into(),
            actual: actual.into(),
        });
    }

    fn allow_list<const N: usize>(&mut self, rule: SnpRule, allowed: &[[u8; N]], actual: &[u8; N]) {
        if !allowed.is_empty() && !allowed.iter().any(|a| a == actual) {
            let expected = allowed
                .iter()
                .map(hex::encode)
                .collect::<Vec<_>>()
                .join(" | ");
            self.fail(rule, format!("one of {expected}"), hex::encode(actual));
        }
    }

    fn tcb(&mut self, rule: fn(TcbComponent) -> SnpRule, min: &TcbMinimum, actual: &TcbParts) {
        let wanted = [
            (TcbComponent::Fmc, min.fmc),
            (TcbComponent::Bootloader, min.bootloader),
            (TcbComponent::Tee, min.tee),
            (TcbComponent::Snp, min.snp),
            (TcbComponent::Microcode, min.microcode),
        ];
        for (component, min) in wanted {
            let Some(min) = min else { continue };
            match actual.component(component) {
                Some(v) if v >= min => {}
                Some(v) => self.fail(rule(component), format!(">= {min}"), v.to_string()),
                None => self.fail(rule(component), format!(">= {min}"), "absent"),
            }
        }
    }
}

/// Why an SNP policy cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SnpPolicyError {
    /// `allowed_host_data` is empty and `dangerous_any_host_data` is not set.
    #[error(
        "allowed_host_data is empty: list the accepted HOST_DATA values, or set \
         dangerous_any_host_data = true to accept any (the hypervisor chooses HOST_DATA)"
    )]
    HostDataUnrestricted,
    /// Both an allow-list and `dangerous_any_host_data` are given.
    #[error(
        "allowed_host_data lists {count} values but dangerous_any_host_data = true accepts any"
    )]
    HostDataContradictory { count: usize },
}

impl SnpPolicy {
    /// An empty `allowed_host_data` must not silently mean "anything":
    /// either values are listed or `dangerous_any_host_data = true` says so
    /// (not both).
    pub fn check_host_data_rule(&self) -> Result<(), SnpPolicyError> {
        match (self.allowed_host_data.len(), self.dangerous_any_host_data) {
            (0, false) => Err(SnpPolicyError::HostDataUnrestricted),
            (count, true) if count > 0 => Err(SnpPolicyError::HostDataContradictory { count }),
            _ => Ok(()),
        }
    }
}

fn is_uniform(bytes: &[u8], value: u8) -> bool {
    bytes.iter().all(|&b| b == value)
}

/// Check `verified` against `policy`; returns every violated rule (empty
/// means the report is acceptable).
pub fn appraise(verified: &VerifiedReport, policy: &SnpPolicy) -> Vec<SnpPolicyViolation> {
    let r = &verified.report;
    let mut f = Findings(Vec::new());

    if !policy.dangerous_any_measurement {
        if policy.allowed_measurements.is_empty() {
            f.fail(
                SnpRule::Measurement,
                "a listed measurement (none allowed)",
                hex::encode(r.measurement),
            );
        } else {
            f.allow_list(
                SnpRule::Measurement,
                &policy.allowed_measurements,
                &r.measurement,
            );
        }
    }
    if !policy.dangerous_any_host_data {
        if policy.allowed_host_data.is_empty() {
            f.fail(
                SnpRule::HostData,
                "a listed HOST_DATA (none allowed)",
                hex::encode(r.host_data),
            );
        } else {
            f.allow_list(SnpRule::HostData, &policy.allowed_host_data, &r.host_data);
        }
    }
    f.allow_list(
        SnpRule::IdKeyDigest,
        &policy.allowed_id_key_digests,
        &r.id_key_digest,
    );
    f.allow_list(
        SnpRule::AuthorKeyDigest,
        &policy.allowed_author_key_digests,
        &r.author_key_digest,
    );
    if let Some(id) = policy.family_id {
        if id != r.family_id {
            f.fail(SnpRule::FamilyId, hex::encode(id), hex::encode(r.family_id));
        }
    }
    if let Some(id) = policy.image_id {
        if id != r.image_id {
            f.fail(SnpRule::ImageId, hex::encode(id), hex::encode(r.image_id));
        }
    }
    if let Some(min) = policy.min_guest_svn {
        if r.guest_svn < min {
            f.fail(
                SnpRule::GuestSvn,
                format!(">= {min}"),
                r.guest_svn.to_string(),
            );
        }
    }
    f.tcb(
        SnpRule::MinReportedTcb,
        &policy.min_reported_tcb,
        &verified.reported_tcb,
    );
    f.tcb(
        SnpRule::MinCommittedTcb,
        &policy.min_committed_tcb,
        &verified.committed_tcb,
    );
    f.tcb(
        SnpRule::MinLaunchTcb,
        &policy.min_launch_tcb,
        &verified.launch_tcb,
    );
    f.tcb(
        SnpRule::MinCurrentTcb,
        &policy.min_current_tcb,
        &verified.current_tcb,
    );
    if let Some(min) = policy.min_firmware_version {
        for (rule, v) in [
            (SnpRule::CurrentFirmwareVersion, r.current_version),
            (SnpRule::CommittedFirmwareVersion, r.committed_version),
        ] {
            if (v.major, v.minor) < (min.major, min.minor) {
                f.fail(
                    rule,
                    format!(">= {}.{}", min.major, min.minor),
                    format!("{}.{}", v.major, v.minor),
                );
            }
        }
    }
    if let Some(min) = policy.min_build {
        for (rule, v) in [
            (SnpRule::CurrentBuild, r.current_version.build),
            (SnpRule::CommittedBuild, r.committed_version.build),
        ] {
            if v < min {
                f.fail(rule, format!(">= {min}"), v.to_string());
            }
        }
    }
    if policy.require_no_debug && r.policy.debug() {
        f.fail(SnpRule::Debug, "debug=false", "debug=true");
    }
    if !policy.allow_migration_agent {
        if r.policy.migrate_ma() {
            f.fail(
                SnpRule::MigrationAgent,
                "migrate_ma=false",
                "migrate_ma=true",
            );
        }
        if !is_uniform(&r.report_id_ma, 0xff) && !is_uniform(&r.report_id_ma, 0) {
            f.fail(
                SnpRule::ReportIdMa,
                "no migration agent (all-ff or all-zero)",
                hex::encode(r.report_id_ma),
            );
        }
    }
    if policy.require_smt_disabled && r.platform_info.smt_enabled() {
        f.fail(
            SnpRule::SmtDisabled,
            "smt_enabled=false",
            "smt_enabled=true",
        );
    }
    if policy.require_single_socket && !r.policy.single_socket() {
        f.fail(
            SnpRule::SingleSocket,
            "single_socket=true",
            "single_socket=false",
        );
    }
    if r.vmpl > policy.max_vmpl {
        f.fail(
            SnpRule::Vmpl,
            format!("<= {}", policy.max_vmpl),
            r.vmpl.to_string(),
        );
    }
    if !policy.allowed_products.is_empty() && !policy.allowed_products.contains(&verified.product) {
        f.fail(
            SnpRule::Product,
            format!("one of {:?}", policy.allowed_products),
            format!("{:?}", verified.product),
        );
    }
    if policy.require_vcek && verified.signer != SignerKind::Vcek {
        f.fail(
            SnpRule::Signer,
            "vcek",
            format!("{:?}", verified.signer).to_lowercase(),
        );
    }
    if verified.chip_id_masked && !policy.allow_masked_chip_id {
        f.fail(SnpRule::MaskedChipId, "chip id not masked", "masked");
    }
    if policy.require_id_block && is_uniform(&r.id_key_digest, 0) {
        f.fail(SnpRule::IdBlock, "non-zero id_key_digest", "zero");
    }
    if policy.require_author_key
        && (!r.key_info.author_key_en || is_uniform(&r.author_key_digest, 0))
    {
        f.fail(
            SnpRule::AuthorKey,
            "author_key_en and non-zero author_key_digest",
            format!(
                "author_key_en={} digest={}",
                r.key_info.author_key_en,
                hex::encode(r.author_key_digest)
            ),
        );
    }
    if !verified.revocation_checked && !policy.dangerous_allow_unchecked_revocation {
        f.fail(SnpRule::Revocation, "CRL checked", "CRL check skipped");
    }
    if verified.dangerous_root && !policy.dangerous_allow_extra_root {
        f.fail(
            SnpRule::TrustedRoot,
            "pinned AMD ARK",
            "dangerous extra root",
        );
    }
    f.0
}
