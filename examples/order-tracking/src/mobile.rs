//! Part 4: the hooks a mobile app's server calls (order history, cancel, rating), in the shape of
//! the order-history document: POST with JSON, trusted by a shared secret sent as
//! `Authorization: Bearer <secret>` or a body `key`; anything else gets 401, checked before the body
//! is judged (so no 415 or 400 reaches a caller without the secret).
//!
//! The history is a view built from the same rows as everything else; this module keeps no state
//! of its own. Money leaves as major units (roubles), times as Unix seconds.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request, State};
use axum::http::{header, StatusCode};
use axum::Json;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};

use crate::error::{ApiError, ApiResult};
use crate::limits::{HISTORY_PAGE_SIZE, MAX_COMMENT_LEN};
use crate::orders::{self, Actor, Order};
use crate::status;
use crate::AppState;

fn major(minor: i64) -> f64 {
    minor as f64 / 100.0
}

/// A mobile hook's JSON body, admitted only with the shared secret. The secret is checked before
/// the body is judged: a request without it gets 401 whatever its content type or JSON, so an
/// unauthenticated caller learns nothing about what the hook expects. With the secret, a wrong
/// content type gets 415 and broken JSON 400.
#[derive(Debug)]
pub struct MobileBody(pub Value);

impl FromRequest<AppState> for MobileBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let secret = state.settings.mobile_secret.clone();
        let bearer_ok = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            == Some(secret.as_str());
        let json_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if bearer_ok {
                ApiError::new(e.status(), e.body_text())
            } else {
                ApiError::unauthorized()
            }
        })?;
        // Without the bearer, the body's `key` is the only other way in: read it leniently and
        // answer 401 unless it is the secret.
        let parsed = serde_json::from_slice::<Value>(&bytes);
        if !bearer_ok {
            let key_ok = parsed
                .as_ref()
                .ok()
                .and_then(|v| v.get("key"))
                .and_then(Value::as_str)
                == Some(secret.as_str());
            if !key_ok {
                return Err(ApiError::unauthorized());
            }
        }
        if !json_type {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Expected request with `Content-Type: application/json`",
            ));
        }
        let v = parsed.map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))?;
        Ok(Self(v))
    }
}

/// A string or number id (`"12345"` or `12345`).
fn id_of(v: &Value) -> Option<i64> {
    match v {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

/// One order in the document's shape.
pub fn history_entry(c: &Connection, order: &Order, public_url: &str) -> rusqlite::Result<Value> {
    let lines = orders::lines(c, order.id)?;
    let p = order.presentation();
    let last_comment: Option<String> = c
        .query_row(
            "SELECT comment FROM order_history WHERE order_id = ?1 AND comment IS NOT NULL ORDER BY id DESC LIMIT 1",
            [order.id],
            |r| r.get(0),
        )
        .optional()?;
    let courier: Option<(String, String)> = match order.courier_id {
        Some(id) if p.key == "shipped" => c
            .query_row("SELECT name, phone FROM users WHERE id = ?1", [id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?,
        _ => None,
    };
    let mut items = Vec::new();
    for l in &lines {
        let kept = l.quantity_total;
        if kept > 0 {
            items.push(json!({
                "privateId": l.product_id.to_string(),
                "configurationId": l.id.to_string(),
                "name": l.title,
                "image": format!("{public_url}{}", l.image_url),
                "price": major(l.unit_price_minor),
                "quantity": kept,
                "discount": major(l.discount_minor),
                "subtotal": major(l.unit_price_minor * kept - l.discount_minor),
                "removed": false,
            }));
        }
        let removed = l.quantity_original - kept;
        if removed > 0 {
            items.push(json!({
                "privateId": l.product_id.to_string(),
                "configurationId": l.id.to_string(),
                "name": l.title,
                "image": format!("{public_url}{}", l.image_url),
                "price": major(l.unit_price_minor),
                "quantity": removed,
                "discount": 0.0,
                "subtotal": major(l.unit_price_minor * removed),
                "removed": true,
            }));
        }
    }
    let tracking = order.tracking_url(public_url);
    let mut delivery = json!({
        "title": if order.method_type == "pickup" { "Самовывоз" } else { "Доставка курьером" },
        "details": format!("{}, {}", order.address_locality, order.street_address),
        "buyerName": order.buyer_name,
        "buyerPhone": order.buyer_phone,
        "buyerEmail": order.buyer_email,
    });
    if let Some((name, phone)) = courier {
        delivery["courierName"] = Value::from(name);
        delivery["courierPhone"] = Value::from(phone);
    }
    if let Some(t) = &tracking {
        delivery["trackingUrl"] = Value::from(t.clone());
    }
    let mut v = json!({
        "id": order.id.to_string(),
        "publicId": order.public_id,
        "status": p.text,
        "statusMessage": last_comment.unwrap_or_else(|| format!("Статус заказа: {}", p.text.to_lowercase())),
        "createdOn": order.created_at,
        "updatedOn": order.updated_at,
        "inProgress": status::in_progress(p),
        "price": major(order.total_minor(&lines)),
        "deliveryPrice": major(order.delivery_price_minor),
        "itemsPrice": major(Order::items_minor(&lines)),
        "appliedDiscount": major(order.discounts_minor(&lines)),
        "usedBonuses": major(order.used_bonuses_minor),
        // The payment id when paying again is possible, else null (the document's rule).
        "retryPaymentMethod": order.retry_payment_method(),
        "items": items,
        "publicDeliveryDetails": delivery,
        "publicPaymentDetails": {
            "paid": order.financial_status == "paid",
            "paymentComment": order.payment_comment,
        },
        "cancellable": status::cancellable(p),
        "ratingRequired": p.key == "delivered" && order.rating.is_none(),
    });
    if let Some(t) = tracking {
        v["trackingUrl"] = Value::from(t);
    }
    if let Some(r) = order.rating {
        v["rating"] = Value::from(r);
        v["ratingComment"] = Value::from(order.rating_comment.clone().unwrap_or_default());
    }
    Ok(v)
}

/// `POST /mobile/order-history` `{"userIdentifier", "page"}` → `{"nextPage"?, "orders"}`; newest
/// first, pages of [`HISTORY_PAGE_SIZE`] from 1; `nextPage` only while more remain.
pub async fn order_history(
    State(state): State<AppState>,
    MobileBody(body): MobileBody,
) -> ApiResult<Json<Value>> {
    let user = body
        .get("userIdentifier")
        .ok_or_else(|| ApiError::bad_request("userIdentifier is required"))?;
    let page = match body.get("page") {
        None | Some(Value::Null) => 1,
        Some(p) => id_of(p)
            .filter(|p| *p >= 1)
            .ok_or_else(|| ApiError::bad_request("page must be an integer from 1"))?,
    };
    let Some(user_id) = id_of(user) else {
        return Ok(Json(json!({"orders": []})));
    };
    let public_url = state.public_url.clone();
    let v = state
        .db
        .run(move |c| {
            let offset = (page - 1) * HISTORY_PAGE_SIZE as i64;
            let mut st = c.prepare(&format!(
                "{} WHERE o.user_id = ?1 ORDER BY o.created_at DESC, o.id DESC LIMIT ?2 OFFSET ?3",
                orders::order_select()
            ))?;
            // One more than a page tells whether another page exists.
            let list: Vec<Order> = st
                .query_map(
                    params![user_id, HISTORY_PAGE_SIZE as i64 + 1, offset],
                    Order::from_row,
                )?
                .collect::<rusqlite::Result<_>>()?;
            let more = list.len() > HISTORY_PAGE_SIZE;
            let entries: Vec<Value> = list
                .iter()
                .take(HISTORY_PAGE_SIZE)
                .map(|o| history_entry(c, o, &public_url))
                .collect::<rusqlite::Result<_>>()?;
            let mut v = json!({"orders": entries});
            if more {
                v["nextPage"] = Value::from(page + 1);
            }
            Ok(v)
        })
        .await?;
    Ok(Json(v))
}

/// `POST /mobile/order-status` `{"id", "status": "canceled", "reason"}`: the customer cancels in
/// the app. Refusals answer `{"success": false, "message"}` as the document says.
pub async fn order_status(
    State(state): State<AppState>,
    MobileBody(body): MobileBody,
) -> ApiResult<Json<Value>> {
    let id = body
        .get("id")
        .and_then(id_of)
        .ok_or_else(|| ApiError::bad_request("id is required"))?;
    if body.get("status").and_then(Value::as_str) != Some("canceled") {
        return Ok(Json(
            json!({"success": false, "message": "only status \"canceled\" is supported"}),
        ));
    }
    let reason = body
        .get("reason")
        .and_then(Value::as_str)
        .map(|r| r.chars().take(MAX_COMMENT_LEN).collect::<String>());
    let public_url = state.public_url.clone();
    let outcome = state
        .db
        .run(move |c| {
            let order = orders::load(c, id)?.ok_or_else(|| ApiError::not_found("order"))?;
            if !status::cancellable(order.presentation()) {
                return Ok(Err(order.presentation().text));
            }
            let target = crate::live::resolve_key(c, "cancelled")?;
            let change =
                orders::change_status(c, &public_url, id, target, Actor::MobileApp, reason)
                    .map_err(crate::live::change_error)?;
            Ok(Ok(change))
        })
        .await?;
    match outcome {
        Ok(change) => {
            state.outbox_wake.notify_one();
            crate::live::publish(&state, &change).await;
            Ok(Json(
                json!({"success": true, "status": "cancelled", "message": "Отменён"}),
            ))
        }
        Err(current) => Ok(Json(json!({
            "success": false,
            "message": format!("Заказ уже нельзя отменить: {current}"),
        }))),
    }
}

/// `POST /mobile/rating` `{"id" | "orderId", "rating": 1..5 | null, "comment"}`.
pub async fn rating(
    State(state): State<AppState>,
    MobileBody(body): MobileBody,
) -> ApiResult<Json<Value>> {
    let id = body
        .get("id")
        .or_else(|| body.get("orderId"))
        .and_then(id_of)
        .ok_or_else(|| ApiError::bad_request("id or orderId is required"))?;
    let rating = match body.get("rating") {
        None | Some(Value::Null) => None,
        Some(r) => Some(
            r.as_i64()
                .filter(|r| (1..=5).contains(r))
                .ok_or_else(|| ApiError::bad_request("rating must be 1 to 5 or null"))?,
        ),
    };
    let comment = body
        .get("comment")
        .and_then(Value::as_str)
        .map(|c| c.chars().take(MAX_COMMENT_LEN).collect::<String>());
    state
        .db
        .run(move |c| {
            let n = c.execute(
                "UPDATE orders SET rating = ?1, rating_comment = ?2 WHERE id = ?3",
                params![rating, comment, id],
            )?;
            if n == 0 {
                return Err(ApiError::not_found("order"));
            }
            Ok(())
        })
        .await?;
    Ok(Json(json!({"success": true})))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_come_as_strings_or_numbers() {
        assert_eq!(id_of(&json!("12")), Some(12));
        assert_eq!(id_of(&json!(12)), Some(12));
        assert_eq!(id_of(&json!("x")), None);
        assert_eq!(major(100_333), 1003.33);
    }
}
