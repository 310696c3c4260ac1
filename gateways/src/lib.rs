//! Venue gateways: wire codecs, signing and non-blocking transports for Upbit and Binance.
