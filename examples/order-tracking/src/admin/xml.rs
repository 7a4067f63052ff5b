//! The admin API's XML format, the way inSales serves it next to JSON ("this API supports XML and
//! JSON"; the format is picked by the `.xml` extension): Rails' `to_xml`, whose element names are
//! the JSON keys with dashes (`system-status`, `is-default`), typed by a `type` attribute
//! (`integer`, `boolean`, `dateTime`), lists as `<custom-statuses type="array">` and refusals as
//! `<errors><error>…</error></errors>` with the same HTTP status as the JSON answer.
//!
//! Writing escapes every text; reading accepts exactly one flat record (a root element whose
//! children hold text), which is all a custom status body is, and refuses anything else with a
//! reason. This module never touches the database.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;

/// The content type of every XML answer.
pub const CONTENT_TYPE: &str = "application/xml; charset=utf-8";

const DECLARATION: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";

/// Escapes text for element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON key as an element name: `system_status` becomes `system-status`.
fn element(key: &str) -> String {
    key.replace('_', "-")
}

/// One field of a record, typed as Rails types it. Strings that look like times are `dateTime`.
fn field(key: &str, v: &Value, indent: &str) -> String {
    let name = element(key);
    match v {
        Value::Null => format!("{indent}<{name} nil=\"true\"/>\n"),
        Value::Bool(b) => format!("{indent}<{name} type=\"boolean\">{b}</{name}>\n"),
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            format!("{indent}<{name} type=\"integer\">{n}</{name}>\n")
        }
        Value::Number(n) => format!("{indent}<{name} type=\"decimal\">{n}</{name}>\n"),
        Value::String(s) if key.ends_with("_at") => {
            format!("{indent}<{name} type=\"dateTime\">{}</{name}>\n", escape(s))
        }
        Value::String(s) => format!("{indent}<{name}>{}</{name}>\n", escape(s)),
        Value::Array(_) | Value::Object(_) => {
            format!("{indent}<{name}>{}</{name}>\n", escape(&v.to_string()))
        }
    }
}

fn record(root: &str, v: &Value, indent: &str) -> String {
    let root = element(root);
    let mut out = format!("{indent}<{root}>\n");
    if let Value::Object(map) = v {
        let inner = format!("{indent}  ");
        for (k, v) in map {
            out.push_str(&field(k, v, &inner));
        }
    }
    out.push_str(&format!("{indent}</{root}>\n"));
    out
}

/// A JSON object as an XML document with `root` as its element.
pub fn object(root: &str, v: &Value) -> String {
    format!("{DECLARATION}{}", record(root, v, ""))
}

/// A JSON array of objects as `<{list} type="array">` of `<{item}>` records.
pub fn array(list: &str, item: &str, items: &[Value]) -> String {
    let list = element(list);
    let mut out = format!("{DECLARATION}<{list} type=\"array\">\n");
    for v in items {
        out.push_str(&record(item, v, "  "));
    }
    out.push_str(&format!("</{list}>\n"));
    out
}

/// An XML answer with `status`.
pub fn response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

/// An API refusal as inSales's XML errors, with the JSON answer's status: the message is the
/// JSON body's `error` or `message`.
pub fn error(e: ApiError) -> Response {
    let message = e
        .body
        .get("error")
        .or_else(|| e.body.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("error")
        .to_owned();
    response(
        e.status,
        format!(
            "{DECLARATION}<errors>\n  <error>{}</error>\n</errors>\n",
            escape(&message)
        ),
    )
}

/// One flat record read from XML: its root element's name and its children's `(name, text)`,
/// names with `_` for `-` (`system-status` gives `system_status`); a child marked `nil="true"` or
/// empty has no text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The root element's name.
    pub root: String,
    /// The children, in document order.
    pub fields: Vec<(String, Option<String>)>,
}

impl Record {
    /// The text of child `name` (`None` when absent or nil).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// Reads a flat record: an optional declaration, one root element, and child elements holding
/// text only. Comments, CDATA, doctypes and nested children are refused.
pub fn parse_record(input: &str) -> Result<Record, String> {
    let mut p = Parser { s: input, pos: 0 };
    p.skip_ws();
    if p.rest().starts_with("<?xml") {
        let end = p
            .rest()
            .find("?>")
            .ok_or("the XML declaration is not closed")?;
        p.pos += end + 2;
    }
    p.skip_ws();
    let (root, _, empty) = p.open_tag()?;
    let mut fields = Vec::new();
    if !empty {
        loop {
            p.skip_ws();
            if p.rest().starts_with("</") {
                p.close_tag(&root)?;
                break;
            }
            let (name, nil, empty) = p.open_tag()?;
            let text = if empty {
                String::new()
            } else {
                let text = p.text()?;
                p.close_tag(&name)?;
                text
            };
            let value = (!nil && !text.is_empty()).then_some(text);
            fields.push((name.replace('-', "_"), value));
        }
    }
    p.skip_ws();
    if !p.rest().is_empty() {
        return Err("content after the root element".into());
    }
    Ok(Record {
        root: root.replace('-', "_"),
        fields,
    })
}

struct Parser<'a> {
    s: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    /// `<name attr="v" …>` or `<name …/>`: the name, whether `nil="true"` is set, whether empty.
    fn open_tag(&mut self) -> Result<(String, bool, bool), String> {
        let rest = self.rest();
        if !rest.starts_with('<') || rest.starts_with("</") {
            return Err(format!("expected an element at byte {}", self.pos));
        }
        if rest.starts_with("<!") || rest.starts_with("<?") {
            return Err("comments, CDATA and doctypes are not accepted".into());
        }
        let end = rest.find('>').ok_or("an element is not closed")?;
        let inner = &rest[1..end];
        let (inner, empty) = match inner.strip_suffix('/') {
            Some(i) => (i, true),
            None => (inner, false),
        };
        let mut parts = inner.split_whitespace();
        let name = parts.next().ok_or("an element has no name")?.to_owned();
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(format!("bad element name {name:?}"));
        }
        let attrs: String = parts.collect::<Vec<_>>().join(" ");
        let nil = attrs.contains("nil=\"true\"") || attrs.contains("nil='true'");
        self.pos += end + 1;
        Ok((name, nil, empty))
    }

    fn close_tag(&mut self, name: &str) -> Result<(), String> {
        let want = format!("</{name}>");
        if self.rest().starts_with(&want) {
            self.pos += want.len();
            Ok(())
        } else {
            Err(format!("expected {want} at byte {}", self.pos))
        }
    }

    /// Text up to the next `<`, entities decoded; a child element inside is refused.
    fn text(&mut self) -> Result<String, String> {
        let rest = self.rest();
        let end = rest.find('<').ok_or("an element is not closed")?;
        if !rest[end..].starts_with("</") {
            return Err("nested elements are not accepted in a field".into());
        }
        let text = unescape(&rest[..end])?;
        self.pos += end;
        Ok(text)
    }
}

/// Decodes the five named entities and numeric character references.
fn unescape(s: &str) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        let end = tail.find(';').ok_or("an entity is not closed with ';'")?;
        let entity = &tail[..end];
        let ch = match entity {
            "amp" => '&',
            "lt" => '<',
            "gt" => '>',
            "quot" => '"',
            "apos" => '\'',
            e => {
                let code = if let Some(hex) = e.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else if let Some(dec) = e.strip_prefix('#') {
                    dec.parse().ok()
                } else {
                    None
                };
                code.and_then(char::from_u32)
                    .ok_or_else(|| format!("unknown entity &{e};"))?
            }
        };
        out.push(ch);
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_are_written_as_rails_writes_them() {
        let v = json!({"id": 1, "title": "A & <B>", "system_status": "new", "is_default": true,
                       "created_at": "2026-01-01T00:00:00Z", "gone": null});
        let x = object("custom_status", &v);
        assert!(x.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<custom-status>\n"));
        assert!(x.contains("<id type=\"integer\">1</id>"));
        assert!(x.contains("<title>A &amp; &lt;B&gt;</title>"));
        assert!(x.contains("<system-status>new</system-status>"));
        assert!(x.contains("<is-default type=\"boolean\">true</is-default>"));
        assert!(x.contains("<created-at type=\"dateTime\">2026-01-01T00:00:00Z</created-at>"));
        assert!(x.contains("<gone nil=\"true\"/>"));
        let list = array("custom_statuses", "custom_status", &[v]);
        assert!(list.contains("<custom-statuses type=\"array\">\n  <custom-status>\n"));
    }

    #[test]
    fn a_flat_record_reads_back() {
        let r = parse_record(
            "<?xml version=\"1.0\"?>\n<custom-status>\n <system-status>new</system-status>\n \
             <title>Ждёт &amp; звонка &#1071;</title><color/><position type=\"integer\">3</position>\
             <is-default type=\"boolean\" nil=\"true\"></is-default></custom-status>\n",
        )
        .unwrap();
        assert_eq!(r.root, "custom_status");
        assert_eq!(r.get("system_status"), Some("new"));
        assert_eq!(r.get("title"), Some("Ждёт & звонка Я"));
        assert_eq!(r.get("color"), None);
        assert_eq!(r.get("position"), Some("3"));
        assert_eq!(r.get("is_default"), None);
    }

    #[test]
    fn anything_but_a_flat_record_is_refused() {
        for bad in [
            "",
            "not xml",
            "<a><b>1</b>",
            "<a><b><c>1</c></b></a>",
            "<a><b>1</c></a>",
            "<a><!-- x --></a>",
            "<a><b>&bogus;</b></a>",
            "<a></a><b></b>",
        ] {
            assert!(parse_record(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
