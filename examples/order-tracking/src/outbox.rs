//! Partner webhooks through an outbox: rows written in the status change's transaction, sent by one
//! worker with exponential backoff, in order per (partner, order).
//!
//! A row's body is frozen at commit, so a retry sends exactly what was true then, and the
//! `Webhook-Id` doubles as the receiver's idempotency key. Partners may be `http://` or `https://`
//! (rustls, the Mozilla roots unless a TLS config is given). 2xx marks a row delivered; 408, 429,
//! 5xx and transport errors retry until the give-up window (24 h by default, from the commit)
//! runs out; any other 4xx, or the window's end, parks the row with its last status and error
//! (Google: fix the payload or the key, do not retry blindly). The worker never deletes a row and never sends a
//! later row of an order before an earlier one is delivered or parked (Google's staleness rule).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rusqlite::{params, Connection};
use tokio::sync::Notify;

use crate::db::{now, Db};
use crate::limits::{
    OUTBOX_BASE_DELAY, OUTBOX_BATCH, OUTBOX_ERROR_CHARS, OUTBOX_MAX_DELAY, OUTBOX_POLL,
    OUTBOX_REQUEST_TIMEOUT,
};
use crate::settings::PartnerSetting;
use crate::ucp;

/// The header carrying the partner's API key (Google's order-lifecycle guide).
pub const API_KEY_HEADER: &str = "x-goog-api-key";

/// Writes the configured partners into the `partners` table; partners no longer configured are
/// kept (their rows stay) but marked inactive.
pub fn sync_partners(c: &mut Connection, partners: &[PartnerSetting]) -> rusqlite::Result<()> {
    let tx = c.transaction()?;
    tx.execute("UPDATE partners SET active = 0", [])?;
    for p in partners {
        tx.execute(
            "INSERT INTO partners (partner_id, base_url, api_key, ucp_version, active) VALUES (?1, ?2, ?3, ?4, 1)
             ON CONFLICT(partner_id) DO UPDATE SET base_url = ?2, api_key = ?3, ucp_version = ?4, active = 1",
            params![p.partner_id, p.base_url, p.api_key, p.ucp_version],
        )?;
    }
    tx.commit()
}

/// Writes one outbox row per partner for `order_id`, inside the caller's transaction.
pub fn enqueue(
    c: &Connection,
    public_url: &str,
    order_id: i64,
    webhook_id: &str,
    timestamp: i64,
) -> rusqlite::Result<()> {
    let partners: Vec<(String, String)> = {
        let mut st = c.prepare(
            "SELECT partner_id, ucp_version FROM partners WHERE active = 1 ORDER BY partner_id",
        )?;
        let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    for (partner, version) in partners {
        let Some(body) = ucp::snapshot(c, public_url, order_id, &version, webhook_id, timestamp)?
        else {
            continue;
        };
        c.execute(
            "INSERT INTO outbox (partner_id, order_id, webhook_id, webhook_timestamp, body, next_attempt_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![partner, order_id, webhook_id, timestamp, body.to_string(), now_ms()],
        )?;
    }
    Ok(())
}

fn now_ms() -> i64 {
    now() * 1000
        + i64::from(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_millis())
                .unwrap_or(0),
        )
}

/// The delay before attempt `attempts + 1`: base × 2^attempts, capped.
pub fn backoff(attempts: u32) -> Duration {
    OUTBOX_BASE_DELAY
        .saturating_mul(2u32.saturating_pow(attempts))
        .min(OUTBOX_MAX_DELAY)
}

struct Due {
    id: i64,
    url: String,
    api_key: String,
    webhook_id: String,
    webhook_timestamp: i64,
    body: String,
    attempts: u32,
}

enum Outcome {
    Delivered(u16),
    Retry(Option<u16>, String),
    Park(Option<u16>, String),
}

/// The partner HTTP client: `http://` and `https://` partners alike, over the SDK's connector.
type PartnerClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How the worker sends and when it gives up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The shop's public URL (what a `self` partner base URL stands for).
    pub public_url: String,
    /// How long after its commit a row is retried before it is parked as failed.
    pub give_up_after: Duration,
    /// TLS for `https://` partners; `None` trusts the Mozilla roots.
    pub tls: Option<rustls::ClientConfig>,
}

/// Starts the worker. `wake` is notified after each commit that wrote rows. Fails only if no TLS
/// crypto provider can be set up.
pub fn spawn_worker(
    db: Db,
    config: WorkerConfig,
    wake: Arc<Notify>,
) -> Result<tokio::task::JoinHandle<()>, vestnik_sdk::Error> {
    let connector = vestnik_sdk::https_connector(OUTBOX_REQUEST_TIMEOUT, config.tls.clone())?;
    let client: PartnerClient = Client::builder(TokioExecutor::new()).build(connector);
    let give_up = config.give_up_after;
    Ok(tokio::spawn(async move {
        loop {
            let base = config.public_url.clone();
            let due = db
                .run(move |c| Ok(due_rows(c, &base)?))
                .await
                .unwrap_or_else(|e| {
                    tracing::error!(?e, "outbox: cannot read due rows");
                    Vec::new()
                });
            let busy = !due.is_empty();
            for row in due {
                let outcome = give_up_when_expired(send(&client, &row).await, &row, give_up);
                let id = row.id;
                let attempts = row.attempts;
                let recorded = db
                    .run(move |c| Ok(record(c, id, attempts, &outcome)?))
                    .await;
                if let Err(e) = recorded {
                    tracing::error!(?e, "outbox: cannot record an attempt");
                }
            }
            if !busy {
                let _ = tokio::time::timeout(OUTBOX_POLL, wake.notified()).await;
            }
        }
    }))
}

/// A retry of a row older than `window` (from its commit) becomes a park: the row is kept as
/// failed with its last status and error, and the order's later rows may go.
fn give_up_when_expired(outcome: Outcome, row: &Due, window: Duration) -> Outcome {
    match outcome {
        Outcome::Retry(status, error) if expired(row.webhook_timestamp, window) => {
            let error = format!("gave up after {} s of retries: {error}", window.as_secs());
            Outcome::Park(status, error)
        }
        other => other,
    }
}

fn expired(committed_at: i64, window: Duration) -> bool {
    let age = now().saturating_sub(committed_at);
    u64::try_from(age).unwrap_or(0) >= window.as_secs()
}

fn due_rows(c: &Connection, public_url: &str) -> rusqlite::Result<Vec<Due>> {
    let mut st = c.prepare(
        "SELECT o.id, p.base_url, p.partner_id, p.api_key, o.webhook_id, o.webhook_timestamp, o.body, o.attempts
         FROM outbox o JOIN partners p ON p.partner_id = o.partner_id
         WHERE o.id IN (SELECT MIN(id) FROM outbox WHERE delivered_at IS NULL AND parked = 0
                        GROUP BY partner_id, order_id)
           AND o.next_attempt_at <= ?1 AND p.active = 1
         ORDER BY o.id LIMIT ?2",
    )?;
    let rows = st.query_map(params![now_ms(), OUTBOX_BATCH as i64], |r| {
        let base: String = r.get(1)?;
        let partner: String = r.get(2)?;
        let base = if base == "self" {
            public_url.to_owned()
        } else {
            base
        };
        Ok(Due {
            id: r.get(0)?,
            url: format!("{base}/webhooks/partners/{partner}/events/order"),
            api_key: r.get(3)?,
            webhook_id: r.get(4)?,
            webhook_timestamp: r.get(5)?,
            body: r.get(6)?,
            attempts: r.get(7)?,
        })
    })?;
    rows.collect()
}

async fn send(client: &PartnerClient, row: &Due) -> Outcome {
    let req = Request::builder()
        .method(Method::POST)
        .uri(&row.url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(API_KEY_HEADER, &row.api_key)
        .header("webhook-id", &row.webhook_id)
        .header("webhook-timestamp", row.webhook_timestamp.to_string())
        .body(Full::new(Bytes::from(row.body.clone())));
    let req = match req {
        Ok(r) => r,
        Err(e) => return Outcome::Park(None, format!("invalid request: {e}")),
    };
    let exchange = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        Ok::<_, String>((
            status,
            String::from_utf8_lossy(&body)
                .chars()
                .take(OUTBOX_ERROR_CHARS)
                .collect::<String>(),
        ))
    };
    match tokio::time::timeout(OUTBOX_REQUEST_TIMEOUT, exchange).await {
        Err(_) => Outcome::Retry(None, "timed out".into()),
        Ok(Err(e)) => Outcome::Retry(None, e),
        Ok(Ok((s, _))) if (200..300).contains(&s) => Outcome::Delivered(s),
        Ok(Ok((s, body))) if s == 408 || s == 429 || s >= 500 => Outcome::Retry(Some(s), body),
        Ok(Ok((s, body))) => Outcome::Park(Some(s), body),
    }
}

fn record(c: &Connection, id: i64, attempts: u32, outcome: &Outcome) -> rusqlite::Result<()> {
    match outcome {
        Outcome::Delivered(s) => c.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_status = ?2, last_error = NULL, delivered_at = ?3 WHERE id = ?1",
            params![id, s, now()],
        )?,
        Outcome::Retry(s, e) => {
            let next = now_ms() + backoff(attempts).as_millis() as i64;
            tracing::warn!(id, status = ?s, error = %e, "outbox: delivery failed, will retry");
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_status = ?2, last_error = ?3, next_attempt_at = ?4 WHERE id = ?1",
                params![id, s, e, next],
            )?
        }
        Outcome::Park(s, e) => {
            tracing::warn!(id, status = ?s, error = %e, "outbox: refused or given up, parked");
            c.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_status = ?2, last_error = ?3, parked = 1 WHERE id = ?1",
                params![id, s, e],
            )?
        }
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partner(id: &str) -> PartnerSetting {
        PartnerSetting {
            partner_id: id.into(),
            base_url: "self".into(),
            api_key: "k".into(),
            ucp_version: ucp::V_2026_01_23.into(),
        }
    }

    #[test]
    fn removed_partners_get_no_new_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shop.sqlite3");
        crate::db::Db::open(&path).unwrap();
        let mut c = Connection::open(&path).unwrap();
        sync_partners(&mut c, &[partner("a"), partner("b")]).unwrap();
        enqueue(&c, "http://shop", 1001, "upd_1", 1).unwrap();
        sync_partners(&mut c, &[partner("b")]).unwrap();
        enqueue(&c, "http://shop", 1001, "upd_2", 2).unwrap();
        let rows: Vec<(String, String)> = c
            .prepare("SELECT partner_id, webhook_id FROM outbox ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let pairs: Vec<(&str, &str)> = rows.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(pairs, [("a", "upd_1"), ("b", "upd_1"), ("b", "upd_2")]);
        assert!(due_rows(&c, "http://shop")
            .unwrap()
            .iter()
            .all(|d| !d.url.contains("/a/")));
    }

    #[test]
    fn backoff_doubles_and_caps() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(40), OUTBOX_MAX_DELAY);
    }
}
