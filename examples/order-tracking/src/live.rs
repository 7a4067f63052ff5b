//! Part 1, live tracking: the manager's status change, courier positions, the channel and user
//! auth endpoints, and the JSON the customer's pages ("my orders", the order page with its total
//! broken down) and the manager's page load.
//!
//! Two channels carry the changes: the owner's `private-user-{id}` (`order:status`, the cookbook's
//! event) and `private-managers` (`order:updated`, for the manager page; authorised for managers
//! only). Every broker call goes through `vestnik-sdk` after the database commit; a failed trigger
//! is logged and never undoes the change (the page catches up on reload, partners through the
//! outbox). This module never signs anything itself.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::Json;
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::db::{iso, now};
use crate::error::{ApiError, ApiResult};
use crate::input::{Id, Input};
use crate::limits::MAX_COMMENT_LEN;
use crate::orders::{self, Actor, ApiErrorOr, Change, ChangeError, ResolveError};
use crate::session::MaybeUser;
use crate::status::{self, COOKBOOK};
use crate::AppState;

/// The channel every event for a user goes to (the cookbook: one user channel, not one per order).
pub fn user_channel(user_id: i64) -> String {
    format!("private-user-{user_id}")
}

/// The managers' channel: every change to any order is announced there, so the manager page stays
/// live. Only managers may subscribe (the auth endpoint refuses everyone else).
pub const MANAGERS_CHANNEL: &str = "private-managers";

/// The event on [`MANAGERS_CHANNEL`]: `{order_id, …}` of what changed; the page reloads its list.
pub const MANAGERS_EVENT: &str = "order:updated";

/// Triggers `order:status` for a committed change on the owner's channel and `order:updated` on
/// the managers' channel, at once; failures are logged, not returned.
pub async fn publish(state: &AppState, change: &Change) {
    let channel = user_channel(change.user_id);
    let customer = async {
        if let Err(e) = state
            .sdk
            .trigger(&[channel.as_str()], "order:status", &change.payload, None)
            .await
        {
            tracing::warn!(error = %e, channel, "order:status trigger failed");
        }
    };
    tokio::join!(customer, notify_managers(state, &change.payload));
}

/// Triggers `order:updated` on the managers' channel (a change the customer is not told about, such
/// as a courier assignment, or a customer coming online); failures are logged.
pub async fn notify_managers(state: &AppState, payload: &Value) {
    if let Err(e) = state
        .sdk
        .trigger(&[MANAGERS_CHANNEL], MANAGERS_EVENT, payload, None)
        .await
    {
        tracing::warn!(error = %e, channel = MANAGERS_CHANNEL, "{MANAGERS_EVENT} trigger failed");
    }
}

/// Maps a refused change to its answer: 404, 409 or 500.
pub fn change_error(e: ChangeError) -> ApiError {
    match e {
        ChangeError::NotFound => ApiError::not_found("order"),
        ChangeError::Transition(t) => ApiError::new(StatusCode::CONFLICT, t.to_string()),
        ChangeError::Db(e) => e.into(),
    }
}

/// Resolves a cookbook-style status key into the inSales pair; unknown keys get the cookbook's
/// `400 {"error":"Invalid status"}`.
pub fn resolve_key(c: &rusqlite::Connection, key: &str) -> ApiResult<(String, String)> {
    orders::resolve(c, None, Some(key)).map_err(|e| match e {
        ApiErrorOr::Api(e) => e,
        ApiErrorOr::Refused(ResolveError::Unknown | ResolveError::Incompatible) => {
            ApiError::bad_request("Invalid status")
        }
    })
}

fn check_comment(comment: &Option<String>) -> ApiResult<()> {
    match comment {
        Some(c) if c.chars().count() > MAX_COMMENT_LEN => Err(ApiError::bad_request(format!(
            "comment is longer than {MAX_COMMENT_LEN} characters"
        ))),
        _ => Ok(()),
    }
}

/// The status change form: the cookbook's `status` and `comment` (and `order_id` for the alias).
#[derive(Debug, Deserialize)]
pub struct StatusForm {
    /// Only on `/update_order.php`.
    #[serde(default)]
    pub order_id: Option<i64>,
    /// A cookbook key or any custom permalink.
    pub status: String,
    /// Shown to the customer with the change.
    #[serde(default)]
    pub comment: Option<String>,
}

async fn change_as_manager(
    state: &AppState,
    user: MaybeUser,
    order_id: i64,
    form: StatusForm,
) -> ApiResult<Json<Value>> {
    user.with_role("manager")?;
    check_comment(&form.comment)?;
    let public_url = state.public_url.clone();
    let comment = form.comment.filter(|c| !c.trim().is_empty());
    let change = state
        .db
        .run(move |c| {
            let target = resolve_key(c, &form.status)?;
            orders::change_status(c, &public_url, order_id, target, Actor::Manager, comment)
                .map_err(change_error)
        })
        .await?;
    state.outbox_wake.notify_one();
    publish(state, &change).await;
    Ok(Json(json!({"success": true, "order": change.payload})))
}

/// `POST /api/manager/orders/{id}/status`.
pub async fn manager_status(
    State(state): State<AppState>,
    user: MaybeUser,
    Id(order_id): Id,
    Input(form): Input<StatusForm>,
) -> ApiResult<Json<Value>> {
    change_as_manager(&state, user, order_id, form).await
}

/// `POST /update_order.php`: the cookbook's form, `order_id` in the body.
pub async fn update_order_php(
    State(state): State<AppState>,
    user: MaybeUser,
    Input(form): Input<StatusForm>,
) -> ApiResult<Json<Value>> {
    let id = form
        .order_id
        .ok_or_else(|| ApiError::bad_request("order_id is required"))?;
    change_as_manager(&state, user, id, form).await
}

/// The courier assignment.
#[derive(Debug, Deserialize)]
pub struct AssignForm {
    /// A courier's user id, or none to unassign.
    #[serde(default)]
    pub courier_id: Option<i64>,
}

/// `POST /api/manager/orders/{id}/courier`.
pub async fn assign_courier(
    State(state): State<AppState>,
    user: MaybeUser,
    Id(order_id): Id,
    Input(form): Input<AssignForm>,
) -> ApiResult<Json<Value>> {
    user.with_role("manager")?;
    state
        .db
        .run(move |c| {
            if let Some(id) = form.courier_id {
                let role: Option<String> = c
                    .query_row("SELECT role FROM users WHERE id = ?1", [id], |r| r.get(0))
                    .optional()?;
                if role.as_deref() != Some("courier") {
                    return Err(ApiError::bad_request("courier_id is not a courier"));
                }
            }
            let n = c.execute(
                "UPDATE orders SET courier_id = ?1, updated_at = ?2 WHERE id = ?3",
                params![form.courier_id, now(), order_id],
            )?;
            if n == 0 {
                return Err(ApiError::not_found("order"));
            }
            Ok(())
        })
        .await?;
    notify_managers(
        &state,
        &json!({"order_id": order_id, "courier_id": form.courier_id}),
    )
    .await;
    Ok(Json(
        json!({"success": true, "courier_id": form.courier_id}),
    ))
}

/// A courier's position.
#[derive(Debug, Deserialize)]
pub struct LocationForm {
    /// Only on `/update_courier_location.php`.
    #[serde(default)]
    pub order_id: Option<i64>,
    /// Latitude, -90 to 90.
    pub lat: f64,
    /// Longitude, -180 to 180.
    pub lng: f64,
}

async fn location(
    state: &AppState,
    user: MaybeUser,
    order_id: i64,
    form: LocationForm,
) -> ApiResult<Json<Value>> {
    let courier = user.with_role("courier")?;
    if !(-90.0..=90.0).contains(&form.lat) || !(-180.0..=180.0).contains(&form.lng) {
        return Err(ApiError::bad_request(
            "lat must be in [-90, 90] and lng in [-180, 180]",
        ));
    }
    let t = now();
    let owner = state
        .db
        .run(move |c| {
            let row: Option<(i64, Option<i64>)> = c
                .query_row(
                    "SELECT user_id, courier_id FROM orders WHERE id = ?1",
                    [order_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            let (owner, assigned) = row.ok_or_else(|| ApiError::not_found("order"))?;
            if assigned != Some(courier.id) {
                return Err(ApiError::forbidden());
            }
            c.execute(
                "INSERT INTO courier_positions (order_id, courier_id, lat, lng, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(order_id) DO UPDATE SET courier_id = ?2, lat = ?3, lng = ?4, updated_at = ?5",
                params![order_id, courier.id, form.lat, form.lng, t],
            )?;
            Ok(owner)
        })
        .await?;
    let payload =
        json!({"order_id": order_id, "lat": form.lat, "lng": form.lng, "updated_at": iso(t)});
    let channel = user_channel(owner);
    if let Err(e) = state
        .sdk
        .trigger(
            &[channel.as_str()],
            "order:courier-location",
            &payload,
            None,
        )
        .await
    {
        tracing::warn!(error = %e, channel, "order:courier-location trigger failed");
    }
    Ok(Json(json!({"success": true})))
}

/// `POST /api/courier/orders/{id}/location`.
pub async fn courier_location(
    State(state): State<AppState>,
    user: MaybeUser,
    Id(order_id): Id,
    Input(form): Input<LocationForm>,
) -> ApiResult<Json<Value>> {
    location(&state, user, order_id, form).await
}

/// `POST /update_courier_location.php`: the cookbook's form.
pub async fn update_courier_location_php(
    State(state): State<AppState>,
    user: MaybeUser,
    Input(form): Input<LocationForm>,
) -> ApiResult<Json<Value>> {
    let id = form
        .order_id
        .ok_or_else(|| ApiError::bad_request("order_id is required"))?;
    location(&state, user, id, form).await
}

/// pusher-js's channel authorisation request.
#[derive(Debug, Deserialize)]
pub struct AuthForm {
    /// The socket asking.
    pub socket_id: String,
    /// The channel it wants.
    pub channel_name: String,
}

/// `POST /pusher/auth` (alias `/auth.php`): `private-user-{id}` only for user `id`, and
/// `private-managers` only for managers; 401 when not signed in, 403 for any other channel. The
/// session is checked before the form, so a caller who is not signed in gets 401 whatever it sent.
pub async fn channel_auth(
    State(state): State<AppState>,
    user: MaybeUser,
    form: Result<Input<AuthForm>, ApiError>,
) -> ApiResult<Json<Value>> {
    let user = user.signed_in()?;
    let Input(form) = form?;
    let allowed = if form.channel_name == MANAGERS_CHANNEL {
        user.role == "manager"
    } else {
        form.channel_name == user_channel(user.id)
    };
    if !allowed {
        return Err(ApiError::forbidden());
    }
    let auth = state
        .sdk
        .authorize_channel(&form.socket_id, &form.channel_name, None)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(
        serde_json::to_value(auth).map_err(ApiError::internal)?,
    ))
}

/// pusher-js's user authentication request.
#[derive(Debug, Deserialize)]
pub struct UserAuthForm {
    /// The socket asking.
    pub socket_id: String,
}

/// `POST /pusher/user-auth`: signs the signed-in user for `pusher.signin()`; like the channel
/// endpoint, 401 before the form is judged.
pub async fn user_auth(
    State(state): State<AppState>,
    user: MaybeUser,
    form: Result<Input<UserAuthForm>, ApiError>,
) -> ApiResult<Json<Value>> {
    let user = user.signed_in()?;
    let Input(form) = form?;
    let data =
        json!({"id": user.id.to_string(), "user_info": {"name": user.name, "role": user.role}});
    let auth = state
        .sdk
        .authenticate_user(&form.socket_id, &data)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(
        serde_json::to_value(auth).map_err(ApiError::internal)?,
    ))
}

/// `GET /api/orders/{id}`: what the order page starts from. The owner only (404 for others, so
/// order ids cannot be probed).
pub async fn order_state(
    State(state): State<AppState>,
    user: MaybeUser,
    Id(order_id): Id,
) -> ApiResult<Json<Value>> {
    let user = user.signed_in()?;
    let public_url = state.public_url.clone();
    let v = state
        .db
        .run(move |c| {
            let order = orders::load(c, order_id)?
                .filter(|o| o.user_id == user.id)
                .ok_or_else(|| ApiError::not_found("order"))?;
            let lines = orders::lines(c, order_id)?;
            let history = orders::history(c, order_id)?;
            let position: Option<Value> = c
                .query_row(
                    "SELECT lat, lng, updated_at FROM courier_positions WHERE order_id = ?1",
                    [order_id],
                    |r| {
                        Ok(json!({"lat": r.get::<_, f64>(0)?, "lng": r.get::<_, f64>(1)?,
                                  "updated_at": iso(r.get(2)?)}))
                    },
                )
                .optional()?;
            let comment = history
                .last()
                .and_then(|h| h["comment"].as_str().map(str::to_owned));
            Ok(json!({
                "order": order,
                "lines": lines,
                "total_minor": order.total_minor(&lines),
                // The total broken down: lines − discounts − bonuses + delivery = total.
                "breakdown": breakdown(&order, &lines),
                "status": orders::status_payload(&order, comment.as_deref(), &public_url),
                "history": history,
                "courier_position": position,
                "timeline": COOKBOOK.iter().filter(|p| p.step >= 0)
                    .map(|p| json!({"key": p.key, "label": p.short, "icon": p.icon, "step": p.step}))
                    .collect::<Vec<_>>(),
            }))
        })
        .await?;
    Ok(Json(v))
}

/// What an order's total is made of, kopecks: `items - discount - used_bonuses + delivery = total`.
pub fn breakdown(order: &orders::Order, lines: &[orders::Line]) -> Value {
    json!({
        "items_minor": orders::Order::items_minor(lines),
        "discount_minor": order.discounts_minor(lines),
        "used_bonuses_minor": order.used_bonuses_minor,
        "delivery_price_minor": order.delivery_price_minor,
        "total_minor": order.total_minor(lines),
    })
}

/// One row of an order list (the customer's "my orders" and the manager's table).
fn list_row(c: &rusqlite::Connection, o: &orders::Order) -> rusqlite::Result<Value> {
    let lines = orders::lines(c, o.id)?;
    let p = o.presentation();
    Ok(
        json!({"id": o.id, "public_id": o.public_id, "user_id": o.user_id,
              "buyer_name": o.buyer_name, "courier_id": o.courier_id,
              "status": o.custom_status_permalink, "status_text": p.text,
              "status_icon": p.icon, "step": p.step, "title": o.custom_status_title,
              "color": o.custom_status_color, "fulfillment_status": o.fulfillment_status,
              "financial_status": o.financial_status,
              "items": lines.iter().filter(|l| l.quantity_total > 0)
                  .map(|l| json!({"title": l.title, "quantity": l.quantity_total}))
                  .collect::<Vec<_>>(),
              "total_minor": o.total_minor(&lines),
              "created_at": iso(o.created_at), "updated_at": iso(o.updated_at)}),
    )
}

/// `GET /api/orders`: the signed-in customer's orders, newest first ("my orders").
pub async fn my_orders(State(state): State<AppState>, user: MaybeUser) -> ApiResult<Json<Value>> {
    let user = user.signed_in()?;
    let v = state
        .db
        .run(move |c| {
            let mut st = c.prepare(&format!(
                "{} WHERE o.user_id = ?1 ORDER BY o.created_at DESC, o.id DESC",
                orders::order_select()
            ))?;
            let list: Vec<orders::Order> = st
                .query_map([user.id], orders::Order::from_row)?
                .collect::<rusqlite::Result<_>>()?;
            let rows = list
                .iter()
                .map(|o| list_row(c, o))
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(json!({"orders": rows}))
        })
        .await?;
    Ok(Json(v))
}

/// The manager list's filter.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// A custom or system status; all orders when absent.
    #[serde(default)]
    pub status: Option<String>,
}

/// `GET /api/manager/orders?status=…`: every order, newest first, optionally filtered.
pub async fn manager_orders(
    State(state): State<AppState>,
    user: MaybeUser,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    user.with_role("manager")?;
    let online = state.online.clone();
    let v = state
        .db
        .run(move |c| {
            let filter = q.status.filter(|s| !s.is_empty());
            let mut st = c.prepare(&format!(
                "{} WHERE (?1 IS NULL OR o.custom_status_permalink = ?1 OR o.fulfillment_status = ?1)
                 ORDER BY o.created_at DESC, o.id DESC",
                orders::order_select()
            ))?;
            let list: Vec<orders::Order> = st
                .query_map([filter], orders::Order::from_row)?
                .collect::<rusqlite::Result<_>>()?;
            let statuses: Vec<Value> = orders::custom_statuses(c)?
                .into_iter()
                .map(|s| {
                    let p = status::presentation(&s.permalink, &s.system_status);
                    json!({"permalink": s.permalink, "title": s.title, "color": s.color,
                           "system_status": s.system_status, "text": p.text, "icon": p.icon})
                })
                .collect();
            let couriers: Vec<Value> = {
                let mut st = c.prepare("SELECT id, name FROM users WHERE role = 'courier' ORDER BY id")?;
                let rows = st.query_map([], |r| Ok(json!({"id": r.get::<_, i64>(0)?, "name": r.get::<_, String>(1)?})))?;
                rows.collect::<rusqlite::Result<_>>()?
            };
            let orders: Vec<Value> = list
                .iter()
                .map(|o| {
                    let mut row = list_row(c, o)?;
                    row["online"] = Value::from(online.contains(o.user_id));
                    Ok(row)
                })
                .collect::<rusqlite::Result<_>>()?;
            Ok(json!({"orders": orders, "statuses": statuses, "couriers": couriers}))
        })
        .await?;
    Ok(Json(v))
}
