//! Upbit request encoding: `POST /v1/orders` with a JSON body and a JWT whose
//! `query_hash` covers the body re-expressed as `k=v&…` in body order; cancel and query
//! by `identifier`; accounts. Written into reusable buffers: encoding and signing an
//! order does not allocate.

use kimp_core::event::Side;
use kimp_core::instrument::{Instrument, InstrumentId, Venue};
use kimp_core::order::{CLIENT_ID_MAX, ClientId, OrderKind, OrderRequest};
use kimp_core::units::SCALE;

use crate::codec::{CodecError, CodecResult};
use crate::http;
use crate::num::write_fixed;
use crate::sign::{JwtAlg, NONCE_LEN, NonceGen, Secret, SignError, UpbitSigner};

/// A body field after the first: `,"k":"` and `&k=`.
macro_rules! key {
    ($k:literal) => {
        (concat!(",\"", $k, "\":\"").as_bytes(), concat!("&", $k, "=").as_bytes())
    };
}

/// Encodes Upbit requests for one key pair.
#[derive(Debug)]
pub struct UpbitEncoder {
    host: Box<str>,
    signer: UpbitSigner,
    nonces: NonceGen,
    insts: Vec<Option<Instrument>>,
    body: Vec<u8>,
    hashed: Vec<u8>,
    out: Vec<u8>,
    /// `POST /v1/orders` head up to the token (constant: host).
    order_head: Box<[u8]>,
}

/// Writes `v` truncated to `dp` decimals, without trailing zeros (`0.0005`, `103493000`).
fn write_trimmed(out: &mut Vec<u8>, v: i64, dp: u32) {
    let start = out.len();
    write_fixed(out, v, dp);
    if out[start..].contains(&b'.') {
        while out.last() == Some(&b'0') {
            out.pop();
        }
        if out.last() == Some(&b'.') {
            out.pop();
        }
    }
}

impl UpbitEncoder {
    /// An encoder for `host` (`api.upbit.com`, or `127.0.0.1:port`).
    pub fn new(
        host: &str,
        access_key: &str,
        secret: &Secret,
        alg: JwtAlg,
        instruments: &[Instrument],
    ) -> Result<Self, SignError> {
        let mut order_head = Vec::new();
        http::start(&mut order_head, "POST", "/v1/orders", b"", host);
        order_head.extend_from_slice(b"Authorization: Bearer ");
        Ok(Self {
            order_head: order_head.into(),
            host: host.into(),
            signer: UpbitSigner::new(access_key, secret, alg)?,
            nonces: NonceGen::new(),
            insts: instruments
                .iter()
                .map(|i| Some(*i).filter(|i| i.venue == Venue::Upbit))
                .collect(),
            body: Vec::with_capacity(256),
            hashed: Vec::with_capacity(256),
            out: Vec::with_capacity(1024),
        })
    }

    /// Uses a deterministic nonce sequence (tests, simulation).
    pub fn with_nonces(mut self, nonces: NonceGen) -> Self {
        self.nonces = nonces;
        self
    }

    fn inst(&self, id: InstrumentId) -> CodecResult<Instrument> {
        self.insts.get(id.0 as usize).copied().flatten().ok_or(CodecError::UnknownSymbol)
    }

    /// Adds `"k":"v"` to the body and `k=v` to the hashed string, in the same order. The
    /// value is formatted once and copied; the key is given with its punctuation for both
    /// (`(",\"side\":\"", "&side=")`; the first field opens the object instead).
    fn field(&mut self, (json_key, query_key): (&[u8], &[u8]), v: impl FnOnce(&mut Vec<u8>)) {
        self.body.extend_from_slice(json_key);
        let at = self.body.len();
        v(&mut self.body);
        self.hashed.extend_from_slice(query_key);
        self.hashed.extend_from_slice(&self.body[at..]);
        self.body.push(b'"');
    }

    /// `POST /v1/orders` for `req` with a fresh nonce.
    pub fn place(&mut self, req: &OrderRequest) -> CodecResult<&[u8]> {
        let mut b = [0u8; CLIENT_ID_MAX];
        let id = req.cl_id.encode(&mut b);
        let mut idb = [0u8; CLIENT_ID_MAX];
        let n = id.len();
        idb[..n].copy_from_slice(id.as_bytes());
        let mut nb = [0u8; NONCE_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(self.nonces.next(&mut nb).as_bytes());
        self.place_with(
            req,
            core::str::from_utf8(&idb[..n]).unwrap_or(""),
            core::str::from_utf8(&nonce).unwrap_or(""),
        )
    }

    /// As [`place`](Self::place) with the identifier and nonce given (vectors, replays).
    ///
    /// Limit IOC: `market, side, volume, price, ord_type=limit, time_in_force=ioc,
    /// identifier`. Market sell: `ord_type=market` with `volume`. Market buy:
    /// `ord_type=price` with `price` = the KRW to spend (`px × qty`, whole KRW).
    pub fn place_with(
        &mut self,
        req: &OrderRequest,
        identifier: &str,
        nonce: &str,
    ) -> CodecResult<&[u8]> {
        let inst = self.inst(req.inst)?;
        if !req.qty.is_positive() || !req.px.is_positive() {
            return Err(CodecError::Malformed("order price/quantity"));
        }
        self.body.clear();
        self.hashed.clear();
        let sym = inst.symbol;
        self.field((b"{\"market\":\"", b"market="), |o| {
            o.extend_from_slice(sym.as_str().as_bytes())
        });
        let side: &[u8] = if req.side == Side::Buy { b"bid" } else { b"ask" };
        self.field(key!("side"), |o| o.extend_from_slice(side));
        let (qty, px) = (req.qty.0, req.px.0);
        match (req.kind, req.side) {
            (OrderKind::LimitIoc, _) => {
                self.field(key!("volume"), |o| write_trimmed(o, qty, inst.qty_dp));
                self.field(key!("price"), |o| write_trimmed(o, px, inst.price_dp));
                self.field(key!("ord_type"), |o| o.extend_from_slice(b"limit"));
                self.field(key!("time_in_force"), |o| o.extend_from_slice(b"ioc"));
            }
            (OrderKind::Market, Side::Sell) => {
                self.field(key!("volume"), |o| write_trimmed(o, qty, inst.qty_dp));
                self.field(key!("ord_type"), |o| o.extend_from_slice(b"market"));
            }
            (OrderKind::Market, Side::Buy) => {
                let total =
                    req.px.notional(req.qty).map_err(|_| CodecError::Malformed("notional"))?.0;
                let whole = total - total % SCALE;
                self.field(key!("price"), |o| write_trimmed(o, whole, 0));
                self.field(key!("ord_type"), |o| o.extend_from_slice(b"price"));
            }
        }
        self.field(key!("identifier"), |o| o.extend_from_slice(identifier.as_bytes()));
        self.body.push(b'}');
        self.out.clear();
        self.out.extend_from_slice(&self.order_head);
        self.signer
            .sign_into(nonce, &self.hashed, &mut self.out)
            .map_err(|_| CodecError::Malformed("nonce"))?;
        self.out.extend_from_slice(b"\r\n");
        http::header(&mut self.out, "Content-Type", b"application/json; charset=utf-8");
        http::finish(&mut self.out, &self.body, true);
        Ok(&self.out)
    }

    /// The JSON body of the last order (tests).
    pub fn last_body(&self) -> &[u8] {
        &self.body
    }

    /// The string hashed into `query_hash` for the last request (tests).
    pub fn last_hashed(&self) -> &[u8] {
        &self.hashed
    }

    fn by_identifier(&mut self, method: &str, cl_id: ClientId) -> &[u8] {
        let mut b = [0u8; CLIENT_ID_MAX];
        let id = cl_id.encode(&mut b);
        self.hashed.clear();
        self.hashed.extend_from_slice(b"identifier=");
        self.hashed.extend_from_slice(id.as_bytes());
        self.signed_get(method, "/v1/order")
    }

    fn signed_get(&mut self, method: &str, path: &str) -> &[u8] {
        let mut nb = [0u8; NONCE_LEN];
        let nonce = self.nonces.next(&mut nb);
        http::start(&mut self.out, method, path, &self.hashed, &self.host);
        self.out.extend_from_slice(b"Authorization: Bearer ");
        // Nonces are hex and dashes, so signing cannot fail.
        let _ = self.signer.sign_into(nonce, &self.hashed, &mut self.out);
        self.out.extend_from_slice(b"\r\n");
        http::finish(&mut self.out, b"", false);
        &self.out
    }

    /// `DELETE /v1/order?identifier=…`.
    pub fn cancel(&mut self, cl_id: ClientId) -> &[u8] {
        self.by_identifier("DELETE", cl_id)
    }

    /// `GET /v1/order?identifier=…`.
    pub fn query(&mut self, cl_id: ClientId) -> &[u8] {
        self.by_identifier("GET", cl_id)
    }

    /// `GET /v1/accounts` (no parameters, so no `query_hash`).
    pub fn accounts(&mut self) -> &[u8] {
        self.hashed.clear();
        self.signed_get("GET", "/v1/accounts")
    }

    /// `GET /v1/orderbook?markets=…` (public, unsigned).
    pub fn orderbook(&mut self, inst: InstrumentId) -> CodecResult<&[u8]> {
        let i = self.inst(inst)?;
        self.hashed.clear();
        self.hashed.extend_from_slice(b"markets=");
        self.hashed.extend_from_slice(i.symbol.as_str().as_bytes());
        http::start(&mut self.out, "GET", "/v1/orderbook", &self.hashed, &self.host);
        http::finish(&mut self.out, b"", false);
        Ok(&self.out)
    }
}
