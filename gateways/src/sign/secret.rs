//! A secret key that never prints.

/// An API secret. `Debug` and `Display` print `<redacted>`; the bytes are only reachable
/// through [`Secret::expose`], and they are overwritten when the value is dropped.
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

impl Secret {
    /// Wraps a secret given as text (Upbit and Binance secrets are used as raw UTF-8 bytes).
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into().into_bytes().into_boxed_slice())
    }

    /// Wraps raw secret bytes.
    pub fn from_bytes(b: &[u8]) -> Self {
        Self(b.to_vec().into_boxed_slice())
    }

    /// The raw key bytes, for keying a MAC. Never log or format the result.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // Volatile so the wipe is not optimised away as a dead store.
            // SAFETY: `b` is a valid, aligned, exclusive reference into our own buffer.
            unsafe { core::ptr::write_volatile(b, 0) };
        }
    }
}

impl core::fmt::Debug for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl core::fmt::Display for Secret {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl PartialEq for Secret {
    /// Constant-time in the length of the shorter secret is not needed here: secrets are
    /// compared only in tests and configuration, never against attacker input.
    fn eq(&self, o: &Self) -> bool {
        self.0 == o.0
    }
}

impl Eq for Secret {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_the_key() {
        let s = Secret::new("sKz3YtTq8pWmDnE5vRbH7jLcXa9uF2gN4kQwZe6S");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), b"sKz3YtTq8pWmDnE5vRbH7jLcXa9uF2gN4kQwZe6S");
    }
}
