//! The Vestnik showcase: an order-tracking shop that uses a Pusher-compatible broker only through
//! the public HTTP API (via `vestnik-sdk`) and the Pusher protocol (pusher-js in the page), so it
//! runs unchanged against Vestnik, Pusher or Pushler.
//!
//! It joins four documents: live tracking on `private-user-{id}` (the cookbook), custom statuses
//! over system statuses (inSales's API), full-order partner webhooks through an outbox (UCP), and
//! an order-history hook for a mobile app. All status changes go through
//! [`orders::change_status`]. This crate never opens a WebSocket itself and never sends the broker
//! anything but signed API calls.
//!
//! # Layout
//! - [`settings`], [`limits`]: configuration and every number.
//! - [`db`]: SQLite, migrations. [`status`]: the vocabulary. [`orders`]: the transition.
//! - [`live`], [`pages`], [`session`], [`presence`]: part 1 (live tracking, customers online).
//! - [`lines`]: the manager's line edits (a line removed before shipping).
//! - [`admin`]: part 2 (custom statuses, inSales-shaped orders API).
//! - [`ucp`], [`outbox`], [`partner`]: part 3 (partner webhooks and the demo receiver).
//! - [`mobile`]: part 4 (mobile order history).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use tokio::sync::Notify;

pub mod admin;
pub mod db;
pub mod error;
pub mod input;
pub mod limits;
pub mod lines;
pub mod live;
pub mod mobile;
pub mod orders;
pub mod outbox;
pub mod pages;
pub mod partner;
pub mod presence;
pub mod session;
pub mod settings;
pub mod status;
pub mod ucp;

pub use settings::Settings;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The store.
    pub db: db::Db,
    /// The broker client.
    pub sdk: vestnik_sdk::Client,
    /// The settings the shop started with.
    pub settings: Arc<Settings>,
    /// The shop's public URL, without a trailing slash.
    pub public_url: String,
    /// Wakes the outbox worker after a commit.
    pub outbox_wake: Arc<Notify>,
    /// The demo partner receiver's switches.
    pub receiver: Arc<partner::Receiver>,
    /// Customers whose order page is open, from the broker's webhooks.
    pub online: Arc<presence::Online>,
}

/// Every route.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(pages::home))
        .route("/login", get(pages::login_page).post(session::login))
        .route("/logout", post(session::logout))
        .route("/orders/{id}", get(pages::order_page))
        .route("/manager", get(pages::manager_page))
        .route("/courier", get(pages::courier_page))
        .route("/track/{number}", get(pages::track_page))
        .route("/static/{file}", get(pages::static_file))
        .route("/static/img/{name}", get(pages::product_image))
        .route("/favicon.ico", get(pages::favicon))
        .route("/healthz", get(|| async { "ok" }))
        .route("/api/orders", get(live::my_orders))
        .route("/api/orders/{id}", get(live::order_state))
        .route("/api/manager/orders", get(live::manager_orders))
        .route(
            "/api/manager/orders/{id}/status",
            post(live::manager_status),
        )
        .route(
            "/api/manager/orders/{id}/lines/{line_id}",
            post(lines::set_quantity),
        )
        .route(
            "/api/manager/orders/{id}/courier",
            post(live::assign_courier),
        )
        .route(
            "/api/courier/orders/{id}/location",
            post(live::courier_location),
        )
        .route("/update_order.php", post(live::update_order_php))
        .route(
            "/update_courier_location.php",
            post(live::update_courier_location_php),
        )
        .route("/pusher/auth", post(live::channel_auth))
        .route("/auth.php", post(live::channel_auth))
        .route("/pusher/user-auth", post(live::user_auth))
        .route("/pusher/webhooks", post(presence::webhook))
        .route(
            "/admin/custom_statuses.json",
            get(admin::list_custom_statuses).post(admin::create_custom_status),
        )
        .route(
            "/admin/custom_statuses.xml",
            get(admin::list_custom_statuses_xml).post(admin::create_custom_status_xml),
        )
        .route(
            "/admin/custom_statuses/{file}",
            put(admin::update_custom_status),
        )
        .route(
            "/admin/orders.json",
            get(admin::list_orders).post(admin::create_order),
        )
        .route(
            "/admin/orders/{file}",
            get(admin::get_order).put(admin::update_order),
        )
        .route(
            "/webhooks/partners/{partner_id}/events/order",
            post(partner::receive),
        )
        .route(
            "/partner/{partner_id}/orders/{order_id}",
            get(partner::last_snapshot),
        )
        .route("/partner/{partner_id}/mode", post(partner::set_mode))
        .route("/mobile/order-history", post(mobile::order_history))
        .route("/mobile/order-status", post(mobile::order_status))
        .route("/mobile/rating", post(mobile::rating))
        .fallback(|| async { error::ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            error::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed",
            )
        })
        .layer(DefaultBodyLimit::max(limits::MAX_BODY_BYTES))
        .with_state(state)
}

/// A started shop.
#[derive(Debug)]
pub struct Running {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its public URL.
    pub public_url: String,
    /// The shared state (tests read the database through it).
    pub state: AppState,
    /// The server task; it runs until the runtime stops.
    pub task: tokio::task::JoinHandle<std::io::Result<()>>,
    /// The outbox worker.
    pub worker: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops serving and sending at once, as a crash would: whatever the outbox holds stays in the
    /// database for the next start.
    pub fn abort(self) {
        self.task.abort();
        self.worker.abort();
    }
}

/// Opens the database, binds, starts the outbox worker and serves.
pub async fn start(settings: Settings) -> anyhow::Result<Running> {
    let partners = settings.partner_list().map_err(|e| anyhow::anyhow!(e))?;
    let receiver_keys = settings.receiver_keys().map_err(|e| anyhow::anyhow!(e))?;
    let db = db::Db::open(&settings.database)?;
    let listener = tokio::net::TcpListener::bind(settings.listen).await?;
    let addr = listener.local_addr()?;
    let public_url = settings
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"))
        .trim_end_matches('/')
        .to_owned();
    db.run(move |c| Ok(outbox::sync_partners(c, &partners)?))
        .await
        .map_err(|e| anyhow::anyhow!("cannot store partners: {:?}", e.body))?;
    let sdk = vestnik_sdk::Client::new(settings.broker())?;
    let state = AppState {
        db: db.clone(),
        sdk,
        settings: Arc::new(settings),
        public_url: public_url.clone(),
        outbox_wake: Arc::new(Notify::new()),
        receiver: Arc::new(partner::Receiver {
            keys: receiver_keys,
            ..partner::Receiver::default()
        }),
        online: Arc::new(presence::Online::default()),
    };
    let worker = outbox::spawn_worker(
        db,
        outbox::WorkerConfig {
            public_url: public_url.clone(),
            give_up_after: std::time::Duration::from_secs(state.settings.outbox_give_up_secs),
            tls: state.settings.partner_tls.clone(),
        },
        state.outbox_wake.clone(),
    )?;
    let app = router(state.clone());
    let task = tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Running {
        addr,
        public_url,
        state,
        task,
        worker,
    })
}
