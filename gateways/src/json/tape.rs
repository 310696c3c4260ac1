//! simd-json with reused buffers, plus the raw text of numbers.
//!
//! simd-json mutates its input, so each frame is copied into a scratch buffer; the tape,
//! the parser buffers and the scratch are kept between messages, so after warm-up a parse
//! does not allocate. Upbit sends prices and sizes as JSON numbers (`4.843e-05`); the tape
//! only holds them as f64, so [`Doc::decimal`] goes back to the number's text in the
//! original frame (via simd-json's structural indexes) and parses that exactly.

use simd_json::{Buffers, Node, StaticNode, Tape};

use crate::codec::{CodecError, CodecResult};

/// Deepest nesting accepted (venue documents nest four or five levels).
pub const MAX_DEPTH: usize = 64;

/// Reusable simd-json state for one feed.
pub struct JsonScratch {
    input: Vec<u8>,
    buffers: Buffers,
    tape: Option<Tape<'static>>,
    /// Structural index of each tape node (built on demand for raw number text).
    node_pos: Vec<u32>,
}

impl core::fmt::Debug for JsonScratch {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("JsonScratch").field("capacity", &self.input.capacity()).finish()
    }
}

impl Default for JsonScratch {
    fn default() -> Self {
        Self::new(64 * 1024)
    }
}

impl JsonScratch {
    /// Buffers sized for frames of about `frame_len` bytes (they grow if needed).
    ///
    /// simd-json sizes its structural index and stage-2 stack from the input length /
    /// 128 and grows them on the first dense document, which on a live loop is a
    /// user-stream event long after warm-up. So one document of `frame_len` bytes at
    /// about the densest a venue sends (a structural every two bytes) is parsed here,
    /// and nesting is capped at [`MAX_DEPTH`] (deeper input is an error, not a bigger
    /// stack).
    pub fn new(frame_len: usize) -> Self {
        let mut s = Self {
            input: Vec::with_capacity(frame_len),
            buffers: Buffers::with_max_depth(frame_len, MAX_DEPTH),
            tape: Some(Tape(Vec::with_capacity(frame_len / 4))),
            node_pos: Vec::with_capacity(frame_len / 2),
        };
        let pairs = frame_len.saturating_sub(2) / 8;
        if pairs > 0 {
            let mut warm = Vec::with_capacity(pairs * 8 + 2);
            warm.push(b'{');
            for i in 0..pairs {
                warm.extend_from_slice(if i == 0 { b"\"a\":\"b\"" } else { b",\"a\":\"b\"" });
            }
            warm.extend_from_slice(b",\"c\":[[[[[[[[0]]]]]]]]}");
            let _ = s.with_doc(&warm, true, |_| Ok(()));
        }
        s
    }

    /// Parses `msg` and runs `f` on the document. `raw_numbers` builds the map needed by
    /// [`Doc::decimal`] on unquoted numbers (Upbit).
    pub fn with_doc<R>(
        &mut self,
        msg: &[u8],
        raw_numbers: bool,
        f: impl FnOnce(&Doc<'_, '_>) -> CodecResult<R>,
    ) -> CodecResult<R> {
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        self.input.clear();
        self.input.extend_from_slice(msg);
        let out = match simd_json::fill_tape(&mut self.input, &mut self.buffers, &mut tape) {
            Ok(()) => {
                self.node_pos.clear();
                if raw_numbers {
                    // Tape nodes correspond one to one, in order, to the structural
                    // indexes that are not `:` `,` `]` `}` (checked by a unit test).
                    for &i in self.buffers.structural_indexes() {
                        match msg.get(i as usize) {
                            Some(b':' | b',' | b']' | b'}') | None => {}
                            Some(_) => self.node_pos.push(i),
                        }
                    }
                }
                let doc = Doc { nodes: &tape.0, raw: msg, pos: &self.node_pos };
                f(&doc)
            }
            Err(_) => Err(CodecError::Malformed("json")),
        };
        self.tape = Some(tape.reset());
        out
    }
}

/// A parsed document: tape nodes addressed by index.
#[derive(Clone, Copy, Debug)]
pub struct Doc<'t, 'i> {
    nodes: &'t [Node<'i>],
    raw: &'t [u8],
    pos: &'t [u32],
}

impl<'t, 'i> Doc<'t, 'i> {
    /// The root node index.
    pub const ROOT: usize = 0;

    /// The node at `i`.
    #[inline]
    pub fn node(&self, i: usize) -> Option<&Node<'i>> {
        self.nodes.get(i)
    }

    /// Index just past the value at `i` (its next sibling).
    #[inline]
    pub fn next(&self, i: usize) -> usize {
        match self.nodes.get(i) {
            Some(Node::Object { count, .. }) | Some(Node::Array { count, .. }) => i + 1 + count,
            _ => i + 1,
        }
    }

    /// True when `i` is an object.
    #[inline]
    pub fn is_object(&self, i: usize) -> bool {
        matches!(self.nodes.get(i), Some(Node::Object { .. }))
    }

    /// Iterates `(key, value index)` of the object at `i` (empty if not an object).
    pub fn fields(&self, i: usize) -> Fields<'_, 't, 'i> {
        let n = match self.nodes.get(i) {
            Some(Node::Object { len, .. }) => *len,
            _ => 0,
        };
        Fields { doc: self, at: i + 1, left: n }
    }

    /// Iterates the element indexes of the array at `i` (empty if not an array).
    pub fn elems(&self, i: usize) -> Elems<'_, 't, 'i> {
        let n = match self.nodes.get(i) {
            Some(Node::Array { len, .. }) => *len,
            _ => 0,
        };
        Elems { doc: self, at: i + 1, left: n }
    }

    /// Number of elements of the array at `i`.
    pub fn array_len(&self, i: usize) -> Option<usize> {
        match self.nodes.get(i) {
            Some(Node::Array { len, .. }) => Some(*len),
            _ => None,
        }
    }

    /// Value index of `key` in the object at `obj`.
    pub fn get(&self, obj: usize, key: &str) -> Option<usize> {
        self.fields(obj).find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// The string at `i`.
    #[inline]
    pub fn str(&self, i: usize) -> Option<&'i str> {
        match self.nodes.get(i) {
            Some(Node::String(s)) => Some(s),
            _ => None,
        }
    }

    /// True when the value at `i` is `null`.
    pub fn is_null(&self, i: usize) -> bool {
        matches!(self.nodes.get(i), Some(Node::Static(StaticNode::Null)))
    }

    /// The boolean at `i`.
    pub fn bool(&self, i: usize) -> Option<bool> {
        match self.nodes.get(i) {
            Some(Node::Static(StaticNode::Bool(b))) => Some(*b),
            _ => None,
        }
    }

    /// The non-negative integer at `i` (a JSON integer, or a string of digits).
    #[inline]
    pub fn u64(&self, i: usize) -> Option<u64> {
        match self.nodes.get(i) {
            Some(Node::Static(StaticNode::U64(v))) => Some(*v),
            Some(Node::Static(StaticNode::I64(v))) => u64::try_from(*v).ok(),
            Some(Node::String(s)) => crate::num::uint(s.as_bytes()),
            _ => None,
        }
    }

    /// The signed integer at `i`.
    pub fn i64(&self, i: usize) -> Option<i64> {
        match self.nodes.get(i) {
            Some(Node::Static(StaticNode::I64(v))) => Some(*v),
            Some(Node::Static(StaticNode::U64(v))) => i64::try_from(*v).ok(),
            _ => None,
        }
    }

    /// The exact fixed-point value at `i`: a decimal string (Binance, Upbit REST) or a
    /// JSON number read back from its text (Upbit WebSocket). Never through f64.
    #[inline]
    pub fn decimal(&self, i: usize) -> Option<i64> {
        match self.nodes.get(i) {
            Some(Node::String(s)) => crate::num::decimal(s.as_bytes()),
            Some(Node::Static(StaticNode::U64(_) | StaticNode::I64(_) | StaticNode::F64(_))) => {
                let start = *self.pos.get(i)? as usize;
                let rest = self.raw.get(start..)?;
                let len = rest
                    .iter()
                    .position(|c| {
                        !(c.is_ascii_digit() || matches!(c, b'-' | b'+' | b'.' | b'e' | b'E'))
                    })
                    .unwrap_or(rest.len());
                crate::num::decimal(&rest[..len])
            }
            _ => None,
        }
    }
}

/// Iterator over an object's fields.
#[derive(Debug)]
pub struct Fields<'d, 't, 'i> {
    doc: &'d Doc<'t, 'i>,
    at: usize,
    left: usize,
}

impl<'i> Iterator for Fields<'_, '_, 'i> {
    type Item = (&'i str, usize);
    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let k = self.doc.str(self.at)?;
        let v = self.at + 1;
        self.at = self.doc.next(v);
        Some((k, v))
    }
}

/// Iterator over an array's element indexes.
#[derive(Debug)]
pub struct Elems<'d, 't, 'i> {
    doc: &'d Doc<'t, 'i>,
    at: usize,
    left: usize,
}

impl Iterator for Elems<'_, '_, '_> {
    type Item = usize;
    #[inline]
    fn next(&mut self) -> Option<usize> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let v = self.at;
        self.at = self.doc.next(v);
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_numbers_are_exact() {
        let mut j = JsonScratch::new(256);
        let msg = br#"{"a":"x\"y,:}]","b":[103493000.0,{"c":4.843e-05}],"d":0.00483381 ,"e":2E-7,"f":"70500.00"}"#;
        let got = j
            .with_doc(msg, true, |d| {
                let b = d.get(0, "b").unwrap();
                let mut e = d.elems(b);
                let x = e.next().unwrap();
                let o = e.next().unwrap();
                Ok((
                    d.decimal(x),
                    d.decimal(d.get(o, "c").unwrap()),
                    d.decimal(d.get(0, "d").unwrap()),
                    d.decimal(d.get(0, "e").unwrap()),
                    d.decimal(d.get(0, "f").unwrap()),
                    d.str(d.get(0, "a").unwrap()).map(str::to_owned),
                ))
            })
            .unwrap();
        assert_eq!(got.0, Some(103_493_000 * 100_000_000));
        assert_eq!(got.1, Some(4_843));
        assert_eq!(got.2, Some(483_381));
        assert_eq!(got.3, Some(20));
        assert_eq!(got.4, Some(7_050_000_000_000));
        assert_eq!(got.5.as_deref(), Some("x\"y,:}]"));
        assert!(j.with_doc(b"{\"a\":", false, |_| Ok(())).is_err());
        // Reuse after an error.
        assert_eq!(j.with_doc(b"[1,2]", true, |d| Ok(d.array_len(0))).unwrap(), Some(2));
    }
}
