//! What a client says about its user, read after the signature over it was checked: a presence
//! `channel_data` ([`PresenceData`]) and a sign-in `user_data` ([`UserData`]).
//!
//! Both must be JSON objects (an array read by position is malformed), and neither may nest
//! deeper than [`MAX_JSON_DEPTH`]: such data is refused here, with the error every caller already
//! maps to its documented refusal, rather than carried into a roster some reader cannot re-read.
//! Both carry a `user_info` that may become a presence member's, so both parsers bound it by the
//! app's `user_info` limit (default [`MAX_USER_INFO_BYTES`](crate::limits::MAX_USER_INFO_BYTES)):
//! whichever door user data comes in by, no oversize member reaches a roster. A watchlist is a
//! set of users: each id is kept once, where it first appeared. `user_info` is kept as raw JSON
//! text, byte for byte. This module must never do IO and never replace what a client
//! sent with something else.

use std::collections::HashSet;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json;
use crate::limits::{MAX_JSON_DEPTH, MAX_USER_ID_LEN};

/// A presence `channel_data`: who the subscriber is.
#[derive(Debug, Clone)]
pub struct PresenceData {
    /// The user id, as a string even when sent as a number.
    pub user_id: String,
    /// The user's info, as raw JSON, if given.
    pub user_info: Option<Box<RawValue>>,
}

/// A sign-in `user_data`: who the user is and whom they watch.
#[derive(Debug, Clone)]
pub struct UserData {
    /// The user id; never empty.
    pub id: String,
    /// The user's info, as raw JSON, if given.
    pub user_info: Option<Box<RawValue>>,
    /// Ids of users whose online status this user wants to follow, each once, in the order first
    /// given: a user named twice is one user to report on.
    pub watchlist: Vec<String>,
}

/// Why `channel_data` or `user_data` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UserDataError {
    /// Not a JSON object of the right shape, or nested deeper than [`MAX_JSON_DEPTH`].
    #[error("invalid {what}: {message}")]
    Malformed {
        /// `channel_data` or `user_data`.
        what: &'static str,
        /// The parser's message.
        message: String,
    },
    /// The user id is missing, empty or not a string or number.
    #[error("{0} must carry a non-empty user id")]
    MissingId(&'static str),
    /// The user id is too long.
    #[error("user id is longer than {MAX_USER_ID_LEN} characters")]
    IdTooLong,
    /// `user_info` is over the app's limit, measured as the raw JSON text the client sent.
    #[error("user_info in {what} is {size} bytes, over the limit of {limit}")]
    InfoTooLarge {
        /// `channel_data` or `user_data`.
        what: &'static str,
        /// The size of the raw `user_info`, in bytes.
        size: usize,
        /// The app's limit, in bytes.
        limit: usize,
    },
}

#[derive(Deserialize)]
struct RawPresence<'a> {
    #[serde(borrow, default)]
    user_id: Option<&'a RawValue>,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
}

#[derive(Deserialize)]
struct RawUser<'a> {
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    user_info: Option<Box<RawValue>>,
    #[serde(default)]
    watchlist: Option<Vec<String>>,
}

/// Reads `text` as the object `T`, refusing arrays and data nested deeper than [`MAX_JSON_DEPTH`].
fn parse_object<'a, T: Deserialize<'a>>(
    text: &'a str,
    what: &'static str,
) -> Result<T, UserDataError> {
    if json::nesting_depth(text) > MAX_JSON_DEPTH {
        return Err(UserDataError::Malformed {
            what,
            message: format!("nested deeper than {MAX_JSON_DEPTH} levels"),
        });
    }
    json::from_object_str(text).map_err(|e| UserDataError::Malformed {
        what,
        message: e.to_string(),
    })
}

/// Reads a user id sent as a JSON string or number.
fn user_id(raw: Option<&RawValue>, what: &'static str) -> Result<String, UserDataError> {
    let raw = raw.ok_or(UserDataError::MissingId(what))?;
    let id = match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Number(n)) => n.to_string(),
        _ => return Err(UserDataError::MissingId(what)),
    };
    if id.is_empty() {
        return Err(UserDataError::MissingId(what));
    }
    if id.chars().count() > MAX_USER_ID_LEN {
        return Err(UserDataError::IdTooLong);
    }
    Ok(id)
}

/// Drops a `null` `user_info` and refuses one over `max_info_bytes`.
fn user_info(
    v: Option<Box<RawValue>>,
    max_info_bytes: usize,
    what: &'static str,
) -> Result<Option<Box<RawValue>>, UserDataError> {
    let Some(info) = v.filter(|r| r.get() != "null") else {
        return Ok(None);
    };
    let size = info.get().len();
    if size > max_info_bytes {
        return Err(UserDataError::InfoTooLarge {
            what,
            size,
            limit: max_info_bytes,
        });
    }
    Ok(Some(info))
}

/// Keeps the first of each id, in the order given. A repeated id would otherwise be watched once
/// per copy: one change of that user sent the watcher one identical event per copy (issue 13,
/// hole 5), and a watchlist limit counting copies would count the same user several times.
fn distinct(mut ids: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::with_capacity(ids.len());
    ids.retain(|id| seen.insert(id.clone()));
    ids
}

impl PresenceData {
    /// Parses a presence `channel_data` string: `{"user_id": <string|number>, "user_info"?: <any>}`,
    /// with a `user_info` of at most `max_info_bytes` (the app's limit).
    pub fn parse(text: &str, max_info_bytes: usize) -> Result<Self, UserDataError> {
        let raw: RawPresence<'_> = parse_object(text, "channel_data")?;
        Ok(Self {
            user_id: user_id(raw.user_id, "channel_data")?,
            user_info: user_info(raw.user_info, max_info_bytes, "channel_data")?,
        })
    }
}

impl UserData {
    /// Parses a sign-in `user_data` string: `{"id": <string>, "user_info"?: <any>, "watchlist"?: [..]}`,
    /// with a `user_info` of at most `max_info_bytes` (the app's limit): a signed-in user joins
    /// presence channels with it, so it is bounded as presence `channel_data` is.
    pub fn parse(text: &str, max_info_bytes: usize) -> Result<Self, UserDataError> {
        let raw: RawUser<'_> = parse_object(text, "user_data")?;
        Ok(Self {
            id: user_id(raw.id, "user_data")?,
            user_info: user_info(raw.user_info, max_info_bytes, "user_data")?,
            watchlist: distinct(raw.watchlist.unwrap_or_default()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::MAX_USER_INFO_BYTES;

    /// `{"user_id":"1","user_info":` + `depth` levels of arrays + `}`: the whole object nests
    /// `depth + 1` deep.
    fn nested_info(key: &str, depth: usize) -> String {
        format!(
            r#"{{"{key}":"1","user_info":{}{}}}"#,
            "[".repeat(depth),
            "]".repeat(depth)
        )
    }

    #[test]
    fn presence_data_numeric_and_string_ids() {
        let p = PresenceData::parse(
            r#"{"user_id":10,"user_info":{"name":"A"}}"#,
            MAX_USER_INFO_BYTES,
        )
        .unwrap();
        assert_eq!(p.user_id, "10");
        assert_eq!(p.user_info.unwrap().get(), r#"{"name":"A"}"#);
        assert!(PresenceData::parse(r#"{"user_id":""}"#, MAX_USER_INFO_BYTES).is_err());
        assert!(PresenceData::parse(r#"{"user_info":{}}"#, MAX_USER_INFO_BYTES).is_err());
        assert!(PresenceData::parse(r#"{"user_id":true}"#, MAX_USER_INFO_BYTES).is_err());
        assert!(PresenceData::parse("[]", MAX_USER_INFO_BYTES).is_err());
    }

    #[test]
    fn user_data_needs_id() {
        let u = UserData::parse(
            r#"{"id":"12345","watchlist":["1","2"]}"#,
            MAX_USER_INFO_BYTES,
        )
        .unwrap();
        assert_eq!(u.id, "12345");
        assert_eq!(u.watchlist, vec!["1", "2"]);
        assert!(UserData::parse(r#"{"name":"x"}"#, MAX_USER_INFO_BYTES).is_err());
    }

    /// Issue 13, hole 2: `["fred"]` was a member called fred, `["7",{"a":1}]` a user 7 with info.
    #[test]
    fn arrays_are_not_user_data() {
        for text in [r#"["fred"]"#, r#"["fred",{"name":"F"}]"#, r#""fred""#, "7"] {
            let e = PresenceData::parse(text, MAX_USER_INFO_BYTES).unwrap_err();
            assert!(
                matches!(
                    e,
                    UserDataError::Malformed {
                        what: "channel_data",
                        ..
                    }
                ),
                "{text}: {e:?}"
            );
        }
        for text in [r#"["7"]"#, r#"["7",{"a":1},["1"]]"#, "null"] {
            let e = UserData::parse(text, MAX_USER_INFO_BYTES).unwrap_err();
            assert!(
                matches!(
                    e,
                    UserDataError::Malformed {
                        what: "user_data",
                        ..
                    }
                ),
                "{text}: {e:?}"
            );
        }
    }

    /// Issue 13, hole 4: info nested deeper than serde_json re-parses was accepted raw, then shown
    /// as `{}` to the joiner. It is refused at the door now, and anything up to the limit passes.
    #[test]
    fn data_nested_deeper_than_the_limit_is_malformed() {
        let at_limit = nested_info("user_id", MAX_JSON_DEPTH - 1);
        let p = PresenceData::parse(&at_limit, MAX_USER_INFO_BYTES).unwrap();
        assert_eq!(
            json::nesting_depth(p.user_info.unwrap().get()),
            MAX_JSON_DEPTH - 1
        );
        for depth in [MAX_JSON_DEPTH, 200] {
            let e = PresenceData::parse(&nested_info("user_id", depth), MAX_USER_INFO_BYTES)
                .unwrap_err();
            assert!(
                matches!(&e, UserDataError::Malformed { what: "channel_data", message } if message.contains("deeper")),
                "{depth}: {e:?}"
            );
            let e = UserData::parse(&nested_info("id", depth), MAX_USER_INFO_BYTES).unwrap_err();
            assert!(
                matches!(&e, UserDataError::Malformed { what: "user_data", message } if message.contains("deeper")),
                "{depth}: {e:?}"
            );
        }
        assert!(
            UserData::parse(&nested_info("id", MAX_JSON_DEPTH - 1), MAX_USER_INFO_BYTES).is_ok()
        );
    }

    /// Issue 13, hole 1: sign-in's `user_info` was never bounded, so a signed-in user joined
    /// presence with 50 KB of it. Both doors now refuse `user_info` over the limit given, counting
    /// the raw JSON text, and take it up to the limit.
    #[test]
    fn user_info_over_the_limit_is_refused_on_both_doors() {
        let info = |len: usize| format!(r#""{}""#, "x".repeat(len - 2));
        let limit = 32;
        let presence = |len| format!(r#"{{"user_id":"1","user_info":{}}}"#, info(len));
        let user = |len| format!(r#"{{"id":"1","user_info":{}}}"#, info(len));
        let p = PresenceData::parse(&presence(limit), limit).unwrap();
        assert_eq!(p.user_info.unwrap().get().len(), limit);
        let u = UserData::parse(&user(limit), limit).unwrap();
        assert_eq!(u.user_info.unwrap().get().len(), limit);
        assert_eq!(
            PresenceData::parse(&presence(limit + 1), limit).unwrap_err(),
            UserDataError::InfoTooLarge {
                what: "channel_data",
                size: limit + 1,
                limit
            }
        );
        let fifty_kb = 50 * 1024;
        assert_eq!(
            UserData::parse(&user(fifty_kb), MAX_USER_INFO_BYTES).unwrap_err(),
            UserDataError::InfoTooLarge {
                what: "user_data",
                size: fifty_kb,
                limit: MAX_USER_INFO_BYTES
            }
        );
        // A `null` user_info is no info at all, whatever the limit.
        assert!(UserData::parse(r#"{"id":"1","user_info":null}"#, 1)
            .unwrap()
            .user_info
            .is_none());
    }

    /// Issue 13, hole 5: a watchlist of one id repeated 100 times was watched 100 times. Each id
    /// is kept once, where it first appeared.
    #[test]
    fn watchlist_ids_are_distinct_in_first_seen_order() {
        let u = UserData::parse(
            r#"{"id":"u","watchlist":["2","1","2","3","1","2"]}"#,
            MAX_USER_INFO_BYTES,
        )
        .unwrap();
        assert_eq!(u.watchlist, ["2", "1", "3"]);
        let hundred = format!(
            r#"{{"id":"u","watchlist":[{}]}}"#,
            vec![r#""7""#; 100].join(",")
        );
        let u = UserData::parse(&hundred, MAX_USER_INFO_BYTES).unwrap();
        assert_eq!(u.watchlist, ["7"]);
    }
}
