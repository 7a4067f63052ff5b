//! Orders in the inSales shape (`admin/orders.json`): list with the `custom_status[]` filter, read,
//! create (the UCP "created" outbox rows in the same transaction) and status updates under the
//! document's rules, with 422 `{"message": …}` on a mismatch. Every change goes through
//! `orders::change_status` and is triggered only after its commit.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use super::basic_auth;
use crate::db::{iso, now};
use crate::error::{ApiError, ApiResult};
use crate::input::JsonBody;
use crate::limits::{
    DEFAULT_ADMIN_PER_PAGE, MAX_ADMIN_PER_PAGE, MAX_COMMENT_LEN, MAX_DELIVERY_PRICE,
};
use crate::orders::{self, Actor, ApiErrorOr, Order, ResolveError};
use crate::{live, outbox, AppState};

const INCOMPATIBLE: &str = "incompatible fulfillment and custom statuses";

/// Where an order goes when its customer has no earlier address: the demo shop's own address
/// (street, city, postal code, and its point on the map).
const SHOP_ADDRESS: (&str, &str, &str, (f64, f64)) =
    ("ул. Тверская, 1", "Москва", "125009", (55.7570, 37.6136));

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
        "items_price": Order::items_minor(&lines) as f64 / 100.0,
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
    /// `pending` or `paid`: an unpaid order paid later (say, online again) becomes `paid`.
    #[serde(default)]
    pub financial_status: Option<String>,
}

/// `{"order": {…}}`.
#[derive(Debug, Deserialize)]
pub struct OrderUpdateBody {
    /// The fields.
    pub order: OrderStatusFields,
}

/// Records a new `financial_status` (an unpaid order paid at last): the order, an `order_history`
/// row and the partners' outbox rows in one transaction. Returns whether anything changed.
fn set_financial_status(
    c: &mut Connection,
    public_url: &str,
    id: i64,
    financial: &str,
) -> ApiResult<bool> {
    let tx = c.transaction()?;
    let o = orders::load(&tx, id)?.ok_or_else(|| ApiError::not_found("order"))?;
    if o.financial_status == financial {
        return Ok(false);
    }
    let t = now();
    tx.execute(
        "UPDATE orders SET financial_status = ?1, updated_at = ?2 WHERE id = ?3",
        params![financial, t, id],
    )?;
    let comment = if financial == "paid" {
        "Заказ оплачен"
    } else {
        "Оплата отменена"
    };
    tx.execute(
        "INSERT INTO order_history (order_id, status, fulfillment_status, custom_status_permalink, comment, actor, created_at)
         VALUES (?1, ?2, ?3, ?2, ?4, 'api', ?5)",
        params![id, o.custom_status_permalink, o.fulfillment_status, comment, t],
    )?;
    let history_id = tx.last_insert_rowid();
    outbox::enqueue(&tx, public_url, id, &format!("upd_{history_id}"), t)?;
    tx.commit()?;
    Ok(true)
}

/// `PUT /admin/orders/{id}.json`: changes the statuses under the document's rules, and the
/// financial status.
pub async fn update_order(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
    JsonBody(body): JsonBody<OrderUpdateBody>,
) -> ApiResult<Json<Value>> {
    basic_auth(&state, &headers)?;
    let id = order_id_from(&file)?;
    let f = body.order;
    let status_given = f.fulfillment_status.is_some() || f.custom_status_permalink.is_some();
    if !status_given && f.financial_status.is_none() {
        return Err(ApiError::bad_request(
            "give fulfillment_status, custom_status_permalink, financial_status or several",
        ));
    }
    if f.financial_status
        .as_deref()
        .is_some_and(|s| s != "pending" && s != "paid")
    {
        return Err(ApiError::bad_request(
            "financial_status must be pending or paid",
        ));
    }
    let comment = f
        .comment
        .map(|c| c.chars().take(MAX_COMMENT_LEN).collect::<String>());
    let public_url = state.public_url.clone();
    let (change, paid, v) = state
        .db
        .run(move |c| {
            orders::load(c, id)?.ok_or_else(|| ApiError::not_found("order"))?;
            let change = if status_given {
                let target = orders::resolve(
                    c,
                    f.fulfillment_status.as_deref(),
                    f.custom_status_permalink.as_deref(),
                )
                .map_err(resolve_error)?;
                Some(
                    orders::change_status(c, &public_url, id, target, Actor::Api, comment)
                        .map_err(live::change_error)?,
                )
            } else {
                None
            };
            let paid = match f.financial_status.as_deref() {
                Some(financial) => set_financial_status(c, &public_url, id, financial)?,
                None => false,
            };
            let o = orders::load(c, id)?.ok_or_else(|| ApiError::not_found("order"))?;
            Ok((change, paid, order_json(c, &o)?))
        })
        .await?;
    state.outbox_wake.notify_one();
    if let Some(change) = &change {
        live::publish(&state, change).await;
    }
    if paid {
        live::notify_managers(
            &state,
            &json!({"order_id": id, "financial_status": v["financial_status"]}),
        )
        .await;
    }
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
    if !(0.0..=MAX_DELIVERY_PRICE).contains(&delivery) {
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
            // The customer's last address and its point, or the shop's own pick-up address.
            type Address = (String, String, String, Option<f64>, Option<f64>);
            let (street, city, postal, lat, lng): Address = tx
                .query_row(
                    "SELECT street_address, address_locality, postal_code, destination_lat, destination_lng
                     FROM orders WHERE user_id = ?1 ORDER BY id DESC LIMIT 1",
                    [o.client_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
                )
                .optional()?
                .unwrap_or_else(|| {
                    let (street, city, postal, (lat, lng)) = SHOP_ADDRESS;
                    (street.into(), city.into(), postal.into(), Some(lat), Some(lng))
                });
            tx.execute(
                "INSERT INTO orders (id, public_id, user_id, fulfillment_status, custom_status_permalink, financial_status,
                   delivery_price_minor, street_address, address_locality, postal_code, buyer_name, buyer_phone, buyer_email,
                   created_at, updated_at, destination_lat, destination_lng)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15, ?16)",
                params![next, format!("M-{next}"), o.client_id, target.0, target.1, financial,
                        (delivery * 100.0).round() as i64, street, city, postal, name, phone, email, t, lat, lng],
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
    fn quoted_filter_values_are_unquoted() {
        let p = query_pairs(Some("custom_status%5B%5D='a'&custom_status[]=b+c"));
        assert_eq!(p[0], ("custom_status[]".into(), "a".into()));
        assert_eq!(p[1], ("custom_status[]".into(), "b c".into()));
    }
}
