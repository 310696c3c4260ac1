//! Upbit KRW spot: quotation WebSocket, private WebSocket, REST and request encoding.

pub mod encode;
pub mod market;
pub mod rest;
pub mod user;

pub use encode::UpbitEncoder;
pub use market::UpbitMarketParser;
pub use rest::UpbitRestParser;
pub use user::UpbitUserParser;
