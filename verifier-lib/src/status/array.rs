//! The status array of a Token Status List: `bits` per entry, packed
//! least-significant-bit first (entry 0 in the low bits of byte 0), and its
//! zlib (RFC 1950) DEFLATE compression as carried in `lst`.

use std::io::Write;

use flate2::{Compression, Decompress, FlushDecompress, Status};

use super::StatusError;

/// Largest decompressed `lst` accepted by default (16 MiB: 134 million
/// one-bit entries), against a decompression bomb.
pub const DEFAULT_MAX_DECOMPRESSED: usize = 16 * 1024 * 1024;

/// Bits per status entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bits {
    One = 1,
    Two = 2,
    Four = 4,
    Eight = 8,
}

impl Bits {
    /// The draft's `bits` values: 1, 2, 4 or 8.
    pub fn from_u64(bits: u64) -> Result<Self, StatusError> {
        match bits {
            1 => Ok(Bits::One),
            2 => Ok(Bits::Two),
            4 => Ok(Bits::Four),
            8 => Ok(Bits::Eight),
            actual => Err(StatusError::Bits { actual }),
        }
    }

    pub fn get(self) -> u8 {
        self as u8
    }

    fn per_byte(self) -> usize {
        8 / usize::from(self.get())
    }

    fn mask(self) -> u8 {
        match self {
            Bits::Eight => 0xff,
            b => (1u8 << b.get()) - 1,
        }
    }
}

/// Statuses packed `bits` per entry, LSB first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusArray {
    bits: Bits,
    packed: Vec<u8>,
}

impl StatusArray {
    /// `len` entries, all 0 (VALID). The array holds whole bytes, so it
    /// has room for `len` rounded up to a byte's worth of entries.
    pub fn new(bits: Bits, len: usize) -> Self {
        let bytes = len.div_ceil(bits.per_byte());
        StatusArray {
            bits,
            packed: vec![0; bytes],
        }
    }

    /// An array from its packed bytes.
    pub fn from_packed(bits: Bits, packed: Vec<u8>) -> Self {
        StatusArray { bits, packed }
    }

    pub fn bits(&self) -> Bits {
        self.bits
    }

    /// Number of entries (every entry of every byte).
    pub fn len(&self) -> usize {
        self.packed.len().saturating_mul(self.bits.per_byte())
    }

    pub fn is_empty(&self) -> bool {
        self.packed.is_empty()
    }

    /// The packed bytes.
    pub fn packed(&self) -> &[u8] {
        &self.packed
    }

    fn locate(&self, idx: u64) -> Result<(usize, u32), StatusError> {
        let len = self.len();
        let i = usize::try_from(idx)
            .ok()
            .filter(|i| *i < len)
            .ok_or(StatusError::IndexOutOfRange { idx, len })?;
        let per = self.bits.per_byte();
        let shift = u32::try_from((i % per) * usize::from(self.bits.get()))
            .map_err(|_| StatusError::IndexOutOfRange { idx, len })?;
        Ok((i / per, shift))
    }

    /// The status of entry `idx`.
    pub fn get(&self, idx: u64) -> Result<u8, StatusError> {
        let (byte, shift) = self.locate(idx)?;
        let b = self.packed.get(byte).copied().unwrap_or(0);
        Ok((b >> shift) & self.bits.mask())
    }

    /// Set entry `idx` to `value`.
    pub fn set(&mut self, idx: u64, value: u8) -> Result<(), StatusError> {
        let mask = self.bits.mask();
        if value & !mask != 0 {
            return Err(StatusError::StatusValue {
                value,
                bits: self.bits.get(),
            });
        }
        let (byte, shift) = self.locate(idx)?;
        if let Some(b) = self.packed.get_mut(byte) {
            *b = (*b & !(mask << shift)) | (value << shift);
        }
        Ok(())
    }

    /// `lst`: the packed bytes, zlib-compressed at the best level.
    pub fn compress(&self) -> Result<Vec<u8>, StatusError> {
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), Compression::best());
        z.write_all(&self.packed)
            .map_err(|_| StatusError::Compress)?;
        z.finish().map_err(|_| StatusError::Compress)
    }

    /// Decode `lst`: exactly one zlib stream, no trailing bytes, at most
    /// `max_bytes` once decompressed.
    pub fn decompress(bits: Bits, lst: &[u8], max_bytes: usize) -> Result<Self, StatusError> {
        Ok(StatusArray {
            bits,
            packed: inflate(lst, max_bytes)?,
        })
    }
}

/// Inflate one zlib stream of at most `max_bytes` output, refusing a
/// truncated or corrupt stream and bytes after its end.
pub(crate) fn inflate(lst: &[u8], max_bytes: usize) -> Result<Vec<u8>, StatusError> {
    let mut d = Decompress::new(true);
    // One byte over the limit tells "too large" from "exactly at it".
    let limit = max_bytes.saturating_add(1);
    let mut out: Vec<u8> = Vec::with_capacity(lst.len().saturating_mul(4).max(64).min(limit));
    loop {
        let consumed = usize::try_from(d.total_in()).map_err(|_| StatusError::LstNotZlib)?;
        let input = lst.get(consumed..).ok_or(StatusError::LstNotZlib)?;
        let (in_before, out_before) = (d.total_in(), d.total_out());
        let status = d
            .decompress_vec(input, &mut out, FlushDecompress::None)
            .map_err(|_| StatusError::LstNotZlib)?;
        if out.len() > max_bytes {
            return Err(StatusError::LstTooLarge { max: max_bytes });
        }
        match status {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError => {
                if out.len() == out.capacity() {
                    let grow = out.len().max(64).min(limit.saturating_sub(out.len()));
                    out.reserve_exact(grow.max(1));
                } else if d.total_in() == in_before && d.total_out() == out_before {
                    // Room to write and nothing left to read: the stream
                    // ends before its end marker.
                    return Err(StatusError::LstTruncated);
                }
            }
        }
    }
    let consumed = usize::try_from(d.total_in()).map_err(|_| StatusError::LstNotZlib)?;
    if consumed != lst.len() {
        return Err(StatusError::LstTrailingBytes {
            count: lst.len().saturating_sub(consumed),
        });
    }
    Ok(out)
}
