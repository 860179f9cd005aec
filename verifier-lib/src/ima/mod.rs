//! Linux IMA runtime measurement lists.
//!
//! [`ImaLog::parse_ascii`] and [`ImaLog::parse_binary`] read the kernel's
//! `ascii_runtime_measurements` and `binary_runtime_measurements` for the
//! templates `ima` (`d|n`), `ima-ng` (`d-ng|n-ng`), `ima-sig`
//! (`d-ng|n-ng|sig`) and `ima-buf` (`d-ng|n-ng|buf`). Every entry's template
//! hash is recomputed from the template data exactly as the kernel
//! serializes it and a mismatch rejects the list.
//!
//! PCR 10 is replayed for the SHA-1 bank (template hashes) and the SHA-256
//! bank (SHA-256 of the same template data, as kernels since 5.8 extend
//! non-SHA-1 banks). A violation (all-zero template hash) extends all-`ff`.
//!
//! Appraisal is incremental: an [`ImaCursor`] records how many entries were
//! accepted and the running PCR 10 values, so the next attestation only
//! parses and replays the entries after it ([`ImaLog::parse_ascii_after`],
//! [`replay_from`]) and then checks the quoted PCR 10 ([`check_pcr10`]).

mod parse;
mod replay;

pub use replay::{
    appraise_ascii, check_boot_aggregate, check_pcr10, replay_from, BootAggregateRange, ImaCursor,
};

use crate::crypto::HashAlg;

/// The PCR IMA extends unless policy says otherwise.
pub const IMA_PCR: u32 = 10;

/// One measurement-list entry.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImaEntry {
    /// 0-based position in the whole list (continues after a cursor).
    pub index: u64,
    pub pcr: u32,
    /// SHA-1 template hash as listed (all zero for a violation).
    #[serde(serialize_with = "crate::eventlog::serialize_hex")]
    pub template_hash: Vec<u8>,
    pub template_name: String,
    /// File digest algorithm name (`sha256`) and digest.
    pub file_digest: Option<(String, Vec<u8>)>,
    /// The file name hint (`n`/`n-ng`), e.g. `/usr/bin/bash` or `boot_aggregate`.
    pub path: String,
    /// `ima-sig` signature (`sig` field), if non-empty.
    pub signature: Option<Vec<u8>>,
    /// `ima-buf` buffer (`buf` field), if non-empty.
    pub buf: Option<Vec<u8>>,
    /// The bytes the kernel hashes for the template digest (for `ima`, the
    /// digest followed by the name padded to 256 bytes; otherwise each field
    /// as `u32 LE length ‖ data`).
    #[serde(skip)]
    pub template_data: Vec<u8>,
    /// The kernel recorded a violation: template hash all zero; PCR 10 was
    /// extended with all-`ff`.
    pub violation: bool,
}

impl ImaEntry {
    /// The value this entry extends into `bank` of its PCR.
    pub fn extend_value(&self, bank: HashAlg) -> Vec<u8> {
        if self.violation {
            vec![0xff; bank.output_len()]
        } else if bank == HashAlg::Sha1 {
            self.template_hash.clone()
        } else {
            bank.digest(&self.template_data)
        }
    }
}

/// A parsed, template-hash-checked measurement list (or a tail of one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImaLog {
    pub entries: Vec<ImaEntry>,
}

impl ImaLog {
    /// Parse a whole ASCII list.
    pub fn parse_ascii(text: &str) -> Result<ImaLog, ImaError> {
        parse::ascii(text, 0)
    }

    /// Parse only the lines after the `cursor.entries` already accepted;
    /// the skipped prefix is not read beyond counting lines.
    pub fn parse_ascii_after(text: &str, cursor: &ImaCursor) -> Result<ImaLog, ImaError> {
        parse::ascii(text, cursor.entries)
    }

    /// Parse a whole binary list.
    pub fn parse_binary(bytes: &[u8]) -> Result<ImaLog, ImaError> {
        parse::binary(bytes, 0)
    }

    /// Parse the entries after the `cursor.entries` already accepted. The
    /// prefix is walked (length fields only) without hashing.
    pub fn parse_binary_after(bytes: &[u8], cursor: &ImaCursor) -> Result<ImaLog, ImaError> {
        parse::binary(bytes, cursor.entries)
    }

    /// Serialize in the kernel's binary layout (little-endian), as
    /// `binary_runtime_measurements` shows it.
    pub fn to_binary(&self) -> Vec<u8> {
        parse::to_binary(&self.entries)
    }
}

/// Why an IMA list or check was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ImaError {
    /// An ASCII line is missing `field` or it is malformed.
    #[error("line {line}: malformed {field}")]
    MalformedLine { line: usize, field: &'static str },
    /// A binary entry ended inside `field`.
    #[error("entry {entry} truncated at offset {offset} while reading {field}")]
    Truncated {
        entry: u64,
        offset: usize,
        field: &'static str,
    },
    /// A binary field's length is inconsistent with its content.
    #[error("entry {entry}: malformed {field}")]
    MalformedField { entry: u64, field: &'static str },
    /// A template Writ cannot rebuild.
    #[error("entry {entry}: unsupported template {name:?}")]
    UnsupportedTemplate { entry: u64, name: String },
    /// The listed template hash is not the SHA-1 of the template data.
    #[error(
        "entry {entry} (line {line:?}): template hash {listed} does not match computed {computed}"
    )]
    TemplateHashMismatch {
        entry: u64,
        line: Option<usize>,
        listed: String,
        computed: String,
    },
    /// The list has fewer entries than the cursor already accepted.
    #[error("list has {available} entries, cursor already accepted {cursor}")]
    ShorterThanCursor { available: u64, cursor: u64 },
    /// The replayed PCR 10 differs from the quoted value.
    #[error("PCR {pcr} {bank}: replayed {replayed}, quoted {quoted}")]
    PcrMismatch {
        bank: HashAlg,
        pcr: u32,
        replayed: String,
        quoted: String,
    },
    /// The quote carries no PCR 10 in a bank the IMA replay covers.
    #[error("no quoted PCR 10 in the sha1 or sha256 bank")]
    Pcr10NotQuoted,
    /// The entry is not a boot_aggregate entry.
    #[error("entry {entry} is not boot_aggregate")]
    NotBootAggregate { entry: u64 },
    /// The event log has no bank for the boot_aggregate digest algorithm.
    #[error("boot_aggregate uses {alg}, which the event log replay has no bank for")]
    BootAggregateBankMissing { alg: String },
    /// boot_aggregate matches neither PCR 0–7 nor PCR 0–9 of the event log.
    #[error("boot_aggregate {listed} matches neither PCR 0-7 ({pcr0_7}) nor PCR 0-9 ({pcr0_9})")]
    BootAggregateMismatch {
        listed: String,
        pcr0_7: String,
        pcr0_9: String,
    },
}
