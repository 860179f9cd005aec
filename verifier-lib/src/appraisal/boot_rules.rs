//! `[groups.boot]` and `[groups.ima]` rules applied to replay-checked logs.

use std::collections::BTreeSet;

use crate::eventlog::{event_type, BootState, DigestValue, EventLog, MeasuredStringSource};
use crate::ima::ImaEntry;
use crate::policy::boot::{verify_ima_signature, BootRules, DigestRule, ImaRules};
use crate::policy::{Failure, PcrMap};
use crate::wire::Reader;

/// `EV_EVENT_TAG` id the Linux EFI stub uses for the initrd (PCR 9).
const LINUX_INITRD_TAG: u32 = 0x8F3B_22EC;

/// `EFI_CERT_SHA256_GUID` c1c41626-504c-4092-aca9-41f936934328, as stored.
const EFI_CERT_SHA256: [u8; 16] = [
    0x26, 0x16, 0xc4, 0xc1, 0x4c, 0x50, 0x92, 0x40, 0xac, 0xa9, 0x41, 0xf9, 0x36, 0x93, 0x43, 0x28,
];

/// A measured boot component: where it was measured, what, and its digest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BootComponent {
    pub event_index: usize,
    pub name: Option<String>,
    pub digest: Option<DigestValue>,
}

fn lower_contains_any(s: &str, needles: &[&str]) -> bool {
    let l = s.to_ascii_lowercase();
    needles.iter().any(|n| l.contains(n))
}

const KERNEL_NAMES: [&str; 4] = ["vmlinuz", "vmlinux", "bzimage", "/kernel"];
const INITRD_NAMES: [&str; 2] = ["initrd", "initramfs"];

/// Kernels: files GRUB measured into PCR 9 and boot applications whose file
/// path names a kernel image (`vmlinuz`, `vmlinux`, `bzImage`, `/kernel`).
pub fn kernels(state: &BootState) -> Vec<BootComponent> {
    let mut out: Vec<BootComponent> = state
        .pcr9_files
        .iter()
        .filter(|f| lower_contains_any(&f.path, &KERNEL_NAMES))
        .map(|f| BootComponent {
            event_index: f.event_index,
            name: Some(f.path.clone()),
            digest: f.digest.clone(),
        })
        .collect();
    out.extend(
        state
            .boot_applications
            .iter()
            .filter(|a| {
                a.file_path
                    .as_deref()
                    .is_some_and(|p| lower_contains_any(p, &KERNEL_NAMES))
            })
            .map(|a| BootComponent {
                event_index: a.event_index,
                name: a.file_path.clone(),
                digest: a.digest.clone(),
            }),
    );
    out.sort_by_key(|c| c.event_index);
    out
}

/// Initrds: PCR 9 files named `initrd*`/`initramfs*` and the Linux EFI
/// stub's tagged initrd event.
pub fn initrds(state: &BootState) -> Vec<BootComponent> {
    let mut out: Vec<BootComponent> = state
        .pcr9_files
        .iter()
        .filter(|f| lower_contains_any(&f.path, &INITRD_NAMES))
        .map(|f| BootComponent {
            event_index: f.event_index,
            name: Some(f.path.clone()),
            digest: f.digest.clone(),
        })
        .collect();
    out.extend(
        state
            .tagged_events
            .iter()
            .filter(|t| t.tag_id == LINUX_INITRD_TAG)
            .map(|t| BootComponent {
                event_index: t.event_index,
                name: Some(t.description.clone()),
                digest: t.digest.clone(),
            }),
    );
    out.sort_by_key(|c| c.event_index);
    out
}

/// Boot applications (`EV_EFI_BOOT_SERVICES_APPLICATION`).
pub fn boot_apps(state: &BootState) -> Vec<BootComponent> {
    state
        .boot_applications
        .iter()
        .map(|a| BootComponent {
            event_index: a.event_index,
            name: a.file_path.clone().or_else(|| a.device_path.clone()),
            digest: a.digest.clone(),
        })
        .collect()
}

/// Kernel command lines: GRUB `kernel_cmdline` and systemd-boot load options.
pub fn cmdlines(state: &BootState) -> Vec<(usize, String)> {
    state
        .measured_strings
        .iter()
        .filter(|s| {
            matches!(
                s.source,
                MeasuredStringSource::GrubKernelCmdline
                    | MeasuredStringSource::SystemdBootLoadOptions
            )
        })
        .map(|s| (s.event_index, s.text.clone()))
        .collect()
}

fn check_components(
    kind: &str,
    rule: &DigestRule,
    components: &[BootComponent],
    out: &mut Vec<Failure>,
) {
    for c in components {
        let digest = c.digest.as_ref().map(|d| d.value.as_slice());
        let hexd = digest.map(hex::encode).unwrap_or_default();
        if digest.is_some_and(|d| rule.forbidden.contains(d)) {
            out.push(Failure::BootDigestForbidden {
                kind: kind.to_owned(),
                event_index: c.event_index,
                digest: hexd,
                name: c.name.clone(),
            });
        } else if !rule.allowed.is_empty() && !digest.is_some_and(|d| rule.allowed.contains(d)) {
            out.push(Failure::BootDigestNotAllowed {
                kind: kind.to_owned(),
                event_index: c.event_index,
                digest: hexd,
                name: c.name.clone(),
            });
        }
    }
}

/// The SHA-256 entries of an EFI_SIGNATURE_LIST sequence (a dbx variable's data).
pub fn sha256_signature_entries(data: &[u8]) -> BTreeSet<Vec<u8>> {
    let mut out = BTreeSet::new();
    let mut r = Reader::new(data);
    while !r.is_empty() {
        let Ok(sig_type) = r.bytes(16, "signature_type") else {
            break;
        };
        let (Ok(list_size), Ok(header_size), Ok(sig_size)) = (
            r.u32_le("list_size"),
            r.u32_le("header_size"),
            r.u32_le("signature_size"),
        ) else {
            break;
        };
        let (Ok(list), Ok(header), Ok(size)) = (
            usize::try_from(list_size),
            usize::try_from(header_size),
            usize::try_from(sig_size),
        ) else {
            break;
        };
        let Some(body_len) = list.checked_sub(28) else {
            break;
        };
        let Ok(body) = r.bytes(body_len, "signature_list") else {
            break;
        };
        let sigs = body.get(header..).unwrap_or_default();
        if sig_type == EFI_CERT_SHA256 && size == 16 + 32 {
            for chunk in sigs.chunks_exact(size) {
                if let Some(hash) = chunk.get(16..) {
                    out.insert(hash.to_vec());
                }
            }
        }
    }
    out
}

/// The variable data of a `UEFI_VARIABLE_DATA` event.
fn variable_data(data: &[u8]) -> Option<&[u8]> {
    let mut r = Reader::new(data);
    r.bytes(16, "guid").ok()?;
    let name_len = usize::try_from(r.u64_le("name_len").ok()?).ok()?;
    let data_len = usize::try_from(r.u64_le("data_len").ok()?).ok()?;
    r.bytes(name_len.checked_mul(2)?, "name").ok()?;
    r.bytes(data_len, "data").ok()
}

/// Every `[groups.boot]` failure of a log whose replay matched the quote.
pub fn apply_boot_rules(
    rules: &BootRules,
    log: &EventLog,
    state: &BootState,
    quoted: &PcrMap,
    bank: crate::crypto::HashAlg,
) -> Vec<Failure> {
    let mut out = Vec::new();
    // Every PCR the log extends must be quoted, or its events are unchecked.
    let quoted_pcrs: BTreeSet<u8> = quoted
        .get(&bank)
        .map(|b| b.keys().copied().collect())
        .unwrap_or_default();
    let mut reported = BTreeSet::new();
    for e in &log.events {
        if e.event_type == event_type::EV_NO_ACTION {
            continue;
        }
        let Ok(pcr) = u8::try_from(e.pcr) else {
            continue;
        };
        if !quoted_pcrs.contains(&pcr) && reported.insert(pcr) {
            out.push(Failure::EventLogPcrNotQuoted {
                pcr,
                event_index: e.index,
            });
        }
    }
    if let Some(expected) = rules.secure_boot {
        if state.secure_boot != Some(expected) {
            out.push(Failure::SecureBootNotAllowed {
                expected,
                actual: state.secure_boot,
                event_index: state
                    .secure_boot_variables
                    .iter()
                    .find(|v| v.name == "SecureBoot" && v.pcr == 7)
                    .map(|v| v.event_index),
            });
        }
    }
    check_components("boot_app", &rules.boot_apps, &boot_apps(state), &mut out);
    let k = kernels(state);
    check_components("kernel", &rules.kernels, &k, &mut out);
    let i = initrds(state);
    check_components("initrd", &rules.initrds, &i, &mut out);
    if !rules.cmdlines.is_empty() {
        let lines = cmdlines(state);
        if lines.is_empty() {
            out.push(Failure::CmdlineNotAllowed {
                event_index: None,
                cmdline: None,
            });
        }
        for (idx, text) in lines {
            if !rules.cmdlines.iter().any(|r| r.matches(&text)) {
                out.push(Failure::CmdlineNotAllowed {
                    event_index: Some(idx),
                    cmdline: Some(text),
                });
            }
        }
    }
    if !rules.dbx_required.is_empty() {
        let (event_index, entries) = dbx_sha256_entries(log, state);
        for required in &rules.dbx_required {
            if !entries.contains(required) {
                out.push(Failure::DbxEntryMissing {
                    entry: hex::encode(required),
                    event_index,
                });
            }
        }
    }
    out
}

/// The SHA-256 entries of the last measured `dbx` variable, with its event
/// index (`None`, and no entries, when the log measures no `dbx`).
pub fn dbx_sha256_entries(log: &EventLog, state: &BootState) -> (Option<usize>, BTreeSet<Vec<u8>>) {
    let dbx = state
        .secure_boot_variables
        .iter()
        .rfind(|v| v.name == "dbx");
    let event = dbx.and_then(|v| log.events.iter().find(|e| e.index == v.event_index));
    let entries = event
        .and_then(|e| variable_data(&e.data))
        .map(sha256_signature_entries)
        .unwrap_or_default();
    (dbx.map(|v| v.event_index), entries)
}

/// Every `[groups.ima]` failure of new, PCR-10-checked entries. The first
/// list entry (`boot_aggregate`) is checked by the caller, not here.
pub fn apply_ima_rules(rules: &ImaRules, entries: &[ImaEntry]) -> Vec<Failure> {
    let mut out = Vec::new();
    for e in entries {
        if e.index == 0 && e.path == "boot_aggregate" {
            continue;
        }
        if e.violation {
            if !rules.allow_violations {
                out.push(Failure::ImaViolation {
                    entry_index: e.index,
                    path: e.path.clone(),
                });
            }
            continue;
        }
        let digest = e.file_digest.as_ref();
        if let Some((_, d)) = digest {
            if rules.deny.contains(d) {
                out.push(Failure::ImaEntryDenied {
                    entry_index: e.index,
                    path: e.path.clone(),
                    digest: hex::encode(d),
                });
                continue;
            }
        }
        if rules.excluded(&e.path) {
            continue;
        }
        let listed = rules.allow.get(&e.path);
        if let (Some(allowed), Some((_, d))) = (listed, digest) {
            if allowed.contains(d) {
                continue;
            }
        }
        let reason = match (&e.signature, digest) {
            (Some(sig), Some((alg, d))) if !rules.keys.is_empty() => {
                match verify_ima_signature(&rules.keys, alg, d, sig) {
                    Ok(()) => continue,
                    Err(err) => format!("signature: {err}"),
                }
            }
            _ if listed.is_some() => "digest not allowed for this path".to_owned(),
            _ => "path not in the allowlist and not signed by a policy key".to_owned(),
        };
        out.push(Failure::ImaEntryNotAllowed {
            entry_index: e.index,
            path: e.path.clone(),
            digest: digest.map(|(a, d)| format!("{a}:{}", hex::encode(d))),
            reason,
        });
    }
    out
}
