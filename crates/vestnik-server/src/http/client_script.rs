//! `GET /pushler.js` and `GET /vestnik-recovery.js`: the Pushler-compatible browser client
//! (`clients/js/pushler.js`) and the recovery plugin for stock pusher-js and Laravel Echo
//! (`clients/js/vestnik-recovery.js`, see `docs/recovery.md`), embedded in the binary at compile
//! time, so a page loads them from the broker it connects to with one `<script>` tag (and the client
//! then connects back to that host and port by default). Served with an `ETag` and a short cache
//! lifetime so an upgraded broker's script reaches browsers soon; a matching `If-None-Match` gets
//! 304. This module never reads the file system at run time.

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};
use http_body_util::Full;

use crate::reply::Body;

/// The script, as committed in `clients/js`.
pub const PUSHLER_JS: &str = include_str!("../../../../clients/js/pushler.js");

/// The recovery plugin for stock pusher-js, as committed in `clients/js`.
pub const RECOVERY_JS: &str = include_str!("../../../../clients/js/vestnik-recovery.js");

/// How long browsers and proxies may use the script without asking again: five minutes, so a broker
/// upgrade reaches pages within minutes while a busy page does not refetch it on every load.
const MAX_AGE_SECS: u32 = 300;

/// FNV-1a (64-bit) over the script, computed at compile time: a content hash for the `ETag`, which
/// only has to change when the file changes (no security property is needed).
const fn fnv1a(bytes: &[u8]) -> u64 {
    /// The FNV-1a 64-bit offset basis and prime, as the algorithm defines them.
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = OFFSET;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(PRIME);
        i += 1;
    }
    hash
}

/// Computed by the compiler, so serving the script costs no hashing at run time.
const SCRIPT_HASH: u64 = fnv1a(PUSHLER_JS.as_bytes());

/// The same for the recovery plugin.
const RECOVERY_HASH: u64 = fnv1a(RECOVERY_JS.as_bytes());

/// The script's entity tag, quoted as HTTP wants it.
pub fn etag() -> String {
    format!("\"{SCRIPT_HASH:016x}\"")
}

/// Answers `GET` or `HEAD /pushler.js`.
pub fn serve(method: &Method, headers: &HeaderMap) -> Response<Body> {
    serve_script(PUSHLER_JS, etag(), method, headers)
}

/// Answers `GET` or `HEAD /vestnik-recovery.js`.
pub fn serve_recovery(method: &Method, headers: &HeaderMap) -> Response<Body> {
    serve_script(
        RECOVERY_JS,
        format!("\"{RECOVERY_HASH:016x}\""),
        method,
        headers,
    )
}

/// Answers for one embedded script with its entity tag.
fn serve_script(
    script: &'static str,
    etag: String,
    method: &Method,
    headers: &HeaderMap,
) -> Response<Body> {
    let fresh = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let (status, body) = if fresh {
        (StatusCode::NOT_MODIFIED, Bytes::new())
    } else if method == Method::HEAD {
        (StatusCode::OK, Bytes::new())
    } else {
        (StatusCode::OK, Bytes::from_static(script.as_bytes()))
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_str(&format!("public, max-age={MAX_AGE_SECS}"))
            .expect("a decimal number in ASCII is a valid header value"),
    );
    h.insert(
        header::ETAG,
        HeaderValue::from_str(&etag).expect("hex digits in quotes are a valid header value"),
    );
    // A script tag from any origin may load it; the script itself carries no secrets.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if method == Method::HEAD && !fresh {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(script.len()));
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser gets JavaScript with a cache lifetime and a validator, so reloads are cheap.
    #[test]
    fn serves_the_script_with_type_cache_and_etag() {
        let r = serve(&Method::GET, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/javascript");
        assert_eq!(r.headers()[header::CACHE_CONTROL], "public, max-age=300");
        assert_eq!(r.headers()[header::ETAG], etag().as_str());
        assert!(PUSHLER_JS.contains("root.PushlerClient = PushlerClient"));
    }

    /// Revalidation works: the current tag gets 304 with no body, a stale tag the new script.
    #[test]
    fn a_matching_if_none_match_gets_304_and_another_gets_the_script() {
        let mut h = HeaderMap::new();
        let list = format!("\"other\", W/{}", etag());
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_str(&list).unwrap());
        assert_eq!(serve(&Method::GET, &h).status(), StatusCode::NOT_MODIFIED);
        h.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"other\""));
        assert_eq!(serve(&Method::GET, &h).status(), StatusCode::OK);
    }

    /// The plugin is served the same way, with its own tag.
    #[test]
    fn serves_the_recovery_plugin_with_its_own_etag() {
        let r = serve_recovery(&Method::GET, &HeaderMap::new());
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/javascript");
        assert_ne!(r.headers()[header::ETAG], etag().as_str());
        assert!(RECOVERY_JS.contains("root.VestnikRecovery = api"));
    }

    /// The tag is the content's hash, so it changes exactly when the embedded script does.
    #[test]
    fn the_etag_follows_the_content() {
        assert_ne!(fnv1a(b"a"), fnv1a(b"b"));
        assert_eq!(etag().len(), 18);
    }
}
