//! Request signing: Upbit JWT (HS256/HS512 with `query_hash`) and Binance HMAC-SHA256.
//!
//! Signers are keyed once at start-up and keep their scratch buffers, so signing a request
//! on the hot path writes into caller buffers without allocating. The verify functions are
//! for the loopback venue simulator and for tests; they may allocate (off the hot path).

mod binance;
mod hex;
mod nonce;
mod secret;
mod upbit;

pub use binance::{
    BinanceSigner, binance_signature, split_signature, verify_binance_request,
    verify_binance_signature,
};
pub use hex::{hex_lower, hex_lower_into};
pub use nonce::{NONCE_LEN, NonceGen};
pub use secret::Secret;
pub use upbit::{
    JwtAlg, UpbitClaims, UpbitSigner, json_body_to_query, upbit_query_hash, verify_upbit_jwt,
};

/// Why a signature could not be made or checked. Carries no secret material.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignError {
    /// A claim or key contains bytes that cannot appear in a compact JWT payload.
    BadInput(&'static str),
    /// The token or payload is not well formed.
    Malformed(&'static str),
    /// The algorithm in the JWT header is not HS256 or HS512.
    UnsupportedAlg,
    /// No secret is known for the access key / API key.
    UnknownKey,
    /// The signature does not match.
    BadSignature,
}

impl core::fmt::Display for SignError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SignError::BadInput(w) => write!(f, "bad signing input: {w}"),
            SignError::Malformed(w) => write!(f, "malformed: {w}"),
            SignError::UnsupportedAlg => f.write_str("unsupported JWT algorithm"),
            SignError::UnknownKey => f.write_str("unknown key"),
            SignError::BadSignature => f.write_str("signature mismatch"),
        }
    }
}

impl std::error::Error for SignError {}
