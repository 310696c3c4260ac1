//! Sidecars that run beside the trading loop: store, Telegram control, alerts.
