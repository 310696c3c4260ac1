//! Binance USDⓈ-M futures and spot: market data, user data, REST and request encoding.

pub mod depth;
pub mod market;

pub use market::BinanceMarketParser;
