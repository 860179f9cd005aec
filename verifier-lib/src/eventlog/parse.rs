//! Byte-level parsing of both TCG event log formats.

use super::{event_type, Event, EventLog, EventLogError, Format, SpecId, SpecIdAlgorithm, MAX_PCR};
use crate::crypto::HashAlg;
use crate::wire::{Reader, WireError};

/// Signature of the crypto-agile header event, NUL included.
const SPEC_ID_EVENT03: &[u8; 16] = b"Spec ID Event03\0";

/// Convert a reader error into a log error that names the event.
fn at(event_index: usize) -> impl Fn(WireError) -> EventLogError {
    move |e| match e {
        WireError::Truncated { field, offset, .. } => EventLogError::Truncated {
            event_index,
            offset,
            field,
        },
        // The reader only reports truncation for the reads used here; map the
        // rest conservatively to a truncation at an unknown field.
        _ => EventLogError::Truncated {
            event_index,
            offset: 0,
            field: "event",
        },
    }
}

fn check_pcr(event_index: usize, offset: usize, pcr: u32) -> Result<(), EventLogError> {
    if pcr > MAX_PCR {
        return Err(EventLogError::PcrIndexOutOfRange {
            event_index,
            offset,
            pcr,
        });
    }
    Ok(())
}

/// Reject an all-zero tail: no real log in the vectors has padding, and a
/// zero-filled region would otherwise parse as PCR 0 `EV_PREBOOT_CERT` events.
fn reject_zero_tail(r: &Reader<'_>, event_index: usize) -> Result<(), EventLogError> {
    let rest = r.rest();
    if rest.iter().all(|&b| b == 0) {
        return Err(EventLogError::TrailingGarbage {
            event_index,
            offset: r.offset(),
            count: rest.len(),
        });
    }
    Ok(())
}

/// A TCG_PCR_EVENT (SHA-1 format) entry.
fn legacy_event(r: &mut Reader<'_>, index: usize) -> Result<Event, EventLogError> {
    let offset = r.offset();
    let err = at(index);
    let pcr = r.u32_le("pcr_index").map_err(&err)?;
    check_pcr(index, offset, pcr)?;
    let event_type = r.u32_le("event_type").map_err(&err)?;
    let digest = r.bytes(20, "sha1_digest").map_err(&err)?.to_vec();
    let size = r.u32_le("event_size").map_err(&err)?;
    let data = r
        .bytes(usize_from(size), "event_data")
        .map_err(&err)?
        .to_vec();
    Ok(Event {
        index,
        offset,
        pcr,
        event_type,
        digests: vec![(HashAlg::Sha1, digest)],
        data,
    })
}

fn usize_from(v: u32) -> usize {
    // usize is at least 32 bits on every target this crate supports; saturate
    // otherwise so the bounds check in `Reader::bytes` rejects it.
    usize::try_from(v).unwrap_or(usize::MAX)
}

/// A TCG_PCR_EVENT2 (crypto-agile) entry.
fn agile_event(r: &mut Reader<'_>, index: usize, spec: &SpecId) -> Result<Event, EventLogError> {
    let offset = r.offset();
    let err = at(index);
    let pcr = r.u32_le("pcr_index").map_err(&err)?;
    check_pcr(index, offset, pcr)?;
    let event_type = r.u32_le("event_type").map_err(&err)?;
    let count = r.u32_le("digest_count").map_err(&err)?;
    if usize::try_from(count).ok() != Some(spec.algorithms.len()) {
        return Err(EventLogError::DigestCountMismatch {
            event_index: index,
            offset,
            expected: spec.algorithms.len(),
            actual: count,
        });
    }
    let mut digests = Vec::with_capacity(spec.algorithms.len());
    let mut seen: Vec<u16> = Vec::with_capacity(spec.algorithms.len());
    for _ in 0..count {
        let alg = r.u16_le("digest_alg").map_err(&err)?;
        let Some(decl) = spec.algorithms.iter().find(|a| a.alg_id == alg) else {
            return Err(EventLogError::UnknownDigestAlgorithm {
                event_index: index,
                offset,
                alg,
            });
        };
        if seen.contains(&alg) {
            return Err(EventLogError::DuplicateDigest {
                event_index: index,
                offset,
                alg,
            });
        }
        seen.push(alg);
        let d = r
            .bytes(usize::from(decl.digest_size), "digest")
            .map_err(&err)?;
        if let Some(hash) = decl.hash {
            digests.push((hash, d.to_vec()));
        }
    }
    let size = r.u32_le("event_size").map_err(&err)?;
    let data = r
        .bytes(usize_from(size), "event_data")
        .map_err(&err)?
        .to_vec();
    Ok(Event {
        index,
        offset,
        pcr,
        event_type,
        digests,
        data,
    })
}

/// Decode the TCG_EfiSpecIdEvent structure carried by the first event.
fn spec_id(data: &[u8]) -> Result<SpecId, EventLogError> {
    let invalid = |field: &'static str| move |_: WireError| EventLogError::InvalidSpecId { field };
    let mut r = Reader::new(data);
    let sig = r.bytes(16, "signature").map_err(invalid("signature"))?;
    if sig != SPEC_ID_EVENT03 {
        return Err(EventLogError::InvalidSpecId { field: "signature" });
    }
    let platform_class = r
        .u32_le("platform_class")
        .map_err(invalid("platform_class"))?;
    let spec_version_minor = r.u8("spec_version_minor").map_err(invalid("version"))?;
    let spec_version_major = r.u8("spec_version_major").map_err(invalid("version"))?;
    let spec_errata = r.u8("spec_errata").map_err(invalid("spec_errata"))?;
    let uintn_size = r.u8("uintn_size").map_err(invalid("uintn_size"))?;
    if spec_version_major != 2 {
        return Err(EventLogError::InvalidSpecId {
            field: "spec_version_major",
        });
    }
    let n = r
        .u32_le("number_of_algorithms")
        .map_err(invalid("number_of_algorithms"))?;
    if n == 0 {
        return Err(EventLogError::InvalidSpecId {
            field: "number_of_algorithms",
        });
    }
    let mut algorithms: Vec<SpecIdAlgorithm> = Vec::new();
    for _ in 0..n {
        let alg_id = r.u16_le("algorithm_id").map_err(invalid("algorithms"))?;
        let digest_size = r.u16_le("digest_size").map_err(invalid("algorithms"))?;
        if algorithms.iter().any(|a| a.alg_id == alg_id) {
            return Err(EventLogError::SpecIdDuplicateAlgorithm { alg: alg_id });
        }
        let hash = HashAlg::from_tpm_alg_id(alg_id);
        if let Some(h) = hash {
            if usize::from(digest_size) != h.output_len() {
                return Err(EventLogError::SpecIdDigestSize {
                    alg: h,
                    declared: digest_size,
                    expected: h.output_len(),
                });
            }
        }
        algorithms.push(SpecIdAlgorithm {
            alg_id,
            digest_size,
            hash,
        });
    }
    let vsize = r.u8("vendor_info_size").map_err(invalid("vendor_info"))?;
    let vendor_info = r
        .bytes(usize::from(vsize), "vendor_info")
        .map_err(invalid("vendor_info"))?
        .to_vec();
    r.finish().map_err(invalid("trailing bytes"))?;
    Ok(SpecId {
        platform_class,
        spec_version_minor,
        spec_version_major,
        spec_errata,
        uintn_size,
        algorithms,
        vendor_info,
    })
}

pub(super) fn parse(bytes: &[u8]) -> Result<EventLog, EventLogError> {
    if bytes.is_empty() {
        return Err(EventLogError::Empty);
    }
    let mut r = Reader::new(bytes);
    reject_zero_tail(&r, 0)?;
    let first = legacy_event(&mut r, 0)?;
    let is_agile =
        first.event_type == event_type::EV_NO_ACTION && first.data.starts_with(SPEC_ID_EVENT03);
    let mut events = Vec::new();
    let spec = if is_agile {
        Some(spec_id(&first.data)?)
    } else {
        None
    };
    events.push(first);
    while !r.is_empty() {
        let index = events.len();
        reject_zero_tail(&r, index)?;
        let ev = match &spec {
            Some(spec) => agile_event(&mut r, index, spec)?,
            None => legacy_event(&mut r, index)?,
        };
        events.push(ev);
    }
    Ok(EventLog {
        format: if spec.is_some() {
            Format::CryptoAgile
        } else {
            Format::LegacySha1
        },
        events,
        spec_id: spec,
    })
}
