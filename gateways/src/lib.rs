//! Venue gateways: wire codecs, signing and non-blocking transports for Upbit and Binance.

/// Non-blocking WebSocket and keep-alive HTTP transports over mio (+ rustls), with reconnects.
pub mod transport;

/// Request signing (Upbit JWT, Binance HMAC) and secrets.
pub mod sign;

/// Codec errors and counters.
pub mod codec;

/// Venue symbol → instrument id tables.
pub mod symbols;

/// Exact number parsing and formatting without floats.
pub mod num;

/// JSON access: simd-json tape with exact numbers, and the fast pull scanner.
pub mod json;

/// Upbit KRW spot codecs.
pub mod upbit;

/// Binance USDⓈ-M futures and spot codecs.
pub mod binance;

/// REST reply handling shared by both venues.
pub mod rest;

/// HTTP/1.1 request bytes for the encoders.
pub mod http;
