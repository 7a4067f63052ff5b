//! Parsing the server URL: one `nats://` / `tls://` address, or several separated by commas (the
//! client tries them in turn, and also learns the other members of a NATS cluster from the server).
//!
//! This module must never log or return a password: errors use redacted URLs.

use async_nats::ServerAddr;

use crate::Error;

/// Parses `url` as a comma-separated list of server addresses.
pub(crate) fn parse(url: &str) -> Result<Vec<ServerAddr>, Error> {
    let servers = url
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ServerAddr>().map_err(|e| Error::InvalidUrl {
                url: redact(s),
                reason: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    if servers.is_empty() {
        return Err(Error::InvalidUrl {
            url: redact(url),
            reason: "no server address".into(),
        });
    }
    Ok(servers)
}

/// The URL with any `user:password@` replaced by `***@`, for errors and logs.
pub(crate) fn redact(url: &str) -> String {
    url.split(',')
        .map(|one| {
            let (scheme, rest) = one.split_once("://").unwrap_or(("", one));
            let end = rest.find('/').unwrap_or(rest.len());
            match rest[..end].rfind('@') {
                Some(at) if scheme.is_empty() => format!("***@{}", &rest[at + 1..]),
                Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
                None => one.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_redacts() {
        assert_eq!(parse("nats://127.0.0.1:4222").expect("one").len(), 1);
        assert_eq!(parse("nats://a:4222, tls://b:4222,").expect("two").len(), 2);
        assert!(parse(" , ").is_err());
        let err = parse("nats://u:secret@h:4222,http://u:secret@x")
            .expect_err("http is no NATS scheme")
            .to_string();
        assert!(!err.contains("secret"), "{err}");
        assert_eq!(
            redact("nats://u:p@h:1,nats://h2:2"),
            "nats://***@h:1,nats://h2:2"
        );
    }
}
