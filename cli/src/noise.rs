//! Incompressible bench data, shared by `directwal bench`, `cargo bench
//! --bench wal` and bench-peers (each includes this file).

/// Incompressible bytes for payloads and probe writes. This machine's disk
/// compresses: O_DIRECT writes of a repeated byte ran at 2.1–2.5 GB/s, of
/// random bytes at ~1 GB/s. Constant payloads would measure the host's
/// compressor, and make encrypted (random-looking) payloads look slow.
pub struct Noise(Vec<u8>);

impl Noise {
    /// 8 MiB from a fixed xorshift sequence.
    pub fn new() -> Self {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        Noise(
            (0..8 << 20)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 24) as u8
                })
                .collect(),
        )
    }

    /// All of it.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Payload `i` of `len` bytes (at most 4 MiB): consecutive records take
    /// consecutive slices, so nothing repeats within 4 MiB of a log.
    pub fn payload(&self, i: u64, len: usize) -> &[u8] {
        let start = (i as usize).wrapping_mul(len) % (self.0.len() - len);
        &self.0[start..start + len]
    }
}

impl Default for Noise {
    fn default() -> Self {
        Self::new()
    }
}
