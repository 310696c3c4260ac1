//! `[["price","qty"], …]` level arrays (depth events and REST snapshots).

use kimp_core::event::Level;
use kimp_core::units::{Price, Qty};

use crate::codec::{CodecError, CodecResult};
use crate::json::{Cursor, Doc};

/// A level's price must be positive and its quantity not negative (zero removes it): a
/// hostile level would otherwise be skipped by the book while the event's ids are
/// applied, so the real event that follows would be dropped as a duplicate.
#[inline]
fn valid_level(px: i64, qty: i64, field: &'static str) -> CodecResult<()> {
    if px <= 0 || qty < 0 { Err(CodecError::BadNumber(field)) } else { Ok(()) }
}

/// Reads a level array from the scanner into `out` (cleared first), at most `max` levels.
#[inline]
pub fn scan_levels(
    c: &mut Cursor<'_>,
    out: &mut Vec<Level>,
    max: usize,
    field: &'static str,
) -> CodecResult<()> {
    out.clear();
    c.array()?;
    let mut first = true;
    while c.next_elem(&mut first)? {
        if out.len() >= max {
            return Err(CodecError::TooLarge);
        }
        c.array()?;
        let px = c.quoted_decimal(field)?;
        c.eat(b',')?;
        let qty = c.quoted_decimal(field)?;
        // Binance sends exactly two strings; anything more is a shape we do not know.
        c.eat(b']')?;
        valid_level(px, qty, field)?;
        out.push(Level::new(Price(px), Qty(qty)));
    }
    Ok(())
}

/// Reads a level array from a simd-json document into `out` (cleared first).
pub fn tape_levels(
    d: &Doc<'_, '_>,
    arr: usize,
    out: &mut Vec<Level>,
    max: usize,
    field: &'static str,
) -> CodecResult<()> {
    out.clear();
    let n = d.array_len(arr).ok_or(CodecError::Malformed(field))?;
    if n > max {
        return Err(CodecError::TooLarge);
    }
    for e in d.elems(arr) {
        if d.array_len(e) != Some(2) {
            return Err(CodecError::Malformed(field));
        }
        let px = d.decimal(e + 1).ok_or(CodecError::BadNumber(field))?;
        let qty = d.decimal(e + 2).ok_or(CodecError::BadNumber(field))?;
        valid_level(px, qty, field)?;
        out.push(Level::new(Price(px), Qty(qty)));
    }
    Ok(())
}
