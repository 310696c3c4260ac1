//! Every signing vector in fixtures/protocol/signing_vectors.json (and doc §7), byte for
//! byte: Upbit JWT HS256/HS512 (U1–U5, incl. the percent-encoded pitfall) and Binance
//! HMAC-SHA256 (B1–B5); plus the simulator-side verifiers accept the good tokens and
//! refuse tampered ones.

use kimp_gateways::sign::*;
use simd_json::prelude::*;

#[path = "../../testdata/locate.rs"]
mod locate;

fn vectors() -> simd_json::OwnedValue {
    let p = locate::testdata("fixtures/protocol/signing_vectors.json");
    let mut b = std::fs::read(p).expect("signing_vectors.json");
    simd_json::to_owned_value(&mut b).expect("json")
}

fn s<'a>(v: &'a simd_json::OwnedValue, k: &str) -> &'a str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or_else(|| panic!("missing {k}"))
}

#[test]
fn upbit_jwt_vectors_byte_for_byte() {
    let all = vectors();
    let ups = all.get("upbit").and_then(|v| v.as_array()).expect("upbit");
    assert_eq!(ups.len(), 5);
    for v in ups {
        let name = s(v, "name");
        let secret = Secret::new(s(v, "secret_key"));
        let q = s(v, "query_string").as_bytes();
        match v.get("query_hash").and_then(|x| x.as_str()) {
            Some(h) => assert_eq!(&upbit_query_hash(q)[..], h.as_bytes(), "{name}"),
            None => assert!(q.is_empty(), "{name}"),
        }
        for (alg, key) in [(JwtAlg::Hs256, "jwt_hs256"), (JwtAlg::Hs512, "jwt_hs512")] {
            let mut signer = UpbitSigner::new(s(v, "access_key"), &secret, alg).unwrap();
            let mut out = Vec::new();
            signer.sign_into(s(v, "nonce"), q, &mut out).unwrap();
            assert_eq!(std::str::from_utf8(&out).unwrap(), s(v, key), "{name} {alg:?}");
            // The payload is exactly the documented compact JSON.
            let p64 = std::str::from_utf8(&out).unwrap().split('.').nth(1).unwrap().to_owned();
            use base64::Engine as _;
            let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p64).unwrap();
            assert_eq!(payload, s(v, "jwt_payload_json").as_bytes(), "{name}");

            let claims =
                verify_upbit_jwt(&out, |k| (k == s(v, "access_key")).then_some(&secret)).unwrap();
            assert_eq!(claims.alg, alg);
            assert_eq!(claims.nonce, s(v, "nonce"));
            assert!(claims.query_matches(q), "{name}");
            assert!(!claims.query_matches(b"x=1"), "{name}");
            // Tampering with any part fails.
            let mut bad = out.clone();
            let n = bad.len();
            bad[n - 2] = if bad[n - 2] == b'A' { b'B' } else { b'A' };
            assert_eq!(
                verify_upbit_jwt(&bad, |_| Some(&secret)),
                Err(SignError::BadSignature),
                "{name}"
            );
            let wrong = Secret::new("wrong");
            assert_eq!(verify_upbit_jwt(&out, |_| Some(&wrong)), Err(SignError::BadSignature));
            assert_eq!(verify_upbit_jwt(&out, |_| None), Err(SignError::UnknownKey));
        }
        // U5: the percent-encoded form hashes differently and the token would not verify.
        if let Some(wrong) = v.get("WRONG_percent_encoded_query_string").and_then(|x| x.as_str()) {
            assert_eq!(
                &upbit_query_hash(wrong.as_bytes())[..],
                s(v, "WRONG_percent_encoded_query_hash").as_bytes()
            );
            assert_ne!(upbit_query_hash(wrong.as_bytes()), upbit_query_hash(q));
            let claims = verify_upbit_jwt(s(v, "jwt_hs512").as_bytes(), |_| Some(&secret)).unwrap();
            assert!(claims.query_matches(q));
            assert!(
                !claims.query_matches(wrong.as_bytes()),
                "percent-encoded query must not match"
            );
        }
        // JSON bodies re-expressed in body order give the hashed string (U2, U4).
        if let Some(body) = v.get("ccxt_upbit_sign_body").and_then(|x| x.as_str()) {
            assert_eq!(
                json_body_to_query(body.as_bytes()).unwrap(),
                s(v, "query_string"),
                "{name}"
            );
        }
    }
}

#[test]
fn binance_hmac_vectors_byte_for_byte() {
    let all = vectors();
    let bs = all.get("binance").and_then(|v| v.as_array()).expect("binance");
    assert_eq!(bs.len(), 5);
    for v in bs {
        let name = s(v, "name");
        let secret = Secret::new(s(v, "secret_key"));
        let payload = s(v, "signature_payload").as_bytes();
        let want = s(v, "signature").as_bytes();
        assert_eq!(&binance_signature(&secret, payload)[..], want, "{name}");
        assert_eq!(&BinanceSigner::new(&secret).sign(payload)[..], want, "{name}");
        let cut = payload.len() / 2;
        assert_eq!(&BinanceSigner::new(&secret).sign2(&payload[..cut], &payload[cut..])[..], want);
        if let Some(off) = v.get("official_expected").and_then(|x| x.as_str()) {
            assert_eq!(want, off.as_bytes(), "{name}");
        }
        assert!(verify_binance_signature(&secret, payload, want));
        assert!(verify_binance_signature(&secret, payload, want.to_ascii_uppercase().as_slice()));
        assert!(!verify_binance_signature(&secret, &payload[1..], want));
        // Server side over the raw final query, signature anywhere.
        let fq = s(v, "final_query").as_bytes();
        assert_eq!(verify_binance_request(&secret, fq, b""), Ok(()), "{name}");
        assert_eq!(verify_binance_request(&secret, b"", fq), Ok(()), "{name} as body");
        // Parameters split across query and body: totalParams = query ++ body, with no
        // separator (doc §4.2), signature appended to the body.
        if let Some(i) = payload.iter().position(|&c| c == b'&') {
            let (q, b) = (&payload[..i], &payload[i + 1..]);
            let sig = BinanceSigner::new(&secret).sign2(q, b);
            let body = [b, b"&signature=", &sig[..]].concat();
            assert_eq!(verify_binance_request(&secret, q, &body), Ok(()), "{name} split");
            let wrong = [&payload[i + 1..], b"&signature=", want].concat();
            assert!(
                verify_binance_request(&secret, q, &wrong).is_err(),
                "{name} split, whole-payload sig"
            );
        }
        let mut tampered = fq.to_vec();
        tampered[0] ^= 0x20;
        assert_eq!(verify_binance_request(&secret, &tampered, b""), Err(SignError::BadSignature));
        // ccxt's own parameter order is also valid, because the server hashes raw bytes.
        if let Some(body) = v.get("ccxt_binanceusdm_sign_body").and_then(|x| x.as_str()) {
            assert_eq!(
                verify_binance_request(&secret, b"", body.as_bytes()),
                Ok(()),
                "{name} ccxt"
            );
        }
    }
}

#[test]
fn signers_do_not_leak_secrets_in_debug() {
    let secret = Secret::new("sKz3YtTq8pWmDnE5vRbH7jLcXa9uF2gN4kQwZe6S");
    let u = UpbitSigner::new("AK", &secret, JwtAlg::Hs512).unwrap();
    let b = BinanceSigner::new(&secret);
    for d in [format!("{u:?}"), format!("{b:?}"), format!("{secret:?}"), format!("{secret}")] {
        assert!(!d.contains("sKz3"), "{d}");
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let secret = Secret::new("k");
    assert!(UpbitSigner::new("a\"b", &secret, JwtAlg::Hs256).is_err());
    let mut u = UpbitSigner::new("ak", &secret, JwtAlg::Hs256).unwrap();
    let mut out = Vec::new();
    assert!(u.sign_into("no\"pe", b"", &mut out).is_err());
    for t in [&b""[..], b"a.b", b"a.b.c.d", b"...", b"eyJ.eyJ.x", b"\xff\xfe.\x00.\x01"] {
        assert!(verify_upbit_jwt(t, |_| Some(&secret)).is_err());
    }
    // A token signed with alg "none" is refused.
    use base64::Engine as _;
    let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let t = format!(
        "{}.{}.",
        e.encode(r#"{"alg":"none","typ":"JWT"}"#),
        e.encode(r#"{"access_key":"ak","nonce":"n"}"#)
    );
    assert_eq!(verify_upbit_jwt(t.as_bytes(), |_| Some(&secret)), Err(SignError::UnsupportedAlg));
    assert!(verify_binance_request(&secret, b"a=1", b"").is_err());
    assert!(verify_binance_request(&secret, b"a=1&signature=zz", b"").is_err());
    assert_eq!(split_signature(b"signature=ab"), Some((&b""[..], &b""[..], &b"ab"[..])));
    assert_eq!(split_signature(b"signature=ab&x=1"), Some((&b""[..], &b"x=1"[..], &b"ab"[..])));
    assert_eq!(
        split_signature(b"x=1&signature=ab&y=2"),
        Some((&b"x=1"[..], &b"&y=2"[..], &b"ab"[..]))
    );
}
