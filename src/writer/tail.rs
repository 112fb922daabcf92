//! DESIGN I4, checked in debug builds: a data write that covers bytes
//! written before (the tail block of the last flush) writes them again
//! unchanged. The crash simulator tears such rewrites per sector, so a
//! changed byte below the durable end would be damage to acknowledged data;
//! this catches it at the write, not at some later crash image.

/// The bytes last written into the block that holds the end of the written
/// data: their file offset, length and CRC (nothing when that end is block
/// aligned, or in release builds).
#[derive(Debug, Default)]
pub(super) struct TailCheck(Option<(u64, usize, u32)>);

impl TailCheck {
    /// `bytes` are about to be written at `offset`, and the written data then
    /// ends at `end` (the rest is padding). Panics if they change bytes the
    /// last write put into its tail block; remembers this write's tail block.
    pub fn write(&mut self, segment: &str, bytes: &[u8], offset: u64, end: u64, block: usize) {
        if !cfg!(debug_assertions) {
            return;
        }
        if let Some((off, len, crc)) = self.0 {
            if offset <= off {
                let at = (off - offset) as usize;
                let again = bytes.get(at..at + len).map(crc32c::crc32c);
                assert_eq!(
                    again,
                    Some(crc),
                    "I4: a write to {segment} at {offset} changes bytes {off}..+{len} written before"
                );
            } else {
                assert!(
                    offset >= off + len as u64,
                    "I4: a write to {segment} at {offset} starts inside bytes written before"
                );
            }
        }
        let start = end / block as u64 * block as u64;
        debug_assert!(start >= offset && end <= offset + bytes.len() as u64);
        let at = (start - offset) as usize;
        let len = (end - start) as usize;
        self.0 = (len > 0).then(|| (start, len, crc32c::crc32c(&bytes[at..at + len])));
    }

    /// Zeros (prepared space) are about to be written at `offset`: panics if
    /// that is below the end of the data written so far.
    pub fn zeros(&self, segment: &str, offset: u64) {
        if let Some((off, len, _)) = self.0 {
            assert!(offset >= off + len as u64, "I4: zeros written over data of {segment} at {offset}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn panics(f: impl FnOnce()) -> bool {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err()
    }

    #[test]
    fn a_rewrite_must_repeat_the_tail_bytes_and_zeros_must_stay_above_them() {
        if !cfg!(debug_assertions) {
            return; // the check is off
        }
        let mut block = vec![0u8; 512];
        block[..100].fill(7);
        let mut t = TailCheck::default();
        t.write("s", &block, 1024, 1124, 512);
        // The next flush: the same 100 bytes, then new ones.
        block[100..200].fill(8);
        t.write("s", &block, 1024, 1224, 512);
        // Zeros above the written data are fine, over it not.
        t.zeros("s", 1536);
        assert!(panics(|| t.zeros("s", 1024)));
        // A rewrite that changes a byte written before is refused.
        let mut changed = block.clone();
        changed[150] = 9;
        let mut t2 = TailCheck::default();
        t2.write("s", &block, 1024, 1224, 512);
        assert!(panics(|| t2.write("s", &changed, 1024, 1300, 512)));
        // A full block written: nothing of it is rewritten later.
        let mut t3 = TailCheck::default();
        t3.write("s", &block, 1024, 1536, 512);
        t3.write("s", &[1u8; 512], 1536, 1600, 512);
    }
}
