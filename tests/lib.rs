//! Shared helpers for the end-to-end and fault tests.
