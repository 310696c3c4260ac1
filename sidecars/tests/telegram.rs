//! The Telegram bot against a fake Bot API on loopback: an allow-listed `/stop` halts the
//! engine exactly once, a stranger gets nothing and is counted, alerts become
//! `sendMessage` calls, `/resume` needs its confirmation, and the token never reaches the
//! log (captured at TRACE, dependencies' `log` records included).

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::bounded;
use kimp_core::action::{HaltReason, Outbox, TradingState};
use kimp_core::config::EngineConfig;
use kimp_core::engine::Engine;
use kimp_core::event::{Control, Event};
use kimp_core::units::Nanos;
use kimp_sidecars::alerts::{AlertMsg, Severity};
use kimp_sidecars::names::Names;
use kimp_sidecars::status::StatusBoard;
use kimp_sidecars::telegram::{BotToken, Telegram, TelegramConfig};
use support::fake_bot::FakeBot;
use support::wait_until;

const TOKEN: &str = "7301122334:AAH-canary-TOKEN-do-not-log-9f8e7d";

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[test]
fn bot_obeys_only_allowed_chats_pushes_alerts_and_never_logs_the_token() {
    let cap = Capture::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(cap.clone())
        .init();

    let fake = FakeBot::start();
    // One update per getUpdates, so each /stop's latency is its own.
    fake.batch.store(1, std::sync::atomic::Ordering::Relaxed);
    fake.push_text(111, "/stop");
    fake.push_text(999, "/stop");
    fake.push_text(999, "/status");

    let markets = kimp_core::testkit::btc_markets();
    let board = Arc::new(StatusBoard::new(Arc::new(Names::from_markets(&markets))));
    let (ctl_tx, ctl_rx) = bounded(64);
    let (alert_tx, alert_rx) = bounded(16);
    let cfg = TelegramConfig {
        api_url: fake.url.clone(),
        allowed_chat_ids: vec![111],
        poll_timeout_s: 1,
        ..TelegramConfig::default()
    };
    let bot = Telegram::start(cfg, BotToken::new(TOKEN), ctl_tx, board.clone(), alert_rx).unwrap();
    let stats = bot.stats().clone();

    let mut engine = Engine::new(EngineConfig::default(), &markets, 1).unwrap();
    let mut out = Outbox::with_capacity(256);
    engine.on_event(Nanos(1), &Event::Control(Control::ReconcileDone), &mut out);
    assert_eq!(engine.trading_state(), TradingState::Active);

    // The allowed /stop reaches the engine and halts it.
    let c = ctl_rx.recv_timeout(Duration::from_secs(10)).expect("no control from the bot");
    assert_eq!(c, Control::Stop);
    engine.on_event(Nanos(2), &Event::Control(c), &mut out);
    assert_eq!(engine.trading_state(), TradingState::halted(HaltReason::Operator));

    // The stranger's two messages are consumed, counted, and produce nothing.
    use std::sync::atomic::Ordering::Relaxed;
    assert!(wait_until(Duration::from_secs(10), || fake.pending() == 0
        && stats.unauthorized.load(Relaxed) == 2));
    std::thread::sleep(Duration::from_millis(200));
    assert!(ctl_rx.try_recv().is_err(), "a stranger's /stop must not reach the engine");
    assert!(fake.sent().iter().all(|m| m.chat_id == 111), "{:?}", fake.sent());
    assert!(fake.sent().iter().any(|m| m.text.starts_with("STOP sent")));

    // An alert becomes a sendMessage to the allowed chat.
    let text = "HALTED (operator): no new entries; hedges and cancels continue. /resume to re-arm.";
    alert_tx.send(AlertMsg::new(Severity::Critical, "halt:operator", text)).unwrap();
    assert!(wait_until(Duration::from_secs(10), || fake
        .sent()
        .iter()
        .any(|m| m.chat_id == 111 && m.text == text)));

    // /resume asks; only the confirmation re-arms.
    fake.push_text(111, "/resume");
    assert!(wait_until(Duration::from_secs(10), || fake
        .sent()
        .iter()
        .any(|m| m.text.starts_with("Re-arm trading?"))));
    assert!(ctl_rx.try_recv().is_err());
    fake.push_text(111, "/resume confirm");
    let c = ctl_rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(c, Control::Resume);
    engine.on_event(Nanos(3), &Event::Control(c), &mut out);
    assert_eq!(engine.trading_state(), TradingState::Active);

    // Read-only commands answer from the board.
    fake.push_text(111, "/status");
    assert!(wait_until(Duration::from_secs(10), || fake
        .sent()
        .iter()
        .any(|m| m.text.starts_with("Trading: "))));

    // /stop latency: update received by the bot → Control::Stop in the channel.
    for _ in 0..100 {
        fake.push_text(111, "/stop");
        assert_eq!(ctl_rx.recv_timeout(Duration::from_secs(10)).unwrap(), Control::Stop);
    }
    // The bot records the sample just after the send the test has already seen.
    assert!(wait_until(Duration::from_secs(5), || stats.stop_latencies_ns().len() == 101));
    let mut lat = stats.stop_latencies_ns();
    lat.sort_unstable();
    println!(
        "/stop receive->channel latency over {} updates: p50 {} ns, p99 {} ns, max {} ns",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat[lat.len() - 1]
    );
    assert!(percentile(&lat, 0.5) < 1_000_000, "p50 above the 1 ms target: {lat:?}");

    bot.shutdown();
    let methods = fake.methods();
    assert!(methods.contains(&"getme".to_string()) && methods.contains(&"getupdates".to_string()));
    assert!(fake.all_paths_carry(TOKEN), "the bot must have used the token");
    let logs = String::from_utf8_lossy(&cap.0.lock().unwrap()).into_owned();
    assert!(logs.contains("outside the allow-list"), "log capture is not working");
    // The capture includes the HTTP stack's own records (reqwest logs through `log`).
    assert!(
        logs.contains("reqwest::connect") && logs.contains("hyper_util"),
        "dependency logs not captured"
    );
    assert!(!logs.contains(TOKEN) && !logs.contains("AAH-canary"), "token leaked into the log");
    assert!(fake.sent().iter().all(|m| !m.text.contains("canary")));
    let secret_part = TOKEN.split(':').nth(1).unwrap();
    assert!(!format!("{:?}", BotToken::new(TOKEN)).contains(secret_part));
}
