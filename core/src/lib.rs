//! kimp-core: the deterministic kimchi-premium engine.
//!
//! One pure state machine turns market and execution events into actions: order
//! requests for both legs of a hedged pair, journal records, telemetry and alerts.
//! No I/O, no threads, no clock of its own (time is an argument), and no allocation
//! after [`Engine::new`]. Backtest, paper trading, simulation tests and live trading
//! drive the same code.
//!
//! ```
//! use kimp_core::prelude::*;
//!
//! let markets = kimp_core::testkit::btc_markets();
//! let mut engine = Engine::new(EngineConfig::default(), &markets, 1).unwrap();
//! let mut out = Outbox::with_capacity(256);
//! engine.on_event(Nanos::from_ms(1), &Event::Control(Control::ReconcileDone), &mut out);
//! assert_eq!(engine.trading_state(), TradingState::Active);
//! ```

pub mod action;
pub mod book;
pub mod config;
pub mod engine;
pub mod event;
pub mod instrument;
pub mod order;
pub mod pair;
pub mod premium;
pub mod risk;
pub mod testkit;
pub mod units;

pub use engine::{CoinSpec, Engine, Markets, Stats};

/// The names most users need.
pub mod prelude {
    pub use crate::action::{Action, Alert, Outbox, Purpose, Record, Telemetry, TradingState};
    pub use crate::book::{Book, BookState, SeqRule};
    pub use crate::config::{Direction, EngineConfig, FundingFilter, RiskConfig, StrategyConfig};
    pub use crate::engine::{CoinSpec, Engine, Markets};
    pub use crate::event::{
        Balance, Bbo, BookSnapshot, Control, DepthDiff, Event, Funding, FxQuote, FxSource, Level,
        OrderEvent, OrderEventKind, RejectReason, Side,
    };
    pub use crate::instrument::{Instrument, InstrumentId, Symbol, TickRule, Venue};
    pub use crate::order::{ClientId, Leg, OrderKind, OrderRequest, OrderState};
    pub use crate::pair::PairState;
    pub use crate::units::{Krw, Nanos, Price, Qty, Quote, Usdt};
}
