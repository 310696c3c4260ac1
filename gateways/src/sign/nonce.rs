//! UUID-v4-shaped nonces for Upbit JWTs, without allocation.
//!
//! Upbit rejects a reused nonce (401 `nonce_used`), so nonces must be unique per key, not
//! unpredictable: the generator is a per-process random seed (from std's hasher keys,
//! which are seeded from the OS) advanced by a counter through SplitMix64.

use std::hash::{BuildHasher, Hasher};

/// Length of a nonce in text form (`8-4-4-4-12` hex).
pub const NONCE_LEN: usize = 36;

/// Generates distinct UUID-v4-formatted nonces.
#[derive(Debug)]
pub struct NonceGen {
    seed_hi: u64,
    seed_lo: u64,
    counter: u64,
}

impl Default for NonceGen {
    fn default() -> Self {
        Self::new()
    }
}

impl NonceGen {
    /// A generator seeded from the OS (via `RandomState`) and the clock.
    pub fn new() -> Self {
        let rs = std::collections::hash_map::RandomState::new();
        let mut h = rs.build_hasher();
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        h.write_u64(t);
        let a = h.finish();
        h.write_u64(std::process::id() as u64);
        let b = h.finish();
        Self { seed_hi: a, seed_lo: b, counter: 0 }
    }

    /// A deterministic generator (tests, simulation replays).
    pub fn from_seed(seed: u64) -> Self {
        Self {
            seed_hi: splitmix(seed),
            seed_lo: splitmix(seed ^ 0x9E37_79B9_7F4A_7C15),
            counter: 0,
        }
    }

    /// Writes the next nonce into `out` and returns it as text.
    pub fn next<'b>(&mut self, out: &'b mut [u8; NONCE_LEN]) -> &'b str {
        self.counter = self.counter.wrapping_add(1);
        // The counter goes through a bijection, so two calls never give the same 128 bits.
        let lo = splitmix(self.seed_lo.wrapping_add(self.counter));
        let hi = self.seed_hi ^ splitmix(self.counter.rotate_left(32));
        let mut b = [0u8; 16];
        b[..8].copy_from_slice(&hi.to_be_bytes());
        b[8..].copy_from_slice(&lo.to_be_bytes());
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let mut hex = [0u8; 32];
        super::hex_lower_into(&b, &mut hex);
        let mut o = 0;
        for (i, c) in hex.iter().enumerate() {
            if matches!(i, 8 | 12 | 16 | 20) {
                out[o] = b'-';
                o += 1;
            }
            out[o] = *c;
            o += 1;
        }
        core::str::from_utf8(&out[..]).unwrap_or("")
    }
}

/// SplitMix64 finaliser: a bijection on u64 with good avalanche.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_uuid_shaped_and_distinct() {
        let mut g = NonceGen::from_seed(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let mut b = [0u8; NONCE_LEN];
            let s = g.next(&mut b).to_owned();
            assert_eq!(s.len(), 36);
            assert_eq!(&s[14..15], "4", "{s}");
            assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
            assert!(seen.insert(s));
        }
        let mut a = [0u8; NONCE_LEN];
        let mut b = [0u8; NONCE_LEN];
        assert_ne!(NonceGen::new().next(&mut a), NonceGen::new().next(&mut b));
    }
}
