//! Status
