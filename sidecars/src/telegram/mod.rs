//! The Telegram bot: operator commands in, alerts out, on its own thread with a tokio
//! current-thread runtime (teloxide needs tokio; the loop never sees it).
//!
//! Only allow-listed chats (and, if set, users) are obeyed; anyone else gets no answer at
//! all, and is counted and logged by id. The bot token lives in [`BotToken`], whose
//! `Debug` is redacted; teloxide puts it in request paths only, and redacts it from its
//! network errors.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use kimp_core::event::Control;
use teloxide::Bot;
use teloxide::payloads::GetUpdatesSetters;
use teloxide::requests::{Request, Requester};
use teloxide::types::{AllowedUpdate, ChatId, UpdateKind};
use teloxide::utils::command::BotCommands;
use tokio::sync::{mpsc, watch};

use crate::alerts::AlertMsg;
use crate::commands::{self, Cmd, Commands, Outcome, Syntax};
use crate::status::StatusBoard;

/// The public Bot API.
pub const PUBLIC_API_URL: &str = "https://api.telegram.org/";

/// `[telegram]` configuration.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// Bot API base URL (tests point it at a loopback fake).
    pub api_url: String,
    /// Name of the environment variable holding the bot token.
    pub token_env: String,
    /// Chats whose commands are obeyed (a private chat's id is the user's id).
    pub allowed_chat_ids: Vec<i64>,
    /// If not empty, the sender must also be one of these users (for group chats).
    pub allowed_user_ids: Vec<u64>,
    /// Chats that receive alerts (default: `allowed_chat_ids`).
    pub alert_chat_ids: Option<Vec<i64>>,
    /// Long-poll timeout, seconds.
    pub poll_timeout_s: u32,
    /// How long a `/resume` or `/flatten` waits for its `confirm`, seconds.
    pub confirm_s: u64,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        Self {
            api_url: PUBLIC_API_URL.into(),
            token_env: "KIMP_TELEGRAM_TOKEN".into(),
            allowed_chat_ids: Vec::new(),
            allowed_user_ids: Vec::new(),
            alert_chat_ids: None,
            poll_timeout_s: 10,
            confirm_s: 60,
        }
    }
}

/// The bot token. `Debug` prints `<redacted>`; there is no `Display`.
#[derive(Clone)]
pub struct BotToken(String);

impl BotToken {
    /// Wraps a token.
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// Reads the token from the environment variable `var` (the error names the variable,
    /// never the value).
    pub fn from_env(var: &str) -> Result<Self, TelegramError> {
        match std::env::var(var) {
            Ok(t) if !t.trim().is_empty() => Ok(Self(t.trim().to_string())),
            _ => Err(TelegramError::MissingToken(var.to_string())),
        }
    }
}

impl std::fmt::Debug for BotToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BotToken(<redacted>)")
    }
}

/// Why the bot did not start.
#[derive(Debug, thiserror::Error)]
pub enum TelegramError {
    /// The token variable is unset or empty.
    #[error("telegram: environment variable {0} is not set or empty")]
    MissingToken(String),
    /// `api_url` is not an http(s) URL.
    #[error("telegram: bad api_url {0:?}")]
    BadUrl(String),
    /// No chat would be obeyed.
    #[error("telegram: allowed_chat_ids is empty")]
    NoChats,
    /// Thread or runtime could not start.
    #[error("telegram: {0}")]
    Io(#[from] std::io::Error),
}

/// Latency samples of `/stop` kept.
const STOP_SAMPLES: usize = 1024;

/// Counters of the bot.
#[derive(Debug, Default)]
pub struct TelegramStats {
    /// Updates received.
    pub updates: AtomicU64,
    /// Messages from chats or users not on the allow-list (ignored).
    pub unauthorized: AtomicU64,
    /// Commands handled.
    pub commands: AtomicU64,
    /// Controls put in the engine's channel.
    pub controls_sent: AtomicU64,
    /// Controls that could not be queued (channel full for 1 s, or closed).
    pub controls_failed: AtomicU64,
    /// Alerts sent (per chat).
    pub alerts_sent: AtomicU64,
    /// `sendMessage` failures.
    pub send_errors: AtomicU64,
    /// `getUpdates` / `getMe` failures.
    pub poll_errors: AtomicU64,
    stop_ns: Mutex<VecDeque<u64>>,
}

impl TelegramStats {
    /// Recent `/stop` latencies, ns: from the bot receiving the update to `Control::Stop`
    /// being in the channel.
    pub fn stop_latencies_ns(&self) -> Vec<u64> {
        self.stop_ns.lock().map(|q| q.iter().copied().collect()).unwrap_or_default()
    }

    fn record_stop(&self, ns: u64) {
        if let Ok(mut q) = self.stop_ns.lock() {
            if q.len() == STOP_SAMPLES {
                q.pop_front();
            }
            q.push_back(ns);
        }
    }
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A running bot.
#[derive(Debug)]
pub struct TelegramHandle {
    stats: Arc<TelegramStats>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

impl TelegramHandle {
    /// The bot's counters.
    pub fn stats(&self) -> &Arc<TelegramStats> {
        &self.stats
    }

    /// Stops polling and joins the thread (alerts still queued are dropped).
    pub fn shutdown(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TelegramHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The Telegram sidecar.
#[derive(Debug)]
pub struct Telegram;

impl Telegram {
    /// Starts the bot thread. `control` receives `Stop`, `Resume`, `Flatten`; `board` is
    /// read for answers; `alerts` are sent to the alert chats.
    pub fn start(
        cfg: TelegramConfig,
        token: BotToken,
        control: Sender<Control>,
        board: Arc<StatusBoard>,
        alerts: Receiver<AlertMsg>,
    ) -> Result<TelegramHandle, TelegramError> {
        let url = url::Url::parse(&cfg.api_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && !u.cannot_be_a_base())
            .ok_or_else(|| TelegramError::BadUrl(cfg.api_url.clone()))?;
        if cfg.allowed_chat_ids.is_empty() {
            return Err(TelegramError::NoChats);
        }
        let stats = Arc::new(TelegramStats::default());
        let (stop_tx, stop_rx) = watch::channel(false);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let st = stats.clone();
        let thread = std::thread::Builder::new().name("kimp-telegram".into()).spawn(move || {
            let bot = Bot::new(token.0).set_api_url(url);
            let svc = Service { cfg, bot, control, board, stats: st, stop: stop_rx };
            rt.block_on(svc.run(alerts));
            // Do not wait on a stuck HTTP call at shutdown.
            rt.shutdown_timeout(Duration::from_millis(500));
        })?;
        Ok(TelegramHandle { stats, stop: stop_tx, thread: Some(thread) })
    }
}

struct Service {
    cfg: TelegramConfig,
    bot: Bot,
    control: Sender<Control>,
    board: Arc<StatusBoard>,
    stats: Arc<TelegramStats>,
    stop: watch::Receiver<bool>,
}

/// Sleeps, or returns `true` early when asked to stop.
async fn sleep_or_stop(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    let woke = tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.wait_for(|s| *s) => true,
    };
    woke || *stop.borrow()
}

impl Service {
    async fn run(self, alerts: Receiver<AlertMsg>) {
        // Alerts: a blocking bridge from the crossbeam queue to a task that sends them.
        let (tx, rx) = mpsc::unbounded_channel();
        let mut stop = self.stop.clone();
        let bridge_stop = self.stop.clone();
        tokio::task::spawn_blocking(move || {
            while !*bridge_stop.borrow() {
                match alerts.recv_timeout(Duration::from_millis(50)) {
                    Ok(m) => {
                        if tx.send(m).is_err() {
                            return;
                        }
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
            }
        });
        let chats =
            self.cfg.alert_chat_ids.clone().unwrap_or_else(|| self.cfg.allowed_chat_ids.clone());
        let sender = tokio::spawn(send_alerts(self.bot.clone(), chats, rx, self.stats.clone()));
        let Some(username) = self.get_me(&mut stop).await else {
            sender.abort();
            return;
        };
        tracing::info!(bot = %username, chats = self.cfg.allowed_chat_ids.len(), "telegram: bot started");
        self.poll(&username, &mut stop).await;
        sender.abort();
    }

    async fn get_me(&self, stop: &mut watch::Receiver<bool>) -> Option<String> {
        let mut backoff = Duration::from_millis(500);
        loop {
            let r = tokio::select! {
                r = self.bot.get_me().send() => r,
                _ = stop.wait_for(|s| *s) => return None,
            };
            match r {
                Ok(me) => return Some(me.user.username.clone().unwrap_or_default()),
                Err(e) => {
                    inc(&self.stats.poll_errors);
                    tracing::warn!(error = %e, "telegram: getMe failed; retrying");
                    if sleep_or_stop(stop, backoff).await {
                        return None;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }
    }

    async fn poll(&self, username: &str, stop: &mut watch::Receiver<bool>) {
        let mut cmds = Commands::new(Duration::from_secs(self.cfg.confirm_s), Syntax::Telegram);
        let mut offset: i32 = 0;
        let mut backoff = Duration::from_millis(500);
        loop {
            let req = self
                .bot
                .get_updates()
                .offset(offset)
                .timeout(self.cfg.poll_timeout_s)
                .allowed_updates([AllowedUpdate::Message]);
            let r = tokio::select! {
                r = req.send() => r,
                _ = stop.wait_for(|s| *s) => return,
            };
            let updates = match r {
                Ok(u) => u,
                Err(e) => {
                    inc(&self.stats.poll_errors);
                    tracing::warn!(error = %e, "telegram: getUpdates failed; retrying");
                    if sleep_or_stop(stop, backoff).await {
                        return;
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let received = Instant::now();
            backoff = Duration::from_millis(500);
            for u in updates {
                offset = offset.max((u.id.0 as i32).saturating_add(1));
                inc(&self.stats.updates);
                if let UpdateKind::Message(m) = &u.kind {
                    let user = m.from.as_ref().map(|u| u.id.0);
                    self.on_message(&mut cmds, m.chat.id.0, user, m.text(), username, received)
                        .await;
                }
            }
        }
    }

    fn allowed(&self, chat: i64, user: Option<u64>) -> bool {
        self.cfg.allowed_chat_ids.contains(&chat)
            && (self.cfg.allowed_user_ids.is_empty()
                || user.is_some_and(|u| self.cfg.allowed_user_ids.contains(&u)))
    }

    async fn on_message(
        &self,
        cmds: &mut Commands,
        chat: i64,
        user: Option<u64>,
        text: Option<&str>,
        username: &str,
        received: Instant,
    ) {
        if !self.allowed(chat, user) {
            inc(&self.stats.unauthorized);
            tracing::warn!(chat_id = chat, user_id = ?user, "telegram: ignored a message from outside the allow-list");
            return;
        }
        let Some(text) = text else { return };
        let cmd = match Cmd::parse(text, username) {
            Ok(c) => c,
            Err(_) => {
                if text.starts_with('/') {
                    self.reply(chat, cmds.syntax().unknown()).await;
                }
                return;
            }
        };
        inc(&self.stats.commands);
        tracing::info!(chat_id = chat, command = ?cmd, "telegram: command");
        match cmds.handle(chat, cmd, &self.board, Instant::now()) {
            Outcome::Reply(t) => self.reply(chat, t).await,
            Outcome::Control(c, t) => {
                let ok = push_control(&self.control, c).await;
                if ok {
                    inc(&self.stats.controls_sent);
                    if c == Control::Stop {
                        self.stats.record_stop(received.elapsed().as_nanos() as u64);
                    }
                    self.reply(chat, t).await;
                } else {
                    inc(&self.stats.controls_failed);
                    tracing::error!(control = ?c, "telegram: control channel full or closed");
                    self.reply(chat, commands::failed(c)).await;
                }
            }
        }
    }

    async fn reply(&self, chat: i64, text: String) {
        if let Err(e) = self.bot.send_message(ChatId(chat), text).send().await {
            inc(&self.stats.send_errors);
            tracing::warn!(error = %e, chat_id = chat, "telegram: reply failed");
        }
    }
}

/// Queues a control; a full channel is retried for up to a second (the loop drains it
/// every turn, so this only waits when the loop is stuck).
async fn push_control(tx: &Sender<Control>, c: Control) -> bool {
    let deadline = Instant::now() + Duration::from_secs(1);
    loop {
        match tx.try_send(c) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(_)) if Instant::now() >= deadline => return false,
            Err(TrySendError::Full(_)) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
}

async fn send_alerts(
    bot: Bot,
    chats: Vec<i64>,
    mut rx: mpsc::UnboundedReceiver<AlertMsg>,
    stats: Arc<TelegramStats>,
) {
    while let Some(m) = rx.recv().await {
        for &chat in &chats {
            let mut ok = false;
            for attempt in 0..2 {
                match bot.send_message(ChatId(chat), m.text.clone()).send().await {
                    Ok(_) => {
                        ok = true;
                        break;
                    }
                    Err(e) => {
                        inc(&stats.send_errors);
                        tracing::warn!(error = %e, chat_id = chat, attempt, "telegram: alert not sent");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
            }
            if ok {
                inc(&stats.alerts_sent);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_and_errors_name_only_the_variable() {
        let t = BotToken::new("123456:SECRET-canary");
        assert!(!format!("{t:?}").contains("SECRET"));
        let e = BotToken::from_env("KIMP_TEST_SURELY_UNSET_VAR").unwrap_err();
        assert_eq!(
            e.to_string(),
            "telegram: environment variable KIMP_TEST_SURELY_UNSET_VAR is not set or empty"
        );
    }

    #[test]
    fn start_refuses_bad_urls_and_empty_allow_lists() {
        let board = Arc::new(StatusBoard::new(Arc::new(crate::names::Names::new())));
        let (ctl, _) = crossbeam_channel::bounded(1);
        let (_, alerts) = crossbeam_channel::bounded(1);
        let cfg = TelegramConfig {
            api_url: "mailto:x@y".into(),
            allowed_chat_ids: vec![1],
            ..Default::default()
        };
        let r =
            Telegram::start(cfg, BotToken::new("t"), ctl.clone(), board.clone(), alerts.clone());
        assert!(matches!(r, Err(TelegramError::BadUrl(_))));
        let cfg = TelegramConfig { api_url: "http://127.0.0.1:9/".into(), ..Default::default() };
        let r = Telegram::start(cfg, BotToken::new("t"), ctl, board, alerts);
        assert!(matches!(r, Err(TelegramError::NoChats)));
    }
}
