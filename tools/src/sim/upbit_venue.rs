//! The simulated Upbit exchange: KRW markets, orders with `identifier`, balances, fills
//! and the private `myOrder`/`myAsset` events. Pure: time is an argument.

use std::collections::{BTreeMap, HashMap, HashSet};

use kimp_core::instrument::TickRule;
use kimp_core::units::{Price, apply_rate_ceil, parse_decimal};

use super::account::UpbitAccount;
use super::book::{BookSide, Levels, Px, Qt, SimBook, notional};
use super::events::{MdEvent, Out, UpbitTicker, UpbitTrade};
use super::json::{dec, kst_iso, s};
use super::market::Shaper;
use super::rng::Rng;

/// Minimum order total in KRW (fixed-point).
pub const MIN_TOTAL: i64 = 5_000 * 100_000_000;

/// An Upbit error answer: HTTP status and `{"error":{"name","message"}}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpbitError {
    /// HTTP status.
    pub status: u16,
    /// `error.name`.
    pub name: &'static str,
    /// `error.message`.
    pub message: String,
}

impl UpbitError {
    /// A new error.
    pub fn new(status: u16, name: &'static str, message: impl Into<String>) -> Self {
        Self { status, name, message: message.into() }
    }

    /// The body.
    pub fn body(&self) -> String {
        format!("{{\"error\":{{\"name\":{},\"message\":{}}}}}", s(self.name), s(&self.message))
    }
}

/// A parsed `POST /v1/orders` body (strings as sent).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UpbitOrderReq {
    /// `market`.
    pub market: Option<String>,
    /// `side`.
    pub side: Option<String>,
    /// `volume`.
    pub volume: Option<String>,
    /// `price`.
    pub price: Option<String>,
    /// `ord_type`.
    pub ord_type: Option<String>,
    /// `time_in_force`.
    pub time_in_force: Option<String>,
    /// `identifier`.
    pub identifier: Option<String>,
}

/// One fill of an order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpbitFill {
    /// Trade uuid.
    pub uuid: String,
    /// Price.
    pub px: Px,
    /// Volume.
    pub qty: Qt,
    /// KRW.
    pub funds: i64,
    /// Time.
    pub ts: u64,
}

/// An order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpbitOrder {
    /// Order uuid.
    pub uuid: String,
    /// Account index.
    pub account: usize,
    /// Market code.
    pub market: String,
    /// Buy.
    pub bid: bool,
    /// `limit`, `price`, `market`, `best`.
    pub ord_type: String,
    /// Unit price (limit) or KRW total (price/best bid).
    pub price: Option<Px>,
    /// Volume (absent for price orders).
    pub volume: Option<Qt>,
    /// `ioc`, `fok`, `post_only`.
    pub tif: Option<String>,
    /// Client identifier.
    pub identifier: Option<String>,
    /// `wait`, `done`, `cancel`.
    pub state: &'static str,
    /// Creation time.
    pub created: u64,
    /// Filled volume.
    pub executed: Qt,
    /// KRW traded.
    pub funds: i64,
    /// Fee reserved at creation.
    pub reserved_fee: i64,
    /// Fee paid.
    pub paid_fee: i64,
    /// Amount still locked (KRW for bids, coin for asks).
    pub locked: i64,
    /// Fills.
    pub fills: Vec<UpbitFill>,
}

impl UpbitOrder {
    fn remaining(&self) -> Qt {
        self.volume.map(|v| v - self.executed).unwrap_or(0)
    }

    /// REST JSON (`POST /v1/orders`, `GET /v1/order` with `trades`), fixture key order.
    pub fn json(&self, with_trades: bool) -> String {
        let mut o = String::from("{");
        o += &format!(
            "\"uuid\":{},\"side\":{},\"ord_type\":{},",
            s(&self.uuid),
            s(side(self.bid)),
            s(&self.ord_type)
        );
        if let Some(p) = self.price {
            o += &format!("\"price\":{},", s(&dec(p)));
        }
        o += &format!(
            "\"state\":{},\"market\":{},\"created_at\":{},",
            s(self.state),
            s(&self.market),
            s(&kst_iso(self.created))
        );
        if let Some(v) = self.volume {
            o += &format!(
                "\"volume\":{},\"remaining_volume\":{},",
                s(&dec(v)),
                s(&dec(self.remaining()))
            );
        }
        o += &format!(
            "\"prevented_volume\":\"0\",\"reserved_fee\":{},\"remaining_fee\":{},\"paid_fee\":{},\"locked\":{},\"prevented_locked\":\"0\",\"executed_volume\":{},\"trades_count\":{}",
            s(&dec(self.reserved_fee)),
            s(&dec(self.remaining_fee())),
            s(&dec(self.paid_fee)),
            s(&dec(self.locked)),
            s(&dec(self.executed)),
            self.fills.len()
        );
        if let Some(t) = &self.tif {
            o += &format!(",\"time_in_force\":{}", s(t));
        }
        if let Some(i) = &self.identifier {
            o += &format!(",\"identifier\":{}", s(i));
        }
        if with_trades {
            o += ",\"trades\":[";
            for (i, f) in self.fills.iter().enumerate() {
                if i > 0 {
                    o.push(',');
                }
                o += &format!(
                    "{{\"market\":{},\"uuid\":{},\"price\":{},\"volume\":{},\"funds\":{},\"trend\":{},\"created_at\":{},\"side\":{}}}",
                    s(&self.market),
                    s(&f.uuid),
                    s(&dec(f.px)),
                    s(&dec(f.qty)),
                    s(&dec(f.funds)),
                    s(if self.bid { "up" } else { "down" }),
                    s(&kst_iso(f.ts)),
                    s(side(self.bid))
                );
            }
            o.push(']');
        }
        o.push('}');
        o
    }

    fn remaining_fee(&self) -> i64 {
        if self.state == "done" { 0 } else { (self.reserved_fee - self.paid_fee).max(0) }
    }

    /// `myOrder` DEFAULT JSON; `fill` = the trade this event reports (state `trade`).
    pub fn my_order_json(&self, fill: Option<(&UpbitFill, i64)>, ts: u64) -> String {
        let avg = if self.executed > 0 {
            ((self.funds as i128 * 100_000_000) / self.executed as i128) as i64
        } else {
            0
        };
        let (state, trade_uuid, px, vol, trade_fee, is_maker, trade_ts) = match fill {
            Some((f, fee)) => {
                ("trade", s(&f.uuid), f.px, f.qty, dec(fee), "false".to_owned(), f.ts.to_string())
            }
            None => (
                self.state,
                "null".to_owned(),
                self.price.unwrap_or(0),
                self.volume.unwrap_or(0),
                "null".to_owned(),
                "null".to_owned(),
                "null".to_owned(),
            ),
        };
        format!(
            "{{\"type\":\"myOrder\",\"code\":{},\"uuid\":{},\"ask_bid\":{},\"order_type\":{},\"state\":{},\"trade_uuid\":{},\"price\":{},\"avg_price\":{},\"volume\":{},\"remaining_volume\":{},\"executed_volume\":{},\"trades_count\":{},\"reserved_fee\":{},\"remaining_fee\":{},\"paid_fee\":{},\"locked\":{},\"executed_funds\":{},\"time_in_force\":{},\"trade_fee\":{},\"is_maker\":{},\"identifier\":{},\"smp_type\":null,\"prevented_volume\":0,\"prevented_locked\":0,\"trade_timestamp\":{},\"order_timestamp\":{},\"timestamp\":{},\"stream_type\":\"REALTIME\"}}",
            s(&self.market),
            s(&self.uuid),
            s(if self.bid { "BID" } else { "ASK" }),
            s(&self.ord_type),
            s(state),
            trade_uuid,
            dec(px),
            dec(avg),
            dec(vol),
            dec(self.remaining()),
            dec(self.executed),
            self.fills.len(),
            dec(self.reserved_fee),
            dec(self.remaining_fee()),
            dec(self.paid_fee),
            dec(self.locked),
            dec(self.funds),
            self.tif.as_deref().map(s).unwrap_or_else(|| "null".into()),
            trade_fee,
            is_maker,
            self.identifier.as_deref().map(s).unwrap_or_else(|| "null".into()),
            trade_ts,
            self.created,
            ts
        )
    }
}

fn side(bid: bool) -> &'static str {
    if bid { "bid" } else { "ask" }
}

/// Length of one bucket of the rolling 24 h window, ms.
const BUCKET_MS: u64 = 60_000;
const DAY_MS: u64 = 86_400_000;

/// Trade totals of one window bucket (wide: a busy market's KRW turnover in fixed-point
/// 1e-8 passes `i64::MAX` within a day).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Bucket {
    start_ms: u64,
    volume: i128,
    price: i128,
}

/// Trade statistics of a market as Upbit's ticker reports them: the UTC day so far
/// (`opening/high/low_price`, `acc_trade_*`; reset at 00:00 UTC, when the last price
/// becomes `prev_closing_price`) and the rolling 24 h window (`acc_trade_*_24h`, kept in
/// one-minute buckets). Sums are `i128`, so no run length can overflow them.
#[derive(Clone, Debug, Default)]
pub struct DayStats {
    /// Previous close (the mid at start, then the last price of the previous UTC day).
    pub prev_close: Px,
    /// Day open.
    pub open: Px,
    /// Day high.
    pub high: Px,
    /// Day low.
    pub low: Px,
    /// Last trade price.
    pub last: Px,
    /// UTC day (days since the epoch) the day fields describe; `None` before any trade.
    pub day: Option<u64>,
    /// Volume since 00:00 UTC.
    pub acc_volume: i128,
    /// KRW since 00:00 UTC.
    pub acc_price: i128,
    /// Seller-initiated volume since 00:00 UTC.
    pub acc_ask: i128,
    /// Buyer-initiated volume since 00:00 UTC.
    pub acc_bid: i128,
    /// Volume over the last 24 h.
    pub volume_24h: i128,
    /// KRW over the last 24 h.
    pub price_24h: i128,
    window: std::collections::VecDeque<Bucket>,
    /// Trades so far (sequential id suffix).
    pub n: u64,
}

impl DayStats {
    /// Adds one trade at `now`: rolls the UTC day and the 24 h window forward first.
    pub fn record(&mut self, now: u64, px: Px, qty: Qt, bid: bool) {
        let day = now / DAY_MS;
        if self.day != Some(day) {
            if self.day.is_some() && self.last > 0 {
                self.prev_close = self.last;
            }
            self.day = Some(day);
            self.open = px;
            self.high = px;
            self.low = px;
            self.acc_volume = 0;
            self.acc_price = 0;
            self.acc_ask = 0;
            self.acc_bid = 0;
            if self.prev_close == 0 {
                self.prev_close = px;
            }
        }
        self.high = self.high.max(px);
        self.low = self.low.min(px);
        self.last = px;
        let (q, krw) = (qty as i128, notional(px, qty) as i128);
        self.acc_volume += q;
        self.acc_price += krw;
        if bid {
            self.acc_bid += q;
        } else {
            self.acc_ask += q;
        }
        self.expire(now);
        let start = now - now % BUCKET_MS;
        match self.window.back_mut() {
            Some(b) if b.start_ms == start => {
                b.volume += q;
                b.price += krw;
            }
            _ => self.window.push_back(Bucket { start_ms: start, volume: q, price: krw }),
        }
        self.volume_24h += q;
        self.price_24h += krw;
        self.n += 1;
    }

    /// Drops the buckets that ended 24 h or more before `now`.
    fn expire(&mut self, now: u64) {
        while let Some(b) = self.window.front() {
            if b.start_ms + BUCKET_MS + DAY_MS > now {
                break;
            }
            self.volume_24h -= b.volume;
            self.price_24h -= b.price;
            self.window.pop_front();
        }
    }

    /// Buckets held by the 24 h window (at most 1 441).
    pub fn window_len(&self) -> usize {
        self.window.len()
    }
}

/// One KRW market.
#[derive(Clone, Debug)]
pub struct UpbitMarket {
    /// `KRW-BTC`.
    pub code: String,
    /// `BTC`.
    pub base: String,
    /// The book.
    pub book: SimBook,
    /// Book shaper (None when replayed).
    pub shaper: Option<Shaper>,
    /// Last book sent (top 30).
    pub last_sent: (Levels, Levels),
    /// Time of the last book sent.
    pub last_sent_ts: u64,
    /// Day statistics.
    pub stats: DayStats,
    /// Last trade and ticker (subscription snapshots).
    pub last_trade: Option<(UpbitTrade, UpbitTicker)>,
}

impl UpbitMarket {
    /// A market with an empty book.
    pub fn new(code: &str, shaper: Option<Shaper>, seed: u64) -> Self {
        Self {
            code: code.to_owned(),
            base: code.trim_start_matches("KRW-").to_owned(),
            book: SimBook::new(0, seed),
            shaper,
            last_sent: (Vec::new(), Vec::new()),
            last_sent_ts: 0,
            stats: DayStats::default(),
            last_trade: None,
        }
    }

    /// Records a trade and returns the `trade` and `ticker` events.
    pub fn record_trade(&mut self, now: u64, px: Px, qty: Qt, bid: bool) -> [MdEvent; 2] {
        self.stats.record(now, px, qty, bid);
        let st = &self.stats;
        let best_bid = self.book.best_bid().unwrap_or((0, 0));
        let best_ask = self.book.best_ask().unwrap_or((0, 0));
        let trade = UpbitTrade {
            code: self.code.clone(),
            ts: now,
            trade_ts: now,
            px,
            qty,
            bid,
            prev_close: st.prev_close,
            seq_id: now * 10_000 + st.n % 10_000,
            best_ask,
            best_bid,
        };
        let ticker = UpbitTicker {
            code: self.code.clone(),
            ts: now,
            open: st.open,
            high: st.high,
            low: st.low,
            last: px,
            prev_close: st.prev_close,
            last_qty: qty,
            acc_volume: st.acc_volume,
            acc_price: st.acc_price,
            acc_volume_24h: st.volume_24h,
            acc_price_24h: st.price_24h,
            acc_ask: st.acc_ask,
            acc_bid: st.acc_bid,
            trade_ts: now,
            bid,
        };
        self.last_trade = Some((trade.clone(), ticker.clone()));
        [MdEvent::UpbitTrade(trade), MdEvent::UpbitTicker(ticker)]
    }
}

/// The Upbit venue.
#[derive(Debug)]
pub struct UpbitVenue {
    /// Markets by code.
    pub markets: BTreeMap<String, UpbitMarket>,
    /// Every order ever accepted.
    pub orders: Vec<UpbitOrder>,
    by_uuid: HashMap<String, usize>,
    by_ident: HashMap<(usize, String), usize>,
    used_idents: HashSet<(usize, String)>,
    used_nonces: HashSet<(usize, String)>,
    /// Accounts.
    pub accounts: Vec<UpbitAccount>,
    /// Fee, parts per 1e8.
    pub fee_e8: i64,
    ids: Rng,
}

/// Whether a taker order may fill fully (fault `partial_fill` caps it).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FillCap(pub f64);

impl UpbitVenue {
    /// A venue with no markets.
    pub fn new(accounts: Vec<UpbitAccount>, fee_e8: i64, seed: u64) -> Self {
        Self {
            markets: BTreeMap::new(),
            orders: Vec::new(),
            by_uuid: HashMap::new(),
            by_ident: HashMap::new(),
            used_idents: HashSet::new(),
            used_nonces: HashSet::new(),
            accounts,
            fee_e8,
            ids: Rng::stream(seed, 0x5550),
        }
    }

    /// Records a JWT nonce; false when it was used before by the same account.
    pub fn use_nonce(&mut self, account: usize, nonce: &str) -> bool {
        self.used_nonces.insert((account, nonce.to_owned()))
    }

    fn uuid(&mut self) -> String {
        let a = self.ids.next_u64();
        let b = self.ids.next_u64();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }

    /// Marks an identifier as used without an order (a refused order still uses it up).
    pub fn burn_identifier(
        &mut self,
        account: usize,
        ident: Option<&str>,
    ) -> Result<(), UpbitError> {
        if let Some(id) = ident
            && !self.used_idents.insert((account, id.to_owned()))
        {
            return Err(UpbitError::new(
                400,
                "duplicate_identifier",
                format!("identifier {id} has already been used"),
            ));
        }
        Ok(())
    }

    /// Finds an order by uuid or identifier.
    pub fn find(&self, account: usize, uuid: Option<&str>, ident: Option<&str>) -> Option<usize> {
        let i = match (uuid, ident) {
            (Some(u), _) => *self.by_uuid.get(u)?,
            (None, Some(id)) => *self.by_ident.get(&(account, id.to_owned()))?,
            _ => return None,
        };
        (self.orders[i].account == account).then_some(i)
    }

    /// Places an order (identifier already burnt by the caller).
    pub fn place(
        &mut self,
        now: u64,
        account: usize,
        req: &UpbitOrderReq,
        cap: FillCap,
        out: &mut Vec<Out>,
    ) -> Result<usize, UpbitError> {
        let bid = match req.side.as_deref() {
            Some("bid") => true,
            Some("ask") => false,
            _ => {
                return Err(UpbitError::new(
                    400,
                    "validation_error",
                    "side is missing, side does not have a valid value",
                ));
            }
        };
        let err_create = |m: &str| {
            UpbitError::new(400, if bid { "create_bid_error" } else { "create_ask_error" }, m)
        };
        let code = req.market.clone().unwrap_or_default();
        let Some(mkt) = self.markets.get(&code) else {
            return Err(UpbitError::new(
                400,
                "validation_error",
                "market does not have a valid value",
            ));
        };
        let base = mkt.base.clone();
        let num = |v: &Option<String>| -> Result<Option<i64>, UpbitError> {
            match v {
                None => Ok(None),
                Some(t) => match parse_decimal(t.as_bytes()) {
                    Some(x) if x > 0 => Ok(Some(x)),
                    _ => Err(UpbitError::new(
                        400,
                        "validation_error",
                        "price or volume does not have a valid value",
                    )),
                },
            }
        };
        let price = num(&req.price)?;
        let volume = num(&req.volume)?;
        let ord_type = req.ord_type.clone().unwrap_or_default();
        let tif = req.time_in_force.clone();
        if let Some(t) = &tif
            && !matches!(t.as_str(), "ioc" | "fok" | "post_only")
        {
            return Err(UpbitError::new(
                400,
                "validation_error",
                "time_in_force does not have a valid value",
            ));
        }
        match (ord_type.as_str(), bid) {
            ("limit", _) if price.is_some() && volume.is_some() => {}
            ("price", true) if price.is_some() && volume.is_none() && tif.is_none() => {}
            ("market", false) if volume.is_some() && price.is_none() && tif.is_none() => {}
            ("best", true) if price.is_some() && volume.is_none() => {}
            ("best", false) if volume.is_some() && price.is_none() => {}
            ("limit" | "price" | "market" | "best", _) => {
                return Err(err_create(
                    "주문 요청 정보가 올바르지 않습니다. (ord_type, price, volume)",
                ));
            }
            _ => {
                return Err(UpbitError::new(
                    400,
                    "validation_error",
                    "ord_type does not have a valid value",
                ));
            }
        }
        if ord_type == "best" && !matches!(tif.as_deref(), Some("ioc" | "fok")) {
            return Err(err_create("best orders need time_in_force ioc or fok"));
        }
        if ord_type == "limit"
            && let Some(p) = price
            && !TickRule::UpbitKrw.is_valid(Price(p))
        {
            return Err(UpbitError::new(
                400,
                if bid { "invalid_price_bid" } else { "invalid_price_ask" },
                "주문가격 단위를 잘못 입력하셨습니다.",
            ));
        }
        let book = &self.markets[&code].book;
        let total = match ord_type.as_str() {
            "limit" => notional(price.unwrap_or(0), volume.unwrap_or(0)),
            "price" | "best" if bid => price.unwrap_or(0),
            _ => notional(book.best_bid().map(|l| l.0).unwrap_or(0), volume.unwrap_or(0)),
        };
        if total < MIN_TOTAL {
            return Err(UpbitError::new(
                400,
                if bid { "under_min_total_bid" } else { "under_min_total_ask" },
                "최소주문금액 이상으로 주문해주세요",
            ));
        }
        let reserved_fee =
            if bid { apply_rate_ceil(total, self.fee_e8).unwrap_or(i64::MAX) } else { 0 };
        let (cur, lock) = if bid {
            ("KRW", total.saturating_add(reserved_fee))
        } else {
            (base.as_str(), volume.unwrap_or(0))
        };
        if !self.accounts[account].lock(cur, lock) {
            return Err(UpbitError::new(
                400,
                if bid { "insufficient_funds_bid" } else { "insufficient_funds_ask" },
                format!("주문가능한 금액({cur})이 부족합니다."),
            ));
        }
        let uuid = self.uuid();
        let idx = self.orders.len();
        self.orders.push(UpbitOrder {
            uuid: uuid.clone(),
            account,
            market: code.clone(),
            bid,
            ord_type: ord_type.clone(),
            price,
            volume,
            tif: tif.clone(),
            identifier: req.identifier.clone(),
            state: "wait",
            created: now,
            executed: 0,
            funds: 0,
            reserved_fee,
            paid_fee: 0,
            locked: lock,
            fills: Vec::new(),
        });
        self.by_uuid.insert(uuid, idx);
        if let Some(id) = &req.identifier {
            self.by_ident.insert((account, id.clone()), idx);
        }
        self.asset_event(account, now, out);
        let ratio = cap.0.clamp(0.0, 1.0);
        let capped = |q: Qt| ((q as f64 * ratio) as i64).min(q);
        match ord_type.as_str() {
            "limit" => {
                let v = volume.unwrap_or(0);
                let p = price.unwrap_or(0);
                let crosses = self.markets[&code].book.available(bid, Some(p)) > 0;
                if tif.as_deref() == Some("post_only") && crosses {
                    self.finish(idx, now, "cancel", out);
                    return Ok(idx);
                }
                if tif.as_deref() == Some("fok")
                    && (capped(v) < v || self.markets[&code].book.available(bid, Some(p)) < v)
                {
                    self.finish(idx, now, "cancel", out);
                    return Ok(idx);
                }
                self.take(idx, now, Some(p), capped(v), None, out);
                if tif.is_some() {
                    let st = if self.orders[idx].remaining() == 0 { "done" } else { "cancel" };
                    self.finish(idx, now, st, out);
                } else if self.orders[idx].remaining() == 0 {
                    self.finish(idx, now, "done", out);
                } else {
                    let j = self.orders[idx].my_order_json(None, now);
                    out.push(Out::UpbitPrivate { account, kind: "myOrder", json: j });
                }
            }
            "price" => {
                let budget = price.unwrap_or(0);
                let budget = (budget as f64 * ratio) as i64;
                self.take(idx, now, None, i64::MAX, Some(budget), out);
                let st =
                    if self.orders[idx].funds >= price.unwrap_or(0) { "done" } else { "cancel" };
                self.finish(idx, now, st, out);
            }
            "market" => {
                let v = volume.unwrap_or(0);
                self.take(idx, now, None, capped(v), None, out);
                let st = if self.orders[idx].remaining() == 0 { "done" } else { "cancel" };
                self.finish(idx, now, st, out);
            }
            _ => {
                // best: a limit IOC/FOK at the best opposite price.
                let b = &self.markets[&code].book;
                let limit = if bid { b.best_ask().map(|l| l.0) } else { b.best_bid().map(|l| l.0) };
                let budget =
                    if bid { Some((price.unwrap_or(0) as f64 * ratio) as i64) } else { None };
                let q = if bid { i64::MAX } else { capped(volume.unwrap_or(0)) };
                if tif.as_deref() == Some("fok")
                    && !bid
                    && b.available(false, limit) < volume.unwrap_or(0)
                {
                    self.finish(idx, now, "cancel", out);
                    return Ok(idx);
                }
                self.take(idx, now, limit, q, budget, out);
                let o = &self.orders[idx];
                let full = if bid { o.funds >= price.unwrap_or(0) } else { o.remaining() == 0 };
                self.finish(idx, now, if full { "done" } else { "cancel" }, out);
            }
        }
        Ok(idx)
    }

    /// Takes liquidity for order `idx` and books every fill.
    fn take(
        &mut self,
        idx: usize,
        now: u64,
        limit: Option<Px>,
        max_qty: Qt,
        budget: Option<i64>,
        out: &mut Vec<Out>,
    ) {
        let (code, bid) = (self.orders[idx].market.clone(), self.orders[idx].bid);
        let Some(m) = self.markets.get_mut(&code) else { return };
        // A bid's budget must leave room for the fee on what it spends.
        let fills = m.book.take(bid, limit, max_qty, budget, 1);
        for (px, q) in fills {
            self.book_fill(idx, now, px, q, out);
        }
    }

    /// Books one fill of order `idx` at `px` for `q`.
    pub fn book_fill(&mut self, idx: usize, now: u64, px: Px, q: Qt, out: &mut Vec<Out>) {
        let funds = notional(px, q);
        let fee = apply_rate_ceil(funds, self.fee_e8).unwrap_or(0);
        let trade_uuid = self.uuid();
        let o = &mut self.orders[idx];
        let acct = &mut self.accounts[o.account];
        let base = o.market.trim_start_matches("KRW-").to_owned();
        if o.bid {
            let used = (funds + fee).min(o.locked);
            let b = acct.get_mut("KRW");
            b.locked -= used.min(b.locked);
            o.locked -= used;
            acct.add_coin(&base, q, px);
        } else {
            let b = acct.get_mut(&base);
            b.locked -= q.min(b.locked);
            o.locked -= q.min(o.locked);
            acct.get_mut("KRW").free += funds - fee;
        }
        o.executed += q;
        o.funds += funds;
        o.paid_fee += fee;
        let f = UpbitFill { uuid: trade_uuid, px, qty: q, funds, ts: now };
        let json = o.my_order_json(Some((&f, fee)), now);
        o.fills.push(f);
        let (account, bid, code) = (o.account, o.bid, o.market.clone());
        out.push(Out::UpbitPrivate { account, kind: "myOrder", json });
        if let Some(m) = self.markets.get_mut(&code) {
            for e in m.record_trade(now, px, q, bid) {
                out.push(Out::Md(e));
            }
        }
        self.asset_event(account, now, out);
    }

    /// Ends an order: unlocks what is left and emits the final `myOrder`.
    pub fn finish(&mut self, idx: usize, now: u64, state: &'static str, out: &mut Vec<Out>) {
        let o = &mut self.orders[idx];
        if o.state != "wait" {
            return;
        }
        o.state = state;
        let cur =
            if o.bid { "KRW".to_owned() } else { o.market.trim_start_matches("KRW-").to_owned() };
        let left = o.locked;
        if state == "done" {
            o.locked = 0;
        }
        let account = o.account;
        let json = o.my_order_json(None, now);
        self.accounts[account].unlock(&cur, left);
        out.push(Out::UpbitPrivate { account, kind: "myOrder", json });
        self.asset_event(account, now, out);
    }

    /// Fills resting limit orders that the market moved through, at their own price.
    pub fn match_resting(&mut self, now: u64, out: &mut Vec<Out>) {
        let open: Vec<usize> = (0..self.orders.len())
            .filter(|&i| self.orders[i].state == "wait" && self.orders[i].ord_type == "limit")
            .collect();
        for idx in open {
            let (code, bid, px, left) = {
                let o = &self.orders[idx];
                (o.market.clone(), o.bid, o.price.unwrap_or(0), o.remaining())
            };
            let Some(m) = self.markets.get_mut(&code) else { continue };
            let fills = m.book.take(bid, Some(px), left, None, 1);
            let q: Qt = fills.iter().map(|f| f.1).sum();
            if q > 0 {
                self.book_fill(idx, now, px, q, out);
                if self.orders[idx].remaining() == 0 {
                    self.finish(idx, now, "done", out);
                }
            }
        }
    }

    /// Emits `myAsset` for an account.
    pub fn asset_event(&mut self, account: usize, now: u64, out: &mut Vec<Out>) {
        let uuid = self.uuid();
        let assets: Vec<String> = self.accounts[account]
            .balances
            .iter()
            .map(|(c, b)| {
                format!(
                    "{{\"currency\":{},\"balance\":{},\"locked\":{}}}",
                    s(c),
                    dec(b.free),
                    dec(b.locked)
                )
            })
            .collect();
        let json = format!(
            "{{\"type\":\"myAsset\",\"asset_uuid\":{},\"assets\":[{}],\"asset_timestamp\":{now},\"timestamp\":{now},\"stream_type\":\"REALTIME\"}}",
            s(&uuid),
            assets.join(",")
        );
        out.push(Out::UpbitPrivate { account, kind: "myAsset", json });
    }

    /// `GET /v1/accounts` body.
    pub fn accounts_json(&self, account: usize) -> String {
        let items: Vec<String> = self.accounts[account]
            .balances
            .iter()
            .map(|(c, b)| {
                format!(
                    "{{\"currency\":{},\"balance\":{},\"locked\":{},\"avg_buy_price\":{},\"avg_buy_price_modified\":false,\"unit_currency\":\"KRW\"}}",
                    s(c),
                    s(&dec(b.free)),
                    s(&dec(b.locked)),
                    s(&dec(b.avg_buy))
                )
            })
            .collect();
        format!("[{}]", items.join(","))
    }

    /// Book side helper for the step loop.
    pub fn top_changed(m: &UpbitMarket) -> bool {
        let (b, a) = m.book.top(30);
        b != m.last_sent.0 || a != m.last_sent.1
    }

    /// Cancels a waiting order; returns its JSON as at acceptance of the cancel.
    pub fn cancel(
        &mut self,
        idx: usize,
        now: u64,
        out: &mut Vec<Out>,
    ) -> Result<String, UpbitError> {
        if self.orders[idx].state != "wait" {
            return Err(UpbitError::new(
                400,
                "validation_error",
                "이미 체결되었거나 취소된 주문입니다.",
            ));
        }
        let json = self.orders[idx].json(false);
        self.finish(idx, now, "cancel", out);
        Ok(json)
    }
}

/// Which side a book side serves for a taker.
pub fn taker_side(bid: bool) -> BookSide {
    if bid { BookSide::Ask } else { BookSide::Bid }
}
