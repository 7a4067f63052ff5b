//! `GET /apps/{id}/channels/{name}/history?after=N&epoch=E&limit=L`: a channel's kept events for
//! backends, oldest first, one page at a time (see `docs/recovery.md`).
//!
//! The query is parsed here, the broker reads its history under the stream's lock, and each kept
//! frame (the bytes the sockets got) is decoded back into its event name, data and user id: the
//! history keeps only frames, so publishing costs nothing extra and only this read pays for the
//! decode. A refusal names the same `reason` a recovery on the socket gives, with the channel's
//! current epoch and bounds, so a backend can go on from there. This module must never change
//! broker state.

use http::{Response, StatusCode};
use serde_json::{json, Value};
use vestnik_broker::history::{HistoryPage, KeptEvent};
use vestnik_protocol::limits::HISTORY_SIZE;
use vestnik_protocol::message::{Recover, RecoveryFailure};
use vestnik_protocol::ChannelName;

use super::signed::SignedCall;
use crate::reply::{json_response, ok, path_segment, ApiError, Body};
use crate::state::AppState;

/// Events a page holds when `limit` is not given: a default channel's whole history.
pub const DEFAULT_LIMIT: usize = HISTORY_SIZE;

/// The largest `limit` accepted, so one answer stays a few MiB at most even for large events.
pub const MAX_LIMIT: usize = 1000;

/// The longest `epoch` accepted; ours are 12 hex characters.
const MAX_EPOCH_LEN: usize = 64;

/// What a page asks for, from the query.
#[derive(Debug, PartialEq, Eq)]
struct PageQuery {
    after: Option<Recover>,
    limit: usize,
}

/// Parses `after`, `epoch` and `limit`. `after` is an offset and means nothing without the
/// `epoch` it belongs to; `epoch` alone means from the start of that epoch (`after=0`).
fn page_query(call: &SignedCall) -> Result<PageQuery, ApiError> {
    let number = |name: &str| -> Result<Option<u64>, ApiError> {
        call.param(name)
            .map(|v| {
                v.parse::<u64>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "{name} must be a non-negative integer, not {v:?}"
                    ))
                })
            })
            .transpose()
    };
    let limit = match number("limit")? {
        None => DEFAULT_LIMIT,
        Some(n) if n >= 1 && n <= MAX_LIMIT as u64 => {
            usize::try_from(n).expect("at most MAX_LIMIT, a usize")
        }
        Some(n) => {
            return Err(ApiError::bad_request(format!(
                "limit must be between 1 and {MAX_LIMIT}, not {n}"
            )))
        }
    };
    let after = match (call.param("epoch"), number("after")?) {
        (None, None) => None,
        (None, Some(_)) => {
            return Err(ApiError::bad_request(
                "after needs the epoch its offset belongs to: pass epoch too",
            ))
        }
        (Some(epoch), _) if epoch.is_empty() || epoch.len() > MAX_EPOCH_LEN => {
            return Err(ApiError::bad_request(format!(
                "epoch must be 1 to {MAX_EPOCH_LEN} characters"
            )))
        }
        (Some(epoch), offset) => Some(Recover {
            epoch: epoch.to_owned(),
            offset: offset.unwrap_or(0),
        }),
    };
    Ok(PageQuery { after, limit })
}

/// One kept event as JSON: offset, event, data, publish time, and the sender's user id on
/// presence client events.
fn event_json(e: &KeptEvent) -> Value {
    let mut v = json!({"offset": e.offset, "published_at_ms": e.published_at_ms});
    // Our own frames always decode; a frame that did not would be a bug, shown rather than hidden.
    match e.fields() {
        Ok(f) => {
            v["event"] = json!(f.event);
            v["data"] = json!(f.data);
            if let Some(u) = f.user_id {
                v["user_id"] = json!(u);
            }
        }
        Err(err) => v["error"] = json!(format!("undecodable frame: {err}")),
    }
    v
}

/// The channel's epoch and bounds, shared by pages and refusals.
fn bounds(page: &HistoryPage) -> Value {
    json!({
        "epoch": page.epoch,
        "first_offset": page.first_offset,
        "last_offset": page.last_offset,
    })
}

/// The HTTP status of a refusal: 409 when the position no longer fits the channel's history (the
/// backend reloads its state and goes on from the epoch and offsets in the answer), 404 when the
/// channel keeps no history, 501 on a node whose cluster keeps no cluster-wide history, 503 when
/// the backbone that keeps it cannot be reached.
fn refusal_status(reason: RecoveryFailure) -> StatusCode {
    match reason {
        RecoveryFailure::EpochChanged | RecoveryFailure::TooOld => StatusCode::CONFLICT,
        RecoveryFailure::HistoryOff => StatusCode::NOT_FOUND,
        RecoveryFailure::ClusterHistoryUnavailable => StatusCode::NOT_IMPLEMENTED,
        RecoveryFailure::BackboneUnavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// What a refusal says, for people reading the error.
fn refusal_message(reason: RecoveryFailure, channel: &ChannelName) -> String {
    match reason {
        RecoveryFailure::EpochChanged => format!(
            "The history of {channel} is not the one of this epoch (lost to a restart, expiry or \
             eviction): reload your state, then read on from the current epoch"
        ),
        RecoveryFailure::TooOld => format!(
            "Events of {channel} after this offset were already dropped by the history bounds: \
             reload your state, then read on from first_offset"
        ),
        RecoveryFailure::HistoryOff => format!("History is off for {channel}"),
        RecoveryFailure::ClusterHistoryUnavailable => {
            "This node is in a cluster whose backbone keeps no history (NATS without \
             JetStream): run nats-server with JetStream (-js), or the cluster on Redis, for \
             cluster-wide history"
                .to_owned()
        }
        RecoveryFailure::BackboneUnavailable => {
            "The backbone that keeps the cluster's history cannot be reached now: try again"
                .to_owned()
        }
    }
}

/// `GET /apps/{id}/channels/{name}/history`.
///
/// 200: `{"epoch","first_offset","last_offset","events":[…],"next_after","has_more"}`; pass
/// `after=next_after&epoch=epoch` for the next page. A refusal is a JSON `error` with `reason`
/// and the channel's current `epoch`, `first_offset` and `last_offset`.
pub async fn read(
    state: &AppState,
    call: &SignedCall,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let decoded = path_segment(name)?;
    let channel = ChannelName::parse(&decoded)
        .map_err(|e| ApiError::bad_request(format!("Invalid channel name {decoded:?}: {e}")))?;
    let q = page_query(call)?;
    match state
        .broker
        .channel_history(&call.app, &channel, q.after.as_ref(), q.limit)
        .await
    {
        Ok(page) => {
            let next_after = page.events.last().map_or_else(
                || q.after.as_ref().map_or(page.last_offset, |r| r.offset),
                |e| e.offset,
            );
            let mut body = bounds(&page);
            body["events"] = page.events.iter().map(event_json).collect();
            body["next_after"] = json!(next_after);
            body["has_more"] = json!(next_after < page.last_offset);
            Ok(ok(&body))
        }
        Err(refusal) => {
            let status = refusal_status(refusal.reason);
            let mut body = bounds(&refusal.current);
            body["error"] = json!(refusal_message(refusal.reason, &channel));
            body["code"] = json!(status.as_u16());
            body["reason"] = json!(refusal.reason.as_str());
            Ok(json_response(status, &body))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::Method;
    use vestnik_broker::App;

    use super::*;

    fn call(query: &[(&str, &str)]) -> SignedCall {
        SignedCall {
            app: Arc::new(App::default()),
            method: Method::GET,
            path: "/apps/1/channels/c/history".into(),
            query: query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            body: Bytes::new(),
        }
    }

    #[test]
    fn the_query_has_defaults_and_refuses_what_means_nothing() {
        assert_eq!(
            page_query(&call(&[])).unwrap(),
            PageQuery {
                after: None,
                limit: DEFAULT_LIMIT
            }
        );
        let q = page_query(&call(&[("epoch", "ab"), ("after", "7"), ("limit", "3")])).unwrap();
        assert_eq!(q.after.map(|r| (r.epoch, r.offset)), Some(("ab".into(), 7)));
        assert_eq!(q.limit, 3);
        let epoch_only = page_query(&call(&[("epoch", "ab")])).unwrap();
        assert_eq!(epoch_only.after.map(|r| r.offset), Some(0));
        for bad in [
            &[("after", "3")][..],
            &[("epoch", "ab"), ("after", "-1")],
            &[("epoch", "")],
            &[("limit", "0")],
            &[("limit", "1001")],
            &[("limit", "x")],
        ] {
            let e = page_query(&call(bad)).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
    }

    #[test]
    fn a_kept_frame_decodes_into_event_data_and_user() {
        let e = KeptEvent {
            offset: 4,
            frame: Bytes::from_static(
                br#"{"event":"e","channel":"c","data":"{\"a\":1}","user_id":"u","position":{"epoch":"x","offset":4}}"#,
            ),
            published_at_ms: 9,
        };
        assert_eq!(
            event_json(&e),
            json!({"offset": 4, "event": "e", "data": "{\"a\":1}", "user_id": "u", "published_at_ms": 9})
        );
    }
}
