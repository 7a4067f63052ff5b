//! Fuzzes the signed HTTP API request checks.
//!
//! The input is split on its first three `\n` into method, path, query (lossy UTF-8) and the raw body
//! (the rest, as bytes), so seeds read like `POST\n/apps/3/events\nauth_key=...\n{"name":...}`.
//!
//! - `SignedRequest::verify` at several clocks, `SignedRequest::auth_key` and `auth::parse_query` on
//!   the arbitrary request, with consistency checks between them.
//! - `auth::sign_request` with the fuzzed method, path, body and the fuzzed query's parameters as
//!   extras: its output must verify with the same secret and time, fail with another secret, and fail
//!   as expired 601 s later.
//!
//! Any panic, or any failed assertion below, is a bug in vestnik-protocol.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vestnik_protocol::auth::{self, SignatureError, SignedRequest};
use vestnik_protocol::limits::AUTH_TIMESTAMP_WINDOW_SECS;

/// The credentials and clock of the Pusher REST API worked example, so that seeds built from it
/// verify and the fuzzer can explore past the signature check.
const KEY: &str = "278d425bdf160c739803";
const SECRET: &str = "7ad3773142a6692b25b8";
const NOW: u64 = 1_353_088_179;

fn split(bytes: &[u8]) -> (String, String, String, &[u8]) {
    let mut rest = bytes;
    let mut next = || {
        let (head, tail) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = tail;
        String::from_utf8_lossy(head).into_owned()
    };
    let method = next();
    let path = next();
    let query = next();
    (method, path, query, rest)
}

fn check_arbitrary(req: &SignedRequest<'_>) {
    let params = auth::parse_query(req.query);
    assert!(
        params.len() <= req.query.split('&').count(),
        "parse_query made more pairs than the query has"
    );
    let key = req.auth_key();
    assert_eq!(
        key.as_deref(),
        params.get("auth_key"),
        "auth_key disagrees with parse_query"
    );

    for now in [0, NOW, NOW + AUTH_TIMESTAMP_WINDOW_SECS, u64::MAX] {
        match req.verify(SECRET, now) {
            Ok(()) => {
                assert!(key.is_some(), "verified without auth_key");
                // A verified request names a timestamp within the window of `now`.
                let ts: u64 = params
                    .get("auth_timestamp")
                    .and_then(|v| v.parse().ok())
                    .expect("verified request has a numeric auth_timestamp");
                assert!(ts.abs_diff(now) <= AUTH_TIMESTAMP_WINDOW_SECS);
                // Another secret must not verify it.
                assert!(req.verify("not-the-secret", now).is_err(), "wrong secret verified");
            }
            Err(SignatureError::BadSignature { string_to_sign }) => {
                assert_eq!(string_to_sign, req.string_to_sign(&params));
                // Signing exactly that string and substituting the signature must verify.
                let sig = auth::sign(SECRET, &string_to_sign);
                let query = format!("{}&auth_signature={sig}", strip_signatures(req.query));
                let fixed = SignedRequest {
                    query: &query,
                    ..*req
                };
                // Re-signing only fixes the signature if stripping the old one did not change the
                // other parameters (a lone `auth_signature` key without '=' etc. is still stripped).
                if auth::parse_query(&query)
                    .iter()
                    .filter(|(k, _)| *k != "auth_signature")
                    .eq(params.iter().filter(|(k, _)| *k != "auth_signature"))
                {
                    assert_eq!(fixed.verify(SECRET, now), Ok(()), "re-signed request fails");
                }
            }
            Err(_) => {}
        }
    }
}

/// The query without any pair whose decoded key is `auth_signature`.
fn strip_signatures(query: &str) -> String {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let k = p.split_once('=').map_or(*p, |(k, _)| k);
            auth::parse_query(k)
                .iter()
                .next()
                .is_none_or(|(k, _)| k != "auth_signature")
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn check_sign_round_trip(method: &str, path: &str, query: &str, body: &[u8]) {
    let params = auth::parse_query(query);
    // `auth_signature` would be read before the real one and `body_md5` would be checked against
    // the body; every other extra (even `auth_key` or `auth_timestamp` twice) must round-trip.
    let extra: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| *k != "auth_signature" && *k != "body_md5")
        .collect();
    let signed = auth::sign_request(KEY, SECRET, method, path, &extra, body, NOW);
    let req = SignedRequest {
        method,
        path,
        query: &signed,
        body,
    };
    assert_eq!(req.auth_key().as_deref(), Some(KEY), "auth_key of signed request");
    assert_eq!(
        req.verify(SECRET, NOW),
        Ok(()),
        "sign_request output does not verify: method={method:?} path={path:?} extra={extra:?} query={signed:?}"
    );
    assert_eq!(req.verify(SECRET, NOW + AUTH_TIMESTAMP_WINDOW_SECS), Ok(()));
    assert_eq!(req.verify(SECRET, NOW - AUTH_TIMESTAMP_WINDOW_SECS), Ok(()));
    assert!(
        matches!(
            req.verify(SECRET, NOW + AUTH_TIMESTAMP_WINDOW_SECS + 1),
            Err(SignatureError::Expired { .. })
        ),
        "expired request accepted"
    );
    assert!(
        matches!(
            req.verify("another-secret", NOW),
            Err(SignatureError::BadSignature { .. })
        ),
        "request verified with another secret"
    );
    // The method is case-insensitive.
    let lower = method.to_lowercase();
    if lower.to_uppercase() == method.to_uppercase() {
        let req2 = SignedRequest {
            method: &lower,
            ..req
        };
        assert_eq!(req2.verify(SECRET, NOW), Ok(()), "method case changed the signature");
    }
    // Tampering with the body is caught.
    if !body.is_empty() {
        let mut other = body.to_vec();
        other[0] ^= 1;
        let req3 = SignedRequest {
            body: &other,
            ..req
        };
        assert!(req3.verify(SECRET, NOW).is_err(), "tampered body accepted");
    }
}

fuzz_target!(|bytes: &[u8]| {
    let (method, path, query, body) = split(bytes);
    let req = SignedRequest {
        method: &method,
        path: &path,
        query: &query,
        body,
    };
    check_arbitrary(&req);
    check_sign_round_trip(&method, &path, &query, body);
    let _ = auth::body_md5(body);
});
