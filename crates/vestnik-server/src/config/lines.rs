//! Where a key is in a TOML file: the 1-based line of a dotted key path such as `server.port`,
//! `apps.2.max_batch_events` or `apps.0.webhooks.1.url` (numbers index arrays of tables), found from
//! the spans the `toml` parser keeps. A key that is not in the file (a default that another value made
//! invalid) is located at its nearest table that is, such as the `[[apps]]` header.
//!
//! This module only reads the text it is given; it must never decide whether a value is valid.

use toml::de::{DeTable, DeValue};

/// The line of `key` in `text`, or of its nearest enclosing table present in the file; `None` when
/// the text does not parse or not even the first segment is there.
pub fn line_of(text: &str, key: &str) -> Option<usize> {
    let root = DeValue::Table(DeTable::parse(text).ok()?.into_inner());
    let mut value = &root;
    let mut found = None;
    for segment in key.split('.') {
        let next = match segment.parse::<usize>() {
            Ok(index) if value.is_array() => value.get(index),
            _ => value.get(segment),
        };
        let Some(next) = next else { break };
        found = Some(next.span().start);
        value = next.get_ref();
    }
    found.map(|offset| text[..offset.min(text.len())].matches('\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str =
        "# comment\n[server]\nport = 7000\n\n[[apps]]\nid = \"1\"\n\n[[apps]]\nid = \"2\"\n\
                        max_batch_events = 0\n[[apps.webhooks]]\nurl = \"x\"\n";

    /// Dotted keys with array indexes (`apps.1.id`) find the line inside the right `[[apps]]`
    /// element.
    #[test]
    fn finds_keys_tables_and_array_elements() {
        assert_eq!(line_of(TEXT, "server.port"), Some(3));
        assert_eq!(line_of(TEXT, "server"), Some(2));
        assert_eq!(line_of(TEXT, "apps.1.max_batch_events"), Some(10));
        assert_eq!(line_of(TEXT, "apps.1.webhooks.0.url"), Some(12));
    }

    /// A key left at its default is not in the file; the problem then points at its table's header.
    #[test]
    fn a_missing_key_falls_back_to_its_table() {
        assert_eq!(line_of(TEXT, "server.tls_key"), Some(2));
        assert_eq!(line_of(TEXT, "apps.0.secret"), Some(5));
        assert_eq!(line_of(TEXT, "apps.7.secret"), Some(5), "the apps array");
        assert_eq!(line_of(TEXT, "cluster.prefix"), None);
        assert_eq!(line_of("not toml = = 1", "server"), None);
    }
}
