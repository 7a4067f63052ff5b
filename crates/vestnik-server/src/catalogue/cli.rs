//! `vestnik apps …`: the admin operations against the app database directly, for scripts and for a
//! first app before any broker runs. Prints JSON on stdout (the same shapes as `/admin/apps`), and
//! errors on stderr with a non-zero exit. This module must never print a secret except the one a
//! create or a rotation hands the operator.

use serde_json::{json, Value};
use vestnik_apps::Store;

use super::ops::{self, CreateBody, OpError, PatchBody};

/// What `vestnik apps` does.
#[derive(Debug, clap::Subcommand)]
pub enum AppsAction {
    /// Create or upgrade the schema (idempotent).
    Migrate,
    /// List every app (without secrets).
    List,
    /// Show one app, with its secret.
    Show {
        /// The app id.
        id: String,
    },
    /// Create an app; id, key and secret are generated unless given. Prints it with its secret.
    Create {
        /// The app id [default: nine random digits].
        #[arg(long)]
        id: Option<String>,
        /// The public key [default: 20 random hex digits].
        #[arg(long)]
        key: Option<String>,
        /// The secret [default: 32 random hex digits]. Prefer the generated one: a flag is visible
        /// to other users of the machine.
        #[arg(long)]
        secret: Option<String>,
        /// Create it disabled.
        #[arg(long)]
        disabled: bool,
        /// Limits as a JSON object, e.g. '{"max_connections": 100}'.
        #[arg(long, value_name = "JSON")]
        limits: Option<String>,
        /// Options as a JSON object, e.g. '{"client_events": false}'.
        #[arg(long, value_name = "JSON")]
        options: Option<String>,
        /// Quotas as a JSON object.
        #[arg(long, value_name = "JSON")]
        quotas: Option<String>,
        /// Webhook targets as a JSON list, e.g. '[{"url": "https://h.example/hook"}]'.
        #[arg(long, value_name = "JSON")]
        webhooks: Option<String>,
    },
    /// Change limits, options, quotas or webhooks; each object given is merged key by key.
    Update {
        /// The app id.
        id: String,
        /// Limits to change, as a JSON object.
        #[arg(long, value_name = "JSON")]
        limits: Option<String>,
        /// Options to change, as a JSON object.
        #[arg(long, value_name = "JSON")]
        options: Option<String>,
        /// Quotas to change, as a JSON object.
        #[arg(long, value_name = "JSON")]
        quotas: Option<String>,
        /// The new webhook targets, as a JSON list (replaces the list).
        #[arg(long, value_name = "JSON")]
        webhooks: Option<String>,
    },
    /// Disable an app: its sockets are closed with 4003 on every node, its API calls get 403.
    Disable {
        /// The app id.
        id: String,
    },
    /// Enable an app again.
    Enable {
        /// The app id.
        id: String,
    },
    /// Give an app a new secret; the old one stays valid for --grace seconds. Prints the new one.
    RotateSecret {
        /// The app id.
        id: String,
        /// Seconds the old secret stays valid (0 drops it at once; at most a week).
        #[arg(long, default_value_t = 0, value_name = "SECS")]
        grace: u64,
    },
    /// Delete an app: its sockets are closed with 4001 on every node. Its usage rows stay.
    Delete {
        /// The app id.
        id: String,
    },
    /// An app's usage per UTC hour (the last 24 hours unless --from/--to are given).
    Usage {
        /// The app id.
        id: String,
        /// The first hour, in unix seconds.
        #[arg(long, value_name = "UNIX_SECS")]
        from: Option<i64>,
        /// The end (exclusive), in unix seconds.
        #[arg(long, value_name = "UNIX_SECS")]
        to: Option<i64>,
    },
}

/// A JSON flag's value, or a 400 naming the flag.
fn parse<T: serde::de::DeserializeOwned>(
    flag: &str,
    v: Option<String>,
) -> Result<Option<T>, OpError> {
    v.map(|s| {
        serde_json::from_str(&s)
            .map_err(|e| OpError::invalid(400, format!("--{flag} is not valid JSON for it: {e}")))
    })
    .transpose()
}

/// Runs one action against the database at `url` and returns what to print.
pub async fn run(url: &str, action: AppsAction) -> Result<Value, OpError> {
    let store = vestnik_apps::open(url).await?;
    let store: &dyn Store = store.as_ref();
    Ok(match action {
        AppsAction::Migrate => {
            let m = store.migrate().await?;
            json!({ "schema_from": m.from, "schema_to": m.to })
        }
        AppsAction::List => ops::list(store).await?,
        AppsAction::Show { id } => ops::record_json(&store.show(&id).await?, true),
        AppsAction::Create {
            id,
            key,
            secret,
            disabled,
            limits,
            options,
            quotas,
            webhooks,
        } => {
            let body = CreateBody {
                id,
                key,
                secret,
                enabled: Some(!disabled),
                limits: parse("limits", limits)?,
                options: parse("options", options)?,
                quotas: parse("quotas", quotas)?,
                webhooks: parse("webhooks", webhooks)?,
            };
            ops::record_json(&ops::create(store, body).await?, true)
        }
        AppsAction::Update {
            id,
            limits,
            options,
            quotas,
            webhooks,
        } => {
            let body = PatchBody {
                limits: parse("limits", limits)?,
                options: parse("options", options)?,
                quotas: parse("quotas", quotas)?,
                webhooks: parse("webhooks", webhooks)?,
                enabled: None,
            };
            ops::record_json(&ops::update(store, &id, body).await?, false)
        }
        AppsAction::Disable { id } => ops::record_json(&store.disable(&id).await?, false),
        AppsAction::Enable { id } => ops::record_json(&store.enable(&id).await?, false),
        AppsAction::RotateSecret { id, grace } => {
            ops::record_json(&ops::rotate(store, &id, grace).await?, true)
        }
        AppsAction::Usage { id, from, to } => {
            store.show(&id).await?;
            ops::usage(store, &id, from, to).await?
        }
        AppsAction::Delete { id } => {
            store.delete(&id).await?;
            json!({ "deleted": id })
        }
    })
}
