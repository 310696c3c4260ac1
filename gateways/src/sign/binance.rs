//! Binance HMAC-SHA256: lower-case hex over the exact bytes of `query string ++ body`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{SignError, secret::Secret};

/// `hex(HMAC-SHA256(secret, payload))`, lower case.
pub fn binance_signature(secret: &Secret, payload: &[u8]) -> [u8; 64] {
    let mut m = keyed(secret);
    m.update(payload);
    super::hex_lower(&m.finalize().into_bytes().into())
}

/// Checks a hex signature (either case, as Binance accepts) over `payload`, in constant time.
pub fn verify_binance_signature(secret: &Secret, payload: &[u8], sig_hex: &[u8]) -> bool {
    let mut raw = [0u8; 32];
    if super::hex::decode_hex(sig_hex, &mut raw).is_none() {
        return false;
    }
    let mut m = keyed(secret);
    m.update(payload);
    m.verify_slice(&raw).is_ok()
}

fn keyed(secret: &Secret) -> Hmac<Sha256> {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    Hmac::<Sha256>::new_from_slice(secret.expose())
        .unwrap_or_else(|_| Hmac::<Sha256>::new_from_slice(&[]).unwrap_or_else(|_| unreachable!()))
}

/// Splits the `signature=` parameter out of an url-encoded parameter string.
/// Returns `(before, after, signature)` where `before ++ after` is the string without the
/// parameter and its separating `&`. `None` if there is no `signature` parameter.
pub fn split_signature(params: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut pos = 0;
    while pos <= params.len() {
        let end = params[pos..].iter().position(|&c| c == b'&').map_or(params.len(), |i| pos + i);
        let p = &params[pos..end];
        if let Some(sig) = p.strip_prefix(b"signature=") {
            // Drop the '&' before it, or after it when it is the first parameter.
            return Some(if pos > 0 {
                (&params[..pos - 1], &params[end..], sig)
            } else if end < params.len() {
                (&params[..0], &params[end + 1..], sig)
            } else {
                (&params[..0], &params[..0], sig)
            });
        }
        pos = end + 1;
    }
    None
}

/// Server-side check of a signed request: the signature covers the raw received query
/// string concatenated with the raw body, minus the `signature` parameter (found in either
/// part). Never re-serialises: parameter order is whatever the client sent.
pub fn verify_binance_request(secret: &Secret, query: &[u8], body: &[u8]) -> Result<(), SignError> {
    let mut m = keyed(secret);
    let sig = if let Some((a, b, sig)) = split_signature(query) {
        m.update(a);
        m.update(b);
        m.update(body);
        sig
    } else if let Some((a, b, sig)) = split_signature(body) {
        m.update(query);
        m.update(a);
        m.update(b);
        sig
    } else {
        return Err(SignError::Malformed("no signature parameter"));
    };
    let mut raw = [0u8; 32];
    super::hex::decode_hex(sig, &mut raw).ok_or(SignError::Malformed("signature hex"))?;
    m.verify_slice(&raw).map_err(|_| SignError::BadSignature)
}

/// A keyed Binance signer: signing clones the keyed state (no allocation, no re-keying).
#[derive(Clone)]
pub struct BinanceSigner {
    mac: Hmac<Sha256>,
}

impl core::fmt::Debug for BinanceSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("BinanceSigner(<redacted>)")
    }
}

impl BinanceSigner {
    /// Keys a signer with the API secret.
    pub fn new(secret: &Secret) -> Self {
        Self { mac: keyed(secret) }
    }

    /// Lower-case hex signature of `payload`.
    pub fn sign(&self, payload: &[u8]) -> [u8; 64] {
        let mut m = self.mac.clone();
        m.update(payload);
        super::hex_lower(&m.finalize().into_bytes().into())
    }

    /// Lower-case hex signature of `a ++ b` (query string then body) without copying.
    pub fn sign2(&self, a: &[u8], b: &[u8]) -> [u8; 64] {
        let mut m = self.mac.clone();
        m.update(a);
        m.update(b);
        super::hex_lower(&m.finalize().into_bytes().into())
    }
}
