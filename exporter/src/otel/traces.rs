//! What every span shares: trace and span ids.

/// Trace and span ids. Every span Tapio makes is a root span, so ids only
/// need to be unique, not secret: SplitMix64 seeded from the clock and pid.
pub struct IdGenerator(u64);

impl Default for IdGenerator {
    fn default() -> Self {
        Self(
            crate::clock::unix_ns()
                ^ (u64::from(std::process::id()) << 32)
                ^ crate::clock::boot_ns().rotate_left(17),
        )
    }
}

impl IdGenerator {
    /// A generator with a known seed (tests and benches compare two
    /// mappings on the same ids).
    pub fn seeded(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniform u32, for sampling decisions.
    pub fn next_u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }

    pub fn trace_id_bytes(&mut self) -> [u8; 16] {
        let mut v = [0; 16];
        v[..8].copy_from_slice(&self.next().to_be_bytes());
        v[8..].copy_from_slice(&self.next().to_be_bytes());
        v
    }

    pub fn span_id_bytes(&mut self) -> [u8; 8] {
        self.next().to_be_bytes()
    }

    pub fn trace_id(&mut self) -> Vec<u8> {
        self.trace_id_bytes().to_vec()
    }

    pub fn span_id(&mut self) -> Vec<u8> {
        self.span_id_bytes().to_vec()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_differ() {
        let mut g = IdGenerator::default();
        assert_ne!(g.trace_id(), g.trace_id());
        assert_ne!(g.span_id(), g.span_id());
    }
}
