//! Binance USDⓈ-M request encoding: signed `POST /fapi/v1/order` (params in a form body,
//! in the documented order), cancel and query by `origClientOrderId`, account, and the
//! unsigned depth snapshot, exchangeInfo and listenKey requests. Everything is written
//! into reusable buffers: encoding and signing an order does not allocate.

use kimp_core::event::Side;
use kimp_core::instrument::{Instrument, InstrumentId, Venue};
use kimp_core::order::{CLIENT_ID_MAX, ClientId, OrderKind, OrderRequest};

use crate::codec::{CodecError, CodecResult};
use crate::http;
use crate::num::{write_fixed, write_u64};
use crate::sign::{BinanceSigner, Secret};

/// `newOrderRespType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RespType {
    /// Accepted/rejected only (fastest).
    Ack,
    /// Final state for MARKET and IOC orders.
    Result,
}

/// Encodes Binance requests for one API key.
pub struct BinanceEncoder {
    host: Box<str>,
    api_key: Box<str>,
    signer: BinanceSigner,
    insts: Vec<Option<Instrument>>,
    /// `recvWindow` in ms.
    pub recv_window: u64,
    /// `newOrderRespType` for new orders.
    pub resp_type: RespType,
    params: Vec<u8>,
    out: Vec<u8>,
    /// Head of every order request up to `Content-Length` (constant: host and key).
    order_head: Box<[u8]>,
}

impl core::fmt::Debug for BinanceEncoder {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BinanceEncoder")
            .field("host", &self.host)
            .field("signer", &self.signer)
            .finish()
    }
}

impl BinanceEncoder {
    /// An encoder for `host` (`fapi.binance.com`, or `127.0.0.1:port` for the simulator).
    /// `instruments` is the engine's table; ids are indexes into it.
    pub fn new(host: &str, api_key: &str, secret: &Secret, instruments: &[Instrument]) -> Self {
        let mut order_head = Vec::new();
        http::start(&mut order_head, "POST", "/fapi/v1/order", b"", host);
        http::header(&mut order_head, "X-MBX-APIKEY", api_key.as_bytes());
        http::header(&mut order_head, "Content-Type", b"application/x-www-form-urlencoded");
        Self {
            host: host.into(),
            api_key: api_key.into(),
            signer: BinanceSigner::new(secret),
            insts: instruments
                .iter()
                .map(|i| Some(*i).filter(|i| i.venue != Venue::Upbit))
                .collect(),
            recv_window: 5_000,
            resp_type: RespType::Ack,
            params: Vec::with_capacity(512),
            out: Vec::with_capacity(1024),
            order_head: order_head.into(),
        }
    }

    fn inst(&self, id: InstrumentId) -> CodecResult<Instrument> {
        self.insts.get(id.0 as usize).copied().flatten().ok_or(CodecError::UnknownSymbol)
    }

    fn push_param(&mut self, k: &str, v: &[u8]) {
        if !self.params.is_empty() {
            self.params.push(b'&');
        }
        self.params.extend_from_slice(k.as_bytes());
        self.params.push(b'=');
        self.params.extend_from_slice(v);
    }

    fn push_u64(&mut self, k: &str, v: u64) {
        self.push_param(k, b"");
        write_u64(&mut self.params, v);
    }

    fn sign_params(&mut self, ts_ms: u64) {
        self.push_u64("recvWindow", self.recv_window);
        self.push_u64("timestamp", ts_ms);
        let sig = self.signer.sign(&self.params);
        self.push_param("signature", &sig);
    }

    /// The signed parameter string of the last request (without `&signature=`), for tests.
    pub fn last_params(&self) -> &[u8] {
        let p = &self.params;
        match p.windows(11).rposition(|w| w == b"&signature=") {
            Some(i) => &p[..i],
            None => p,
        }
    }

    /// `POST /fapi/v1/order` for `req`, signed at `ts_ms`.
    pub fn place(&mut self, req: &OrderRequest, ts_ms: u64) -> CodecResult<&[u8]> {
        let mut b = [0u8; CLIENT_ID_MAX];
        let id = req.cl_id.encode(&mut b);
        let mut idb = [0u8; CLIENT_ID_MAX];
        idb[..id.len()].copy_from_slice(id.as_bytes());
        let n = id.len();
        self.place_with_id(req, core::str::from_utf8(&idb[..n]).unwrap_or(""), ts_ms)
    }

    /// As [`place`](Self::place) with the client order id given as text.
    pub fn place_with_id(
        &mut self,
        req: &OrderRequest,
        client_id: &str,
        ts_ms: u64,
    ) -> CodecResult<&[u8]> {
        let inst = self.inst(req.inst)?;
        if !req.qty.is_positive() || (req.kind == OrderKind::LimitIoc && !req.px.is_positive()) {
            return Err(CodecError::Malformed("order price/quantity"));
        }
        // The documented parameter order, with the constant runs written as one literal
        // each (fewer small copies on the hot path; the same bytes as `push_param`).
        let p = &mut self.params;
        p.clear();
        p.extend_from_slice(b"symbol=");
        p.extend_from_slice(inst.symbol.as_str().as_bytes());
        p.extend_from_slice(if req.side == Side::Buy {
            b"&side=BUY&positionSide=BOTH"
        } else {
            b"&side=SELL&positionSide=BOTH"
        });
        match req.kind {
            OrderKind::LimitIoc => {
                p.extend_from_slice(b"&type=LIMIT&timeInForce=IOC&quantity=");
                write_fixed(p, req.qty.0, inst.qty_dp);
                p.extend_from_slice(b"&price=");
                write_fixed(p, req.px.0, inst.price_dp);
            }
            OrderKind::Market => {
                p.extend_from_slice(b"&type=MARKET&quantity=");
                write_fixed(p, req.qty.0, inst.qty_dp);
            }
        }
        p.extend_from_slice(b"&newClientOrderId=");
        p.extend_from_slice(client_id.as_bytes());
        p.extend_from_slice(if self.resp_type == RespType::Ack {
            b"&newOrderRespType=ACK"
        } else {
            b"&newOrderRespType=RESULT"
        });
        if req.reduce_only {
            p.extend_from_slice(b"&reduceOnly=true");
        }
        self.sign_params(ts_ms);
        self.out.clear();
        self.out.extend_from_slice(&self.order_head);
        http::finish(&mut self.out, &self.params, true);
        Ok(&self.out)
    }

    fn by_client_id(
        &mut self,
        method: &str,
        inst: InstrumentId,
        cl_id: ClientId,
        ts_ms: u64,
    ) -> CodecResult<&[u8]> {
        let inst = self.inst(inst)?;
        let mut b = [0u8; CLIENT_ID_MAX];
        let id = cl_id.encode(&mut b);
        self.params.clear();
        self.push_param("symbol", inst.symbol.as_str().as_bytes());
        self.push_param("origClientOrderId", id.as_bytes());
        self.sign_params(ts_ms);
        http::start(&mut self.out, method, "/fapi/v1/order", &self.params, &self.host);
        http::header(&mut self.out, "X-MBX-APIKEY", self.api_key.as_bytes());
        http::finish(&mut self.out, b"", false);
        Ok(&self.out)
    }

    /// `DELETE /fapi/v1/order?symbol=…&origClientOrderId=…` (signed).
    pub fn cancel(
        &mut self,
        inst: InstrumentId,
        cl_id: ClientId,
        ts_ms: u64,
    ) -> CodecResult<&[u8]> {
        self.by_client_id("DELETE", inst, cl_id, ts_ms)
    }

    /// `GET /fapi/v1/order?symbol=…&origClientOrderId=…` (signed).
    pub fn query(&mut self, inst: InstrumentId, cl_id: ClientId, ts_ms: u64) -> CodecResult<&[u8]> {
        self.by_client_id("GET", inst, cl_id, ts_ms)
    }

    /// `GET /fapi/v3/account?timestamp=…` (signed; balances and positions).
    pub fn account(&mut self, ts_ms: u64) -> &[u8] {
        self.params.clear();
        self.push_u64("timestamp", ts_ms);
        let sig = self.signer.sign(&self.params);
        self.push_param("signature", &sig);
        http::start(&mut self.out, "GET", "/fapi/v3/account", &self.params, &self.host);
        http::header(&mut self.out, "X-MBX-APIKEY", self.api_key.as_bytes());
        http::finish(&mut self.out, b"", false);
        &self.out
    }

    /// Depth snapshot: `GET /fapi/v1/depth` (futures) or `/api/v3/depth` (spot).
    pub fn depth_snapshot(&mut self, inst: InstrumentId, limit: u32) -> CodecResult<&[u8]> {
        let i = self.inst(inst)?;
        self.params.clear();
        self.push_param("symbol", i.symbol.as_str().as_bytes());
        self.push_u64("limit", limit as u64);
        let path = if i.venue == Venue::BinanceSpot { "/api/v3/depth" } else { "/fapi/v1/depth" };
        http::start(&mut self.out, "GET", path, &self.params, &self.host);
        http::finish(&mut self.out, b"", false);
        Ok(&self.out)
    }

    /// `GET /fapi/v1/exchangeInfo` (or the spot one).
    pub fn exchange_info(&mut self, spot: bool) -> &[u8] {
        let path = if spot { "/api/v3/exchangeInfo" } else { "/fapi/v1/exchangeInfo" };
        http::start(&mut self.out, "GET", path, b"", &self.host);
        http::finish(&mut self.out, b"", false);
        &self.out
    }

    /// `GET /fapi/v1/time`.
    pub fn server_time(&mut self) -> &[u8] {
        http::start(&mut self.out, "GET", "/fapi/v1/time", b"", &self.host);
        http::finish(&mut self.out, b"", false);
        &self.out
    }

    /// `POST` (create), `PUT` (keep alive) or `DELETE` (close) `/fapi/v1/listenKey`:
    /// API key only, no signature.
    pub fn listen_key(&mut self, method: &str) -> &[u8] {
        http::start(&mut self.out, method, "/fapi/v1/listenKey", b"", &self.host);
        http::header(&mut self.out, "X-MBX-APIKEY", self.api_key.as_bytes());
        http::finish(&mut self.out, b"", true);
        &self.out
    }
}
