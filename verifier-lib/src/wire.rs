//! A bounds-checked byte reader shared by every binary parser in this crate.
//!
//! TPM structures are big-endian; event logs, IMA lists and SEV-SNP reports
//! are little-endian. Every read names the field it was reading so that a
//! truncation error says what was missing.

/// What went wrong while reading a binary structure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The input ended before `field` could be read.
    #[error("truncated while reading {field} at offset {offset}: needed {needed} bytes, {available} available")]
    Truncated {
        field: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    /// Bytes were left after the structure ended.
    #[error("{count} trailing bytes after the structure")]
    TrailingBytes { count: usize },
    /// A size field exceeds what the structure allows.
    #[error("{field} size {actual} exceeds the maximum {max}")]
    SizeTooLarge {
        field: &'static str,
        max: usize,
        actual: usize,
    },
}

/// A cursor over a byte slice. Never panics: every read is checked.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// Current offset from the start of the input.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// The unread rest of the input, without consuming it.
    pub fn rest(&self) -> &'a [u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    /// Take exactly `n` bytes.
    pub fn bytes(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(WireError::Truncated {
                field,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    /// Take exactly `N` bytes as an array.
    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let s = self.bytes(N, field)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub fn u16_be(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    pub fn u32_be(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    pub fn u64_be(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    pub fn u16_le(&mut self, field: &'static str) -> Result<u16, WireError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    pub fn u32_le(&mut self, field: &'static str) -> Result<u32, WireError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub fn u64_le(&mut self, field: &'static str) -> Result<u64, WireError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }

    /// A TPM2B: big-endian u16 size followed by that many bytes.
    pub fn tpm2b(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let n = self.u16_be(field)?;
        self.bytes(usize::from(n), field)
    }

    /// A TPM2B whose size must not exceed `max`.
    pub fn tpm2b_max(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], WireError> {
        let n = usize::from(self.u16_be(field)?);
        if n > max {
            return Err(WireError::SizeTooLarge {
                field,
                max,
                actual: n,
            });
        }
        self.bytes(n, field)
    }

    /// Succeeds only if the whole input was consumed.
    pub fn finish(&self) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { count }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_rejects_truncation_and_trailing() {
        let mut r = Reader::new(&[0, 2, 0xaa, 0xbb, 0x01]);
        assert_eq!(r.tpm2b("x").unwrap(), &[0xaa, 0xbb]);
        assert_eq!(r.finish(), Err(WireError::TrailingBytes { count: 1 }));
        assert_eq!(
            r.u16_be("y"),
            Err(WireError::Truncated {
                field: "y",
                offset: 4,
                needed: 2,
                available: 1
            })
        );
        assert_eq!(r.u8("z").unwrap(), 1);
        assert!(r.finish().is_ok());
        assert!(matches!(
            r.bytes(usize::MAX, "huge"),
            Err(WireError::Truncated { .. })
        ));
    }
}
