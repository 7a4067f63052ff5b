//! Part 2: the inSales-shaped admin API, HTTP Basic protected: custom statuses
//! (`admin/custom_statuses.json`) and orders (`admin/orders.json`) with the document's rules for
//! `fulfillment_status` and `custom_status_permalink`.
//!
//! Bodies and answers keep the document's shapes (bare objects and arrays, `{"status":"ok"}`,
//! `{"message": "incompatible fulfillment and custom statuses"}` with 422). Status changes go
//! through `orders::change_status`; creation writes the UCP "created" outbox rows in its own
//! transaction. This module never triggers anything before its transaction committed.

use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::db::{iso, now};
use crate::error::{ApiError, ApiResult};
use crate::input::JsonBody;
use crate::limits::{
    DEFAULT_ADMIN_PER_PAGE, MAX_ADMIN_PER_PAGE, MAX_COMMENT_LEN, MAX_CUSTOM_STATUSES, MAX_TITLE_LEN,
};
use crate::orders::{self, Actor, ApiErrorOr, CustomStatus, Order, ResolveError};
use crate::status::{self, PALETTE};
use crate::{live, outbox, AppState};

const INCOMPATIBLE: &str = "incompatible fulfillment and custom statuses";

fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> shift) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Checks HTTP Basic credentials against the configured admin login and password.
fn basic_auth(state: &AppState, headers: &HeaderMap) -> ApiResult<()> {
    let expected = format!(
        "Basic {}",
        base64(
            format!(
                "{}:{}",
                state.settings.admin_login, state.settings.admin_password
            )
            .as_bytes()
        )
    );
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if given == Some(expected.as_str()) {
        Ok(())
    } else {
        Err(ApiError::unauthorized())
    }
}

fn custom_json(s: &CustomStatus) -> Value {
    json!({
        "id": s.id,
        "title": s.title,
        "permalink": s.permalink,
        "system_status": s.system_status,
        "color": s.color,
        "is_default": s.is_default,
        "position": s.position,
        "created_at": iso(s.created_at),
        "updated_at": iso(s.updated_at),
    })
}

/// `GET /admin/custom_statuses.json`: a bare array; creates the missing system defaults first.
pub async fn list_custom_statuses(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    basic_auth(&state, &headers)?;
    let list = state
        .db
        .run(|c| {
            let tx = c.transaction()?;
            orders::ensure_defaults(&tx)?;
            let list = orders::custom_statuses(&tx)?;
            tx.commit()?;
            Ok(list)
        })
        .await?;
    Ok(Json(Value::Array(list.iter().map(custom_json).collect())))
}

/// The fields of a custom status a client may send.
#[derive(Debug, Deserialize)]
pub struct CustomStatusFields {
    /// Required on create.
    #[serde(default)]
    pub system_status: Option<String>,
    /// Required on create.
    #[serde(default)]
    pub title: Option<String>,
    /// A palette colour.
    #[serde(default)]
    pub color: Option<String>,
    /// Makes it the default of its system status (unsetting the previous one).
    #[serde(default)]
    pub is_default: Option<bool>,
    /// Position in the back office.
    #[serde(default)]
    pub position: Option<i64>,
}

/// `{"custom_status": {…}}`.
#[derive(Debug, Deserialize)]
pub struct CustomStatusBody {
    /// The fields.
    pub custom_status: CustomStatusFields,
}

fn check_fields(f: &CustomStatusFields) -> ApiResult<()> {
    if let Some(c) = &f.color {
        if !PALETTE.contains(&c.to_uppercase().as_str()) {
            return Err(ApiError::bad_request(format!(
                "color must be one of the palette: {}",
                PALETTE.join(" ")
            )));
        }
    }
    if let Some(t) = &f.title {
        if t.trim().is_empty() || t.chars().count() > MAX_TITLE_LEN {
            return Err(ApiError::bad_request(format!(
                "title must be 1 to {MAX_TITLE_LEN} characters"
            )));
        }
    }
    if f.position.is_some_and(|p| p < 0) {
        return Err(ApiError::bad_request("position must not be negative"));
    }
    Ok(())
}

fn unique_permalink(c: &Connection, title: &str) -> rusqlite::Result<String> {
    let base = match status::slugify(title) {
        s if s.is_empty() => "status".to_owned(),
        s => s,
    };
    let mut candidate = base.clone();
    let mut n = 2;
    while orders::custom_status(c, &candidate)?.is_some() || status::is_system(&candidate) {
        candidate = format!("{base}-{n}");
        n += 1;
    }
    Ok(candidate)
}

/// `POST /admin/custom_statuses.json`: answers the bare new object (201).
pub async fn create_custom_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<CustomStatusBody>,
) -> ApiResult<Response> {
    basic_auth(&state, &headers)?;
    let f = body.custom_status;
    check_fields(&f)?;
    let system = f
        .system_status
        .clone()
        .filter(|s| status::is_system(s))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "system_status must be one of {}",
                status::SYSTEM_STATUSES.join(", ")
            ))
        })?;
    let title = f
        .title
        .clone()
        .ok_or_else(|| ApiError::bad_request("title is required"))?;
    let created = state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            let count: i64 = tx.query_row(
                "SELECT count(*) FROM custom_statuses WHERE system_status = ?1",
                [&system],
                |r| r.get(0),
            )?;
            if count >= MAX_CUSTOM_STATUSES {
                return Err(ApiError::bad_request(format!(
                    "a system status takes at most {MAX_CUSTOM_STATUSES} custom statuses"
                )));
            }
            let permalink = unique_permalink(&tx, &title)?;
            let total: i64 =
                tx.query_row("SELECT count(*) FROM custom_statuses", [], |r| r.get(0))?;
            let color = f
                .color
                .map(|c| c.to_uppercase())
                .unwrap_or_else(|| PALETTE[(total as usize) % PALETTE.len()].to_owned());
            let is_default = f.is_default.unwrap_or(false);
            if is_default {
                tx.execute(
                    "UPDATE custom_statuses SET is_default = 0 WHERE system_status = ?1",
                    [&system],
                )?;
            }
            let t = now();
            tx.execute(
                "INSERT INTO custom_statuses (permalink, title, system_status, color, is_default, position, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)",
                params![permalink, title.trim(), system, color, is_default, f.position.unwrap_or(count + 1), t],
            )?;
            let s = orders::custom_status(&tx, &permalink)?
                .ok_or_else(|| ApiError::internal("custom status vanished"))?;
            tx.commit()?;
            Ok(s)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(custom_json(&created))).into_response())
}

/// `PUT /admin/custom_statuses/{permalink}.json`: a partial update → `{"status":"ok"}`.
pub async fn update_custom_status(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
    JsonBody(body): JsonBody<CustomStatusBody>,
) -> ApiResult<Json<Value>> {
    basic_auth(&state, &headers)?;
    let permalink = file
        .strip_suffix(".json")
        .ok_or_else(|| ApiError::not_found("custom status"))?
        .to_owned();
    let f = body.custom_status;
    check_fields(&f)?;
    if f.system_status.is_some() {
        return Err(ApiError::bad_request("system_status cannot be changed"));
    }
    state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            let s = orders::custom_status(&tx, &permalink)?
                .ok_or_else(|| ApiError::not_found("custom status"))?;
            if f.is_default == Some(false) && s.is_default {
                return Err(ApiError::bad_request(
                    "make another status the default instead of unsetting this one",
                ));
            }
            if f.is_default == Some(true) {
                tx.execute(
                    "UPDATE custom_statuses SET is_default = 0 WHERE system_status = ?1",
                    [&s.system_status],
                )?;
            }
            tx.execute(
                "UPDATE custom_statuses SET title = COALESCE(?2, title), color = COALESCE(?3, color),
                   is_default = COALESCE(?4, is_default), position = COALESCE(?5, position), updated_at = ?6
                 WHERE id = ?1",
                params![
                    s.id,
                    f.title.map(|t| t.trim().to_owned()),
                    f.color.map(|c| c.to_uppercase()),
                    f.is_default,
                    f.position,
                    now()
                ],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(Json(json!({"status": "ok"})))
}

/// An order in the admin API's shape.
pub fn order_json(c: &Connection, o: &Order) -> rusqlite::Result<Value> {
    let lines = orders::lines(c, o.id)?;
    Ok(json!({
        "id": o.id,
        "number": o.public_id,
        "client_id": o.user_id,
        "fulfillment_status": o.fulfillment_status,
        "custom_status_permalink": o.custom_status_permalink,
        "custom_status": {
            "permalink": o.custom_status_permalink,
            "title": o.custom_status_title,
            "color": o.custom_status_color,
            "system_status": o.fulfillment_status,
        },
        "financial_status": o.financial_status,
        "items_price": o.total_minor(&lines) as f64 / 100.0 - o.delivery_price_minor as f64 / 100.0
            + o.discounts_minor(&lines) as f64 / 100.0,
        "delivery_price": o.delivery_price_minor as f64 / 100.0,
        "total_price": o.total_minor(&lines) as f64 / 100.0,
        "order_lines": lines.iter().map(|l| json!({
            "id": l.id,
            "product_id": l.product_id,
            "title": l.title,
            "quantity": l.quantity_total,
            "sale_price": l.unit_price_minor as f64 / 100.0,
        })).collect::<Vec<_>>(),
        "created_at": iso(o.created_at),
        "updated_at": iso(o.updated_at),
    }))
}

fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                decode(k),
                decode(v).trim_matches(|c| c == '\'' || c == '"').to_owned(),
            )
        })
        .collect()
}

/// `GET /admin/orders.json?custom_status[]=a&custom_status[]=b&fulfillment_status=&financial_status=&page=&per_page=`.
/// `custom_status[]` values may be system or custom permalinks, in any mix.
pub async fn list_orders(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    basic_auth(&state, &headers)?;
    let pairs = query_pairs(raw.as_deref());
    let get = |k: &str| {
        pairs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    let wanted: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "custom_status[]" || k == "custom_status")
        .map(|(_, v)| v.replace('_', "-"))
        .collect();
    let number = |k: &str, default: usize| -> ApiResult<usize> {
        get(k).map_or(Ok(default), |v| {
            v.parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| ApiError::bad_request(format!("{k} must be a positive integer")))
        })
    };
    let per_page = number("per_page", DEFAULT_ADMIN_PER_PAGE)?.min(MAX_ADMIN_PER_PAGE);
    let page = number("page", 1)?;
    let fulfillment = get("fulfillment_status");
    let financial = get("financial_status");
    let list = state
        .db
        .run(move |c| {
            let mut st = c.prepare(&format!(
                "{} WHERE (?1 IS NULL OR o.fulfillment_status = ?1) AND (?2 IS NULL OR o.financial_status = ?2)
                 ORDER BY o.id LIMIT -1",
                orders::order_select()
            ))?;
            let all: Vec<Order> = st
                .query_map(params![fulfillment, financial], Order::from_row)?
                .collect::<rusqlite::Result<_>>()?;
            let out: Vec<Value> = all
                .iter()
                .filter(|o| {
                    wanted.is_empty()
                        || wanted.iter().any(|w| {
                            *w == o.custom_status_permalink || *w == o.fulfillment_status
                        })
                })
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|o| order_json(c, o))
                .collect::<rusqlite::Result<_>>()?;
            Ok(out)
        })
        .await?;
    Ok(Json(Value::Array(list)))
}

fn order_id_from(file: &str) -> ApiResult<i64> {
    file.strip_suffix(".json")
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| ApiError::not_found("order"))
}

/// `GET /admin/orders/{id}.json`.
pub async fn get_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> ApiResult<Json<Value>> {
    basic_auth(&state, &headers)?;
    let id = order_id_from(&file)?;
    let v = state
        .db
        .run(move |c| {
            let o = orders::load(c, id)?.ok_or_else(|| ApiError::not_found("order"))?;
            Ok(order_json(c, &o)?)
        })
        .await?;
    Ok(Json(v))
}

fn resolve_error(e: ApiErrorOr<ResolveError>) -> ApiError {
    match e {
        ApiErrorOr::Api(e) => e,
        ApiErrorOr::Refused(ResolveError::Incompatible) => ApiError::with_body(
            StatusCode::UNPROCESSABLE_ENTITY,
            json!({"message": INCOMPATIBLE}),
        ),
        ApiErrorOr::Refused(ResolveError::Unknown) => ApiError::bad_request("Invalid status"),
    }
}

/// The status fields of an order update.
#[derive(Debug, Deserialize)]
pub struct OrderStatusFields {
    /// A system status.
    #[serde(default)]
    pub fulfillment_status: Option<String>,
    /// A custom (or system) permalink.
    #[serde(default)]
    pub custom_status_permalink: Option<String>,
    /// Shown to the customer with the change.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `{"order": {…}}`.
#[derive(Debug, Deserialize)]
pub struct OrderUpdateBody {
    /// The fields.
    pub order: OrderStatusFields,
}

/// `PUT /admin/orders/{id}.json`: changes the statuses under the document's rules.
pub async fn update_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
    JsonBody(body): JsonBody<OrderUpdateBody>,
) -> ApiResult<Json<Value>> {
    basic_auth(&state, &headers)?;
    let id = order_id_from(&file)?;
    let f = body.order;
    if f.fulfillment_status.is_none() && f.custom_status_permalink.is_none() {
        return Err(ApiError::bad_request(
            "give fulfillment_status, custom_status_permalink or both",
        ));
    }
    let comment = f
        .comment
        .map(|c| c.chars().take(MAX_COMMENT_LEN).collect::<String>());
    let public_url = state.public_url.clone();
    let (change, v) = state
        .db
        .run(move |c| {
            orders::load(c, id)?.ok_or_else(|| ApiError::not_found("order"))?;
            let target = orders::resolve(
                c,
                f.fulfillment_status.as_deref(),
                f.custom_status_permalink.as_deref(),
            )
            .map_err(resolve_error)?;
            let change = orders::change_status(c, &public_url, id, target, Actor::Api, comment)
                .map_err(live::change_error)?;
            let o = orders::load(c, id)?.ok_or_else(|| ApiError::not_found("order"))?;
            Ok((change, order_json(c, &o)?))
        })
        .await?;
    state.outbox_wake.notify_one();
    live::publish(&state, &change).await;
    Ok(Json(v))
}

/// One line of a new order.
#[derive(Debug, Deserialize)]
pub struct NewLine {
    /// The product.
    pub product_id: i64,
    /// At least 1.
    pub quantity: i64,
}

/// A new order.
#[derive(Debug, Deserialize)]
pub struct NewOrder {
    /// The customer.
    pub client_id: i64,
    /// The lines (at least one).
    pub order_lines_attributes: Vec<NewLine>,
    /// Optional statuses; the default custom status of `new` otherwise.
    #[serde(default)]
    pub fulfillment_status: Option<String>,
    /// See `fulfillment_status`.
    #[serde(default)]
    pub custom_status_permalink: Option<String>,
    /// Delivery price in roubles.
    #[serde(default)]
    pub delivery_price: Option<f64>,
    /// `pending` or `paid`.
    #[serde(default)]
    pub financial_status: Option<String>,
}

/// `{"order": {…}}`.
#[derive(Debug, Deserialize)]
pub struct NewOrderBody {
    /// The order.
    pub order: NewOrder,
}

/// `POST /admin/orders.json`: creates an order; partners get the UCP "created" snapshot.
pub async fn create_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    JsonBody(body): JsonBody<NewOrderBody>,
) -> ApiResult<Response> {
    basic_auth(&state, &headers)?;
    let o = body.order;
    if o.order_lines_attributes.is_empty()
        || o.order_lines_attributes.iter().any(|l| l.quantity < 1)
    {
        return Err(ApiError::bad_request(
            "order_lines_attributes needs at least one line, each with quantity >= 1",
        ));
    }
    let financial = o
        .financial_status
        .clone()
        .unwrap_or_else(|| "pending".into());
    if financial != "pending" && financial != "paid" {
        return Err(ApiError::bad_request(
            "financial_status must be pending or paid",
        ));
    }
    let delivery = o.delivery_price.unwrap_or(0.0);
    if !(0.0..=1e9).contains(&delivery) {
        return Err(ApiError::bad_request(
            "delivery_price must be a non-negative amount",
        ));
    }
    let public_url = state.public_url.clone();
    let (change, v) = state
        .db
        .run(move |c| {
            let target = if o.fulfillment_status.is_none() && o.custom_status_permalink.is_none() {
                orders::resolve(c, Some("new"), None)
            } else {
                orders::resolve(c, o.fulfillment_status.as_deref(), o.custom_status_permalink.as_deref())
            }
            .map_err(resolve_error)?;
            let tx = c.transaction()?;
            let user: Option<(String, String, String)> = tx
                .query_row(
                    "SELECT name, phone, email FROM users WHERE id = ?1 AND role = 'customer'",
                    [o.client_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (name, phone, email) =
                user.ok_or_else(|| ApiError::bad_request("client_id is not a customer"))?;
            let t = now();
            let next: i64 = tx.query_row("SELECT COALESCE(MAX(id), 1000) + 1 FROM orders", [], |r| r.get(0))?;
            let (street, city, postal): (String, String, String) = tx
                .query_row(
                    "SELECT street_address, address_locality, postal_code FROM orders WHERE user_id = ?1 ORDER BY id DESC LIMIT 1",
                    [o.client_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?
                .unwrap_or_else(|| ("ул. Тверская, 1".into(), "Москва".into(), "125009".into()));
            tx.execute(
                "INSERT INTO orders (id, public_id, user_id, fulfillment_status, custom_status_permalink, financial_status,
                   delivery_price_minor, street_address, address_locality, postal_code, buyer_name, buyer_phone, buyer_email,
                   created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
                params![next, format!("M-{next}"), o.client_id, target.0, target.1, financial,
                        (delivery * 100.0).round() as i64, street, city, postal, name, phone, email, t],
            )?;
            for l in &o.order_lines_attributes {
                let n = tx.execute(
                    "INSERT INTO order_lines (order_id, product_id, title, image_url, unit_price_minor, quantity_original, quantity_total)
                     SELECT ?1, id, title, image_url, price_minor, ?3, ?3 FROM products WHERE id = ?2",
                    params![next, l.product_id, l.quantity],
                )?;
                if n == 0 {
                    return Err(ApiError::bad_request(format!("no product {}", l.product_id)));
                }
            }
            tx.execute(
                "INSERT INTO order_history (order_id, status, fulfillment_status, custom_status_permalink, comment, actor, created_at)
                 VALUES (?1, ?2, ?3, ?2, 'Заказ оформлен', 'api', ?4)",
                params![next, target.1, target.0, t],
            )?;
            outbox::enqueue(&tx, &public_url, next, &format!("order_{next}"), t)?;
            let order = orders::load(&tx, next)?.ok_or_else(|| ApiError::internal("order vanished"))?;
            let v = order_json(&tx, &order)?;
            tx.commit()?;
            let change = orders::Change {
                user_id: order.user_id,
                payload: orders::status_payload(&order, Some("Заказ оформлен"), &public_url),
            };
            Ok((change, v))
        })
        .await?;
    state.outbox_wake.notify_one();
    live::publish(&state, &change).await;
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"shop-app:pw"), "c2hvcC1hcHA6cHc=");
    }

    #[test]
    fn quoted_filter_values_are_unquoted() {
        let p = query_pairs(Some("custom_status%5B%5D='a'&custom_status[]=b+c"));
        assert_eq!(p[0], ("custom_status[]".into(), "a".into()));
        assert_eq!(p[1], ("custom_status[]".into(), "b c".into()));
    }
}
