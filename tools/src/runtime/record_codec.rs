//! Fixed-size binary encoding of journal records (`kimp_core::action::Record`).
//!
//! A slot is 128 bytes: `crc32 (4) | kind (1) | version (1) | reserved (2) | ts (8) |
//! payload (112)`, little endian. The CRC covers bytes 4..128, so a slot torn by a crash
//! fails it and marks the end of the valid journal. Encoding writes into the caller's
//! slot without allocating; decoding validates every enum and refuses unknown values.
//! The format is documented in docs/journal.md.

use kimp_core::action::{HaltReason, HaltSet, PairRecord, PnlSplit, Purpose, Record, TradingState};
use kimp_core::config::Direction;
use kimp_core::event::{RejectReason, Side};
use kimp_core::instrument::InstrumentId;
use kimp_core::order::{ClientId, Leg, OrderKind, OrderRequest, OrderState};
use kimp_core::pair::PairState;
use kimp_core::units::{Krw, Nanos, Price, Qty, Quote};

/// Bytes per slot.
pub const SLOT: usize = 128;
const HEADER: usize = 16;
const VERSION: u8 = 1;

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Entry {
    /// A run started with this epoch (client ids of this run carry it).
    Epoch(u32),
    /// An engine record.
    Record(Record),
}

struct W<'a> {
    b: &'a mut [u8],
    at: usize,
}

impl W<'_> {
    fn u8(&mut self, v: u8) {
        self.b[self.at] = v;
        self.at += 1;
    }
    fn bytes<const N: usize>(&mut self, v: [u8; N]) {
        self.b[self.at..self.at + N].copy_from_slice(&v);
        self.at += N;
    }
    fn u16(&mut self, v: u16) {
        self.bytes(v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.bytes(v.to_le_bytes());
    }
    fn i32(&mut self, v: i32) {
        self.bytes(v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.bytes(v.to_le_bytes());
    }
    fn i64(&mut self, v: i64) {
        self.bytes(v.to_le_bytes());
    }
    fn f64(&mut self, v: f64) {
        self.bytes(v.to_le_bytes());
    }
    fn id(&mut self, c: ClientId) {
        self.u32(c.epoch);
        self.u32(c.seq);
        self.u8(match c.leg {
            Leg::U => 0,
            Leg::B => 1,
        });
        self.u8(c.attempt);
    }
}

struct R<'a> {
    b: &'a [u8],
    at: usize,
}

impl R<'_> {
    fn bytes<const N: usize>(&mut self) -> Option<[u8; N]> {
        let s = self.b.get(self.at..self.at + N)?;
        self.at += N;
        s.try_into().ok()
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.bytes::<1>()?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes(self.bytes()?))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.bytes()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_le_bytes(self.bytes()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.bytes()?))
    }
    fn i64(&mut self) -> Option<i64> {
        Some(i64::from_le_bytes(self.bytes()?))
    }
    fn f64(&mut self) -> Option<f64> {
        Some(f64::from_le_bytes(self.bytes()?))
    }
    fn id(&mut self) -> Option<ClientId> {
        let epoch = self.u32()?;
        let seq = self.u32()?;
        let leg = match self.u8()? {
            0 => Leg::U,
            1 => Leg::B,
            _ => return None,
        };
        Some(ClientId { epoch, seq, leg, attempt: self.u8()? })
    }
}

fn side_code(s: Side) -> u8 {
    match s {
        Side::Buy => 0,
        Side::Sell => 1,
    }
}
fn side_of(v: u8) -> Option<Side> {
    match v {
        0 => Some(Side::Buy),
        1 => Some(Side::Sell),
        _ => None,
    }
}

fn reject_code(r: RejectReason) -> (u8, i32) {
    match r {
        RejectReason::InsufficientBalance => (0, 0),
        RejectReason::MinNotional => (1, 0),
        RejectReason::Filter => (2, 0),
        RejectReason::RateLimited => (3, 0),
        RejectReason::Duplicate => (4, 0),
        RejectReason::MarketClosed => (5, 0),
        RejectReason::Auth => (6, 0),
        RejectReason::Gateway => (7, 0),
        RejectReason::Other(c) => (8, c),
    }
}
fn reject_of(t: u8, c: i32) -> Option<RejectReason> {
    Some(match t {
        0 => RejectReason::InsufficientBalance,
        1 => RejectReason::MinNotional,
        2 => RejectReason::Filter,
        3 => RejectReason::RateLimited,
        4 => RejectReason::Duplicate,
        5 => RejectReason::MarketClosed,
        6 => RejectReason::Auth,
        7 => RejectReason::Gateway,
        8 => RejectReason::Other(c),
        _ => return None,
    })
}

fn state_code(s: OrderState) -> (u8, u8, i32) {
    match s {
        OrderState::Sent => (0, 0, 0),
        OrderState::Open => (1, 0, 0),
        OrderState::Unknown => (2, 0, 0),
        OrderState::Filled => (3, 0, 0),
        OrderState::Done => (4, 0, 0),
        OrderState::Rejected(r) => {
            let (t, c) = reject_code(r);
            (5, t, c)
        }
    }
}
fn state_of(s: u8, t: u8, c: i32) -> Option<OrderState> {
    Some(match s {
        0 => OrderState::Sent,
        1 => OrderState::Open,
        2 => OrderState::Unknown,
        3 => OrderState::Filled,
        4 => OrderState::Done,
        5 => OrderState::Rejected(reject_of(t, c)?),
        _ => return None,
    })
}

fn pair_state_code(s: PairState) -> u8 {
    match s {
        PairState::Opening => 0,
        PairState::Hedged => 1,
        PairState::OneLeg => 2,
        PairState::Closing => 3,
        PairState::Closed => 4,
    }
}
fn pair_state_of(v: u8) -> Option<PairState> {
    Some(match v {
        0 => PairState::Opening,
        1 => PairState::Hedged,
        2 => PairState::OneLeg,
        3 => PairState::Closing,
        4 => PairState::Closed,
        _ => return None,
    })
}

fn purpose_code(p: Purpose) -> u8 {
    match p {
        Purpose::Entry => 0,
        Purpose::Exit => 1,
        Purpose::Hedge => 2,
        Purpose::Flatten => 3,
    }
}
fn purpose_of(v: u8) -> Option<Purpose> {
    Some(match v {
        0 => Purpose::Entry,
        1 => Purpose::Exit,
        2 => Purpose::Hedge,
        3 => Purpose::Flatten,
        _ => return None,
    })
}

/// Trading state as `(state, first reason, reason bits)`. Version-1 journals wrote only
/// the first two bytes (one reason); their zero bits decode as that one reason.
fn trading_code(s: TradingState) -> (u8, u8, u16) {
    let halt = |h: HaltReason| match h {
        HaltReason::Operator => 0,
        HaltReason::OrderRate => 1,
        HaltReason::OrphanHard => 2,
        HaltReason::Flatten => 3,
        HaltReason::Shutdown => 4,
        HaltReason::Mismatch => 5,
    };
    match s {
        TradingState::Reconciling => (0, 0, 0),
        TradingState::Active => (1, 0, 0),
        TradingState::Halted(set) => (2, set.first().map_or(0, halt), set.bits()),
    }
}
fn trading_of(s: u8, h: u8, bits: u16) -> Option<TradingState> {
    Some(match s {
        0 => TradingState::Reconciling,
        1 => TradingState::Active,
        2 => {
            let first = match h {
                0 => HaltReason::Operator,
                1 => HaltReason::OrderRate,
                2 => HaltReason::OrphanHard,
                3 => HaltReason::Flatten,
                4 => HaltReason::Shutdown,
                5 => HaltReason::Mismatch,
                _ => return None,
            };
            let set = HaltSet::from_bits(bits)?;
            match set.first() {
                None => TradingState::halted(first),
                // The first reason is redundant with the bits: disagreeing is corruption.
                Some(f) if f == first => TradingState::Halted(set),
                Some(_) => return None,
            }
        }
        _ => return None,
    })
}

/// Encodes `entry` at time `ts` into a slot (CRC included).
pub fn encode(entry: &Entry, ts: Nanos, slot: &mut [u8; SLOT]) {
    slot.fill(0);
    let mut w = W { b: &mut slot[HEADER..], at: 0 };
    let kind: u8 = match entry {
        Entry::Epoch(e) => {
            w.u32(*e);
            1
        }
        Entry::Record(Record::Intent { seq, pair, coin, purpose, orders }) => {
            w.u32(*seq);
            w.u32(*pair);
            w.u16(*coin);
            w.u8(purpose_code(*purpose));
            for o in orders {
                match o {
                    Some(id) => {
                        w.u8(1);
                        w.id(*id);
                    }
                    None => {
                        w.u8(0);
                        w.bytes([0u8; 10]);
                    }
                }
            }
            2
        }
        Entry::Record(Record::Order(r)) => {
            w.id(r.cl_id);
            w.u16(r.inst.0);
            w.u8(side_code(r.side));
            w.u8(match r.kind {
                OrderKind::LimitIoc => 0,
                OrderKind::Market => 1,
            });
            w.i64(r.px.0);
            w.i64(r.qty.0);
            w.u8(r.reduce_only as u8);
            3
        }
        Entry::Record(Record::Fill { cl_id, trade_id, px, qty, fee, exch_ts }) => {
            w.id(*cl_id);
            w.u64(*trade_id);
            w.i64(px.0);
            w.i64(qty.0);
            w.i64(fee.0);
            w.u64(exch_ts.0);
            4
        }
        Entry::Record(Record::OrderState { cl_id, state, filled }) => {
            w.id(*cl_id);
            let (s, t, c) = state_code(*state);
            w.u8(s);
            w.u8(t);
            w.i32(c);
            w.i64(filled.0);
            5
        }
        Entry::Record(Record::Pair(p)) => {
            w.u32(p.pair);
            w.u16(p.coin);
            w.u8(match p.direction {
                Direction::SellPremium => 0,
                Direction::BuyDiscount => 1,
            });
            w.u8(pair_state_code(p.from));
            w.u8(pair_state_code(p.to));
            w.i64(p.pos_u.0);
            w.i64(p.pos_b.0);
            w.f64(p.entry_premium_bps);
            w.i64(p.fx_entry.0);
            for v in [p.pnl.premium, p.pnl.fx, p.pnl.fees, p.pnl.funding] {
                w.i64(v.0);
            }
            6
        }
        Entry::Record(Record::Trading { state }) => {
            let (s, h, bits) = trading_code(*state);
            w.u8(s);
            w.u8(h);
            w.u16(bits);
            7
        }
    };
    slot[4] = kind;
    slot[5] = VERSION;
    slot[8..16].copy_from_slice(&ts.0.to_le_bytes());
    let crc = crc32fast::hash(&slot[4..]);
    slot[0..4].copy_from_slice(&crc.to_le_bytes());
}

/// What a slot turned out to be.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Slot {
    /// Never written (all zero): the end of the journal.
    Empty,
    /// A valid entry.
    Valid(Nanos, Entry),
    /// Written but not valid: a torn write or corruption.
    Corrupt,
}

/// Decodes a slot.
pub fn decode(slot: &[u8; SLOT]) -> Slot {
    if slot.iter().all(|&b| b == 0) {
        return Slot::Empty;
    }
    let crc = u32::from_le_bytes([slot[0], slot[1], slot[2], slot[3]]);
    if crc != crc32fast::hash(&slot[4..]) || slot[5] != VERSION {
        return Slot::Corrupt;
    }
    let ts = Nanos(u64::from_le_bytes(slot[8..16].try_into().unwrap_or([0; 8])));
    match decode_payload(slot[4], &slot[HEADER..]) {
        Some(e) => Slot::Valid(ts, e),
        None => Slot::Corrupt,
    }
}

fn decode_payload(kind: u8, b: &[u8]) -> Option<Entry> {
    let mut r = R { b, at: 0 };
    Some(match kind {
        1 => Entry::Epoch(r.u32()?),
        2 => {
            let seq = r.u32()?;
            let pair = r.u32()?;
            let coin = r.u16()?;
            let purpose = purpose_of(r.u8()?)?;
            let mut orders = [None, None];
            for o in orders.iter_mut() {
                let present = r.u8()?;
                let id = r.id();
                *o = if present == 1 { Some(id?) } else { None };
            }
            Entry::Record(Record::Intent { seq, pair, coin, purpose, orders })
        }
        3 => {
            let cl_id = r.id()?;
            let inst = InstrumentId(r.u16()?);
            let side = side_of(r.u8()?)?;
            let kind = match r.u8()? {
                0 => OrderKind::LimitIoc,
                1 => OrderKind::Market,
                _ => return None,
            };
            let px = Price(r.i64()?);
            let qty = Qty(r.i64()?);
            let reduce_only = r.u8()? == 1;
            Entry::Record(Record::Order(OrderRequest {
                cl_id,
                inst,
                side,
                kind,
                px,
                qty,
                reduce_only,
            }))
        }
        4 => Entry::Record(Record::Fill {
            cl_id: r.id()?,
            trade_id: r.u64()?,
            px: Price(r.i64()?),
            qty: Qty(r.i64()?),
            fee: Quote(r.i64()?),
            exch_ts: Nanos(r.u64()?),
        }),
        5 => {
            let cl_id = r.id()?;
            let (s, t, c) = (r.u8()?, r.u8()?, r.i32()?);
            let state = state_of(s, t, c)?;
            Entry::Record(Record::OrderState { cl_id, state, filled: Qty(r.i64()?) })
        }
        6 => {
            let pair = r.u32()?;
            let coin = r.u16()?;
            let direction = match r.u8()? {
                0 => Direction::SellPremium,
                1 => Direction::BuyDiscount,
                _ => return None,
            };
            let from = pair_state_of(r.u8()?)?;
            let to = pair_state_of(r.u8()?)?;
            let pos_u = Qty(r.i64()?);
            let pos_b = Qty(r.i64()?);
            let entry_premium_bps = r.f64()?;
            let fx_entry = Price(r.i64()?);
            let pnl = PnlSplit {
                premium: Krw(r.i64()?),
                fx: Krw(r.i64()?),
                fees: Krw(r.i64()?),
                funding: Krw(r.i64()?),
            };
            Entry::Record(Record::Pair(PairRecord {
                pair,
                coin,
                direction,
                from,
                to,
                pos_u,
                pos_b,
                entry_premium_bps,
                fx_entry,
                pnl,
            }))
        }
        7 => Entry::Record(Record::Trading { state: trading_of(r.u8()?, r.u8()?, r.u16()?)? }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seq: u32, leg: Leg) -> ClientId {
        ClientId { epoch: 3, seq, leg, attempt: 2 }
    }

    pub(crate) fn samples() -> Vec<Entry> {
        let req = OrderRequest {
            cl_id: id(9, Leg::B),
            inst: InstrumentId(1),
            side: Side::Sell,
            kind: OrderKind::Market,
            px: Price(7_050_000_000_000),
            qty: Qty(9_500_000),
            reduce_only: true,
        };
        vec![
            Entry::Epoch(42),
            Entry::Record(Record::Intent {
                seq: 9,
                pair: 4,
                coin: 2,
                purpose: Purpose::Hedge,
                orders: [Some(id(9, Leg::U)), None],
            }),
            Entry::Record(Record::Order(req)),
            Entry::Record(Record::Fill {
                cl_id: id(9, Leg::U),
                trade_id: u64::MAX,
                px: Price(-1),
                qty: Qty(5),
                fee: Quote(7),
                exch_ts: Nanos(11),
            }),
            Entry::Record(Record::OrderState {
                cl_id: id(1, Leg::B),
                state: OrderState::Rejected(RejectReason::Other(-2019)),
                filled: Qty(0),
            }),
            Entry::Record(Record::OrderState {
                cl_id: id(1, Leg::B),
                state: OrderState::Unknown,
                filled: Qty(3),
            }),
            Entry::Record(Record::Pair(PairRecord {
                pair: 4,
                coin: 2,
                direction: Direction::BuyDiscount,
                from: PairState::Closing,
                to: PairState::Closed,
                pos_u: Qty(-3),
                pos_b: Qty(3),
                entry_premium_bps: 312.5,
                fx_entry: Price(146_900_000_000),
                pnl: PnlSplit { premium: Krw(1), fx: Krw(-2), fees: Krw(-3), funding: Krw(4) },
            })),
            Entry::Record(Record::Trading { state: TradingState::halted(HaltReason::OrphanHard) }),
            Entry::Record(Record::Trading {
                state: TradingState::Halted(
                    HaltSet::of(HaltReason::OrderRate)
                        .with(HaltReason::OrphanHard)
                        .with(HaltReason::Mismatch),
                ),
            }),
        ]
    }

    #[test]
    fn a_version_1_trading_record_decodes_as_its_one_reason() {
        // What the codec wrote before halt sets: state 2, reason 1 (order_rate), no bits.
        let mut slot = [0u8; SLOT];
        encode(
            &Entry::Record(Record::Trading { state: TradingState::Active }),
            Nanos(7),
            &mut slot,
        );
        slot[HEADER] = 2;
        slot[HEADER + 1] = 1;
        let crc = crc32fast::hash(&slot[4..]);
        slot[0..4].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(
            decode(&slot),
            Slot::Valid(
                Nanos(7),
                Entry::Record(Record::Trading {
                    state: TradingState::halted(HaltReason::OrderRate)
                })
            )
        );
        // Bits that disagree with the first reason, or name no reason, are corruption.
        for bits in [0b100u16, 1 << 12] {
            slot[HEADER + 2..HEADER + 4].copy_from_slice(&bits.to_le_bytes());
            let crc = crc32fast::hash(&slot[4..]);
            slot[0..4].copy_from_slice(&crc.to_le_bytes());
            assert_eq!(decode(&slot), Slot::Corrupt, "bits {bits:#b}");
        }
    }

    #[test]
    fn every_kind_round_trips() {
        for (i, e) in samples().into_iter().enumerate() {
            let mut slot = [0u8; SLOT];
            encode(&e, Nanos(i as u64 + 1), &mut slot);
            assert_eq!(decode(&slot), Slot::Valid(Nanos(i as u64 + 1), e));
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let mut slot = [0u8; SLOT];
        encode(&samples()[6], Nanos(5), &mut slot);
        for byte in 0..SLOT {
            for bit in 0..8 {
                let mut s = slot;
                s[byte] ^= 1 << bit;
                assert!(matches!(decode(&s), Slot::Corrupt | Slot::Empty), "byte {byte} bit {bit}");
            }
        }
        assert_eq!(decode(&[0u8; SLOT]), Slot::Empty);
    }
}
