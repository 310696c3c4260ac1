//! Binance USDⓈ-M futures and spot: market data, user data, REST and request encoding.

pub mod depth;
pub mod encode;
pub mod market;
pub mod rest;
pub mod user;

pub use encode::BinanceEncoder;
pub use market::BinanceMarketParser;
pub use rest::BinanceRestParser;
pub use user::BinanceUserParser;
