//! Venue gateways: wire codecs, signing and non-blocking transports for Upbit and Binance.

/// Request signing (Upbit JWT, Binance HMAC) and secrets.
pub mod sign;
