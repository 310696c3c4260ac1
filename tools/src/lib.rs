//! The `kimp` tools: the venue simulator, the runtime and the research commands.
pub mod dst;
pub mod research;
pub mod runtime;
pub mod sim;
