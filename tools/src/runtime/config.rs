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
                message: in_words(e.message().trim()),
            }
        })?;
        // Coins first: their errors are located in their own [[coins]] table.
        cfg.validate_coins().map_err(|(i, e)| {
            let line = locate_in_nth(text, "coins", i, e.key.trim_start_matches("coins."));
            ConfigFileError {
                path: path.to_owned(),
                line,
                key: Some(e.key.to_string()),
                message: e.problem,
            }
        })?;
        cfg.validate().map_err(|e| located(text, path, e))?;
        Ok(cfg)
    }

    /// What `kimp check` adds to [`Config::parse`]: the journal directory can be created
    /// and written (checked with `access(2)`, nothing is created). Located in `text`.
    pub fn check_journal_dir(&self, text: &str, path: &Path) -> Result<(), ConfigFileError> {
        let dir = &self.runtime.journal_dir;
        let problem = match writable_dir(dir) {
            Ok(()) => return Ok(()),
            Err(p) => p,
        };
        Err(located(
            text,
            path,
            ConfigError {
                key: "runtime.journal_dir",
                problem: format!("{} cannot be used: {problem}", dir.display()),
            },
        ))
    }

    /// The engine's part of the configuration.
    pub fn engine(&self) -> EngineConfig {
        EngineConfig { strategy: self.strategy, risk: self.risk }
    }

    /// Checks the `[[coins]]` tables: each market is of the named coin, no coin twice.
    /// The error comes with the index of the table.
    pub fn validate_coins(&self) -> Result<(), (usize, ConfigError)> {
        let bad =
            |i: usize, key: &'static str, problem: String| Err((i, ConfigError { key, problem }));
        if self.coins.is_empty() {
            return bad(0, "coins", "at least one [[coins]] entry is needed".into());
        }
        for (i, c) in self.coins.iter().enumerate() {
            let n = &c.name;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
                return bad(i, "coins.name", format!("{n:?} is not a coin name like \"BTC\""));
            }
            if self.coins[..i].iter().any(|o| o.name == *n) {
                return bad(i, "coins.name", format!("{n:?} is listed twice"));
            }
            if kimp_core::instrument::Symbol::new(&c.upbit).is_none()
                || !c.upbit.starts_with("KRW-")
            {
                return bad(
                    i,
                    "coins.upbit",
                    format!("{:?} is not an Upbit KRW market like \"KRW-BTC\"", c.upbit),
                );
            }
            if c.upbit[4..] != **n {
                return bad(
                    i,
                    "coins.upbit",
                    format!("{:?} is not the market of {n} (expected \"KRW-{n}\")", c.upbit),
                );
            }
            if kimp_core::instrument::Symbol::new(&c.binance).is_none()
                || !c.binance.ends_with("USDT")
            {
                return bad(
                    i,
                    "coins.binance",
                    format!("{:?} is not a USDT-M symbol like \"BTCUSDT\"", c.binance),
                );
            }
            // Binance quotes some small coins per 1000 or 1,000,000 (`1000PEPEUSDT`).
            let base = &c.binance[..c.binance.len() - 4];
            let unit = base.strip_suffix(n.as_str());
            if !matches!(unit, Some("" | "1000" | "1000000")) {
                return bad(
                    i,
                    "coins.binance",
                    format!("{:?} is not the perpetual of {n} (expected \"{n}USDT\")", c.binance),
                );
            }
        }
        Ok(())
    }

    /// Checks everything the types do not.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.engine().validate()?;
        let bad = |key: &'static str, problem: String| Err(ConfigError { key, problem });
        self.validate_coins().map_err(|(_, e)| e)?;
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

impl Config {
    /// The settings in effect, for people: TOML-shaped (`key = value`, copyable back into a
    /// file) with what each number means where that is not obvious.
    pub fn describe(&self) -> String {
        use kimp_core::config::{Direction, FundingFilter, OneLegPolicy};
        use kimp_core::event::FxSource;
        let (st, r) = (&self.strategy, &self.risk);
        let mut out = String::new();
        fn line(out: &mut String, k: &str, v: String, why: String) {
            let kv = format!("{k} = {v}");
            out.push_str(&if why.is_empty() { kv } else { format!("{kv:<34} # {why}") });
            out.push('\n');
        }
        let pct = |bps: i64| format!("{:.2} %", bps as f64 / 100.0);
        let krw = |v: i64| {
            let s = v.unsigned_abs().to_string();
            let mut g = String::new();
            for (i, ch) in s.chars().enumerate() {
                if i > 0 && (s.len() - i).is_multiple_of(3) {
                    g.push(',');
                }
                g.push(ch);
            }
            format!("{}{g}", if v < 0 { "-" } else { "" })
        };
        out.push_str("[strategy]\n");
        let (dir, dir_why) = match st.direction {
            Direction::SellPremium => {
                ("sell_premium", "sell on Upbit, buy the Binance perp: earns as the premium falls")
            }
            Direction::BuyDiscount => {
                ("buy_discount", "buy on Upbit, short the Binance perp: earns as the premium rises")
            }
        };
        line(&mut out, "direction", format!("{dir:?}"), dir_why.into());
        line(
            &mut out,
            "entry_bps",
            st.entry_bps.to_string(),
            format!("enter at an executable premium of {} or more", pct(st.entry_bps)),
        );
        line(
            &mut out,
            "exit_min_profit_krw",
            st.exit_min_profit_krw.to_string(),
            format!("close a pair once its net PnL is above {} KRW", krw(st.exit_min_profit_krw)),
        );
        let (ff, ff_why) = match st.funding_filter {
            FundingFilter::Off => ("off", "funding does not gate entries"),
            FundingFilter::Positive => ("positive", "enter only while the funding rate is > 0"),
            FundingFilter::Favourable => {
                ("favourable", "enter only while funding pays the perp leg")
            }
        };
        line(&mut out, "funding_filter", format!("{ff:?}"), ff_why.into());
        line(
            &mut out,
            "deployable_pct",
            st.deployable_pct.to_string(),
            format!("{} % of capital may be deployed, the rest is reserve", st.deployable_pct),
        );
        line(
            &mut out,
            "max_pair_notional_krw",
            st.max_pair_notional_krw.to_string(),
            format!("{} KRW per pair at most", krw(st.max_pair_notional_krw)),
        );
        line(
            &mut out,
            "slippage_bps",
            st.slippage_bps.to_string(),
            format!("size on depth within {} of the touch", pct(st.slippage_bps)),
        );
        line(
            &mut out,
            "leverage",
            st.leverage.to_string(),
            "Binance margin = notional / leverage".into(),
        );
        let fx = match st.fx_source {
            FxSource::UpbitUsdt => ("upbit_usdt", "FX from the Upbit KRW-USDT book"),
            FxSource::Official => ("official", "FX from an official USD/KRW quote"),
        };
        line(&mut out, "fx_source", format!("{:?}", fx.0), fx.1.into());
        line(
            &mut out,
            "entry_cooldown_ms",
            st.entry_cooldown_ms.to_string(),
            "between entries on a coin".into(),
        );
        line(
            &mut out,
            "telemetry_interval_ms",
            st.telemetry_interval_ms.to_string(),
            String::new(),
        );
        out.push_str("\n[risk]\n");
        let coins = self.coins.len() as u32;
        line(
            &mut out,
            "max_open_pairs",
            r.max_open_pairs.to_string(),
            format!(
                "across all coins; a coin holds one pair at a time, so at most {} here",
                r.max_open_pairs.min(coins)
            ),
        );
        line(
            &mut out,
            "max_order_notional_krw",
            r.max_order_notional_krw.to_string(),
            format!("{} KRW per Upbit order", krw(r.max_order_notional_krw)),
        );
        line(
            &mut out,
            "max_order_notional_usdt",
            r.max_order_notional_usdt.to_string(),
            format!("{} USDT per Binance order", krw(r.max_order_notional_usdt)),
        );
        line(
            &mut out,
            "max_coin_notional_krw",
            r.max_coin_notional_krw.to_string(),
            format!("{} KRW exposure per coin", krw(r.max_coin_notional_krw)),
        );
        line(
            &mut out,
            "collar_bps",
            r.collar_bps.to_string(),
            format!("limit prices at most {} through the touch", pct(r.collar_bps)),
        );
        line(
            &mut out,
            "hedge_collar_step_bps",
            r.hedge_collar_step_bps.to_string(),
            "wider by this per re-hedge attempt".into(),
        );
        line(
            &mut out,
            "orders_per_sec_max",
            r.orders_per_sec_max.to_string(),
            "per venue; more halts the engine".into(),
        );
        line(
            &mut out,
            "book_age_ms_max",
            r.book_age_ms_max.to_string(),
            "an older book blocks entries".into(),
        );
        line(
            &mut out,
            "order_timeout_ms",
            r.order_timeout_ms.to_string(),
            "no answer by then: outcome unknown, queried".into(),
        );
        line(
            &mut out,
            "orphan_ms_max",
            r.orphan_ms_max.to_string(),
            "repair a one-leg pair within this".into(),
        );
        line(
            &mut out,
            "orphan_ms_hard",
            r.orphan_ms_hard.to_string(),
            "then flatten at market and halt".into(),
        );
        let olp = match r.one_leg_policy {
            OneLegPolicy::Rehedge => ("rehedge", "send the missing leg again"),
            OneLegPolicy::Unwind => ("unwind", "reverse the excess leg"),
        };
        line(&mut out, "one_leg_policy", format!("{:?}", olp.0), olp.1.into());
        line(
            &mut out,
            "hedge_retry_ms",
            r.hedge_retry_ms.to_string(),
            "between repair orders of a pair".into(),
        );
        out
    }
}

/// A config error located in `text`: the line of its key, and the value written there.
fn located(text: &str, path: &Path, e: ConfigError) -> ConfigFileError {
    let line = locate(text, e.key);
    let value = line.and_then(|l| text.lines().nth(l - 1)).and_then(|l| l.split_once('='));
    let shown = value.map(|(_, v)| format!(" (value {})", v.trim())).unwrap_or_default();
    ConfigFileError {
        path: path.to_owned(),
        line,
        key: Some(e.key.to_string()),
        message: format!("{}{shown}", e.problem),
    }
}

/// The TOML parser's type names in words a person reads: `expected i64` is "expected an
/// integer", `expected u32` "expected an integer (0 or more)", `expected f64` "expected a
/// number".
fn in_words(msg: &str) -> String {
    let mut out = msg.to_string();
    for (rust, words) in [
        ("i8", "an integer"),
        ("i16", "an integer"),
        ("i32", "an integer"),
        ("i64", "an integer"),
        ("u8", "an integer (0 or more)"),
        ("u16", "an integer (0 or more)"),
        ("u32", "an integer (0 or more)"),
        ("u64", "an integer (0 or more)"),
        ("usize", "an integer (0 or more)"),
        ("f32", "a number"),
        ("f64", "a number"),
    ] {
        for end in ["", ",", "\n"] {
            let from = format!("expected {rust}{end}");
            if end.is_empty() && !out.ends_with(&from) {
                continue;
            }
            out = out.replace(&from, &format!("expected {words}{end}"));
        }
    }
    out
}

/// Whether `dir` is, or can be created as, a directory this process may write: the
/// nearest existing ancestor must be a writable directory (for a path that exists, the
/// path itself).
fn writable_dir(dir: &Path) -> Result<(), String> {
    let mut p = dir;
    while !p.exists() {
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => {
                p = Path::new(".");
                break;
            }
        }
    }
    if !p.is_dir() {
        return Err(format!("{} is not a directory", p.display()));
    }
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| format!("{} has a NUL byte", p.display()))?;
    // SAFETY: `c` is a valid NUL-terminated path that outlives the call.
    if unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(format!("{} is not writable ({e})", p.display()));
    }
    Ok(())
}

/// 1-based line of `key` in the `n`-th (0-based) `[[table]]` of `text`, or of that
/// table's header when the key is not written there.
fn locate_in_nth(text: &str, table: &str, n: usize, key: &str) -> Option<usize> {
    let mut seen = None;
    let mut header = None;
    for (i, raw) in text.lines().enumerate() {
        let l = raw.trim();
        if let Some(h) = l.strip_prefix("[[").and_then(|l| l.strip_suffix("]]")) {
            if h.trim() == table {
                seen = Some(seen.map_or(0, |s| s + 1));
                if seen == Some(n) {
                    header = Some(i + 1);
                }
            } else if seen == Some(n) {
                break;
            }
            continue;
        }
        if l.starts_with('[') && seen == Some(n) {
            break;
        }
        if seen == Some(n)
            && let Some((k, _)) = l.split_once('=')
            && k.trim() == key
        {
            return Some(i + 1);
        }
    }
    header
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
