//! Typed boot-state claims read from a parsed event log.
//!
//! Event types and data are not covered by the PCRs; only digests are. Every
//! claim whose data should hash to its event digest carries
//! `digest_verified`, and claims are only meaningful after
//! [`compare`](super::compare) matched a verified quote.

use super::devicepath::{self, guid, utf16le};
use super::event_type as et;
use super::{serialize_hex, Event, EventLog};
use crate::crypto::HashAlg;
use crate::wire::Reader;

/// A digest with its algorithm.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DigestValue {
    pub alg: HashAlg,
    #[serde(serialize_with = "serialize_hex")]
    pub value: Vec<u8>,
}

/// A measured UEFI variable (`EV_EFI_VARIABLE_*`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EfiVariable {
    pub event_index: usize,
    pub pcr: u32,
    pub event_type: u32,
    pub name: String,
    pub vendor_guid: String,
    /// The event digest in the preferred bank (SHA-256 when the log has it).
    pub event_digest: Option<DigestValue>,
    /// SHA-256 of the variable's data (the payload after the name).
    #[serde(serialize_with = "serialize_hex")]
    pub data_sha256: Vec<u8>,
    /// The event digest equals the hash of the whole UEFI_VARIABLE_DATA or of
    /// the variable data (firmware differs on which it hashes).
    pub digest_verified: bool,
}

/// An `EV_EFI_BOOT_SERVICES_APPLICATION` event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BootApplication {
    pub event_index: usize,
    pub pcr: u32,
    /// The image's Authenticode digest as measured.
    pub digest: Option<DigestValue>,
    pub image_length: u64,
    /// The device path in UEFI text form, if it decodes.
    pub device_path: Option<String>,
    /// The media FilePath node(s) of the device path.
    pub file_path: Option<String>,
}

/// Where a measured string came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MeasuredStringSource {
    /// GRUB `grub_cmd: ` (PCR 8).
    GrubCommand,
    /// GRUB `kernel_cmdline: ` (PCR 8).
    GrubKernelCmdline,
    /// GRUB `module_cmdline: ` (PCR 8).
    GrubModuleCmdline,
    /// systemd-boot LoadOptions for the booted entry (PCR 12, UTF-16).
    SystemdBootLoadOptions,
    /// systemd-stub measurements (PCR 11 `EV_IPL`).
    SystemdStub,
    /// `EV_EFI_ACTION` strings.
    EfiAction,
}

/// A measured text (command line, command, action).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MeasuredString {
    pub event_index: usize,
    pub pcr: u32,
    pub source: MeasuredStringSource,
    /// The text without prefix and terminator.
    pub text: String,
    /// The event digest equals the hash of the text as the measuring
    /// component hashes it.
    pub digest_verified: bool,
}

/// A file GRUB measured into PCR 9 (kernel, initrd, modules, configs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PcrFile {
    pub event_index: usize,
    pub pcr: u32,
    pub path: String,
    pub digest: Option<DigestValue>,
}

/// An `EV_EVENT_TAG` event (the Linux EFI stub measures initrd and load
/// options this way into PCR 9).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TaggedEvent {
    pub event_index: usize,
    pub pcr: u32,
    pub tag_id: u32,
    pub description: String,
    pub digest: Option<DigestValue>,
}

/// An `EV_SEPARATOR` event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Separator {
    pub event_index: usize,
    pub pcr: u32,
    #[serde(serialize_with = "serialize_hex")]
    pub value: Vec<u8>,
    /// The firmware signalled an error (`FFFFFFFF`).
    pub error: bool,
    /// The value is one of the two the spec allows and the digest matches it.
    pub digest_verified: bool,
}

/// An `EV_EFI_PLATFORM_FIRMWARE_BLOB` / `BLOB2` event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FirmwareBlob {
    pub event_index: usize,
    pub pcr: u32,
    pub base: u64,
    pub length: u64,
    /// BLOB2 only.
    pub description: Option<String>,
    pub digest: Option<DigestValue>,
}

/// An `EV_NO_ACTION` SP800-155 reference-manifest event.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Sp800155Event {
    pub event_index: usize,
    /// The signature, e.g. `SP800-155 Event3`.
    pub signature: String,
    pub platform_manufacturer_id: Option<u32>,
    pub reference_manifest_guid: Option<String>,
    #[serde(serialize_with = "serialize_hex")]
    pub data: Vec<u8>,
}

/// Everything Writ reads out of a log.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct BootState {
    /// From the `SecureBoot` variable measured into PCR 7; `None` if absent.
    pub secure_boot: Option<bool>,
    /// `SecureBoot`, `PK`, `KEK`, `db`, `dbx` and other driver-config variables.
    pub secure_boot_variables: Vec<EfiVariable>,
    /// `EV_EFI_VARIABLE_AUTHORITY` entries (the db entry that verified an image).
    pub authorities: Vec<EfiVariable>,
    /// `BootOrder`, `Boot####` (`EV_EFI_VARIABLE_BOOT`/`BOOT2`).
    pub boot_variables: Vec<EfiVariable>,
    pub boot_applications: Vec<BootApplication>,
    /// GRUB commands and command lines, systemd-boot/stub strings, EFI actions.
    pub measured_strings: Vec<MeasuredString>,
    /// Files GRUB measured into PCR 9 (kernel, initrd).
    pub pcr9_files: Vec<PcrFile>,
    pub tagged_events: Vec<TaggedEvent>,
    pub separators: Vec<Separator>,
    pub firmware_blobs: Vec<FirmwareBlob>,
    pub sp800_155_events: Vec<Sp800155Event>,
    /// `EV_S_CRTM_VERSION` decoded as text.
    pub scrtm_version: Option<String>,
}

impl BootState {
    /// GRUB `kernel_cmdline:` texts, in order.
    pub fn kernel_cmdlines(&self) -> impl Iterator<Item = &MeasuredString> {
        self.measured_strings
            .iter()
            .filter(|s| s.source == MeasuredStringSource::GrubKernelCmdline)
    }

    /// Whether any separator signalled a firmware error.
    pub fn has_error_separator(&self) -> bool {
        self.separators.iter().any(|s| s.error)
    }
}

/// Text of a byte string: UTF-16LE when it looks like it, UTF-8 otherwise;
/// trailing NULs removed.
fn text(b: &[u8]) -> String {
    let looks_utf16 =
        b.len() >= 2 && b.len() % 2 == 0 && b.iter().skip(1).step_by(2).all(|&x| x == 0);
    if looks_utf16 {
        utf16le(b)
    } else {
        String::from_utf8_lossy(b)
            .trim_end_matches('\0')
            .to_string()
    }
}

struct Ctx {
    bank: HashAlg,
}

impl Ctx {
    fn digest(&self, e: &Event) -> Option<DigestValue> {
        e.digest(self.bank).map(|d| DigestValue {
            alg: self.bank,
            value: d.to_vec(),
        })
    }

    fn hashes_to(&self, e: &Event, data: &[u8]) -> bool {
        e.digest(self.bank) == Some(self.bank.digest(data).as_slice())
    }
}

fn efi_variable(ctx: &Ctx, e: &Event) -> Option<EfiVariable> {
    let mut r = Reader::new(&e.data);
    let g = r.bytes(16, "variable_name_guid").ok()?;
    let name_len = r.u64_le("unicode_name_length").ok()?;
    let data_len = r.u64_le("variable_data_length").ok()?;
    let name_bytes = usize::try_from(name_len).ok()?.checked_mul(2)?;
    let name = r.bytes(name_bytes, "unicode_name").ok()?;
    let data = r
        .bytes(usize::try_from(data_len).ok()?, "variable_data")
        .ok()?;
    let digest_verified = ctx.hashes_to(e, &e.data) || ctx.hashes_to(e, data);
    Some(EfiVariable {
        event_index: e.index,
        pcr: e.pcr,
        event_type: e.event_type,
        name: utf16le(name),
        vendor_guid: guid(g)?,
        event_digest: ctx.digest(e),
        data_sha256: HashAlg::Sha256.digest(data),
        digest_verified,
    })
    .filter(|_| r.is_empty())
}

/// The variable data of a parsed `SecureBoot` variable event.
fn secure_boot_value(e: &Event) -> Option<bool> {
    let mut r = Reader::new(&e.data);
    r.bytes(16, "guid").ok()?;
    let name_len = usize::try_from(r.u64_le("name_len").ok()?).ok()?;
    let data_len = usize::try_from(r.u64_le("data_len").ok()?).ok()?;
    r.bytes(name_len.checked_mul(2)?, "name").ok()?;
    let data = r.bytes(data_len, "data").ok()?;
    Some(data.iter().any(|&b| b != 0))
}

fn boot_application(ctx: &Ctx, e: &Event) -> Option<BootApplication> {
    let mut r = Reader::new(&e.data);
    let _location = r.u64_le("image_location").ok()?;
    let image_length = r.u64_le("image_length").ok()?;
    let _link_time = r.u64_le("link_time_address").ok()?;
    let dp_len = usize::try_from(r.u64_le("device_path_length").ok()?).ok()?;
    let dp = r.bytes(dp_len, "device_path").ok()?;
    let rendered = devicepath::render(dp);
    Some(BootApplication {
        event_index: e.index,
        pcr: e.pcr,
        digest: ctx.digest(e),
        image_length,
        device_path: rendered.as_ref().map(|p| p.text.clone()),
        file_path: rendered.and_then(|p| p.file_path),
    })
}

const GRUB_PREFIXES: [(&[u8], MeasuredStringSource); 5] = [
    (b"grub_cmd: ", MeasuredStringSource::GrubCommand),
    (b"kernel_cmdline: ", MeasuredStringSource::GrubKernelCmdline),
    (b"module_cmdline: ", MeasuredStringSource::GrubModuleCmdline),
    // Older Fedora/RHEL GRUB prefixes.
    (
        b"grub_kernel_cmdline ",
        MeasuredStringSource::GrubKernelCmdline,
    ),
    (b"grub_cmd ", MeasuredStringSource::GrubCommand),
];

fn grub_string(ctx: &Ctx, e: &Event) -> Option<MeasuredString> {
    let (body, source) = GRUB_PREFIXES
        .iter()
        .find_map(|(p, s)| e.data.strip_prefix(*p).map(|b| (b, *s)))?;
    let trimmed = body.strip_suffix(b"\0").unwrap_or(body);
    // GRUB hashes the text after the prefix, without the NUL; some older
    // builds include the NUL.
    let digest_verified = ctx.hashes_to(e, trimmed) || ctx.hashes_to(e, body);
    Some(MeasuredString {
        event_index: e.index,
        pcr: e.pcr,
        source,
        text: String::from_utf8_lossy(trimmed).into_owned(),
        digest_verified,
    })
}

fn firmware_blob(ctx: &Ctx, e: &Event, with_description: bool) -> Option<FirmwareBlob> {
    let mut r = Reader::new(&e.data);
    let description = if with_description {
        let n = r.u8("description_size").ok()?;
        Some(String::from_utf8_lossy(r.bytes(usize::from(n), "description").ok()?).into_owned())
    } else {
        None
    };
    let base = r.u64_le("blob_base").ok()?;
    let length = r.u64_le("blob_length").ok()?;
    r.finish().ok()?;
    Some(FirmwareBlob {
        event_index: e.index,
        pcr: e.pcr,
        base,
        length,
        description,
        digest: ctx.digest(e),
    })
}

fn tagged_event(ctx: &Ctx, e: &Event) -> Option<TaggedEvent> {
    let mut r = Reader::new(&e.data);
    let tag_id = r.u32_le("tagged_event_id").ok()?;
    let n = usize::try_from(r.u32_le("tagged_event_data_size").ok()?).ok()?;
    let d = r.bytes(n, "tagged_event_data").ok()?;
    r.finish().ok()?;
    Some(TaggedEvent {
        event_index: e.index,
        pcr: e.pcr,
        tag_id,
        description: text(d),
        digest: ctx.digest(e),
    })
}

fn sp800_155(e: &Event) -> Option<Sp800155Event> {
    if !e.data.starts_with(b"SP800-155 Event") {
        return None;
    }
    let sig_len = e.data.iter().position(|&b| b == 0)?;
    let signature = String::from_utf8_lossy(e.data.get(..sig_len)?).into_owned();
    let mut r = Reader::new(e.data.get(16..).unwrap_or_default());
    let platform_manufacturer_id = r.u32_le("platform_manufacturer_id").ok();
    let reference_manifest_guid = r.bytes(16, "reference_manifest_guid").ok().and_then(guid);
    Some(Sp800155Event {
        event_index: e.index,
        signature,
        platform_manufacturer_id,
        reference_manifest_guid,
        data: e.data.clone(),
    })
}

impl BootState {
    /// Read the claims out of `log`. Malformed event data does not fail the
    /// whole read: that event simply yields no claim.
    pub fn from_log(log: &EventLog) -> BootState {
        let banks = log.banks();
        let bank = if banks.contains(&HashAlg::Sha256) {
            HashAlg::Sha256
        } else {
            banks.first().copied().unwrap_or(HashAlg::Sha1)
        };
        let ctx = Ctx { bank };
        let mut s = BootState::default();
        for e in &log.events {
            match e.event_type {
                et::EV_EFI_VARIABLE_DRIVER_CONFIG => {
                    if let Some(v) = efi_variable(&ctx, e) {
                        if e.pcr == 7 && v.name == "SecureBoot" && s.secure_boot.is_none() {
                            s.secure_boot = secure_boot_value(e);
                        }
                        s.secure_boot_variables.push(v);
                    }
                }
                et::EV_EFI_VARIABLE_AUTHORITY => s.authorities.extend(efi_variable(&ctx, e)),
                et::EV_EFI_VARIABLE_BOOT | et::EV_EFI_VARIABLE_BOOT2 => {
                    s.boot_variables.extend(efi_variable(&ctx, e))
                }
                et::EV_EFI_BOOT_SERVICES_APPLICATION => {
                    s.boot_applications.extend(boot_application(&ctx, e))
                }
                et::EV_EFI_ACTION => s.measured_strings.push(MeasuredString {
                    event_index: e.index,
                    pcr: e.pcr,
                    source: MeasuredStringSource::EfiAction,
                    text: String::from_utf8_lossy(&e.data).into_owned(),
                    digest_verified: ctx.hashes_to(e, &e.data),
                }),
                et::EV_SEPARATOR => {
                    let allowed = e.data == [0, 0, 0, 0] || e.data == [0xff; 4];
                    s.separators.push(Separator {
                        event_index: e.index,
                        pcr: e.pcr,
                        value: e.data.clone(),
                        error: e.data == [0xff; 4],
                        digest_verified: allowed && ctx.hashes_to(e, &e.data),
                    });
                }
                et::EV_EFI_PLATFORM_FIRMWARE_BLOB => {
                    s.firmware_blobs.extend(firmware_blob(&ctx, e, false))
                }
                et::EV_EFI_PLATFORM_FIRMWARE_BLOB2 => {
                    s.firmware_blobs.extend(firmware_blob(&ctx, e, true))
                }
                et::EV_EVENT_TAG => s.tagged_events.extend(tagged_event(&ctx, e)),
                et::EV_NO_ACTION => s.sp800_155_events.extend(sp800_155(e)),
                et::EV_S_CRTM_VERSION if s.scrtm_version.is_none() => {
                    s.scrtm_version = Some(text(&e.data));
                }
                et::EV_IPL => match e.pcr {
                    8 => s.measured_strings.extend(grub_string(&ctx, e)),
                    9 => s.pcr9_files.push(PcrFile {
                        event_index: e.index,
                        pcr: e.pcr,
                        path: text(&e.data),
                        digest: ctx.digest(e),
                    }),
                    11 | 12 => {
                        let source = if e.pcr == 12 {
                            MeasuredStringSource::SystemdBootLoadOptions
                        } else {
                            MeasuredStringSource::SystemdStub
                        };
                        s.measured_strings.push(MeasuredString {
                            event_index: e.index,
                            pcr: e.pcr,
                            source,
                            text: text(&e.data),
                            digest_verified: ctx.hashes_to(e, &e.data),
                        });
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        s
    }
}
