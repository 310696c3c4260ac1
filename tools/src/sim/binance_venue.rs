//! The simulated Binance USDT-M futures exchange: symbols with filters, orders with
//! `newClientOrderId`, one-way positions, margin, fees, funding and the user-data events.
//! Pure: time is an argument.

use std::collections::{BTreeMap, HashMap};

use kimp_core::units::{apply_rate_ceil, parse_decimal};

use super::account::BinanceAccount;
use super::book::{Px, Qt, SimBook, notional};
use super::config::CoinSpec;
use super::events::{MdEvent, Out};
use super::json::{dp, s};
use super::market::Shaper;

/// Funding settlements kept per symbol: `GET /fapi/v1/fundingRate` serves at most 1 000,
/// and a short funding interval at a high speed must not grow memory without bound.
pub const FUNDING_HISTORY_MAX: usize = 1_000;

/// A Binance error: HTTP status and `{"code":…,"msg":…}`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinError {
    /// HTTP status.
    pub status: u16,
    /// Error code.
    pub code: i32,
    /// Message.
    pub msg: String,
}

impl BinError {
    /// A 400 error.
    pub fn bad(code: i32, msg: impl Into<String>) -> Self {
        Self { status: 400, code, msg: msg.into() }
    }

    /// The body.
    pub fn body(&self) -> String {
        format!("{{\"code\":{},\"msg\":{}}}", self.code, s(&self.msg))
    }
}

/// A parsed `POST /fapi/v1/order`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BinOrderReq {
    /// `symbol`.
    pub symbol: Option<String>,
    /// `side`.
    pub side: Option<String>,
    /// `type`.
    pub otype: Option<String>,
    /// `timeInForce`.
    pub tif: Option<String>,
    /// `quantity`.
    pub quantity: Option<String>,
    /// `price`.
    pub price: Option<String>,
    /// `reduceOnly`.
    pub reduce_only: bool,
    /// `newClientOrderId`.
    pub client_id: Option<String>,
    /// `newOrderRespType` = RESULT.
    pub result: bool,
}

/// An order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BinOrder {
    /// Order id.
    pub id: u64,
    /// Account index.
    pub account: usize,
    /// Symbol.
    pub symbol: String,
    /// Client id.
    pub client_id: String,
    /// Buy.
    pub buy: bool,
    /// `LIMIT` / `MARKET`.
    pub otype: &'static str,
    /// Time in force.
    pub tif: String,
    /// Quantity.
    pub qty: Qt,
    /// Limit price (0 for MARKET).
    pub price: Px,
    /// Reduce only.
    pub reduce_only: bool,
    /// Status.
    pub status: &'static str,
    /// Filled.
    pub executed: Qt,
    /// Quote filled.
    pub cum_quote: i64,
    /// Creation time.
    pub time: u64,
    /// Last update.
    pub update: u64,
    /// Price decimals.
    pub pdp: u32,
    /// Quantity decimals.
    pub qdp: u32,
}

impl BinOrder {
    fn avg(&self) -> Px {
        if self.executed > 0 {
            ((self.cum_quote as i128 * 100_000_000) / self.executed as i128) as i64
        } else {
            0
        }
    }

    fn open(&self) -> bool {
        matches!(self.status, "NEW" | "PARTIALLY_FILLED")
    }

    /// `POST /fapi/v1/order` response (fixture key order); `ack` = state at acceptance.
    pub fn json(&self, ack: bool) -> String {
        let (status, executed, quote, avg, upd) = if ack {
            ("NEW", 0, 0, 0, self.time)
        } else {
            (self.status, self.executed, self.cum_quote, self.avg(), self.update)
        };
        format!(
            "{{\"orderId\":{},\"symbol\":{},\"status\":{},\"clientOrderId\":{},\"price\":{},\"avgPrice\":{},\"origQty\":{},\"executedQty\":{},\"cumQty\":{},\"cumQuote\":{},\"timeInForce\":{},\"type\":{},\"reduceOnly\":{},\"closePosition\":false,\"side\":{},\"positionSide\":\"BOTH\",\"stopPrice\":{},\"workingType\":\"CONTRACT_PRICE\",\"priceProtect\":false,\"origType\":{},\"priceMatch\":\"NONE\",\"selfTradePreventionMode\":\"EXPIRE_MAKER\",\"goodTillDate\":0,\"updateTime\":{}}}",
            self.id,
            s(&self.symbol),
            s(status),
            s(&self.client_id),
            s(&dp(self.price, self.pdp)),
            s(&dp(avg, self.pdp)),
            s(&dp(self.qty, self.qdp)),
            s(&dp(executed, self.qdp)),
            s(&dp(executed, self.qdp)),
            s(&dp(quote, 5)),
            s(&self.tif),
            s(self.otype),
            self.reduce_only,
            s(if self.buy { "BUY" } else { "SELL" }),
            s(&dp(0, self.pdp)),
            s(self.otype),
            upd
        )
    }

    /// `GET /fapi/v1/order` response.
    pub fn query_json(&self) -> String {
        format!(
            "{{\"avgPrice\":{},\"clientOrderId\":{},\"cumQuote\":{},\"executedQty\":{},\"orderId\":{},\"origQty\":{},\"origType\":{},\"price\":{},\"reduceOnly\":{},\"side\":{},\"positionSide\":\"BOTH\",\"status\":{},\"stopPrice\":\"0\",\"closePosition\":false,\"symbol\":{},\"time\":{},\"timeInForce\":{},\"type\":{},\"updateTime\":{},\"workingType\":\"CONTRACT_PRICE\",\"priceProtect\":false,\"priceMatch\":\"NONE\",\"selfTradePreventionMode\":\"EXPIRE_MAKER\",\"goodTillDate\":0}}",
            s(&dp(self.avg(), self.pdp)),
            s(&self.client_id),
            s(&dp(self.cum_quote, 5)),
            s(&dp(self.executed, self.qdp)),
            self.id,
            s(&dp(self.qty, self.qdp)),
            s(self.otype),
            s(&dp(self.price, self.pdp)),
            self.reduce_only,
            s(if self.buy { "BUY" } else { "SELL" }),
            s(self.status),
            s(&self.symbol),
            self.time,
            s(&self.tif),
            s(self.otype),
            self.update
        )
    }

    /// `ORDER_TRADE_UPDATE` payload (fixture key order).
    #[allow(clippy::too_many_arguments)]
    fn update_json(
        &self,
        now: u64,
        x: &str,
        last: Option<(Px, Qt, i64, u64, bool, i64)>,
    ) -> String {
        let (l, lp, fee_part, t, m, rp) = match last {
            Some((px, q, fee, tid, maker, rp)) => (
                dp(q, self.qdp),
                dp(px, self.pdp),
                format!("\"N\":\"USDT\",\"n\":{},", s(&dp(fee, 8))),
                tid,
                maker,
                rp,
            ),
            None => ("0".into(), "0".into(), String::new(), 0, false, 0),
        };
        let er = if x == "EXPIRED" && self.otype == "MARKET" { "9" } else { "0" };
        format!(
            "{{\"e\":\"ORDER_TRADE_UPDATE\",\"E\":{now},\"T\":{now},\"o\":{{\"s\":{},\"c\":{},\"S\":{},\"o\":{},\"f\":{},\"q\":{},\"p\":{},\"ap\":{},\"sp\":\"0\",\"x\":{},\"X\":{},\"i\":{},\"l\":{},\"z\":{},\"L\":{},{}\"T\":{now},\"t\":{},\"b\":\"0\",\"a\":\"0\",\"m\":{},\"R\":{},\"wt\":\"CONTRACT_PRICE\",\"ot\":{},\"ps\":\"BOTH\",\"cp\":false,\"rp\":{},\"pP\":false,\"si\":0,\"ss\":0,\"V\":\"EXPIRE_MAKER\",\"pm\":\"NONE\",\"gtd\":0,\"er\":{}}}}}",
            s(&self.symbol),
            s(&self.client_id),
            s(if self.buy { "BUY" } else { "SELL" }),
            s(self.otype),
            s(&self.tif),
            s(&dp(self.qty, self.qdp)),
            s(&if self.otype == "MARKET" { "0".into() } else { dp(self.price, self.pdp) }),
            s(&if self.executed > 0 { dp(self.avg(), self.pdp) } else { "0".into() }),
            s(x),
            s(self.status),
            self.id,
            s(&l),
            s(&dp(self.executed, self.qdp)),
            s(&lp),
            fee_part,
            t,
            m,
            self.reduce_only,
            s(self.otype),
            s(&dp(rp, 8)),
            s(er)
        )
    }
}

/// One perpetual symbol.
#[derive(Clone, Debug)]
pub struct BinMarket {
    /// Coin spec (tick, step, notional, decimals).
    pub spec: CoinSpec,
    /// Symbol.
    pub symbol: String,
    /// Book.
    pub book: SimBook,
    /// Shaper (None when replayed).
    pub shaper: Option<Shaper>,
    /// Mark price.
    pub mark: Px,
    /// Index price.
    pub index: Px,
    /// Funding rate, fixed-point 1e-8.
    pub funding_rate: i64,
    /// Last funding rate settled.
    pub last_funding_rate: i64,
    /// Last bookTicker sent (bid, ask).
    pub last_bbo: ((Px, Qt), (Px, Qt)),
    /// Realised funding history: (time, rate, mark).
    pub funding_history: Vec<(u64, i64, Px)>,
}

/// The Binance venue.
#[derive(Debug)]
pub struct BinanceVenue {
    /// Symbols.
    pub markets: BTreeMap<String, BinMarket>,
    /// Every order.
    pub orders: Vec<BinOrder>,
    by_client: HashMap<(usize, String), usize>,
    /// Accounts.
    pub accounts: Vec<BinanceAccount>,
    /// Taker fee e8.
    pub taker_e8: i64,
    /// Maker fee e8.
    pub maker_e8: i64,
    /// Leverage.
    pub leverage: i64,
    next_order_id: u64,
    next_trade_id: u64,
    /// Listen keys → (account, expiry ms).
    pub listen_keys: HashMap<String, (usize, u64)>,
}

impl BinanceVenue {
    /// A venue with no symbols.
    pub fn new(accounts: Vec<BinanceAccount>, taker_e8: i64, maker_e8: i64, leverage: i64) -> Self {
        Self {
            markets: BTreeMap::new(),
            orders: Vec::new(),
            by_client: HashMap::new(),
            accounts,
            taker_e8,
            maker_e8,
            leverage: leverage.max(1),
            next_order_id: 730_948_234_091,
            next_trade_id: 6_873_324_719,
            listen_keys: HashMap::new(),
        }
    }

    /// The latest order with this client id (open or not), or by order id.
    pub fn find(
        &self,
        account: usize,
        order_id: Option<u64>,
        client: Option<&str>,
    ) -> Option<usize> {
        let i = match (order_id, client) {
            (Some(id), _) => self.orders.iter().position(|o| o.id == id)?,
            (None, Some(c)) => *self.by_client.get(&(account, c.to_owned()))?,
            _ => return None,
        };
        (self.orders[i].account == account).then_some(i)
    }

    /// Available margin: wallet + unrealised − margin of open positions.
    pub fn available(&self, account: usize) -> i64 {
        let a = &self.accounts[account];
        let mut avail = a.wallet;
        for (sym, p) in &a.positions {
            let mark = self.markets.get(sym).map(|m| m.mark).unwrap_or(p.entry);
            avail += a.unrealised(sym, mark);
            avail -= notional(mark, p.qty.abs()) / self.leverage;
        }
        avail
    }

    /// Places an order; returns its index.
    pub fn place(
        &mut self,
        now: u64,
        account: usize,
        req: &BinOrderReq,
        cap: f64,
        out: &mut Vec<Out>,
    ) -> Result<usize, BinError> {
        let missing = |p: &str| {
            BinError::bad(
                -1102,
                format!("Mandatory parameter '{p}' was not sent, was empty/null, or malformed."),
            )
        };
        let sym = req.symbol.clone().ok_or_else(|| missing("symbol"))?;
        let Some(m) = self.markets.get(&sym) else {
            return Err(BinError::bad(-1121, "Invalid symbol."));
        };
        let spec = m.spec.clone();
        let buy = match req.side.as_deref() {
            Some("BUY") => true,
            Some("SELL") => false,
            None => return Err(missing("side")),
            _ => return Err(BinError::bad(-1117, "Invalid side.")),
        };
        let otype = match req.otype.as_deref() {
            Some("LIMIT") => "LIMIT",
            Some("MARKET") => "MARKET",
            None => return Err(missing("type")),
            _ => return Err(BinError::bad(-1116, "Invalid orderType.")),
        };
        let dec_in = |v: &str, places: u32| -> Result<i64, BinError> {
            let frac = v.split_once('.').map(|(_, f)| f.trim_end_matches('0').len()).unwrap_or(0);
            if frac > places as usize {
                return Err(BinError::bad(
                    -1111,
                    "Precision is over the maximum defined for this asset.",
                ));
            }
            parse_decimal(v.as_bytes())
                .ok_or_else(|| BinError::bad(-1100, "Illegal characters found in a parameter."))
        };
        let qty =
            dec_in(req.quantity.as_deref().ok_or_else(|| missing("quantity"))?, spec.bin_qty_dp)?;
        if qty <= 0 {
            return Err(BinError::bad(-4003, "Quantity less than or equal to zero."));
        }
        if qty % spec.bin_step != 0 {
            return Err(BinError::bad(
                -1111,
                "Precision is over the maximum defined for this asset.",
            ));
        }
        let (price, tif) = if otype == "LIMIT" {
            let p =
                dec_in(req.price.as_deref().ok_or_else(|| missing("price"))?, spec.bin_price_dp)?;
            if p <= 0 {
                return Err(BinError::bad(-4001, "Price less than 0."));
            }
            if p % spec.bin_tick != 0 {
                return Err(BinError::bad(-4014, "Price not increased by tick size."));
            }
            let tif = req.tif.clone().ok_or_else(|| missing("timeInForce"))?;
            if !matches!(tif.as_str(), "GTC" | "IOC" | "FOK" | "GTX") {
                return Err(BinError::bad(-1115, "Invalid timeInForce."));
            }
            (p, tif)
        } else {
            if req.price.is_some() {
                return Err(BinError::bad(-1106, "Parameter 'price' sent when not required."));
            }
            (0, "GTC".to_owned())
        };
        let ref_px = if otype == "MARKET" { m.mark } else { price };
        let pos = self.accounts[account].position(&sym);
        let reduces = (buy && pos < 0) || (!buy && pos > 0);
        if req.reduce_only && (!reduces || qty > pos.abs()) {
            return Err(BinError::bad(-2022, "ReduceOnly Order is rejected."));
        }
        if !req.reduce_only && notional(ref_px, qty) < spec.bin_min_notional {
            return Err(BinError::bad(
                -4164,
                format!(
                    "Order's notional must be no smaller than {} (unless you choose reduce only).",
                    super::json::dec(spec.bin_min_notional)
                ),
            ));
        }
        let client_id = match &req.client_id {
            Some(c) => {
                if c.is_empty()
                    || c.len() > 36
                    || !c.bytes().all(|b| b.is_ascii_alphanumeric() || b".:/_-".contains(&b))
                {
                    return Err(BinError::bad(
                        -1100,
                        "Illegal characters found in parameter 'newClientOrderId'; legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.",
                    ));
                }
                if let Some(&i) = self.by_client.get(&(account, c.clone()))
                    && self.orders[i].open()
                {
                    return Err(BinError::bad(-4116, "ClientOrderId is duplicated."));
                }
                c.clone()
            }
            None => format!("sim{}", self.next_order_id),
        };
        let increase = if reduces { qty.saturating_sub(pos.abs()) } else { qty };
        if increase > 0 {
            let need = notional(ref_px, increase) / self.leverage
                + apply_rate_ceil(notional(ref_px, qty), self.taker_e8).unwrap_or(0);
            if need > self.available(account) {
                return Err(BinError::bad(-2019, "Margin is insufficient."));
            }
        }
        if tif == "GTX" && m.book.available(buy, Some(price)) > 0 {
            return Err(BinError::bad(
                -5022,
                "Due to the order could not be executed as maker, the Post Only order will be rejected.",
            ));
        }
        let id = self.next_order_id;
        self.next_order_id += 1;
        let idx = self.orders.len();
        self.orders.push(BinOrder {
            id,
            account,
            symbol: sym.clone(),
            client_id: client_id.clone(),
            buy,
            otype,
            tif: tif.clone(),
            qty,
            price,
            reduce_only: req.reduce_only,
            status: "NEW",
            executed: 0,
            cum_quote: 0,
            time: now,
            update: now,
            pdp: spec.bin_price_dp,
            qdp: spec.bin_qty_dp,
        });
        self.by_client.insert((account, client_id), idx);
        let j = self.orders[idx].update_json(now, "NEW", None);
        out.push(Out::BinanceUser { account, json: j });
        let cap_q = |q: Qt| {
            let c = (q as f64 * cap.clamp(0.0, 1.0)) as i64;
            (c - c % spec.bin_step).min(q)
        };
        let limit = if otype == "LIMIT" { Some(price) } else { None };
        let fok_short = tif == "FOK"
            && (cap_q(qty) < qty || self.markets[&sym].book.available(buy, limit) < qty);
        if !fok_short {
            let want = if tif == "GTC" && otype == "LIMIT" { qty } else { cap_q(qty) };
            let fills = self
                .markets
                .get_mut(&sym)
                .map(|m| m.book.take(buy, limit, want, None, spec.bin_step))
                .unwrap_or_default();
            for (px, q) in fills {
                self.book_fill(idx, now, px, q, false, out);
            }
        }
        let o = &self.orders[idx];
        if o.executed < o.qty && !(otype == "LIMIT" && tif == "GTC") {
            self.end(idx, now, "EXPIRED", out);
        }
        Ok(idx)
    }

    /// A fresh trade id: one increasing sequence for fills and the synthetic tape alike.
    pub fn next_trade_id(&mut self) -> u64 {
        let id = self.next_trade_id;
        self.next_trade_id += 1;
        id
    }

    /// The symbols and the trade-id counter at once (the tape walks the former and draws
    /// from the latter).
    pub fn markets_and_trade_ids(&mut self) -> (&BTreeMap<String, BinMarket>, &mut u64) {
        (&self.markets, &mut self.next_trade_id)
    }

    /// Books one fill for order `idx`.
    fn book_fill(&mut self, idx: usize, now: u64, px: Px, q: Qt, maker: bool, out: &mut Vec<Out>) {
        let fee_e8 = if maker { self.maker_e8 } else { self.taker_e8 };
        let tid = self.next_trade_id();
        let o = &mut self.orders[idx];
        let n = notional(px, q);
        let fee = apply_rate_ceil(n, fee_e8).unwrap_or(0);
        o.executed += q;
        o.cum_quote += n;
        o.update = now;
        o.status = if o.executed >= o.qty { "FILLED" } else { "PARTIALLY_FILLED" };
        let (account, sym, buy) = (o.account, o.symbol.clone(), o.buy);
        let acct = &mut self.accounts[account];
        let rp = acct.fill(&sym, buy, px, q);
        acct.wallet -= fee;
        let o = &self.orders[idx];
        let j = o.update_json(now, "TRADE", Some((px, q, fee, tid, maker, rp)));
        out.push(Out::BinanceUser { account, json: j });
        let lite = format!(
            "{{\"e\":\"TRADE_LITE\",\"E\":{now},\"T\":{now},\"s\":{},\"q\":{},\"p\":{},\"m\":{maker},\"c\":{},\"S\":{},\"L\":{},\"l\":{},\"t\":{tid},\"i\":{}}}",
            s(&o.symbol),
            s(&dp(o.qty, o.qdp)),
            s(&if o.otype == "MARKET" { "0".into() } else { dp(o.price, o.pdp) }),
            s(&o.client_id),
            s(if o.buy { "BUY" } else { "SELL" }),
            s(&dp(px, o.pdp)),
            s(&dp(q, o.qdp)),
            o.id
        );
        out.push(Out::BinanceUser { account, json: lite });
        let (pdp, qdp) = (o.pdp, o.qdp);
        out.push(Out::Md(MdEvent::BinTrade {
            sym: sym.clone(),
            e: now,
            id: tid,
            px,
            qty: q,
            buyer_maker: !buy,
            pdp,
            qdp,
        }));
        self.account_update(account, now, "ORDER", out);
    }

    /// Ends an order with `status` (EXPIRED, CANCELED).
    pub fn end(&mut self, idx: usize, now: u64, status: &'static str, out: &mut Vec<Out>) {
        let o = &mut self.orders[idx];
        if !o.open() {
            return;
        }
        o.status = status;
        o.update = now;
        let j = o.update_json(now, status, None);
        out.push(Out::BinanceUser { account: o.account, json: j });
    }

    /// `ACCOUNT_UPDATE` for an account (reason `m`: ORDER, FUNDING_FEE).
    pub fn account_update(&self, account: usize, now: u64, reason: &str, out: &mut Vec<Out>) {
        let a = &self.accounts[account];
        let positions: Vec<String> = a
            .positions
            .iter()
            .map(|(sym, p)| {
                let (pdp, mark) = self.markets.get(sym).map(|m| (m.spec.bin_price_dp, m.mark)).unwrap_or((2, p.entry));
                let qdp = self.markets.get(sym).map(|m| m.spec.bin_qty_dp).unwrap_or(3);
                format!(
                    "{{\"s\":{},\"pa\":{},\"ep\":{},\"bep\":{},\"cr\":\"0\",\"up\":{},\"mt\":\"cross\",\"iw\":\"0\",\"ps\":\"BOTH\"}}",
                    s(sym),
                    s(&dp(p.qty, qdp)),
                    s(&dp(p.entry, pdp)),
                    s(&dp(p.entry, pdp)),
                    s(&dp(a.unrealised(sym, mark), 8))
                )
            })
            .collect();
        let json = format!(
            "{{\"e\":\"ACCOUNT_UPDATE\",\"E\":{now},\"T\":{now},\"a\":{{\"m\":{},\"B\":[{{\"a\":\"USDT\",\"wb\":{},\"cw\":{},\"bc\":\"0\"}}],\"P\":[{}]}}}}",
            s(reason),
            s(&dp(a.wallet, 8)),
            s(&dp(a.wallet, 8)),
            positions.join(",")
        );
        out.push(Out::BinanceUser { account, json });
    }

    /// Cancels an open order.
    pub fn cancel(&mut self, idx: usize, now: u64, out: &mut Vec<Out>) -> Result<String, BinError> {
        if !self.orders[idx].open() {
            return Err(BinError::bad(-2011, "Unknown order sent."));
        }
        self.end(idx, now, "CANCELED", out);
        Ok(self.orders[idx].query_json())
    }

    /// Fills resting GTC orders the market moved through, at their price, as maker.
    pub fn match_resting(&mut self, now: u64, out: &mut Vec<Out>) {
        let open: Vec<usize> = (0..self.orders.len())
            .filter(|&i| self.orders[i].open() && self.orders[i].tif == "GTC")
            .collect();
        for idx in open {
            let (sym, buy, px, left) = {
                let o = &self.orders[idx];
                (o.symbol.clone(), o.buy, o.price, o.qty - o.executed)
            };
            let step = self.markets.get(&sym).map(|m| m.spec.bin_step).unwrap_or(1);
            let Some(m) = self.markets.get_mut(&sym) else { continue };
            let q: Qt = m.book.take(buy, Some(px), left, None, step).iter().map(|f| f.1).sum();
            if q > 0 {
                self.book_fill(idx, now, px, q, true, out);
            }
        }
    }

    /// Settles funding for every position in `sym` at `rate` (e8): longs pay when positive.
    pub fn settle_funding(&mut self, sym: &str, now: u64, out: &mut Vec<Out>) {
        let Some(m) = self.markets.get_mut(sym) else { return };
        let (rate, mark) = (m.funding_rate, m.mark);
        m.last_funding_rate = rate;
        m.funding_history.push((now, rate, mark));
        if m.funding_history.len() > FUNDING_HISTORY_MAX {
            let excess = m.funding_history.len() - FUNDING_HISTORY_MAX;
            m.funding_history.drain(..excess);
        }
        for account in 0..self.accounts.len() {
            let q = self.accounts[account].position(sym);
            if q == 0 {
                continue;
            }
            let pay = ((notional(mark, q) as i128 * rate as i128) / 100_000_000) as i64;
            self.accounts[account].wallet -= pay;
            self.account_update(account, now, "FUNDING_FEE", out);
        }
    }

    /// The book of a symbol.
    pub fn book(&self, sym: &str) -> Option<&SimBook> {
        self.markets.get(sym).map(|m| &m.book)
    }
}
