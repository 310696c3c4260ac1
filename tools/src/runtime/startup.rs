//! Start-up: resolve endpoints, fetch the instrument rules from the venues, and build the
//! engine's markets. This runs before the loop starts, so it may block (bounded by
//! timeouts); nothing here is on the hot path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use kimp_core::engine::{CoinSpec, Markets};
use kimp_core::event::{Balance, Event, PositionReport};
use kimp_core::instrument::{Instrument, InstrumentId, Symbol, TickRule, Venue};
use kimp_core::units::{Qty, Quote, SCALE};
use kimp_gateways::transport::{Completion, Endpoint, HttpConfig, HttpPool, webpki_client_config};
use mio::{Events, Poll, Token};
use rustls::ClientConfig;

use super::clock::Clock;
use super::config::Config;

/// An endpoint with its resolved address and TLS config.
#[derive(Debug, Clone)]
pub struct Target {
    /// Parsed URL.
    pub endpoint: Endpoint,
    /// Address resolved once at start-up.
    pub addr: SocketAddr,
    /// TLS client config for `wss://`/`https://`.
    pub tls: Option<Arc<ClientConfig>>,
}

impl Target {
    /// Parses and resolves `url` (loopback only for plain `ws://`/`http://`).
    pub fn new(url: &str, tls: Option<Arc<ClientConfig>>) -> Result<Target> {
        let endpoint = Endpoint::parse(url).map_err(|e| anyhow!("{url}: {e:?}"))?;
        let addr = endpoint.resolve().map_err(|e| anyhow!("{url}: cannot resolve: {e:?}"))?;
        let tls = if endpoint.is_tls() {
            Some(match tls {
                Some(t) => t,
                None => webpki_client_config().map_err(|e| anyhow!("TLS config: {e}"))?,
            })
        } else {
            None
        };
        Ok(Target { endpoint, addr, tls })
    }

    /// The same host with another path (e.g. a stream route).
    pub fn with_path(&self, path_and_query: &str) -> Result<Target> {
        let scheme = if self.endpoint.is_tls() { "wss" } else { "ws" };
        let base = format!("{scheme}://{}", self.endpoint.host_header());
        Target::new(&format!("{base}{path_and_query}"), self.tls.clone())
    }

    /// An HTTP pool of `n` connections with tokens from `first`.
    pub fn pool(&self, n: usize, first: Token) -> Result<HttpPool> {
        HttpPool::new(&self.endpoint, self.addr, self.tls.clone(), n, first, HttpConfig::default())
            .map_err(|e| anyhow!("{}: {e:?}", self.endpoint.host()))
    }
}

/// Sends one request on `pool` and waits (bounded) for its response body.
pub fn fetch(
    pool: &mut HttpPool,
    poll: &mut Poll,
    clock: &Clock,
    request: &[u8],
    timeout: Duration,
) -> Result<(u16, Vec<u8>)> {
    fetch_reply(pool, poll, clock, request, timeout).map(|r| (r.status, r.body))
}

/// A response [`fetch_reply`] waited for.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Body.
    pub body: Vec<u8>,
    /// `Retry-After` in seconds, when sent (429/418).
    pub retry_after_s: Option<u64>,
}

/// [`fetch`], keeping the `Retry-After` a refusal carries.
pub fn fetch_reply(
    pool: &mut HttpPool,
    poll: &mut Poll,
    clock: &Clock,
    request: &[u8],
    timeout: Duration,
) -> Result<Reply> {
    let mut events = Events::with_capacity(16);
    let end = clock.now().plus(kimp_core::units::Nanos(timeout.as_nanos() as u64));
    let mut sent = false;
    let mut result: Option<Result<Reply>> = None;
    while result.is_none() {
        let now = clock.now();
        if now > end {
            bail!("no answer within {timeout:?}");
        }
        let mut on_done = |c: Completion<'_>| {
            result = Some(match c {
                Completion::Response { response, .. } => Ok(Reply {
                    status: response.status,
                    body: response.body.to_vec(),
                    retry_after_s: response.retry_after_s,
                }),
                Completion::TimedOut { .. } => Err(anyhow!("request timed out")),
                Completion::Failed { reason, .. } => Err(anyhow!("request failed: {reason:?}")),
            });
        };
        pool.tick(poll.registry(), now, &mut on_done);
        if !sent && pool.idle_count() > 0 {
            pool.send(now, 0, request, end).map_err(|e| anyhow!("cannot send: {e:?}"))?;
            sent = true;
        }
        poll.poll(&mut events, Some(Duration::from_millis(5)))?;
        for ev in &events {
            pool.poll(ev.token(), clock.now(), &mut on_done);
        }
    }
    result.unwrap_or_else(|| Err(anyhow!("no result")))
}

/// Upbit KRW-market rules: the documented price-unit table (docs §2.3: the venue's own
/// `tick_size` should be preferred where it differs), 5,000 KRW minimum, 0.05 % fee.
pub fn upbit_instrument(symbol: &str) -> Result<Instrument> {
    Ok(Instrument {
        venue: Venue::Upbit,
        symbol: Symbol::new(symbol).ok_or_else(|| anyhow!("bad Upbit symbol {symbol:?}"))?,
        tick: TickRule::UpbitKrw,
        lot: Qty(1),
        min_qty: Qty(1),
        min_notional: Quote(5_000 * SCALE),
        price_dp: 8,
        qty_dp: 8,
        taker_fee_e8: 50_000,
    })
}

/// Builds the markets: for each coin its Upbit market and Binance perpetual (rules read
/// from the venue's exchangeInfo body), then KRW-USDT as the FX book.
pub fn markets(cfg: &Config, exchange_info: &[u8]) -> Result<Markets> {
    let wanted: Vec<&str> = cfg.coins.iter().map(|c| c.binance.as_str()).collect();
    let perps =
        kimp_gateways::binance::rest::exchange_info(exchange_info, Venue::Binance, &wanted, 40_000)
            .map_err(|e| anyhow!("exchangeInfo: {e}"))?;
    let mut instruments = Vec::new();
    let mut coins = Vec::new();
    for c in &cfg.coins {
        let perp = perps
            .iter()
            .find(|i| i.symbol.as_str() == c.binance)
            .ok_or_else(|| anyhow!("{} is not a trading USDT-M symbol on this venue", c.binance))?;
        let upbit = InstrumentId(instruments.len() as u16);
        instruments.push(upbit_instrument(&c.upbit)?);
        let binance = InstrumentId(instruments.len() as u16);
        instruments.push(*perp);
        let name = Symbol::new(&c.name).ok_or_else(|| anyhow!("bad coin name {:?}", c.name))?;
        coins.push(CoinSpec { name, upbit, binance });
    }
    let fx = InstrumentId(instruments.len() as u16);
    instruments.push(upbit_instrument("KRW-USDT")?);
    Ok(Markets { instruments, coins, fx: Some(fx) })
}

/// Parses a Binance futures account body (`GET /fapi/v3/account`) into the USDT balance
/// and the positions of our perpetuals. Not on the hot path (start-up and reconciliation).
pub fn binance_account(body: &[u8], markets: &Markets) -> Result<Vec<Event<'static>>> {
    let v: serde_json::Value = serde_json::from_slice(body).context("account body is not JSON")?;
    let dec = |x: &serde_json::Value| -> Option<i64> {
        kimp_core::units::parse_decimal(x.as_str()?.as_bytes())
    };
    let mut out = Vec::new();
    for a in v["assets"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        if a["asset"] == "USDT" {
            let free =
                dec(&a["availableBalance"]).ok_or_else(|| anyhow!("bad availableBalance"))?;
            out.push(Event::Balance(Balance {
                venue: Venue::Binance,
                asset: Symbol::new("USDT").unwrap_or_default(),
                free: Qty(free),
                locked: Qty(0),
            }));
        }
    }
    for p in v["positions"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let Some(sym) = p["symbol"].as_str() else { continue };
        let Some(i) = markets
            .instruments
            .iter()
            .position(|i| i.venue == Venue::Binance && i.symbol.as_str() == sym)
        else {
            continue;
        };
        let qty = dec(&p["positionAmt"]).ok_or_else(|| anyhow!("bad positionAmt"))?;
        out.push(Event::Position(PositionReport { inst: InstrumentId(i as u16), qty: Qty(qty) }));
    }
    if out.is_empty() {
        bail!("account body has no USDT balance");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_binance_account() {
        let m = kimp_core::testkit::btc_markets();
        let body = br#"{"totalWalletBalance":"100","availableBalance":"90.5","assets":[{"asset":"USDT","walletBalance":"100","availableBalance":"90.5"}],"positions":[{"symbol":"BTCUSDT","positionSide":"BOTH","positionAmt":"-0.010"},{"symbol":"ETHUSDT","positionAmt":"1"}]}"#;
        let evs = binance_account(body, &m).unwrap();
        assert_eq!(evs.len(), 2);
        assert!(matches!(evs[0], Event::Balance(b) if b.free == Qty(9_050_000_000)));
        assert!(
            matches!(evs[1], Event::Position(p) if p.qty == Qty(-1_000_000) && p.inst == kimp_core::testkit::BTCUSDT)
        );
        assert!(binance_account(b"{}", &m).is_err());
        assert!(binance_account(b"nope", &m).is_err());
    }
}
