//! HTTP/1.1 request bytes written into a reusable buffer (no allocation once the buffer
//! has grown to the largest request). The transport sends the bytes as they are.

use crate::num::write_u64;

/// Starts a request: `METHOD path[?query] HTTP/1.1` and `Host`.
#[inline]
pub fn start(out: &mut Vec<u8>, method: &str, path: &str, query: &[u8], host: &str) {
    out.clear();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    if !query.is_empty() {
        out.push(b'?');
        out.extend_from_slice(query);
    }
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Adds one header line.
#[inline]
pub fn header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Ends the head and appends the body; `Content-Length` is written when there is a body
/// or the method conventionally carries one (`with_length`).
#[inline]
pub fn finish(out: &mut Vec<u8>, body: &[u8], with_length: bool) {
    if with_length || !body.is_empty() {
        out.extend_from_slice(b"Content-Length: ");
        write_u64(out, body.len() as u64);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// Splits written request bytes into (head, body) at the blank line (tests, simulator).
pub fn split(req: &[u8]) -> Option<(&[u8], &[u8])> {
    let i = req.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some((&req[..i], &req[i + 4..]))
}
