//! Venue gateways: wire codecs, signing and non-blocking transports for Upbit and Binance.

/// Non-blocking WebSocket and keep-alive HTTP transports over mio (+ rustls), with reconnects.
pub mod transport;

/// Request signing (Upbit JWT, Binance HMAC) and secrets.
pub mod sign;
