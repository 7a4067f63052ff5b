//! Query strings: the signed API's `auth_*` parameters, the socket URL's `protocol`, the console's
//! `channel`.
//!
//! A [`Query`] holds every decoded key and value in one buffer, so a signed call's five or six
//! parameters cost two allocations rather than one per key and per value (the HTTP trigger's
//! profile had the per-pair copies among its largest user-space costs). This module must never
//! interpret a parameter: the signature check and the handlers do.

use std::fmt;
use std::ops::Range;

/// A decoded query string: its (key, value) pairs in order, percent-decoded with `+` as a space.
///
/// Repeated keys are all kept, in order ([`get`](Self::get) gives the first), because the signature
/// covers every pair.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Query {
    /// Every decoded key and value, back to back.
    text: String,
    /// Each pair's key and value as ranges of `text`.
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl Query {
    /// Decodes `query` (without its `?`). Empty pairs (`a=1&&b=2`) are skipped; a pair without `=`
    /// has an empty value.
    pub fn parse(query: &str) -> Self {
        let mut text = String::with_capacity(query.len());
        let mut pairs = Vec::with_capacity(query.bytes().filter(|&b| b == b'&').count() + 1);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode_into(&mut text, k);
            let value = decode_into(&mut text, v);
            pairs.push((key, value));
        }
        Self { text, pairs }
    }

    /// The pairs in order, as they were sent (decoded).
    pub fn iter(&self) -> Pairs<'_> {
        Pairs {
            text: &self.text,
            pairs: self.pairs.iter(),
        }
    }

    /// The value of the first pair named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
    }

    /// How many pairs there are.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl<K: AsRef<str>, V: AsRef<str>> FromIterator<(K, V)> for Query {
    /// A query of pairs already decoded, kept as they are (for tests and callers that build one).
    fn from_iter<I: IntoIterator<Item = (K, V)>>(pairs: I) -> Self {
        let mut query = Self::default();
        for (k, v) in pairs {
            let start = query.text.len();
            query.text.push_str(k.as_ref());
            let key = start..query.text.len();
            query.text.push_str(v.as_ref());
            query.pairs.push((key.clone(), key.end..query.text.len()));
        }
        query
    }
}

impl<'a> IntoIterator for &'a Query {
    type Item = (&'a str, &'a str);
    type IntoIter = Pairs<'a>;

    fn into_iter(self) -> Pairs<'a> {
        self.iter()
    }
}

/// The pairs of a [`Query`], in order.
#[derive(Clone)]
pub struct Pairs<'a> {
    /// The query's text.
    text: &'a str,
    /// The ranges still to give.
    pairs: std::slice::Iter<'a, (Range<usize>, Range<usize>)>,
}

impl<'a> Iterator for Pairs<'a> {
    type Item = (&'a str, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        let (k, v) = self.pairs.next()?;
        Some((&self.text[k.clone()], &self.text[v.clone()]))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pairs.size_hint()
    }
}

impl fmt::Debug for Query {
    /// The pairs, as a list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// Decodes a query string into its pairs: [`Query::parse`].
pub fn parse_query(query: &str) -> Query {
    Query::parse(query)
}

/// Percent-decodes a query key or value onto the end of `out`, `+` meaning a space (a `%2B` stays a
/// `+`), in one pass, and returns where it went.
///
/// A `%` not followed by two hex digits is kept as it is, and bytes that are not UTF-8 once decoded
/// become U+FFFD: the same text as replacing `+` and then `percent_encoding`'s lossy decoding.
fn decode_into(out: &mut String, s: &str) -> Range<usize> {
    let start = out.len();
    let bytes = s.as_bytes();
    if !bytes.iter().any(|&b| b == b'+' || b == b'%') {
        out.push_str(s);
        return start..out.len();
    }
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        i += 1;
        match b {
            b'+' => raw.push(b' '),
            b'%' => match (hex_digit(bytes.get(i)), hex_digit(bytes.get(i + 1))) {
                (Some(h), Some(l)) => {
                    raw.push(h << 4 | l);
                    i += 2;
                }
                _ => raw.push(b'%'),
            },
            _ => raw.push(b),
        }
    }
    out.push_str(&String::from_utf8_lossy(&raw));
    start..out.len()
}

/// The value of one hex digit, either case.
fn hex_digit(b: Option<&u8>) -> Option<u8> {
    match *b? {
        d @ b'0'..=b'9' => Some(d - b'0'),
        d @ b'a'..=b'f' => Some(d - b'a' + 10),
        d @ b'A'..=b'F' => Some(d - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(s: &str) -> String {
        let mut out = String::new();
        let at = decode_into(&mut out, s);
        out[at].to_owned()
    }

    /// The one-pass decoder gives the text of the reference decoding (`+` replaced, then
    /// `percent_encoding`'s lossy decoding) for plain text, escapes, `+`, stray `%` and bad UTF-8.
    #[test]
    fn decode_matches_the_reference() {
        let reference = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        };
        for s in [
            "",
            "auth_key",
            "auth%5Fkey",
            "a+b",
            "%2B+%2b",
            "100%",
            "%4",
            "%zz%41",
            "%%41",
            "%2+",
            "%C3%A9t%C3%A9",
            "%FF%FEok",
            "%E2%82",
            "%C3",
            "caf%C3%A9",
            "%e2%82%ac+%E2%82%AC",
            "presence-%40x,y;z#w",
        ] {
            assert_eq!(decode(s), reference(s), "{s:?}");
        }
    }

    /// Pairs keep their order and repeats, empty pairs are skipped, a bare key has an empty value,
    /// and escapes in one pair do not shift the next pair's text.
    #[test]
    fn pairs_in_order_with_repeats_and_bare_keys() {
        let q = Query::parse("a=1&&b&a=2&%C3%89+x=caf%C3%A9&c=%zz&=v");
        let pairs: Vec<(&str, &str)> = q.iter().collect();
        assert_eq!(
            pairs,
            [
                ("a", "1"),
                ("b", ""),
                ("a", "2"),
                ("\u{c9} x", "caf\u{e9}"),
                ("c", "%zz"),
                ("", "v"),
            ]
        );
        assert_eq!(q.len(), 6);
        assert_eq!(q.get("a"), Some("1"), "the first of a repeated key");
        assert_eq!(q.get("b"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert!(Query::parse("").is_empty());
        assert!(Query::parse("&&").is_empty());
        assert_eq!(format!("{q:?}").matches('(').count(), 6, "{q:?}");
        let built: Query = pairs.iter().copied().collect();
        assert_eq!(built, q, "built from its own pairs");
    }
}
