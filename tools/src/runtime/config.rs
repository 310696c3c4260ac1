//! The runtime's configuration file (TOML), deserialised into validated types.
//!
//! Unknown keys and out-of-range values are errors that name the file, the line, the key
//! and the value, so an operator fixes the file without reading code.

use std::path::{Path, PathBuf};

use kimp_core::config::{ConfigError, EngineConfig, RiskConfig, StrategyConfig};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The trading loop.
    #[serde(default)]
    pub runtime: RuntimeSection,
    /// Venue endpoints.
    pub venues: VenuesSection,
    /// Where API keys come from.
    #[serde(default)]
    pub keys: KeysSection,
    /// Coins traded as pairs.
    pub coins: Vec<CoinSection>,
    /// Strategy rules (kimp-core).
    #[serde(default)]
    pub strategy: StrategyConfig,
    /// Risk limits (kimp-core).
    #[serde(default)]
    pub risk: RiskConfig,
    /// Storage.
    #[serde(default)]
    pub store: StoreSection,
    /// Telegram bot (optional: started when present).
    pub telegram: Option<TelegramSection>,
    /// Local control socket (`kimp ctl`).
    #[serde(default)]
    pub control: ControlSection,
}

/// `[runtime]`: the trading loop.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeSection {
    /// CPU to pin the trading thread to; none = not pinned.
    pub core: Option<usize>,
    /// Poll with zero timeout (a busy core). `false` polls with a 1 ms timeout (laptops).
    pub busy_poll: bool,
    /// Directory of the journal.
    pub journal_dir: PathBuf,
    /// Size of one journal segment in MiB (pre-allocated).
    pub journal_segment_mib: u64,
    /// How often the journal is synced to disk (ms).
    pub journal_sync_ms: u64,
    /// Engine timer cadence (ms): deadlines and book ages are checked this often.
    pub timer_ms: u64,
    /// A loop turn longer than this is counted as a stall (µs).
    pub cycle_us_max: u64,
    /// Deadline for in-flight orders at shutdown (ms).
    pub shutdown_ms: u64,
    /// `kimp run` logs a status line this often (s); 0 = never.
    pub status_interval_s: u64,
}

impl Default for RuntimeSection {
    fn default() -> Self {
        Self {
            core: None,
            busy_poll: true,
            journal_dir: PathBuf::from("data/journal"),
            journal_segment_mib: 64,
            journal_sync_ms: 10,
            timer_ms: 10,
            cycle_us_max: 50,
            shutdown_ms: 5_000,
            status_interval_s: 60,
        }
    }
}

/// `[venues]`: base URLs of both venues.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenuesSection {
    /// Upbit.
    pub upbit: VenueUrls,
    /// Binance USDT-M futures.
    pub binance: VenueUrls,
}

/// One venue's endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VenueUrls {
    /// WebSocket base URL (`wss://api.upbit.com/websocket/v1`, `wss://fstream.binance.com`).
    pub ws_url: String,
    /// REST base URL (`https://api.upbit.com`, `https://fapi.binance.com`).
    pub rest_url: String,
    /// Private (user data) WebSocket base URL, when it differs from `ws_url`.
    #[serde(default)]
    pub private_ws_url: Option<String>,
}

/// Where API keys come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// Environment variables (names below).
    #[default]
    Env,
    /// A TOML secrets file that only its owner can read.
    File,
}

/// `[keys]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysSection {
    /// Source.
    pub source: KeySource,
    /// Secrets file (for `source = "file"`), with keys `upbit_access_key`,
    /// `upbit_secret_key`, `binance_api_key`, `binance_secret_key`.
    pub file: Option<PathBuf>,
    /// Environment variable of the Upbit access key.
    pub upbit_access_env: String,
    /// Environment variable of the Upbit secret key.
    pub upbit_secret_env: String,
    /// Environment variable of the Binance API key.
    pub binance_key_env: String,
    /// Environment variable of the Binance secret key.
    pub binance_secret_env: String,
}

impl Default for KeysSection {
    fn default() -> Self {
        Self {
            source: KeySource::Env,
            file: None,
            upbit_access_env: "KIMP_UPBIT_ACCESS_KEY".into(),
            upbit_secret_env: "KIMP_UPBIT_SECRET_KEY".into(),
            binance_key_env: "KIMP_BINANCE_API_KEY".into(),
            binance_secret_env: "KIMP_BINANCE_SECRET_KEY".into(),
        }
    }
}

/// `[[coins]]`: one pair.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoinSection {
    /// Base asset (`BTC`).
    pub name: String,
    /// Upbit market (`KRW-BTC`).
    pub upbit: String,
    /// Binance perpetual (`BTCUSDT`).
    pub binance: String,
}

/// `[store]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// Directory of the local ILP files.
    pub dir: PathBuf,
    /// questdb-rs configuration string (`tcp::addr=HOST:PORT;` or `http::addr=...;`).
    pub questdb: Option<String>,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self { dir: PathBuf::from("data/ilp"), questdb: None }
    }
}

/// `[telegram]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelegramSection {
    /// Bot API base URL.
    #[serde(default = "default_bot_api")]
    pub api_url: String,
    /// Environment variable that holds the bot token.
    pub token_env: String,
    /// Chats whose commands are obeyed.
    pub allowed_chat_ids: Vec<i64>,
}

fn default_bot_api() -> String {
    "https://api.telegram.org".into()
}

/// `[control]`: the local socket `kimp ctl` talks to.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControlSection {
    /// Socket path; default `kimp.sock` in the journal directory.
    pub socket: Option<PathBuf>,
    /// How long a `resume` or `flatten` waits for its `confirm` (s); default 60.
    pub confirm_s: Option<u64>,
}

impl Config {
    /// The control socket's path: `[control] socket`, else `kimp.sock` next to the journal.
    pub fn control_socket(&self) -> PathBuf {
        self.control.socket.clone().unwrap_or_else(|| self.runtime.journal_dir.join("kimp.sock"))
    }
}

/// A configuration problem, located in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigFileError {
    /// File.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// Dotted key, when known.
    pub key: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ConfigFileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(k) = &self.key {
            write!(f, ": {k}")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigFileError {}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigFileError {
            path: path.to_owned(),
            line: None,
            key: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text (`path` is used in messages).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigFileError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of(text, s.start));
            ConfigFileError {
                path: path.to_owned(),
                line,
                // A wrong type's message names only the types: name the key too.
                key: line.and_then(|l| key_at(text, l)),
                message: e.message().trim().to_string(),
            }
        })?;
        cfg.validate().map_err(|e| {
            let line = locate(text, e.key);
            let value = line.and_then(|l| text.lines().nth(l - 1)).and_then(|l| l.split_once('='));
            let shown = value.map(|(_, v)| format!(" (value {})", v.trim())).unwrap_or_default();
            ConfigFileError {
                path: path.to_owned(),
                line,
                key: Some(e.key.to_string()),
                message: format!("{}{shown}", e.problem),
            }
        })?;
        Ok(cfg)
    }

    /// The engine's part of the configuration.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig { strategy: self.strategy, risk: self.risk }
    }

    /// Checks everything the types do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine().validate()?;
        let bad = |key: &'static str, problem: String| Err(ConfigError { key, problem });
        if self.coins.is_empty() {
            return bad("coins", "at least one [[coins]] entry is needed".into());
        }
        for c in &self.coins {
            if kimp_core::instrument::Symbol::new(&c.upbit).is_none()
                || !c.upbit.starts_with("KRW-")
            {
                return bad(
                    "coins.upbit",
                    format!("{:?} is not an Upbit KRW market like \"KRW-BTC\"", c.upbit),
                );
            }
            if kimp_core::instrument::Symbol::new(&c.binance).is_none()
                || !c.binance.ends_with("USDT")
            {
                return bad(
                    "coins.binance",
                    format!("{:?} is not a USDT-M symbol like \"BTCUSDT\"", c.binance),
                );
            }
        }
        let r = &self.runtime;
        if !(1..=1_000).contains(&r.timer_ms) {
            return bad("runtime.timer_ms", format!("{} is outside 1..=1000", r.timer_ms));
        }
        if !(1..=4_096).contains(&r.journal_segment_mib) {
            return bad(
                "runtime.journal_segment_mib",
                format!("{} is outside 1..=4096", r.journal_segment_mib),
            );
        }
        if !(1..=10_000).contains(&r.journal_sync_ms) {
            return bad(
                "runtime.journal_sync_ms",
                format!("{} is outside 1..=10000", r.journal_sync_ms),
            );
        }
        for (key, url) in [
            ("venues.upbit.ws_url", &self.venues.upbit.ws_url),
            ("venues.upbit.rest_url", &self.venues.upbit.rest_url),
            ("venues.binance.ws_url", &self.venues.binance.ws_url),
            ("venues.binance.rest_url", &self.venues.binance.rest_url),
        ] {
            let ok = ["ws://", "wss://", "http://", "https://"].iter().any(|s| url.starts_with(s));
            if !ok {
                return bad(key, format!("{url:?} is not a ws(s):// or http(s):// URL"));
            }
        }
        if let Some(t) = &self.telegram
            && t.allowed_chat_ids.is_empty()
        {
            return bad("telegram.allowed_chat_ids", "empty: nobody could control the bot".into());
        }
        if self.control.confirm_s.is_some_and(|s| !(1..=3_600).contains(&s)) {
            return bad("control.confirm_s", "outside 1..=3600".into());
        }
        if self.keys.source == KeySource::File && self.keys.file.is_none() {
            return bad("keys.file", "source = \"file\" needs a file path".into());
        }
        Ok(())
    }
}

/// 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// The dotted key on 1-based `line`: `table.key` for a plain `key = value` under a
/// `[table]` or `[[table]]` header, or the table of a header line itself.
fn key_at(text: &str, line: usize) -> Option<String> {
    let mut table = String::new();
    let mut header = false;
    for raw in text.lines().take(line) {
        let l = raw.trim();
        header = true;
        if let Some(h) = l.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            table = h.trim().to_string();
        } else if let Some(h) = l.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            table = h.trim().to_string();
        } else {
            header = false;
        }
    }
    if header {
        return Some(table);
    }
    let (k, _) = text.lines().nth(line - 1)?.split_once('=')?;
    let k = k.trim();
    let bare = !k.is_empty()
        && k.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    bare.then(|| if table.is_empty() { k.to_string() } else { format!("{table}.{k}") })
}

/// 1-based line of `table.key` (or of the `[table]` header) in TOML text.
fn locate(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = match dotted.rsplit_once('.') {
        Some((t, k)) => (t, k),
        None => ("", dotted),
    };
    let mut current = String::new();
    let mut header_line = None;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(h) = line.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            current = h.trim().to_string();
        } else if let Some(h) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = h.trim().to_string();
        }
        if current == table && header_line.is_none() && line.starts_with('[') {
            header_line = Some(i + 1);
        }
        if current == table
            && let Some((k, _)) = line.split_once('=')
            && k.trim() == key
        {
            return Some(i + 1);
        }
    }
    header_line
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[venues.upbit]
ws_url = "ws://127.0.0.1:18001/websocket/v1"
rest_url = "http://127.0.0.1:18002"
[venues.binance]
ws_url = "ws://127.0.0.1:18003"
rest_url = "http://127.0.0.1:18004"

[[coins]]
name = "BTC"
upbit = "KRW-BTC"
binance = "BTCUSDT"

[strategy]
entry_bps = 300
"#;

    #[test]
    fn parses_a_minimal_file_with_defaults() {
        let c = Config::parse(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(c.coins[0].upbit, "KRW-BTC");
        assert_eq!(c.strategy.entry_bps, 300);
        assert_eq!(c.risk.book_age_ms_max, 500);
        assert!(c.runtime.busy_poll);
        assert!(c.telegram.is_none());
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let text = GOOD.replace("entry_bps = 300", "entry_bps = 300\nentry_pct = 3");
        let e = Config::parse(&text, Path::new("t.toml")).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("entry_pct"), "{s}");
        assert_eq!(e.line, Some(16), "{s}");
    }

    #[test]
    fn out_of_range_value_names_key_value_and_line() {
        let text = GOOD.replace("entry_bps = 300", "entry_bps = 9000");
        let e = Config::parse(&text, Path::new("t.toml")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("strategy.entry_bps"));
        assert_eq!(e.line, Some(15));
        let s = e.to_string();
        assert!(s.starts_with("t.toml:15: strategy.entry_bps:"), "{s}");
        assert!(s.contains("9000"), "{s}");
    }

    #[test]
    fn wrong_type_is_reported_with_its_line() {
        let text = GOOD.replace("entry_bps = 300", "entry_bps = \"high\"");
        let e = Config::parse(&text, Path::new("t.toml")).unwrap_err();
        assert_eq!(e.line, Some(15), "{e}");
        assert_eq!(e.key.as_deref(), Some("strategy.entry_bps"), "{e}");
    }

    #[test]
    fn bad_symbols_and_urls_are_refused() {
        let e =
            Config::parse(&GOOD.replace("\"KRW-BTC\"", "\"BTC-ETH\""), Path::new("t")).unwrap_err();
        assert_eq!(e.key.as_deref(), Some("coins.upbit"));
        let e = Config::parse(&GOOD.replace("ws://127.0.0.1:18003", "ftp://x"), Path::new("t"))
            .unwrap_err();
        assert_eq!(e.key.as_deref(), Some("venues.binance.ws_url"));
    }

    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for f in ["config/default.toml", "config/live.example.toml", "config/demo.toml"] {
            Config::load(&root.join(f)).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
