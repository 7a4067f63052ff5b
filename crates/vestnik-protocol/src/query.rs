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
        let bytes = query.as_bytes();
        let mut query_pairs = Self {
            text: String::with_capacity(query.len()),
            pairs: Vec::with_capacity(8),
        };
        // One pass over the bytes finds each pair's end, its first `=` and whether it has anything
        // to decode; a pair with nothing to decode is copied as it is.
        let mut start = 0;
        let mut equals = None;
        let mut escaped = false;
        for (at, &b) in bytes.iter().enumerate() {
            match b {
                b'&' => {
                    query_pairs.push_pair(query, start..at, equals, escaped);
                    start = at + 1;
                    equals = None;
                    escaped = false;
                }
                b'=' if equals.is_none() => equals = Some(at),
                b'+' | b'%' => escaped = true,
                _ => {}
            }
        }
        query_pairs.push_pair(query, start..bytes.len(), equals, escaped);
        query_pairs
    }

    /// Adds the pair at `at` of `query`, split at its first `=` (at `equals`), unless it is empty.
    fn push_pair(&mut self, query: &str, at: Range<usize>, equals: Option<usize>, escaped: bool) {
        if at.is_empty() {
            return;
        }
        // `&` and `=` are ASCII, so these are character boundaries.
        let (key, value) = match equals {
            Some(e) => (&query[at.start..e], &query[e + 1..at.end]),
            None => (&query[at], ""),
        };
        self.push(key, value, escaped);
    }

    /// Adds a pair as sent: decoded if `escaped`, else copied.
    fn push(&mut self, key: &str, value: &str, escaped: bool) {
        let pair = if escaped {
            (
                decode_into(&mut self.text, key),
                decode_into(&mut self.text, value),
            )
        } else {
            let start = self.text.len();
            self.text.push_str(key);
            let middle = self.text.len();
            self.text.push_str(value);
            (start..middle, middle..self.text.len())
        };
        self.pairs.push(pair);
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
            query.push(k.as_ref(), v.as_ref(), false);
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
/// Text between escapes is copied as it is, and an escape of an ASCII byte (the `%2E` of
/// `auth_version=1%2E0`) is pushed as its character; only a run of escapes of bytes above ASCII
/// goes through a buffer, to be read as UTF-8. Such a run ends at a character that is not one of
/// them, which is also where the whole decoded text's UTF-8 reading would end a bad sequence, so
/// the result is the same.
fn decode_into(out: &mut String, s: &str) -> Range<usize> {
    let start = out.len();
    let bytes = s.as_bytes();
    let mut run: Vec<u8> = Vec::new();
    let mut plain = 0;
    let mut i = 0;
    while i < bytes.len() {
        let escape = match bytes[i] {
            b'+' => Some((b' ', 1)),
            b'%' => match (hex_digit(bytes.get(i + 1)), hex_digit(bytes.get(i + 2))) {
                (Some(h), Some(l)) => Some((h << 4 | l, 3)),
                _ => None,
            },
            _ => None,
        };
        let Some((byte, len)) = escape else {
            i += 1;
            continue;
        };
        // `+` and `%` are ASCII, so `plain..i` ends on a character boundary.
        if plain < i {
            flush(out, &mut run);
            out.push_str(&s[plain..i]);
        }
        if byte.is_ascii() {
            flush(out, &mut run);
            out.push(char::from(byte));
        } else {
            run.push(byte);
        }
        i += len;
        plain = i;
    }
    flush(out, &mut run);
    out.push_str(&s[plain..]);
    start..out.len()
}

/// Appends a run of decoded bytes above ASCII to `out` as UTF-8, lossily, and empties it.
fn flush(out: &mut String, run: &mut Vec<u8>) {
    if !run.is_empty() {
        out.push_str(&String::from_utf8_lossy(run));
        run.clear();
    }
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

    /// The reference decoding: `+` replaced, then `percent_encoding`'s lossy decoding.
    fn reference(s: &str) -> String {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    }

    fn decode(s: &str) -> String {
        let mut out = String::new();
        let at = decode_into(&mut out, s);
        out[at].to_owned()
    }

    /// The one-pass decoder gives the text of the reference decoding (`+` replaced, then
    /// `percent_encoding`'s lossy decoding) for plain text, escapes, `+`, stray `%` and bad UTF-8.
    #[test]
    fn decode_matches_the_reference() {
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
            "%E2%82\u{e9}",
            "%C3%A9%2E%C3+%A9",
            "1%2E0&app%2Dkey",
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

    /// The one-pass parse gives the pairs of the plain definition (split on `&`, skip empty
    /// pairs, split each at its first `=`, decode both sides by the reference) for random mixes of the characters
    /// that matter.
    #[test]
    fn parse_agrees_with_the_plain_definition() {
        let plain = |q: &str| -> Vec<(String, String)> {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (reference(k), reference(v))
                })
                .collect()
        };
        let alphabet = [
            '&', '=', '+', '%', '2', 'B', 'c', 'C', '3', 'A', '9', 'E', '8', 'F', '\u{e9}', 'x',
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for len in 0..4000 {
            let query = crate::random_text(&mut seed, &alphabet, len % 40);
            let parsed: Vec<(String, String)> = Query::parse(&query)
                .iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
            assert_eq!(parsed, plain(&query), "{query:?}");
        }
    }
}
