//! The HTML pages (login, the customer's "my orders" list and order page, the manager page, the
//! public tracking page) and the static assets, all compiled into the binary.
//!
//! pusher-js is a vendored copy of the npm package (`assets/pusher.min.js`, v8.6.0, MIT): the shop
//! runs from `cargo run` alone, with no Node and no CDN. Pages are shells filled by their scripts
//! from the JSON API; the only server-side values are escaped here. This module never reads the
//! database for anything but who is signed in and which order a page shows.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use rusqlite::OptionalExtension;
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::input::Id;
use crate::orders;
use crate::session::MaybeUser;
use crate::AppState;

const ORDER_HTML: &str = include_str!("../assets/order.html");
const MANAGER_HTML: &str = include_str!("../assets/manager.html");
const ORDERS_HTML: &str = include_str!("../assets/orders.html");
const ORDERS_JS: &str = include_str!("../assets/orders.js");
const PUSHER_JS: &str = include_str!("../assets/pusher.min.js");
const ORDER_JS: &str = include_str!("../assets/order.js");
const MANAGER_JS: &str = include_str!("../assets/manager.js");
const SHOP_JS: &str = include_str!("../assets/shop.js");
const STYLE_CSS: &str = include_str!("../assets/style.css");

/// Escapes text for HTML content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// `GET /static/{file}`.
pub async fn static_file(Path(file): Path<String>) -> Response {
    match file.as_str() {
        "pusher.min.js" => asset("application/javascript; charset=utf-8", PUSHER_JS),
        "order.js" => asset("application/javascript; charset=utf-8", ORDER_JS),
        "manager.js" => asset("application/javascript; charset=utf-8", MANAGER_JS),
        "orders.js" => asset("application/javascript; charset=utf-8", ORDERS_JS),
        "shop.js" => asset("application/javascript; charset=utf-8", SHOP_JS),
        "style.css" => asset("text/css; charset=utf-8", STYLE_CSS),
        _ => ApiError::not_found("file").into_response(),
    }
}

/// `GET /static/img/{name}`: the products' pictures, drawn as SVG so the demo needs no files.
pub async fn product_image(Path(name): Path<String>) -> Response {
    let (emoji, color) = match name.trim_end_matches(".svg") {
        "pizza" => ("🍕", "#E2AC54"),
        "salad" => ("🥗", "#7ABF24"),
        "drink" => ("🍋", "#D0CA02"),
        "cake" => ("🍰", "#D361B8"),
        _ => return ApiError::not_found("image").into_response(),
    };
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><rect width="64" height="64" rx="14" fill="{color}"/><text x="32" y="43" font-size="32" text-anchor="middle">{emoji}</text></svg>"#
    );
    ([(header::CONTENT_TYPE, "image/svg+xml")], svg).into_response()
}

/// `GET /favicon.ico`: the shop's box icon, as SVG (browsers accept it under that name).
pub async fn favicon() -> Response {
    (
        [(header::CONTENT_TYPE, "image/svg+xml")],
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 64 64"><text x="32" y="50" font-size="48" text-anchor="middle">📦</text></svg>"#,
    )
        .into_response()
}

/// `GET /`: the signed-in user's start page, or the login page. A customer gets "my orders": every
/// order of theirs, live, each linking to its page.
pub async fn home(State(state): State<AppState>, user: MaybeUser) -> ApiResult<Response> {
    let Some(user) = user.0 else {
        return Ok(Redirect::to("/login").into_response());
    };
    Ok(match user.role.as_str() {
        "manager" => Redirect::to("/manager").into_response(),
        "courier" => Redirect::to("/courier").into_response(),
        _ => {
            let config = script_json(&pusher_config(&state, &user));
            Html(
                ORDERS_HTML
                    .replace("{{CONFIG}}", &config)
                    .replace("{{USER_NAME}}", &escape(&user.name)),
            )
            .into_response()
        }
    })
}

/// What a live page's pusher-js needs: the key and where the WebSocket is, and who is signed in.
fn pusher_config(state: &AppState, user: &crate::session::User) -> Value {
    let s = &state.settings;
    let ws_host = s
        .pusher_ws_host
        .clone()
        .or_else(|| (!s.pusher_host.ends_with("pusher.com")).then(|| s.pusher_host.clone()));
    json!({
        "key": s.pusher_key,
        "cluster": s.pusher_cluster,
        "wsHost": ws_host,
        "wsPort": s.pusher_ws_port.unwrap_or(s.pusher_port),
        "forceTLS": s.pusher_scheme == vestnik_sdk::Scheme::Https,
        "userId": user.id,
    })
}

/// A value for `<script type="application/json">`, where only `</` could end the element early.
fn script_json(v: &Value) -> String {
    v.to_string().replace("</", "<\\/")
}

/// `GET /login`: pick a seeded user.
pub async fn login_page(State(state): State<AppState>) -> ApiResult<Html<String>> {
    let users: Vec<(i64, String, String)> = state
        .db
        .run(|c| {
            let mut st = c.prepare("SELECT id, name, role FROM users ORDER BY id")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await?;
    let items: String = users
        .iter()
        .map(|(id, name, role)| {
            format!(
                r#"<li><form method="post" action="/login"><input type="hidden" name="user_id" value="{id}"><button>{} <span class="muted">· {}</span></button></form></li>"#,
                escape(name),
                escape(role)
            )
        })
        .collect();
    Ok(Html(format!(
        r#"<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Вход — Vestnik Shop</title><link rel="stylesheet" href="/static/style.css"></head>
<body><header class="bar"><span class="brand">📦 Vestnik Shop</span></header><main class="wrap"><section class="card"><h2>Демо-вход: выберите пользователя</h2><ul class="users">{items}</ul></section></main></body></html>"#
    )))
}

/// `GET /orders/{id}`: the customer's order page (the owner only).
pub async fn order_page(
    State(state): State<AppState>,
    user: MaybeUser,
    Id(order_id): Id,
) -> ApiResult<Response> {
    let Some(user) = user.0 else {
        return Ok(Redirect::to("/login").into_response());
    };
    let uid = user.id;
    let order = state
        .db
        .run(move |c| Ok(orders::load(c, order_id)?.filter(|o| o.user_id == uid)))
        .await?;
    let Some(order) = order else {
        return Ok((StatusCode::NOT_FOUND, Html("<p>Заказ не найден.</p>")).into_response());
    };
    let mut config = pusher_config(&state, &user);
    config["orderId"] = Value::from(order.id);
    config["publicId"] = Value::from(order.public_id.clone());
    // The destination, where the map's house is drawn and what the courier's distance is measured
    // to; null when unknown, and the page then centres on the courier's first position.
    config["mapCenter"] = json!(order
        .destination()
        .map(|(lat, lng)| json!({"lat": lat, "lng": lng})));
    let config = script_json(&config);
    let html = ORDER_HTML
        .replace("{{CONFIG}}", &config)
        .replace("{{PUBLIC_ID}}", &escape(&order.public_id))
        .replace("{{USER_NAME}}", &escape(&user.name));
    Ok(Html(html).into_response())
}

/// `GET /manager`: the orders table, live on the managers' channel.
pub async fn manager_page(State(state): State<AppState>, user: MaybeUser) -> ApiResult<Response> {
    match user.0 {
        None => Ok(Redirect::to("/login").into_response()),
        Some(u) if u.role == "manager" => {
            let config = script_json(&pusher_config(&state, &u));
            Ok(Html(
                MANAGER_HTML
                    .replace("{{CONFIG}}", &config)
                    .replace("{{USER_NAME}}", &escape(&u.name)),
            )
            .into_response())
        }
        Some(_) => Err(ApiError::forbidden()),
    }
}

/// `GET /courier`: the courier's assigned orders with their ids, for the courier API.
pub async fn courier_page(State(state): State<AppState>, user: MaybeUser) -> ApiResult<Response> {
    let Some(u) = user.0 else {
        return Ok(Redirect::to("/login").into_response());
    };
    if u.role != "courier" {
        return Err(ApiError::forbidden());
    }
    let id = u.id;
    let list: Vec<(i64, String, String)> = state
        .db
        .run(move |c| {
            let mut st = c.prepare(
                "SELECT id, public_id, street_address FROM orders WHERE courier_id = ?1 ORDER BY id",
            )?;
            let rows = st.query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
        .await?;
    let items: String = list
        .iter()
        .map(|(id, public, street)| {
            format!(
                "<li>{} — {} <code>POST /api/courier/orders/{id}/location</code></li>",
                escape(public),
                escape(street)
            )
        })
        .collect();
    Ok(Html(format!(
        r#"<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Курьер</title><link rel="stylesheet" href="/static/style.css"></head><body><main class="wrap"><section class="card"><h2>{}: мои заказы</h2><ul>{items}</ul></section></main></body></html>"#,
        escape(&u.name)
    ))
    .into_response())
}

/// `GET /track/{tracking_number}`: public tracking, no personal data (UCP's `tracking_url`).
pub async fn track_page(
    State(state): State<AppState>,
    Path(number): Path<String>,
) -> ApiResult<Response> {
    let found = state
        .db
        .run(move |c| {
            let id: Option<i64> = c
                .query_row(
                    "SELECT id FROM orders WHERE tracking_number = ?1",
                    [number],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match id {
                Some(id) => orders::load(c, id)?,
                None => None,
            })
        })
        .await?;
    let Some(order) = found else {
        return Ok((
            StatusCode::NOT_FOUND,
            Html("<p>Отправление не найдено.</p>"),
        )
            .into_response());
    };
    let p = order.presentation();
    Ok(Html(format!(
        r#"<!doctype html><html lang="ru"><head><meta charset="utf-8"><title>Отслеживание</title><link rel="stylesheet" href="/static/style.css"></head><body><main class="wrap"><section class="card"><h2>Отправление {}</h2><p class="status-text">{} {}</p></section></main></body></html>"#,
        escape(order.tracking_number.as_deref().unwrap_or_default()),
        p.icon,
        p.text
    ))
    .into_response())
}
