//! TCG PC Client measured-boot event logs (`binary_bios_measurements`).
//!
//! [`EventLog::parse`] reads both the crypto-agile format (first event is the
//! SHA-1-format `EV_NO_ACTION` "Spec ID Event03" header) and the legacy
//! SHA-1-only format. [`EventLog::replay`] recomputes the PCRs per bank and
//! [`compare`] checks them against quoted values, reporting every mismatch.
//! [`BootState::from_log`] extracts typed claims (Secure Boot, boot
//! applications, command lines, ...) — trust them only after the replay
//! matched a verified quote.
//!
//! Parsing is strict: truncation, trailing bytes (including zero padding: no
//! real log in the test vectors has any), digests for algorithms absent from
//! the header and digest counts that differ from the header are typed errors
//! naming the event index and byte offset.

mod bootstate;
mod devicepath;
mod parse;
mod quirks;
mod replay;

pub use bootstate::{
    BootApplication, BootState, DigestValue, EfiVariable, FirmwareBlob, MeasuredString,
    MeasuredStringSource, PcrFile, Separator, Sp800155Event, TaggedEvent,
};
pub use quirks::{compare_with_quirks, Quirk, QuirkOutcome};
pub use replay::{compare, PcrBanks, PcrMismatch, ReplayedPcrs};

use crate::crypto::HashAlg;

/// Highest PCR index a TPM 2.0 PC Client platform has.
pub const MAX_PCR: u32 = 23;

/// Event types from the TCG PC Client Platform Firmware Profile.
pub mod event_type {
    pub const EV_PREBOOT_CERT: u32 = 0x0000_0000;
    pub const EV_POST_CODE: u32 = 0x0000_0001;
    pub const EV_UNUSED: u32 = 0x0000_0002;
    pub const EV_NO_ACTION: u32 = 0x0000_0003;
    pub const EV_SEPARATOR: u32 = 0x0000_0004;
    pub const EV_ACTION: u32 = 0x0000_0005;
    pub const EV_EVENT_TAG: u32 = 0x0000_0006;
    pub const EV_S_CRTM_CONTENTS: u32 = 0x0000_0007;
    pub const EV_S_CRTM_VERSION: u32 = 0x0000_0008;
    pub const EV_CPU_MICROCODE: u32 = 0x0000_0009;
    pub const EV_PLATFORM_CONFIG_FLAGS: u32 = 0x0000_000A;
    pub const EV_TABLE_OF_DEVICES: u32 = 0x0000_000B;
    pub const EV_COMPACT_HASH: u32 = 0x0000_000C;
    pub const EV_IPL: u32 = 0x0000_000D;
    pub const EV_IPL_PARTITION_DATA: u32 = 0x0000_000E;
    pub const EV_NONHOST_CODE: u32 = 0x0000_000F;
    pub const EV_NONHOST_CONFIG: u32 = 0x0000_0010;
    pub const EV_NONHOST_INFO: u32 = 0x0000_0011;
    pub const EV_OMIT_BOOT_DEVICE_EVENTS: u32 = 0x0000_0012;
    pub const EV_POST_CODE2: u32 = 0x0000_0013;
    pub const EV_EFI_VARIABLE_DRIVER_CONFIG: u32 = 0x8000_0001;
    pub const EV_EFI_VARIABLE_BOOT: u32 = 0x8000_0002;
    pub const EV_EFI_BOOT_SERVICES_APPLICATION: u32 = 0x8000_0003;
    pub const EV_EFI_BOOT_SERVICES_DRIVER: u32 = 0x8000_0004;
    pub const EV_EFI_RUNTIME_SERVICES_DRIVER: u32 = 0x8000_0005;
    pub const EV_EFI_GPT_EVENT: u32 = 0x8000_0006;
    pub const EV_EFI_ACTION: u32 = 0x8000_0007;
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB: u32 = 0x8000_0008;
    pub const EV_EFI_HANDOFF_TABLES: u32 = 0x8000_0009;
    pub const EV_EFI_PLATFORM_FIRMWARE_BLOB2: u32 = 0x8000_000A;
    pub const EV_EFI_HANDOFF_TABLES2: u32 = 0x8000_000B;
    pub const EV_EFI_VARIABLE_BOOT2: u32 = 0x8000_000C;
    pub const EV_EFI_GPT_EVENT2: u32 = 0x8000_000D;
    pub const EV_EFI_HCRTM_EVENT: u32 = 0x8000_0010;
    pub const EV_EFI_VARIABLE_AUTHORITY: u32 = 0x8000_00E0;
    pub const EV_EFI_SPDM_FIRMWARE_BLOB: u32 = 0x8000_00E1;
    pub const EV_EFI_SPDM_FIRMWARE_CONFIG: u32 = 0x8000_00E2;

    /// The spec name of an event type (`EV_SEPARATOR`), if known.
    pub fn name(t: u32) -> Option<&'static str> {
        Some(match t {
            EV_PREBOOT_CERT => "EV_PREBOOT_CERT",
            EV_POST_CODE => "EV_POST_CODE",
            EV_UNUSED => "EV_UNUSED",
            EV_NO_ACTION => "EV_NO_ACTION",
            EV_SEPARATOR => "EV_SEPARATOR",
            EV_ACTION => "EV_ACTION",
            EV_EVENT_TAG => "EV_EVENT_TAG",
            EV_S_CRTM_CONTENTS => "EV_S_CRTM_CONTENTS",
            EV_S_CRTM_VERSION => "EV_S_CRTM_VERSION",
            EV_CPU_MICROCODE => "EV_CPU_MICROCODE",
            EV_PLATFORM_CONFIG_FLAGS => "EV_PLATFORM_CONFIG_FLAGS",
            EV_TABLE_OF_DEVICES => "EV_TABLE_OF_DEVICES",
            EV_COMPACT_HASH => "EV_COMPACT_HASH",
            EV_IPL => "EV_IPL",
            EV_IPL_PARTITION_DATA => "EV_IPL_PARTITION_DATA",
            EV_NONHOST_CODE => "EV_NONHOST_CODE",
            EV_NONHOST_CONFIG => "EV_NONHOST_CONFIG",
            EV_NONHOST_INFO => "EV_NONHOST_INFO",
            EV_OMIT_BOOT_DEVICE_EVENTS => "EV_OMIT_BOOT_DEVICE_EVENTS",
            EV_POST_CODE2 => "EV_POST_CODE2",
            EV_EFI_VARIABLE_DRIVER_CONFIG => "EV_EFI_VARIABLE_DRIVER_CONFIG",
            EV_EFI_VARIABLE_BOOT => "EV_EFI_VARIABLE_BOOT",
            EV_EFI_BOOT_SERVICES_APPLICATION => "EV_EFI_BOOT_SERVICES_APPLICATION",
            EV_EFI_BOOT_SERVICES_DRIVER => "EV_EFI_BOOT_SERVICES_DRIVER",
            EV_EFI_RUNTIME_SERVICES_DRIVER => "EV_EFI_RUNTIME_SERVICES_DRIVER",
            EV_EFI_GPT_EVENT => "EV_EFI_GPT_EVENT",
            EV_EFI_ACTION => "EV_EFI_ACTION",
            EV_EFI_PLATFORM_FIRMWARE_BLOB => "EV_EFI_PLATFORM_FIRMWARE_BLOB",
            EV_EFI_HANDOFF_TABLES => "EV_EFI_HANDOFF_TABLES",
            EV_EFI_PLATFORM_FIRMWARE_BLOB2 => "EV_EFI_PLATFORM_FIRMWARE_BLOB2",
            EV_EFI_HANDOFF_TABLES2 => "EV_EFI_HANDOFF_TABLES2",
            EV_EFI_VARIABLE_BOOT2 => "EV_EFI_VARIABLE_BOOT2",
            EV_EFI_GPT_EVENT2 => "EV_EFI_GPT_EVENT2",
            EV_EFI_HCRTM_EVENT => "EV_EFI_HCRTM_EVENT",
            EV_EFI_VARIABLE_AUTHORITY => "EV_EFI_VARIABLE_AUTHORITY",
            EV_EFI_SPDM_FIRMWARE_BLOB => "EV_EFI_SPDM_FIRMWARE_BLOB",
            EV_EFI_SPDM_FIRMWARE_CONFIG => "EV_EFI_SPDM_FIRMWARE_CONFIG",
            _ => return None,
        })
    }
}

/// Which of the two TCG log formats a log uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Format {
    /// TCG_PCR_EVENT2 entries after a "Spec ID Event03" header.
    CryptoAgile,
    /// TCG 1.2 style TCG_PCR_EVENT entries, SHA-1 digests only.
    LegacySha1,
}

/// One algorithm entry of the Spec ID header.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpecIdAlgorithm {
    /// TPM_ALG_ID as written in the header.
    pub alg_id: u16,
    /// Digest size the header declares for it.
    pub digest_size: u16,
    /// The hash, when Writ supports it (digests of other algorithms are skipped).
    pub hash: Option<HashAlg>,
}

/// The decoded "Spec ID Event03" header of a crypto-agile log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SpecId {
    pub platform_class: u32,
    pub spec_version_minor: u8,
    pub spec_version_major: u8,
    pub spec_errata: u8,
    pub uintn_size: u8,
    pub algorithms: Vec<SpecIdAlgorithm>,
    #[serde(serialize_with = "serialize_hex")]
    pub vendor_info: Vec<u8>,
}

/// One event of the log, with its position in the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// 0-based position in the log; the Spec ID header (if any) is event 0.
    pub index: usize,
    /// Byte offset of the event's first byte in the log.
    pub offset: usize,
    pub pcr: u32,
    pub event_type: u32,
    /// Digests for the supported banks, in log order. Digests of algorithms
    /// Writ does not implement are skipped using the header's size.
    pub digests: Vec<(HashAlg, Vec<u8>)>,
    pub data: Vec<u8>,
}

impl Event {
    /// This event's digest in `bank`, if present.
    pub fn digest(&self, bank: HashAlg) -> Option<&[u8]> {
        self.digests
            .iter()
            .find(|(alg, _)| *alg == bank)
            .map(|(_, d)| d.as_slice())
    }
}

/// A parsed event log. Nothing in it is trusted until its replay matches a
/// verified quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventLog {
    pub format: Format,
    pub events: Vec<Event>,
    pub spec_id: Option<SpecId>,
}

impl EventLog {
    /// Parse a raw `binary_bios_measurements` log. Detects the format from
    /// the first event.
    pub fn parse(bytes: &[u8]) -> Result<EventLog, EventLogError> {
        parse::parse(bytes)
    }

    /// The banks this log carries digests for (header order; SHA-1 for
    /// legacy logs), limited to the hashes Writ supports.
    pub fn banks(&self) -> Vec<HashAlg> {
        match &self.spec_id {
            Some(spec) => spec.algorithms.iter().filter_map(|a| a.hash).collect(),
            None => vec![HashAlg::Sha1],
        }
    }

    /// Recompute the final PCR values per bank. See [`ReplayedPcrs`].
    pub fn replay(&self) -> ReplayedPcrs {
        replay::replay(self)
    }
}

/// Why an event log was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventLogError {
    /// The log is empty.
    #[error("event log is empty")]
    Empty,
    /// The input ended inside `field` of event `event_index`.
    #[error("event {event_index} truncated at offset {offset} while reading {field}")]
    Truncated {
        event_index: usize,
        offset: usize,
        field: &'static str,
    },
    /// Bytes after the last event that do not form an event (all-zero padding
    /// is rejected too).
    #[error("{count} bytes of trailing garbage at offset {offset} (where event {event_index} would start)")]
    TrailingGarbage {
        event_index: usize,
        offset: usize,
        count: usize,
    },
    /// An event carries a digest for an algorithm the Spec ID header does not list.
    #[error("event {event_index} at offset {offset}: digest algorithm 0x{alg:04x} is not in the Spec ID header")]
    UnknownDigestAlgorithm {
        event_index: usize,
        offset: usize,
        alg: u16,
    },
    /// An event's digest count differs from the number of header algorithms.
    #[error(
        "event {event_index} at offset {offset}: digest count {actual}, header lists {expected}"
    )]
    DigestCountMismatch {
        event_index: usize,
        offset: usize,
        expected: usize,
        actual: u32,
    },
    /// An event carries two digests for the same algorithm.
    #[error("event {event_index} at offset {offset}: duplicate digest for algorithm 0x{alg:04x}")]
    DuplicateDigest {
        event_index: usize,
        offset: usize,
        alg: u16,
    },
    /// An event names a PCR above 23.
    #[error("event {event_index} at offset {offset}: PCR index {pcr} is above {max}", max = MAX_PCR)]
    PcrIndexOutOfRange {
        event_index: usize,
        offset: usize,
        pcr: u32,
    },
    /// The Spec ID header is malformed.
    #[error("Spec ID header: invalid {field}")]
    InvalidSpecId { field: &'static str },
    /// The header declares a digest size that differs from the algorithm's.
    #[error(
        "Spec ID header: algorithm {alg} declared with digest size {declared}, expected {expected}"
    )]
    SpecIdDigestSize {
        alg: HashAlg,
        declared: u16,
        expected: usize,
    },
    /// The header lists the same algorithm twice.
    #[error("Spec ID header: algorithm 0x{alg:04x} listed twice")]
    SpecIdDuplicateAlgorithm { alg: u16 },
}

/// Serialize bytes as a lower-case hex string.
pub(crate) fn serialize_hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(b))
}

/// Serialize optional bytes as a lower-case hex string or null.
pub(crate) fn serialize_opt_hex<S: serde::Serializer>(
    b: &Option<Vec<u8>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&hex::encode(b)),
        None => s.serialize_none(),
    }
}
