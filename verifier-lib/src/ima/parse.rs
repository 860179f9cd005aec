//! ASCII and binary measurement-list parsing and template-data rebuilding.

use super::{ImaEntry, ImaError, ImaLog};
use crate::crypto::HashAlg;
use crate::wire::{Reader, WireError};

/// `IMA_EVENT_NAME_LEN_MAX`: the `ima` template pads the name to this + 1.
const IMA_EVENT_NAME_LEN_MAX: usize = 255;
/// Template names are short (`IMA_TEMPLATE_NAME_LEN_MAX` is 15); allow slack.
const TEMPLATE_NAME_MAX: usize = 64;

/// The templates Writ rebuilds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Template {
    /// `d|n`: SHA-1 digest, name padded to 256 bytes, no length prefixes.
    Ima,
    /// `d-ng|n-ng`.
    ImaNg,
    /// `d-ng|n-ng|sig`.
    ImaSig,
    /// `d-ng|n-ng|buf`.
    ImaBuf,
}

impl Template {
    fn from_name(name: &str) -> Option<Template> {
        Some(match name {
            "ima" => Template::Ima,
            "ima-ng" => Template::ImaNg,
            "ima-sig" => Template::ImaSig,
            "ima-buf" => Template::ImaBuf,
            _ => return None,
        })
    }
}

/// The decoded fields of one entry.
struct Fields {
    alg: String,
    digest: Vec<u8>,
    path: String,
    extra: Option<Vec<u8>>,
}

fn push_field(out: &mut Vec<u8>, data: &[u8]) {
    // Field lengths come from parsed input bounded by the input size; a
    // length beyond u32 cannot occur for an in-memory list below 4 GiB, and
    // saturating keeps the hash mismatch (rather than a panic) otherwise.
    let len = u32::try_from(data.len()).unwrap_or(u32::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(data);
}

/// Rebuild the bytes the kernel hashes for the template digest.
fn template_data(t: Template, f: &Fields) -> Option<Vec<u8>> {
    match t {
        Template::Ima => {
            if f.digest.len() != 20 || f.path.len() > IMA_EVENT_NAME_LEN_MAX {
                return None;
            }
            let mut out = Vec::with_capacity(20 + IMA_EVENT_NAME_LEN_MAX + 1);
            out.extend_from_slice(&f.digest);
            out.extend_from_slice(f.path.as_bytes());
            out.resize(20 + IMA_EVENT_NAME_LEN_MAX + 1, 0);
            Some(out)
        }
        Template::ImaNg | Template::ImaSig | Template::ImaBuf => {
            let mut d = Vec::with_capacity(f.alg.len() + 2 + f.digest.len());
            d.extend_from_slice(f.alg.as_bytes());
            d.extend_from_slice(b":\0");
            d.extend_from_slice(&f.digest);
            let mut n = Vec::with_capacity(f.path.len() + 1);
            n.extend_from_slice(f.path.as_bytes());
            n.push(0);
            let mut out = Vec::new();
            push_field(&mut out, &d);
            push_field(&mut out, &n);
            if t != Template::ImaNg {
                push_field(&mut out, f.extra.as_deref().unwrap_or_default());
            }
            Some(out)
        }
    }
}

fn valid_alg(alg: &str) -> bool {
    !alg.is_empty()
        && alg.len() <= 32
        && alg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn entry(
    index: u64,
    pcr: u32,
    template_hash: Vec<u8>,
    template_name: &str,
    t: Template,
    f: Fields,
    data: Vec<u8>,
) -> ImaEntry {
    let violation = template_hash.iter().all(|&b| b == 0);
    let (signature, buf) = match t {
        Template::ImaSig => (f.extra.filter(|e| !e.is_empty()), None),
        Template::ImaBuf => (None, f.extra.filter(|e| !e.is_empty())),
        Template::Ima | Template::ImaNg => (None, None),
    };
    ImaEntry {
        index,
        pcr,
        template_hash,
        template_name: template_name.to_string(),
        file_digest: Some((f.alg, f.digest)),
        path: f.path,
        signature,
        buf,
        template_data: data,
        violation,
    }
}

fn hash_ok(template_hash: &[u8], data: &[u8]) -> bool {
    template_hash.iter().all(|&b| b == 0) || HashAlg::Sha1.digest(data) == template_hash
}

fn ascii_line(line_no: usize, index: u64, line: &str) -> Result<ImaEntry, ImaError> {
    let bad = |field| ImaError::MalformedLine {
        line: line_no,
        field,
    };
    let mut parts = line.splitn(4, ' ');
    let pcr: u32 = parts
        .next()
        .and_then(|p| p.parse().ok())
        .ok_or(bad("pcr"))?;
    let template_hash = parts
        .next()
        .and_then(|h| hex::decode(h).ok())
        .filter(|h| h.len() == 20)
        .ok_or(bad("template_hash"))?;
    let template_name = parts.next().ok_or(bad("template_name"))?;
    let rest = parts.next().ok_or(bad("template_data"))?;
    let t = Template::from_name(template_name).ok_or_else(|| ImaError::UnsupportedTemplate {
        entry: index,
        name: template_name.to_string(),
    })?;
    let (d, tail) = rest.split_once(' ').ok_or(bad("file_digest"))?;
    let (alg, hexdigest) = match t {
        Template::Ima => ("sha1", d),
        _ => d.split_once(':').ok_or(bad("file_digest"))?,
    };
    if !valid_alg(alg) {
        return Err(bad("file_digest_algorithm"));
    }
    let digest = hex::decode(hexdigest).map_err(|_| bad("file_digest"))?;
    if digest.is_empty() {
        return Err(bad("file_digest"));
    }
    // Candidate splits of `tail` into name and trailing hex field. The kernel
    // prints an empty field as nothing after its separating space, and names
    // with spaces (older kernels) make the split ambiguous: the template
    // hash decides.
    let mut candidates: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    match t {
        Template::Ima | Template::ImaNg => candidates.push((tail.to_string(), None)),
        Template::ImaSig | Template::ImaBuf => {
            if let Some((name, last)) = tail.rsplit_once(' ') {
                if let Ok(b) = hex::decode(last) {
                    candidates.push((name.to_string(), Some(b)));
                }
            }
            candidates.push((tail.to_string(), None));
        }
    }
    let mut first_mismatch = None;
    for (path, extra) in candidates {
        let f = Fields {
            alg: alg.to_string(),
            digest: digest.clone(),
            path,
            extra,
        };
        let data = template_data(t, &f).ok_or(bad("file_name"))?;
        if hash_ok(&template_hash, &data) {
            return Ok(entry(index, pcr, template_hash, template_name, t, f, data));
        }
        if first_mismatch.is_none() {
            first_mismatch = Some(HashAlg::Sha1.digest(&data));
        }
    }
    Err(ImaError::TemplateHashMismatch {
        entry: index,
        line: Some(line_no),
        listed: hex::encode(&template_hash),
        computed: first_mismatch.map(hex::encode).unwrap_or_default(),
    })
}

pub(super) fn ascii(text: &str, skip: u64) -> Result<ImaLog, ImaError> {
    let mut lines = text.lines().enumerate();
    let mut skipped = 0u64;
    while skipped < skip {
        if lines.next().is_none() {
            return Err(ImaError::ShorterThanCursor {
                available: skipped,
                cursor: skip,
            });
        }
        skipped += 1;
    }
    let mut entries = Vec::new();
    let mut index = skip;
    for (i, line) in lines {
        entries.push(ascii_line(i.saturating_add(1), index, line)?);
        index = index.saturating_add(1);
    }
    Ok(ImaLog { entries })
}

fn trunc(entry: u64) -> impl Fn(WireError) -> ImaError {
    move |e| match e {
        WireError::Truncated { field, offset, .. } => ImaError::Truncated {
            entry,
            offset,
            field,
        },
        _ => ImaError::MalformedField {
            entry,
            field: "entry",
        },
    }
}

fn len_field<'a>(
    r: &mut Reader<'a>,
    entry: u64,
    field: &'static str,
) -> Result<&'a [u8], ImaError> {
    let n = r.u32_le(field).map_err(trunc(entry))?;
    let n = usize::try_from(n).map_err(|_| ImaError::MalformedField { entry, field })?;
    r.bytes(n, field).map_err(trunc(entry))
}

/// Split a `d-ng` field: `alg ":" NUL digest`.
fn d_ng(entry: u64, d: &[u8]) -> Result<(String, Vec<u8>), ImaError> {
    let bad = ImaError::MalformedField {
        entry,
        field: "d-ng",
    };
    let colon = d.iter().position(|&b| b == b':').ok_or(bad.clone())?;
    let alg = std::str::from_utf8(d.get(..colon).ok_or(bad.clone())?).map_err(|_| bad.clone())?;
    let digest = d
        .get(colon + 1..)
        .and_then(|r| r.strip_prefix(b"\0"))
        .ok_or(bad.clone())?;
    if !valid_alg(alg) || digest.is_empty() {
        return Err(bad);
    }
    Ok((alg.to_string(), digest.to_vec()))
}

/// A NUL-terminated name field.
fn name_field(entry: u64, n: &[u8], field: &'static str) -> Result<String, ImaError> {
    let bad = ImaError::MalformedField { entry, field };
    let body = n.strip_suffix(b"\0").ok_or(bad.clone())?;
    if body.contains(&0) {
        return Err(bad);
    }
    String::from_utf8(body.to_vec()).map_err(|_| bad)
}

fn binary_entry(r: &mut Reader<'_>, index: u64) -> Result<ImaEntry, ImaError> {
    let err = trunc(index);
    let pcr = r.u32_le("pcr").map_err(&err)?;
    let template_hash = r.bytes(20, "template_hash").map_err(&err)?.to_vec();
    let name = len_field(r, index, "template_name")?;
    if name.len() > TEMPLATE_NAME_MAX {
        return Err(ImaError::MalformedField {
            entry: index,
            field: "template_name",
        });
    }
    let template_name = String::from_utf8_lossy(name).into_owned();
    let t = Template::from_name(&template_name).ok_or_else(|| ImaError::UnsupportedTemplate {
        entry: index,
        name: template_name.clone(),
    })?;
    let (f, data) = if t == Template::Ima {
        let digest = r.bytes(20, "d").map_err(&err)?.to_vec();
        let n = len_field(r, index, "n")?;
        let path = String::from_utf8(n.to_vec()).map_err(|_| ImaError::MalformedField {
            entry: index,
            field: "n",
        })?;
        let f = Fields {
            alg: "sha1".to_string(),
            digest,
            path,
            extra: None,
        };
        let data = template_data(t, &f).ok_or(ImaError::MalformedField {
            entry: index,
            field: "n",
        })?;
        (f, data)
    } else {
        let data = len_field(r, index, "template_data")?;
        let mut fr = Reader::new(data);
        let (alg, digest) = d_ng(index, len_field(&mut fr, index, "d-ng")?)?;
        let path = name_field(index, len_field(&mut fr, index, "n-ng")?, "n-ng")?;
        let extra = match t {
            Template::ImaSig => Some(len_field(&mut fr, index, "sig")?.to_vec()),
            Template::ImaBuf => Some(len_field(&mut fr, index, "buf")?.to_vec()),
            _ => None,
        };
        if !fr.is_empty() {
            return Err(ImaError::MalformedField {
                entry: index,
                field: "template_data",
            });
        }
        (
            Fields {
                alg,
                digest,
                path,
                extra,
            },
            data.to_vec(),
        )
    };
    if !hash_ok(&template_hash, &data) {
        return Err(ImaError::TemplateHashMismatch {
            entry: index,
            line: None,
            listed: hex::encode(&template_hash),
            computed: hex::encode(HashAlg::Sha1.digest(&data)),
        });
    }
    Ok(entry(index, pcr, template_hash, &template_name, t, f, data))
}

/// Step over one binary entry without decoding its template data.
fn skip_binary_entry(r: &mut Reader<'_>, index: u64) -> Result<(), ImaError> {
    let err = trunc(index);
    r.bytes(24, "pcr_and_template_hash").map_err(&err)?;
    let name = len_field(r, index, "template_name")?;
    if name == b"ima" {
        r.bytes(20, "d").map_err(&err)?;
        len_field(r, index, "n")?;
    } else {
        len_field(r, index, "template_data")?;
    }
    Ok(())
}

pub(super) fn binary(bytes: &[u8], skip: u64) -> Result<ImaLog, ImaError> {
    let mut r = Reader::new(bytes);
    let mut index = 0u64;
    while index < skip {
        if r.is_empty() {
            return Err(ImaError::ShorterThanCursor {
                available: index,
                cursor: skip,
            });
        }
        skip_binary_entry(&mut r, index)?;
        index += 1;
    }
    let mut entries = Vec::new();
    while !r.is_empty() {
        entries.push(binary_entry(&mut r, index)?);
        index = index.saturating_add(1);
    }
    Ok(ImaLog { entries })
}

pub(super) fn to_binary(entries: &[ImaEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        out.extend_from_slice(&e.pcr.to_le_bytes());
        out.extend_from_slice(&e.template_hash);
        push_field(&mut out, e.template_name.as_bytes());
        if e.template_name == "ima" {
            if let Some((_, d)) = &e.file_digest {
                out.extend_from_slice(d);
            }
            push_field(&mut out, e.path.as_bytes());
        } else {
            push_field(&mut out, &e.template_data);
        }
    }
    out
}
