//! Reading a TOML file into a [`Config`] without stopping at the first bad value, so that
//! `vestnik config check` (and a start) can report every problem of a file at once.
//!
//! The text is parsed once into a spanned tree. Deserialising that tree stops at its first error;
//! each such error is recorded with its line, the offending key is taken out of the tree (its
//! default then applies) and deserialising starts again, until it succeeds. Two repairs are made
//! instead of removals: a boolean written as a string (`client_events = "yes"`) is read the way the
//! `VESTNIK_*` variables read it, and an unknown key gets a "did you mean" for its nearest known
//! key. Only a TOML syntax error stops the parse, since nothing after it can be trusted.
//!
//! This module only reads; it must never decide whether a parsed value is servable (see
//! [`super::validate`]).

use serde::Deserialize;
use toml::de::{DeTable, DeValue};

use super::{Config, ConfigError};

/// Values a boolean may be written as, the same words `VESTNIK_*` variables take (clap's
/// `BoolishValueParser`): true, false, 1, 0, yes, no, on, off, y, n, t, f, in any case.
pub fn boolish(word: &str) -> Option<bool> {
    match word.to_ascii_lowercase().as_str() {
        "y" | "yes" | "t" | "true" | "on" | "1" => Some(true),
        "n" | "no" | "f" | "false" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// A problem found while reading: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseProblem {
    /// The line of the offending key or value.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Reads `text` into a [`Config`], using the default of every value that could not be read, and
/// returns every value that could not be read. `path` only labels a syntax error.
pub fn parse(text: &str, path: &str) -> Result<(Config, Vec<ParseProblem>), ConfigError> {
    let line = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let root = DeTable::parse(text).map_err(|e| ConfigError::Syntax {
        path: path.into(),
        line: e.span().map_or(1, |s| line(s.start)),
        message: e.message().to_owned(),
    })?;
    let (span, mut table) = (root.span(), root.into_inner());
    let mut problems: Vec<ParseProblem> = Vec::new();
    // Each round removes or repairs one entry, so the rounds are bounded by the file's size.
    for _ in 0..=text.len() {
        let attempt = toml::Spanned::new(span.clone(), table.clone());
        let err = match Config::deserialize(toml::de::Deserializer::from(attempt)) {
            Ok(config) => {
                problems.sort_by_key(|p| p.line);
                return Ok((config, problems));
            }
            Err(e) => e,
        };
        let at = err.span().map_or(0, |s| s.start);
        let message = err.message().to_owned();
        match repair(&mut table, at, &message) {
            Some(Repair::Boolean) => {}
            Some(Repair::Removed {
                key,
                key_start,
                known,
            }) => problems.push(ParseProblem {
                line: line(key_start),
                message: explain(&key, &message, &known),
            }),
            // Nothing in the tree sits where the error points: report it and stop there.
            None => {
                problems.push(ParseProblem {
                    line: line(at),
                    message,
                });
                return Ok((Config::default(), problems));
            }
        }
    }
    unreachable!("every round removes or repairs an entry of a finite file")
}

/// What one repair round did to the parsed document, so the caller can word the problem: a value
/// that was converted, or an entry that had to go (with the keys its table accepts, for a "did you
/// mean" hint).
enum Repair {
    /// A boolish string was turned into a boolean.
    Boolean,
    /// The entry `key` was taken out; `known` are the keys its table accepts (from the message).
    Removed {
        /// The removed key, as written.
        key: String,
        /// Its byte offset in the file, for the line number of the problem.
        key_start: usize,
        known: Vec<String>,
    },
}

/// Fixes or removes the innermost entry of `table` whose key or value holds `at`. Tables are
/// searched whatever their own span: a `[server]` table's span is its header only.
fn repair(table: &mut DeTable<'_>, at: usize, message: &str) -> Option<Repair> {
    let keys: Vec<_> = table.keys().cloned().collect();
    for key in keys {
        let value = table
            .get_mut(&key)
            .expect("the key was just listed from this table");
        let on_key = key.span().contains(&at);
        let on_value = value.span().contains(&at);
        if !on_key {
            let inner = match value.get_mut() {
                DeValue::Table(t) => repair(t, at, message),
                DeValue::Array(items) => items.iter_mut().find_map(|i| match i.get_mut() {
                    DeValue::Table(t) => repair(t, at, message),
                    _ => None,
                }),
                _ => None,
            };
            if inner.is_some() {
                return inner;
            }
            let flip = match value.get_ref() {
                DeValue::String(s) if on_value && message.contains("expected a boolean") => {
                    boolish(s)
                }
                _ => None,
            };
            if let Some(b) = flip {
                *value.get_mut() = DeValue::Boolean(b);
                return Some(Repair::Boolean);
            }
        }
        if on_key || on_value {
            table.remove(&key);
            return Some(Repair::Removed {
                key: key.get_ref().to_string(),
                key_start: key.span().start,
                known: expected_keys(message),
            });
        }
    }
    None
}

/// The keys listed by serde's "unknown field `x`, expected one of `a`, `b`" message.
fn expected_keys(message: &str) -> Vec<String> {
    let Some((_, list)) = message.split_once("expected ") else {
        return Vec::new();
    };
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// serde's message about `key`, naming it, with "did you mean" for an unknown key close to a
/// known one.
fn explain(key: &str, message: &str, known: &[String]) -> String {
    let Some(unknown) = message
        .strip_prefix("unknown field `")
        .and_then(|rest| rest.split('`').next())
    else {
        return format!("{key}: {message}");
    };
    match nearest(unknown, known) {
        Some(near) => format!("unknown key `{unknown}`: did you mean `{near}`?"),
        None => message.replacen("unknown field", "unknown key", 1),
    }
}

/// The known key nearest to `word`, when it is close enough to be a typo: at most a third of its
/// length in edits (and at least one edit allowed), or the same word in another case or with `-`.
fn nearest<'a>(word: &str, known: &'a [String]) -> Option<&'a str> {
    let normal = word.to_ascii_lowercase().replace('-', "_");
    known
        .iter()
        .map(|k| (edit_distance(&normal, k), k))
        .filter(|(d, _)| *d <= (word.chars().count() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k.as_str())
}

/// Edit distance over characters, a swap of two neighbours counting as one edit (optimal string
/// alignment), so `prot` is one edit from `port`.
fn edit_distance(a: &str, b: &str) -> usize {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One bad value must not hide the others, nor stop the good values from being read: a user
    /// sees every problem of the file in one `config check`.
    #[test]
    fn every_bad_value_is_reported_and_the_rest_is_read() {
        let text = "[server]\nport = 7000\nmax_conections = 5\nactivity_timeout = -5\n\
                    [[apps]]\nid = \"1\"\nkey = \"k\"\nsecret = \"s\"\nclient_event_rate = -5\n\
                    client_events = \"no\"\n";
        let (c, problems) = parse(text, "x.toml").unwrap();
        assert_eq!(c.server.port, 7000);
        assert!(!c.apps[0].client_events, "a boolish string is a boolean");
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [3, 4, 9], "{problems:?}");
        assert!(
            problems[0]
                .message
                .contains("did you mean `max_connections`?"),
            "{problems:?}"
        );
        assert_eq!(
            problems[1].message,
            "activity_timeout: invalid value: integer `-5`, expected u64"
        );
    }

    /// An unknown key is reported with the keys its table accepts; a TOML syntax error stops the
    /// reading, since nothing after it can be trusted.
    #[test]
    fn a_far_key_lists_the_known_ones_and_syntax_stops() {
        let (_, problems) = parse("[server]\nzzz = 1\n", "x.toml").unwrap();
        assert!(
            problems[0].message.contains("unknown key `zzz`")
                && problems[0].message.contains("`port`"),
            "{problems:?}"
        );
        assert!(matches!(
            parse("[server]\nport = = 1\n", "x.toml"),
            Err(ConfigError::Syntax { line: 2, .. })
        ));
        assert_eq!(boolish("YES"), Some(true));
        assert_eq!(boolish("maybe"), None);
        assert_eq!(edit_distance("max_conections", "max_connections"), 1);
        assert_eq!(edit_distance("prot", "port"), 1);
    }
}
