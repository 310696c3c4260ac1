//! Upbit KRW spot: quotation WebSocket, private WebSocket, REST and request encoding.

pub mod market;

pub use market::UpbitMarketParser;
