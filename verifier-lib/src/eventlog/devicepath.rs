//! UEFI device paths rendered in the UEFI text form (`PciRoot(0x0)/Pci(0x3,0x0)/HD(...)/\EFI\BOOT\BOOTX64.EFI`).
//! Node types Writ does not name are rendered as `Path(type,subtype,hex)`,
//! the UEFI spec's generic text form.

use crate::wire::Reader;

/// A GUID in its textual form (first three fields little-endian).
pub(crate) fn guid(b: &[u8]) -> Option<String> {
    let b: &[u8; 16] = b.try_into().ok()?;
    let d1 = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let d2 = u16::from_le_bytes([b[4], b[5]]);
    let d3 = u16::from_le_bytes([b[6], b[7]]);
    Some(format!(
        "{d1:08x}-{d2:04x}-{d3:04x}-{}-{}",
        hex::encode(&b[8..10]),
        hex::encode(&b[10..16])
    ))
}

/// Decode a NUL-terminated (or unterminated) UTF-16LE string.
pub(crate) fn utf16le(b: &[u8]) -> String {
    let units: Vec<u16> = b
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .take_while(|&u| u != 0)
        .collect();
    String::from_utf16_lossy(&units)
}

/// One device path, rendered. `file_path` is the concatenation of the
/// media FilePath nodes (the part that names the loaded file).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct RenderedPath {
    pub text: String,
    pub file_path: Option<String>,
}

fn node(t: u8, st: u8, body: &[u8]) -> Option<String> {
    let mut r = Reader::new(body);
    let generic = || format!("Path({t},{st},{})", hex::encode(body));
    let s = match (t, st) {
        (0x01, 0x01) => {
            let func = r.u8("function").ok()?;
            let dev = r.u8("device").ok()?;
            format!("Pci(0x{dev:x},0x{func:x})")
        }
        (0x01, 0x04) => format!("VenHw({})", guid(r.bytes(16, "guid").ok()?)?),
        (0x02, 0x01) => {
            let hid = r.u32_le("hid").ok()?;
            let uid = r.u32_le("uid").ok()?;
            match hid {
                0x0a03_41d0 => format!("PciRoot(0x{uid:x})"),
                0x0a08_41d0 => format!("PcieRoot(0x{uid:x})"),
                _ => format!("Acpi(0x{hid:08x},0x{uid:x})"),
            }
        }
        (0x03, 0x02) => {
            let pun = r.u16_le("pun").ok()?;
            let lun = r.u16_le("lun").ok()?;
            format!("Scsi(0x{pun:x},0x{lun:x})")
        }
        (0x03, 0x05) => {
            let port = r.u8("port").ok()?;
            let iface = r.u8("interface").ok()?;
            format!("USB(0x{port:x},0x{iface:x})")
        }
        (0x03, 0x0a) => format!("VenMsg({})", guid(r.bytes(16, "guid").ok()?)?),
        (0x03, 0x12) => {
            let hba = r.u16_le("hba").ok()?;
            let pmp = r.u16_le("pmp").ok()?;
            let lun = r.u16_le("lun").ok()?;
            format!("Sata(0x{hba:x},0x{pmp:x},0x{lun:x})")
        }
        (0x03, 0x17) => {
            let nsid = r.u32_le("nsid").ok()?;
            let eui = r.bytes(8, "eui").ok()?;
            format!("NVMe(0x{nsid:x},{})", hex::encode_upper(eui))
        }
        (0x04, 0x01) => {
            let part = r.u32_le("partition").ok()?;
            let start = r.u64_le("start").ok()?;
            let size = r.u64_le("size").ok()?;
            let sig = r.bytes(16, "signature").ok()?;
            let _mbr_type = r.u8("format").ok()?;
            let sig_type = r.u8("signature_type").ok()?;
            match sig_type {
                2 => format!("HD({part},GPT,{},0x{start:x},0x{size:x})", guid(sig)?),
                1 => {
                    let mbr = u32::from_le_bytes(sig.get(..4)?.try_into().ok()?);
                    format!("HD({part},MBR,0x{mbr:08x},0x{start:x},0x{size:x})")
                }
                _ => generic(),
            }
        }
        (0x04, 0x03) => format!("VenMedia({})", guid(r.bytes(16, "guid").ok()?)?),
        (0x04, 0x04) => utf16le(body),
        (0x04, 0x06) => format!("FvFile({})", guid(r.bytes(16, "guid").ok()?)?),
        (0x04, 0x07) => format!("Fv({})", guid(r.bytes(16, "guid").ok()?)?),
        (0x04, 0x08) => {
            let _reserved = r.u32_le("reserved").ok()?;
            let start = r.u64_le("start").ok()?;
            let end = r.u64_le("end").ok()?;
            format!("Offset(0x{start:x},0x{end:x})")
        }
        _ => generic(),
    };
    Some(s)
}

/// Render a device path. `None` if a node header or length is malformed.
pub(crate) fn render(bytes: &[u8]) -> Option<RenderedPath> {
    let mut r = Reader::new(bytes);
    let mut parts: Vec<String> = Vec::new();
    let mut files: Vec<String> = Vec::new();
    while !r.is_empty() {
        let t = r.u8("type").ok()?;
        let st = r.u8("subtype").ok()?;
        let len = usize::from(r.u16_le("length").ok()?);
        let body = r.bytes(len.checked_sub(4)?, "node").ok()?;
        match (t, st) {
            (0x7f, 0xff) => break,
            (0x7f, 0x01) => parts.push(",".to_string()),
            _ => {
                let s = node(t, st, body)
                    .unwrap_or_else(|| format!("Path({t},{st},{})", hex::encode(body)));
                if (t, st) == (0x04, 0x04) {
                    files.push(s.clone());
                }
                parts.push(s);
            }
        }
    }
    let text = parts.join("/").replace("/,/", ",");
    let file_path = if files.is_empty() {
        None
    } else {
        Some(files.join("/").replace("//", "/"))
    };
    Some(RenderedPath { text, file_path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_pci_hd_file_path() {
        let mut p = Vec::new();
        p.extend([2, 1, 12, 0]);
        p.extend(0x0a03_41d0u32.to_le_bytes());
        p.extend(0u32.to_le_bytes());
        p.extend([1, 1, 6, 0, 0, 3]);
        let name: Vec<u8> = "\\EFI\\BOOT\\BOOTX64.EFI\0"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        p.extend([4, 4]);
        p.extend(u16::try_from(name.len() + 4).unwrap().to_le_bytes());
        p.extend(&name);
        p.extend([0x7f, 0xff, 4, 0]);
        let r = render(&p).unwrap();
        assert_eq!(r.text, "PciRoot(0x0)/Pci(0x3,0x0)/\\EFI\\BOOT\\BOOTX64.EFI");
        assert_eq!(r.file_path.as_deref(), Some("\\EFI\\BOOT\\BOOTX64.EFI"));
        // A node claiming a length below its own header is malformed.
        assert_eq!(render(&[4, 4, 2, 0]), None);
    }
}
