//! Upbit JWT: `base64url(header).base64url(payload).base64url(HMAC(secret, header.payload))`.
//!
//! The header and payload JSON are written by hand, compact and in a fixed key order
//! (`alg`,`typ` / `access_key`,`nonce`,`query_hash`,`query_hash_alg`), because the tokens
//! must match the computed vectors byte for byte; a generic JWT crate orders the header
//! differently.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};

use super::{SignError, secret::Secret};

/// JWT signing algorithm. Upbit accepts both; the current docs use HS512.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JwtAlg {
    /// HMAC-SHA256.
    Hs256,
    /// HMAC-SHA512.
    Hs512,
}

impl JwtAlg {
    /// `base64url({"alg":"HS256","typ":"JWT"})` (or HS512), precomputed.
    const fn header_b64(self) -> &'static [u8] {
        match self {
            JwtAlg::Hs256 => b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9",
            JwtAlg::Hs512 => b"eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9",
        }
    }
}

/// Lower-case hex SHA-512 of the string Upbit wants hashed (the **unencoded** query
/// string, or a JSON body re-expressed as `k=v&…` in body order).
pub fn upbit_query_hash(query: &[u8]) -> [u8; 128] {
    let d = Sha512::digest(query);
    let mut out = [0u8; 128];
    super::hex_lower_into(&d, &mut out);
    out
}

/// True for bytes we can put inside a JSON string without escaping. Keys and nonces are
/// ASCII alphanumerics and `-`; refusing anything else keeps the payload compact and
/// unambiguous.
fn plain_json(s: &[u8]) -> bool {
    s.iter().all(|&c| c.is_ascii_graphic() && c != b'"' && c != b'\\')
}

/// Signs Upbit REST requests. Keyed once; the scratch payload buffer is reused, so after
/// the first call signing does not allocate (given an `out` with spare capacity).
///
/// Every token starts with the same bytes: the header, `.`, and the base64 of
/// `{"access_key":"…","nonce":"` up to its last whole 3-byte group. Those are encoded
/// once, and the MAC states have already absorbed them, so a request only encodes and
/// hashes what changes (same bytes out; a SHA-512 block costs ~150 ns here).
pub struct UpbitSigner {
    access_key: Box<str>,
    alg: JwtAlg,
    /// Keyed for `alg`, with the token prefix already absorbed.
    mac: Keyed,
    /// `header.` + base64 of the constant payload prefix's whole 3-byte groups.
    token_prefix: Box<[u8]>,
    /// The prefix's remaining 0–2 bytes, which start every payload's encoded part.
    payload_head: Box<[u8]>,
    payload: Vec<u8>,
}

/// An HMAC state keyed with the secret (HMAC's inner and outer pads already hashed).
#[derive(Clone)]
enum Keyed {
    S256(Hmac<Sha256>),
    S512(Hmac<Sha512>),
}

impl core::fmt::Debug for UpbitSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("UpbitSigner")
            .field("access_key", &self.access_key)
            .field("alg", &self.alg)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl UpbitSigner {
    /// A signer for `access_key` with `secret` (used as raw UTF-8 bytes, per the docs).
    pub fn new(access_key: &str, secret: &Secret, alg: JwtAlg) -> Result<Self, SignError> {
        if access_key.is_empty() || !plain_json(access_key.as_bytes()) {
            return Err(SignError::BadInput("access key"));
        }
        // HMAC accepts keys of any length, so these cannot fail.
        let mut head = b"{\"access_key\":\"".to_vec();
        head.extend_from_slice(access_key.as_bytes());
        head.extend_from_slice(b"\",\"nonce\":\"");
        let whole = head.len() / 3 * 3;
        let mut token_prefix = alg.header_b64().to_vec();
        token_prefix.push(b'.');
        push_b64(&mut token_prefix, &head[..whole]);
        let bad = |_| SignError::BadInput("secret");
        let mut mac = match alg {
            JwtAlg::Hs256 => Keyed::S256(Hmac::new_from_slice(secret.expose()).map_err(bad)?),
            JwtAlg::Hs512 => Keyed::S512(Hmac::new_from_slice(secret.expose()).map_err(bad)?),
        };
        match &mut mac {
            Keyed::S256(m) => m.update(&token_prefix),
            Keyed::S512(m) => m.update(&token_prefix),
        }
        Ok(Self {
            access_key: access_key.into(),
            alg,
            mac,
            token_prefix: token_prefix.into(),
            payload_head: head[whole..].into(),
            payload: Vec::with_capacity(512),
        })
    }

    /// The algorithm this signer uses.
    pub fn alg(&self) -> JwtAlg {
        self.alg
    }

    /// The access key (public; safe to log).
    pub fn access_key(&self) -> &str {
        &self.access_key
    }

    /// Appends the JWT for a request to `out`. `query` is the string to hash (unencoded
    /// query string or re-expressed body); empty means "no parameters" and omits
    /// `query_hash`.
    pub fn sign_into(
        &mut self,
        nonce: &str,
        query: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), SignError> {
        if query.is_empty() {
            self.sign_with_hash(nonce, None, out)
        } else {
            let h = upbit_query_hash(query);
            self.sign_with_hash(nonce, Some(&h), out)
        }
    }

    /// As [`sign_into`](Self::sign_into) with a precomputed `query_hash` (hex).
    pub fn sign_with_hash(
        &mut self,
        nonce: &str,
        query_hash: Option<&[u8; 128]>,
        out: &mut Vec<u8>,
    ) -> Result<(), SignError> {
        if nonce.is_empty() || !plain_json(nonce.as_bytes()) {
            return Err(SignError::BadInput("nonce"));
        }
        let p = &mut self.payload;
        p.clear();
        p.extend_from_slice(&self.payload_head);
        p.extend_from_slice(nonce.as_bytes());
        if let Some(h) = query_hash {
            p.extend_from_slice(b"\",\"query_hash\":\"");
            p.extend_from_slice(h);
            p.extend_from_slice(b"\",\"query_hash_alg\":\"SHA512");
        }
        p.extend_from_slice(b"\"}");

        out.extend_from_slice(&self.token_prefix);
        let fresh = out.len();
        push_b64(out, &self.payload);
        let end = out.len();
        out.push(b'.');
        match &self.mac {
            Keyed::S256(k) => {
                let mut m = k.clone();
                m.update(&out[fresh..end]);
                push_b64(out, &m.finalize().into_bytes());
            }
            Keyed::S512(k) => {
                let mut m = k.clone();
                m.update(&out[fresh..end]);
                push_b64(out, &m.finalize().into_bytes());
            }
        }
        Ok(())
    }
}

/// Appends base64url (no padding) of `src` to `out`, allocating only if `out` lacks capacity.
fn push_b64(out: &mut Vec<u8>, src: &[u8]) {
    let start = out.len();
    let n = base64::encoded_len(src.len(), false).unwrap_or(0);
    out.resize(start + n, 0);
    // The slice is exactly the encoded length, so this cannot fail.
    let _ = URL_SAFE_NO_PAD.encode_slice(src, &mut out[start..]);
}

/// The claims of a verified Upbit JWT (for the simulator; owned, off the hot path).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpbitClaims {
    /// Algorithm the token was signed with.
    pub alg: JwtAlg,
    /// `access_key` claim.
    pub access_key: String,
    /// `nonce` claim.
    pub nonce: String,
    /// `query_hash` claim, when the request has parameters.
    pub query_hash: Option<String>,
    /// `query_hash_alg` claim (`SHA512` by default when absent).
    pub query_hash_alg: Option<String>,
}

impl UpbitClaims {
    /// True when the token's `query_hash` matches `query` (the unencoded query string or
    /// the re-expressed body); with no parameters, the token must carry no hash.
    pub fn query_matches(&self, query: &[u8]) -> bool {
        match (&self.query_hash, query.is_empty()) {
            (None, true) => true,
            (Some(h), false) => {
                let alg_ok =
                    self.query_hash_alg.as_deref().is_none_or(|a| a.eq_ignore_ascii_case("SHA512"));
                alg_ok && h.as_bytes().eq_ignore_ascii_case(&upbit_query_hash(query))
            }
            _ => false,
        }
    }
}

#[derive(serde::Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    alg: &'a str,
}

#[derive(serde::Deserialize)]
struct Claims {
    access_key: String,
    nonce: String,
    #[serde(default)]
    query_hash: Option<String>,
    #[serde(default)]
    query_hash_alg: Option<String>,
}

/// Verifies an Upbit JWT (without the `Bearer ` prefix) signed with HS256 or HS512.
/// `secret_lookup` maps the token's `access_key` to its secret. The caller still checks
/// nonce reuse and [`UpbitClaims::query_matches`].
pub fn verify_upbit_jwt<'s>(
    token: &[u8],
    secret_lookup: impl FnOnce(&str) -> Option<&'s Secret>,
) -> Result<UpbitClaims, SignError> {
    let mut parts = token.splitn(3, |&c| c == b'.');
    let (h64, p64, s64) = match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s)) if !s.contains(&b'.') => (h, p, s),
        _ => return Err(SignError::Malformed("token must have three parts")),
    };
    let mut header =
        URL_SAFE_NO_PAD.decode(h64).map_err(|_| SignError::Malformed("header base64"))?;
    let alg = {
        let h: Header<'_> = simd_json::serde::from_slice(&mut header)
            .map_err(|_| SignError::Malformed("header json"))?;
        match h.alg {
            "HS256" => JwtAlg::Hs256,
            "HS512" => JwtAlg::Hs512,
            _ => return Err(SignError::UnsupportedAlg),
        }
    };
    let mut payload =
        URL_SAFE_NO_PAD.decode(p64).map_err(|_| SignError::Malformed("payload base64"))?;
    let c: Claims = simd_json::serde::from_slice(&mut payload)
        .map_err(|_| SignError::Malformed("payload json"))?;
    let sig = URL_SAFE_NO_PAD.decode(s64).map_err(|_| SignError::Malformed("signature base64"))?;
    let secret = secret_lookup(&c.access_key).ok_or(SignError::UnknownKey)?;
    let signed = &token[..h64.len() + 1 + p64.len()];
    let ok = match alg {
        JwtAlg::Hs256 => {
            let mut m = Hmac::<Sha256>::new_from_slice(secret.expose())
                .map_err(|_| SignError::UnknownKey)?;
            m.update(signed);
            m.verify_slice(&sig).is_ok()
        }
        JwtAlg::Hs512 => {
            let mut m = Hmac::<Sha512>::new_from_slice(secret.expose())
                .map_err(|_| SignError::UnknownKey)?;
            m.update(signed);
            m.verify_slice(&sig).is_ok()
        }
    };
    if !ok {
        return Err(SignError::BadSignature);
    }
    Ok(UpbitClaims {
        alg,
        access_key: c.access_key,
        nonce: c.nonce,
        query_hash: c.query_hash,
        query_hash_alg: c.query_hash_alg,
    })
}

/// Re-expresses a JSON object body as the `k=v&k2=v2` string Upbit hashes: keys in body
/// order, values unencoded, arrays as repeated `k[]=v`, `null` members skipped. For the
/// simulator (allocates).
pub fn json_body_to_query(body: &[u8]) -> Result<String, SignError> {
    use simd_json::{Node, StaticNode};
    let mut buf = body.to_vec();
    let tape = simd_json::to_tape(&mut buf).map_err(|_| SignError::Malformed("body json"))?;
    let nodes = &tape.0;
    let Some(Node::Object { len, .. }) = nodes.first() else {
        return Err(SignError::Malformed("body is not an object"));
    };
    let mut out = String::new();
    let mut i = 1;
    let push = |out: &mut String, k: &str, arr: bool, n: &Node<'_>| -> Result<(), SignError> {
        let v = match n {
            Node::String(s) => (*s).to_owned(),
            Node::Static(StaticNode::I64(v)) => v.to_string(),
            Node::Static(StaticNode::U64(v)) => v.to_string(),
            Node::Static(StaticNode::F64(v)) => v.to_string(),
            Node::Static(StaticNode::Bool(v)) => v.to_string(),
            Node::Static(StaticNode::Null) => return Ok(()),
            _ => return Err(SignError::Malformed("nested value in body")),
        };
        if !out.is_empty() {
            out.push('&');
        }
        out.push_str(k);
        if arr {
            out.push_str("[]");
        }
        out.push('=');
        out.push_str(&v);
        Ok(())
    };
    for _ in 0..*len {
        let Some(Node::String(k)) = nodes.get(i) else {
            return Err(SignError::Malformed("key"));
        };
        i += 1;
        match nodes.get(i) {
            Some(Node::Array { len: n, count }) => {
                for j in 0..*n {
                    let node = nodes.get(i + 1 + j).ok_or(SignError::Malformed("array"))?;
                    push(&mut out, k, true, node)?;
                }
                if *count != *n {
                    return Err(SignError::Malformed("nested value in body"));
                }
                i += 1 + count;
            }
            Some(n) => {
                push(&mut out, k, false, n)?;
                i += 1;
            }
            None => return Err(SignError::Malformed("value")),
        }
    }
    Ok(out)
}
