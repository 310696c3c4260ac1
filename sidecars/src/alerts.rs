//! Alerts
