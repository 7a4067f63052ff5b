//! The JSON shapes the protocol insists on, for every parser of this crate and of the HTTP API.
//!
//! serde's derived `Deserialize` for a struct accepts a JSON *array* as well as an object, filling
//! the fields by position, so `["pusher:ping"]` would read as `{"event":"pusher:ping"}`. Every
//! Pusher message, every `channel_data` and `user_data`, and every HTTP API body is an object;
//! [`deserialize_object`], [`Object`] and [`from_object_str`] refuse anything else. [`nesting_depth`]
//! measures how deep a JSON text nests, so that data deeper than every reader can re-read
//! ([`MAX_JSON_DEPTH`](crate::limits::MAX_JSON_DEPTH)) is refused at the door instead of being
//! replaced by something else later.
//!
//! This module must never allocate per byte of input, never recurse on the input's nesting, and
//! never accept an array where an object is required.
//!
//! # Applying it to a body parser
//! ```
//! use serde::Deserialize;
//! use vestnik_protocol::json::{self, Object};
//!
//! #[derive(Deserialize)]
//! struct Event {
//!     name: String,
//! }
//!
//! #[derive(Deserialize)]
//! struct Batch {
//!     // Each element must be an object too.
//!     batch: Vec<Object<Event>>,
//! }
//!
//! #[derive(Deserialize)]
//! struct Outer {
//!     // A nested struct field: refuse `[...]` there as well.
//!     #[serde(deserialize_with = "json::deserialize_object")]
//!     event: Event,
//! }
//!
//! // The top level: from_object_str / from_object_slice instead of serde_json::from_str.
//! let batch: Batch = json::from_object_str(r#"{"batch":[{"name":"a"}]}"#).unwrap();
//! assert_eq!(batch.batch[0].name, "a");
//! assert!(json::from_object_str::<Batch>(r#"[[{"name":"a"}]]"#).is_err());
//! assert!(json::from_object_str::<Batch>(r#"{"batch":[["a"]]}"#).is_err());
//! assert!(json::from_object_str::<Outer>(r#"{"event":["a"]}"#).is_err());
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::value::MapAccessDeserializer;
use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// Deserialises `T` from a JSON object only; an array (or any other value) is an error, where
/// serde's derived struct impls would read an array by position.
///
/// Use it as `#[serde(deserialize_with = "vestnik_protocol::json::deserialize_object")]` on a
/// struct-typed field, or call it on a `&mut serde_json::Deserializer` (as [`from_object_str`]
/// does) for a whole document.
pub fn deserialize_object<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    deserializer.deserialize_map(ObjectVisitor(PhantomData))
}

/// Accepts a map and hands it to `T`'s own impl, so `T` sees exactly what it would have seen for
/// an object, borrowed fields and raw values included.
struct ObjectVisitor<T>(PhantomData<T>);

impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
    type Value = T;

    /// The phrase serde puts in "invalid type: sequence, expected …", which the client then reads.
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    /// Only maps reach `T`: `visit_seq` is not implemented, so serde refuses an array with the
    /// `expecting` message instead of filling fields by position.
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
        T::deserialize(MapAccessDeserializer::new(map))
    }
}

/// A `T` that was read from a JSON object, never from an array. Use it where a field holds
/// objects inside a collection (`Vec<Object<Event>>`), where `deserialize_with` cannot reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object<T>(pub T);

impl<T> Object<T> {
    /// The value inside.
    pub fn into_inner(self) -> T {
        self.0
    }
}

/// Reads through to `T`, so code handling a batch uses its items as plain events.
impl<T> Deref for Object<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserialize_object(deserializer).map(Object)
    }
}

/// Parses a whole JSON text that must be an object into `T`, with nothing but whitespace after
/// it: `serde_json::from_str` without the array-by-position reading.
pub fn from_object_str<'a, T: Deserialize<'a>>(text: &'a str) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = deserialize_object(&mut de)?;
    de.end()?;
    Ok(value)
}

/// [`from_object_str`] over bytes, for HTTP bodies.
pub fn from_object_slice<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = deserialize_object(&mut de)?;
    de.end()?;
    Ok(value)
}

/// How deeply arrays and objects nest in `text`: `0` for a scalar, `1` for `{}` or `[1]`, `2` for
/// `{"a":[1]}`. Brackets inside strings do not count. Meant for text that is already known (or
/// about to be checked) to be JSON; on anything else it still returns without panicking.
///
/// serde_json parses a [`RawValue`](serde_json::value::RawValue) without a depth limit but refuses
/// a `Value` deeper than 127 levels, so data accepted raw could later fail to re-parse; measuring
/// at the door lets a parser refuse it with its documented error instead.
pub fn nesting_depth(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                (false, _) => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The text of a JSON string literal (with its quotes) that a serde_json parse has already
/// accepted, such as a [`RawValue`](serde_json::value::RawValue) holding a string: what
/// `serde_json::from_str::<String>` gives, in one pass and one allocation of the right size.
///
/// The HTTP API's event `data` is such a literal, escaped once more by every SDK (a JSON document
/// sent as a string). serde_json would decode it into a scratch buffer grown as it goes and then
/// copy it; the trigger's profile had that among its largest user-space costs.
///
/// `None` for anything it does not decode exactly as serde_json would (a lone surrogate, a bad
/// escape, missing quotes): the caller then asks serde_json, for its value or its error message.
pub fn unescape_str(literal: &str) -> Option<String> {
    let mut rest = literal.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(rest.len());
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = *rest.as_bytes().get(at + 1)?;
        // The backslash and the escape letter are ASCII, so `at + 2` is a character boundary.
        rest = &rest[at + 2..];
        out.push(match escape {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let high = hex4(rest)?;
                rest = &rest[4..];
                if (0xD800..0xDC00).contains(&high) {
                    let tail = rest.strip_prefix("\\u")?;
                    let low = hex4(tail)?;
                    if !(0xDC00..0xE000).contains(&low) {
                        return None;
                    }
                    rest = &tail[4..];
                    char::from_u32(0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00))?
                } else {
                    // A lone low surrogate is not a char: `None`.
                    char::from_u32(high)?
                }
            }
            _ => return None,
        });
    }
    out.push_str(rest);
    Some(out)
}

/// The value of the four hex digits `s` starts with.
fn hex4(s: &str) -> Option<u32> {
    s.as_bytes().get(..4)?.iter().try_fold(0u32, |n, &b| {
        let digit = char::from(b).to_digit(16)?;
        Some(n << 4 | digit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::value::RawValue;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Pair<'a> {
        #[serde(borrow)]
        a: std::borrow::Cow<'a, str>,
        #[serde(default)]
        b: Option<u32>,
    }

    /// Pins the serde behaviour this module exists for, so a serde change that fixes it is noticed.
    #[test]
    fn serde_alone_reads_arrays_by_position() {
        // The hole this module closes: a derived impl takes an array.
        let p: Pair<'_> = serde_json::from_str(r#"["x", 2]"#).unwrap();
        assert_eq!(p.a, "x");
        assert_eq!(p.b, Some(2));
    }

    /// The guard itself: the same struct accepts an object and refuses an array.
    #[test]
    fn objects_pass_and_arrays_do_not() {
        let p: Pair<'_> = from_object_str(r#" {"a":"x","b":2} "#).unwrap();
        assert_eq!((p.a.as_ref(), p.b), ("x", Some(2)));
        let p: Pair<'_> = from_object_slice(br#"{"a":"y"}"#).unwrap();
        assert_eq!((p.a.as_ref(), p.b), ("y", None));
        for bad in [r#"["x", 2]"#, "[]", r#""x""#, "1", "null", "true"] {
            let e = from_object_str::<Pair<'_>>(bad).unwrap_err();
            assert!(e.to_string().contains("a JSON object"), "{bad}: {e}");
        }
        assert!(from_object_str::<Pair<'_>>(r#"{"a":"x"} trailing"#).is_err());
    }

    /// The guard must not force copies: `&str` and `&RawValue` fields still borrow from the input.
    #[test]
    fn borrowed_and_raw_fields_still_borrow() {
        #[derive(Deserialize)]
        struct Raw<'a> {
            #[serde(borrow)]
            data: &'a RawValue,
        }
        let r: Raw<'_> = from_object_str(r#"{"data": [1, {"x": 2}]}"#).unwrap();
        assert_eq!(r.data.get(), r#"[1, {"x": 2}]"#);
    }

    #[test]
    fn object_wrapper_in_collections_and_fields() {
        #[derive(Deserialize)]
        struct List<'a> {
            #[serde(borrow)]
            items: Vec<Object<Pair<'a>>>,
        }
        #[derive(Deserialize)]
        struct Nested<'a> {
            #[serde(borrow, deserialize_with = "deserialize_object")]
            inner: Pair<'a>,
        }
        let l: List<'_> = from_object_str(r#"{"items":[{"a":"1"},{"a":"2"}]}"#).unwrap();
        assert_eq!(l.items[1].a, "2");
        assert!(from_object_str::<List<'_>>(r#"{"items":[["1"]]}"#).is_err());
        let n: Nested<'_> = from_object_str(r#"{"inner":{"a":"z"}}"#).unwrap();
        assert_eq!(n.inner.a, "z");
        assert!(from_object_str::<Nested<'_>>(r#"{"inner":["z"]}"#).is_err());
    }

    /// A bracket inside a string literal (escaped quotes included) does not count as nesting.
    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(nesting_depth("1"), 0);
        assert_eq!(nesting_depth(r#""[[[""#), 0);
        assert_eq!(nesting_depth("{}"), 1);
        assert_eq!(nesting_depth(r#"{"a":[1,{"b":"]]\"[["}]}"#), 3);
        assert_eq!(nesting_depth(r#"[[],[[]]]"#), 3);
        let deep = format!("{}{}", "[".repeat(500), "]".repeat(500));
        assert_eq!(nesting_depth(&deep), 500);
        // Not JSON: no panic.
        assert_eq!(nesting_depth("]]]}{"), 1);
    }

    /// The one-pass decoder gives serde_json's value for every literal serde_json accepts, and
    /// declines (for serde_json to answer) the ones it refuses.
    #[test]
    fn unescape_str_agrees_with_serde_json() {
        let mut literals: Vec<String> = [
            r#""""#,
            r#""plain text""#,
            r#""{\"run\":3,\"seq\":7,\"pad\":\"\"}""#,
            r#""\"\\\/\b\f\n\r\t""#,
            r#""caf\u00e9 caf\u00E9 \u20ac""#,
            r#""\ud83d\ude00 smile""#,
            r#""\uD83D\uDE00""#,
            r#""\u0000 nul""#,
            r#""é€😀 raw""#,
            r#""lone \ud83d""#,
            r#""lone \ude00""#,
            r#""pair broken \ud83d\u0041""#,
            r#""short \u12""#,
            r#""bad \u12g4""#,
            r#""bad \x""#,
            r#""end \""#,
            r#"no quotes"#,
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every character class serde_json escapes, in random mixes.
        let alphabet = [
            'a', ' ', '"', '\\', '/', '\n', '\u{1}', '\u{1f}', 'é', '€', '😀', '{', ':',
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        for len in 0..200 {
            let text = crate::random_text(&mut seed, &alphabet, len);
            literals.push(serde_json::to_string(&text).unwrap());
        }
        for literal in &literals {
            let reference = serde_json::from_str::<String>(literal).ok();
            match unescape_str(literal) {
                Some(value) => assert_eq!(Some(value), reference, "{literal}"),
                None => assert!(
                    reference.is_none(),
                    "declined a literal serde_json reads: {literal}"
                ),
            }
        }
    }
}
