//! JSON access for the parsers: a simd-json tape with exact number text (the general
//! path) and a schema-aware pull scanner (the measured fast path for the two hottest
//! messages, Binance depth and Upbit order books).

pub mod scan;
pub mod tape;

pub use scan::Cursor;
pub use tape::{Doc, JsonScratch};
