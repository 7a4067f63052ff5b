//! The admin operations in JSON terms, shared by the `/admin/apps` API and `vestnik apps`: what a
//! record looks like as JSON, how a create or a patch is read, and the operations themselves over a
//! [`Store`]. Every failure is an [`OpError`] with its HTTP status, so both edges say the same thing.
//!
//! A patch merges each group given (`limits`, `options`, `quotas`) key by key into the stored group
//! and sends the record's revision with it, so two admins changing different keys of one group at
//! once do not lose either change (the later one gets a 409 and retries). This module must never
//! print a secret: a secret is in a reply only where the caller must learn it (create, rotate,
//! show), never in a log line.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Map, Value};
use vestnik_apps::{AppRecord, AppUpdate, Hour, NewApp, Secret, Store, StoreError, UsageLedger};
use vestnik_protocol::webhook::WebhookTarget;

/// An admin operation that failed: the status and a message for the JSON `error`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OpError {
    /// The HTTP status (404, 409, 422, 400, 503).
    pub status: u16,
    /// What went wrong; never holds a secret.
    pub message: String,
}

impl OpError {
    /// A 400 or 422 for bad input.
    pub fn invalid(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<StoreError> for OpError {
    fn from(e: StoreError) -> Self {
        Self {
            status: e.status(),
            message: e.to_string(),
        }
    }
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A record as JSON. `with_secret` adds the current secret (create, rotate, show); listings leave
/// it out.
pub fn record_json(r: &AppRecord, with_secret: bool) -> Value {
    let mut v = json!({
        "id": r.id,
        "key": r.key,
        "enabled": r.enabled,
        "limits": r.limits,
        "options": r.options,
        "quotas": r.quotas,
        "webhooks": r.webhooks,
        "previous_secret_expires_at": r.previous_secret.as_ref().map(|p| unix(p.expires_at)),
        "created_at": unix(r.created_at),
        "updated_at": unix(r.updated_at),
        "revision": r.revision,
    });
    if with_secret {
        v["secret"] = Value::String(r.secret.expose().to_owned());
    }
    v
}

/// The body of a create: everything optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    /// A chosen id (else nine random digits).
    pub id: Option<String>,
    /// A chosen key (else 20 random hex digits).
    pub key: Option<String>,
    /// A chosen secret (else 32 random hex digits).
    pub secret: Option<String>,
    /// Whether the app starts enabled (default true).
    pub enabled: Option<bool>,
    /// Limits; each key not given keeps its default.
    pub limits: Option<Value>,
    /// Options; likewise.
    pub options: Option<Value>,
    /// Quotas; likewise.
    pub quotas: Option<Value>,
    /// Webhook targets.
    pub webhooks: Option<Vec<WebhookTarget>>,
}

/// The body of a patch: the groups to change.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatchBody {
    /// Keys of `limits` to change.
    pub limits: Option<Value>,
    /// Keys of `options` to change.
    pub options: Option<Value>,
    /// Keys of `quotas` to change.
    pub quotas: Option<Value>,
    /// The new list of webhook targets (replaces the list).
    pub webhooks: Option<Vec<WebhookTarget>>,
    /// Enable or disable.
    pub enabled: Option<bool>,
}

/// `patch`'s keys laid over `base`'s, read back as `T`: an unknown key or a wrong type is a 422
/// naming `group`.
fn merged<T>(group: &str, base: &T, patch: Option<Value>) -> Result<Option<T>, OpError>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let Some(patch) = patch else {
        return Ok(None);
    };
    let Value::Object(patch) = patch else {
        return Err(OpError::invalid(422, format!("{group} must be an object")));
    };
    let mut value = serde_json::to_value(base).expect("a group serializes");
    let obj: &mut Map<String, Value> = value.as_object_mut().expect("a group is an object");
    obj.extend(patch);
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| OpError::invalid(422, format!("invalid {group}: {e}")))
}

/// Creates an app from a create body.
pub async fn create(store: &dyn Store, body: CreateBody) -> Result<AppRecord, OpError> {
    let defaults = NewApp::generated();
    let app = NewApp {
        id: body.id,
        key: body.key,
        secret: body.secret.map(Secret::new),
        enabled: body.enabled.unwrap_or(true),
        limits: merged("limits", &defaults.limits, body.limits)?.unwrap_or_default(),
        options: merged("options", &defaults.options, body.options)?.unwrap_or_default(),
        quotas: merged("quotas", &defaults.quotas, body.quotas)?.unwrap_or_default(),
        webhooks: body.webhooks.unwrap_or_default(),
    };
    Ok(store.create(app).await?)
}

/// Applies a patch to the app `id`, merged into what is stored now and conditional on its
/// revision.
pub async fn update(store: &dyn Store, id: &str, body: PatchBody) -> Result<AppRecord, OpError> {
    let current = store.show(id).await?;
    let update = AppUpdate {
        limits: merged("limits", &current.limits, body.limits)?,
        options: merged("options", &current.options, body.options)?,
        quotas: merged("quotas", &current.quotas, body.quotas)?,
        webhooks: body.webhooks,
        enabled: body.enabled,
        expected_revision: Some(current.revision),
    };
    Ok(store.update(id, update).await?)
}

/// Rotates the secret of `id`, keeping the old one for `grace_seconds`.
pub async fn rotate(store: &dyn Store, id: &str, grace_seconds: u64) -> Result<AppRecord, OpError> {
    Ok(store
        .rotate_secret(id, Duration::from_secs(grace_seconds))
        .await?)
}

/// Every app, as JSON without secrets.
pub async fn list(store: &dyn Store) -> Result<Value, OpError> {
    let apps: Vec<Arc<AppRecord>> = store.list().await?;
    Ok(json!({ "apps": apps.iter().map(|r| record_json(r, false)).collect::<Vec<_>>() }))
}

/// The usage rows of `id` for the hours from `from` (unix seconds) up to `to`, as JSON; the last
/// 24 hours when not given. The caller checks that the app exists where it can (a database).
pub async fn usage(
    store: &dyn UsageLedger,
    id: &str,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Value, OpError> {
    let now = Hour::containing(SystemTime::now());
    let to = to.map_or(now.next(), |t| Hour::containing(UNIX_EPOCH + secs(t)));
    let from = from.map_or(Hour::from_unix(to.unix() - 24 * 3600), |f| {
        Hour::containing(UNIX_EPOCH + secs(f))
    });
    if from > to {
        return Err(OpError::invalid(400, "from must not be after to"));
    }
    let rows = store.usage(id, from, to).await?;
    let rows: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({
                "hour_start": r.hour.unix(),
                "peak_connections": r.usage.peak_connections,
                "messages_delivered": r.usage.messages_delivered,
                "messages_received": r.usage.messages_received,
                "bytes_out": r.usage.bytes_out,
                "webhooks_sent": r.usage.webhooks_sent,
            })
        })
        .collect();
    Ok(json!({ "app_id": id, "from": from.unix(), "to": to.unix(), "hours": rows }))
}

fn secs(t: i64) -> Duration {
    Duration::from_secs(u64::try_from(t).unwrap_or(0))
}
