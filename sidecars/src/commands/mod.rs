//! Operator commands, shared by the Telegram bot and `kimp ctl`: parsing, confirmation
//! rules and answers (pure: no network, time passed in). Both front ends parse with
//! [`Cmd`], keep their confirmations in a [`Commands`] and answer with [`format`]; only
//! the way a command is written in an answer differs ([`Syntax`]).
//!
//! `stop` acts at once: stopping must be easy. `resume` and `flatten` change positions
//! or re-arm trading, so they only ask; the same command followed by `confirm`, from the
//! same chat (for `kimp ctl`: the same user) within the confirmation window, does it
//! (`/resume confirm`, `/flatten BTC confirm`, `/flatten confirm` for all coins).

pub mod format;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kimp_core::event::Control;
use teloxide::utils::command::{BotCommands, ParseError};

use crate::status::StatusBoard;

/// How the operator types a command, for answers that name one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Syntax {
    /// `/resume confirm`.
    Telegram,
    /// `kimp ctl resume confirm`.
    Ctl,
}

impl Syntax {
    /// `words` (`resume confirm`) as the operator would type them.
    pub fn cmd(self, words: &str) -> String {
        match self {
            Syntax::Telegram => format!("/{words}"),
            Syntax::Ctl => format!("kimp ctl {words}"),
        }
    }

    /// The answer to something that is not a command.
    pub fn unknown(self) -> String {
        match self {
            Syntax::Telegram => "Unknown command or arguments; /help lists them.".into(),
            Syntax::Ctl => "Unknown command or arguments; kimp ctl --help lists them.".into(),
        }
    }
}

/// The answer when the engine's control channel did not take a control.
pub fn failed(c: Control) -> String {
    format!("FAILED: the engine did not take {c:?}; retry.")
}

/// The commands (parsed by teloxide's `BotCommands` derive).
#[derive(BotCommands, Clone, Debug, PartialEq, Eq)]
#[command(rename_rule = "lowercase", description = "kimp bot commands:")]
pub enum Cmd {
    /// Halt new entries now.
    #[command(description = "halt new entries now (hedges and cancels continue)")]
    Stop,
    /// Re-arm after a halt (asks for confirmation).
    #[command(description = "re-arm trading; confirm with /resume confirm")]
    Resume(String),
    /// Trading state and counters.
    #[command(description = "trading state, open pairs, realized PnL")]
    Status,
    /// Open pairs and their legs.
    #[command(description = "open pairs and their legs")]
    Position,
    /// Latest premium.
    #[command(description = "latest premium: /kimp or /kimp BTC")]
    Kimp(String),
    /// Realised PnL.
    #[command(description = "realized PnL, split and today")]
    Pnl,
    /// Latency percentiles per stage.
    #[command(description = "latency percentiles per stage")]
    Latency,
    /// Book ages, gaps, venue and store status.
    #[command(description = "book ages, gaps, venues, store")]
    Health,
    /// Close pairs at market, then halt (asks for confirmation).
    #[command(
        description = "close pairs at market then halt: /flatten [coin], then /flatten [coin] confirm"
    )]
    Flatten(String),
    /// This list.
    #[command(description = "this list")]
    Help,
}

/// What a command asks the bot to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Answer with text.
    Reply(String),
    /// Put a control in the engine's channel, then answer with text.
    Control(Control, String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pending {
    Resume,
    Flatten(Option<u16>),
}

impl Cmd {
    /// Parses a `kimp ctl` request line (`resume confirm`, `flatten BTC`): the Telegram
    /// command without its slash.
    pub fn parse_line(line: &str) -> Result<Cmd, ParseError> {
        Cmd::parse(&format!("/{}", line.trim()), "")
    }
}

/// Per-chat confirmation state.
#[derive(Debug)]
pub struct Commands {
    window: Duration,
    syntax: Syntax,
    pending: HashMap<i64, (Pending, Instant)>,
}

impl Commands {
    /// Confirmations expire after `window`; answers name commands in `syntax`.
    pub fn new(window: Duration, syntax: Syntax) -> Self {
        Self { window, syntax, pending: HashMap::new() }
    }

    /// How answers name commands.
    pub fn syntax(&self) -> Syntax {
        self.syntax
    }

    fn confirm(&mut self, chat: i64, want: Pending, now: Instant) -> bool {
        match self.pending.remove(&chat) {
            Some((p, t)) if p == want && now.duration_since(t) <= self.window => true,
            Some(other) => {
                // A confirmation for something else leaves the other request standing.
                self.pending.insert(chat, other);
                false
            }
            None => false,
        }
    }

    /// Handles a command from an allow-listed chat.
    pub fn handle(&mut self, chat: i64, cmd: Cmd, sb: &StatusBoard, now: Instant) -> Outcome {
        let secs = self.window.as_secs();
        let sx = self.syntax;
        match cmd {
            Cmd::Stop => Outcome::Control(
                Control::Stop,
                format!(
                    "STOP sent: no new entries. Open pairs keep their hedges. {} to re-arm.",
                    sx.cmd("resume")
                ),
            ),
            Cmd::Resume(arg) => match arg.trim() {
                "" => {
                    self.pending.insert(chat, (Pending::Resume, now));
                    Outcome::Reply(format!(
                        "Re-arm trading? Send {} within {secs} s.",
                        sx.cmd("resume confirm")
                    ))
                }
                "confirm" if self.confirm(chat, Pending::Resume, now) => {
                    Outcome::Control(Control::Resume, "RESUME sent: trading re-armed.".into())
                }
                "confirm" => Outcome::Reply(format!(
                    "Nothing to confirm (or it expired): send {} first.",
                    sx.cmd("resume")
                )),
                _ => Outcome::Reply(format!(
                    "Usage: {}, then {}",
                    sx.cmd("resume"),
                    sx.cmd("resume confirm")
                )),
            },
            Cmd::Flatten(arg) => self.flatten(chat, &arg, sb, now),
            Cmd::Status => Outcome::Reply(format::status(sb)),
            Cmd::Position => Outcome::Reply(format::position(sb)),
            Cmd::Kimp(arg) => match arg.trim() {
                "" => Outcome::Reply(format::kimp(sb, None)),
                c => match sb.names().coin_index(c) {
                    Some(i) => Outcome::Reply(format::kimp(sb, Some(i))),
                    None => Outcome::Reply(unknown_coin(c, sb)),
                },
            },
            Cmd::Pnl => Outcome::Reply(format::pnl(sb)),
            Cmd::Latency => Outcome::Reply(format::latency(sb)),
            Cmd::Health => Outcome::Reply(format::health(sb)),
            Cmd::Help => match sx {
                Syntax::Telegram => Outcome::Reply(Cmd::descriptions().to_string()),
                Syntax::Ctl => Outcome::Reply("kimp ctl --help lists the commands.".into()),
            },
        }
    }

    fn flatten(&mut self, chat: i64, arg: &str, sb: &StatusBoard, now: Instant) -> Outcome {
        let sx = self.syntax;
        let mut words: Vec<&str> = arg.split_whitespace().collect();
        let confirm = words.last() == Some(&"confirm");
        if confirm {
            words.pop();
        }
        let target = match words.as_slice() {
            [] => None,
            [c] => match sb.names().coin_index(c) {
                Some(i) => Some(i),
                None => return Outcome::Reply(unknown_coin(c, sb)),
            },
            _ => {
                return Outcome::Reply(format!(
                    "Usage: {}, then {}",
                    sx.cmd("flatten [coin]"),
                    sx.cmd("flatten [coin] confirm")
                ));
            }
        };
        let what = match target {
            None => "ALL open pairs".to_string(),
            Some(i) => format!("{} pairs", sb.names().coin(i)),
        };
        let cmd = match target {
            None => sx.cmd("flatten confirm"),
            Some(i) => sx.cmd(&format!("flatten {} confirm", sb.names().coin(i))),
        };
        if !confirm {
            self.pending.insert(chat, (Pending::Flatten(target), now));
            return Outcome::Reply(format!(
                "Close {what} at market and halt? Send {cmd} within {} s.",
                self.window.as_secs()
            ));
        }
        if self.confirm(chat, Pending::Flatten(target), now) {
            Outcome::Control(
                Control::Flatten(target),
                format!("FLATTEN sent: closing {what}, then halting."),
            )
        } else {
            Outcome::Reply(format!(
                "Nothing to confirm (or it expired): send {} first.",
                sx.cmd("flatten [coin]")
            ))
        }
    }
}

fn unknown_coin(c: &str, sb: &StatusBoard) -> String {
    let n = sb.names();
    let list: Vec<&str> = (0..n.coin_count() as u16).map(|i| n.coin(i)).collect();
    format!("Unknown coin {c:?}; coins: {}", list.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn board() -> StatusBoard {
        StatusBoard::new(Arc::new(crate::names::Names::from_markets(
            &kimp_core::testkit::btc_markets(),
        )))
    }

    fn parse(s: &str) -> Cmd {
        Cmd::parse(s, "kimp_bot").unwrap()
    }

    #[test]
    fn parses_commands_with_and_without_bot_name() {
        assert_eq!(parse("/stop"), Cmd::Stop);
        assert_eq!(parse("/stop@kimp_bot"), Cmd::Stop);
        assert_eq!(parse("/kimp btc"), Cmd::Kimp("btc".into()));
        assert_eq!(parse("/flatten BTC confirm"), Cmd::Flatten("BTC confirm".into()));
        assert!(Cmd::parse("/stop@other_bot", "kimp_bot").is_err());
        assert!(Cmd::parse("/launch", "kimp_bot").is_err());
    }

    #[test]
    fn resume_needs_a_fresh_confirmation_from_the_same_chat() {
        let sb = board();
        let mut c = Commands::new(Duration::from_secs(60), Syntax::Telegram);
        let t = Instant::now();
        let confirm = || parse("/resume confirm");
        assert!(matches!(c.handle(1, confirm(), &sb, t), Outcome::Reply(_)), "no request yet");
        assert!(matches!(c.handle(1, parse("/resume"), &sb, t), Outcome::Reply(_)));
        assert!(matches!(c.handle(2, confirm(), &sb, t), Outcome::Reply(_)), "other chat");
        assert_eq!(
            c.handle(1, confirm(), &sb, t + Duration::from_secs(5)),
            Outcome::Control(Control::Resume, "RESUME sent: trading re-armed.".into())
        );
        assert!(matches!(c.handle(1, confirm(), &sb, t), Outcome::Reply(_)), "used up");
        c.handle(1, parse("/resume"), &sb, t);
        assert!(
            matches!(c.handle(1, confirm(), &sb, t + Duration::from_secs(61)), Outcome::Reply(_)),
            "expired"
        );
    }

    #[test]
    fn flatten_confirmation_must_name_the_same_target() {
        let sb = board();
        let mut c = Commands::new(Duration::from_secs(60), Syntax::Telegram);
        let t = Instant::now();
        let Outcome::Reply(ask) = c.handle(5, parse("/flatten btc"), &sb, t) else { panic!() };
        assert!(ask.contains("/flatten BTC confirm"), "{ask}");
        assert!(
            matches!(c.handle(5, parse("/flatten confirm"), &sb, t), Outcome::Reply(_)),
            "all ≠ BTC"
        );
        assert!(matches!(
            c.handle(5, parse("/flatten BTC confirm"), &sb, t),
            Outcome::Control(Control::Flatten(Some(0)), _)
        ));
        c.handle(5, parse("/flatten"), &sb, t);
        assert!(matches!(
            c.handle(5, parse("/flatten confirm"), &sb, t),
            Outcome::Control(Control::Flatten(None), _)
        ));
        let Outcome::Reply(r) = c.handle(5, parse("/flatten DOGE"), &sb, t) else { panic!() };
        assert!(r.contains("coins: BTC"), "{r}");
        assert_eq!(
            c.handle(5, parse("/stop"), &sb, t),
            Outcome::Control(
                Control::Stop,
                "STOP sent: no new entries. Open pairs keep their hedges. /resume to re-arm."
                    .into()
            )
        );
    }

    #[test]
    fn ctl_lines_parse_like_telegram_commands_and_answers_name_ctl_commands() {
        let sb = board();
        assert_eq!(Cmd::parse_line("stop\n").unwrap(), Cmd::Stop);
        assert_eq!(Cmd::parse_line(" flatten BTC confirm").unwrap(), parse("/flatten BTC confirm"));
        assert!(Cmd::parse_line("launch").is_err());
        let mut c = Commands::new(Duration::from_secs(60), Syntax::Ctl);
        let t = Instant::now();
        let Outcome::Reply(ask) = c.handle(0, Cmd::parse_line("resume").unwrap(), &sb, t) else {
            panic!()
        };
        assert_eq!(ask, "Re-arm trading? Send kimp ctl resume confirm within 60 s.");
        let Outcome::Reply(ask) = c.handle(0, Cmd::parse_line("flatten btc").unwrap(), &sb, t)
        else {
            panic!()
        };
        assert!(ask.contains("Send kimp ctl flatten BTC confirm within 60 s"), "{ask}");
        let Outcome::Control(Control::Stop, r) = c.handle(0, Cmd::Stop, &sb, t) else { panic!() };
        assert!(r.ends_with("kimp ctl resume to re-arm."), "{r}");
    }
}
