//! The manager's line edits: changing a line's quantity, 0 removing it, while the order has not
//! shipped. The order's `quantity_original` is kept, so the mobile history shows what went as
//! `removed: true` and a 2026-04-08 partner sees the line's `removed` status.
//!
//! An edit updates the line, appends an `order_history` row (status unchanged, the edit as its
//! comment) and writes one outbox row per partner with the new full order, all in one
//! transaction, like a status change; the handler then tells the managers' channel. This module
//! never talks to partners.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::db::now;
use crate::error::{ApiError, ApiResult};
use crate::input::Input;
use crate::orders;
use crate::outbox;
use crate::session::MaybeUser;
use crate::AppState;

/// Statuses in which an order's lines may still change: before it ships.
const EDITABLE: [&str; 4] = ["pending", "confirmed", "preparing", "ready"];

/// The new quantity of a line.
#[derive(Debug, Deserialize)]
pub struct LineForm {
    /// From 0 (the line is removed) to the quantity ordered.
    pub quantity: i64,
}

/// `POST /api/manager/orders/{id}/lines/{line_id}` `{"quantity": n}`: 401/403 unless a manager,
/// 404 for an unknown order or a line of another order, 400 for a quantity outside 0..=ordered,
/// 409 once the order has shipped (or ended).
pub async fn set_quantity(
    State(state): State<AppState>,
    user: MaybeUser,
    Path((order, line)): Path<(String, String)>,
    form: Result<Input<LineForm>, ApiError>,
) -> ApiResult<Json<Value>> {
    user.with_role("manager")?;
    let Input(form) = form?;
    let (order_id, line_id) = match (order.parse::<i64>(), line.parse::<i64>()) {
        (Ok(o), Ok(l)) => (o, l),
        _ => {
            return Err(ApiError::bad_request(
                "the order and line ids must be numbers",
            ))
        }
    };
    let public_url = state.public_url.clone();
    let v = state
        .db
        .run(move |c| {
            let tx = c.transaction()?;
            let order = orders::load(&tx, order_id)?.ok_or_else(|| ApiError::not_found("order"))?;
            let found: Option<(String, i64, i64)> = tx
                .query_row(
                    "SELECT title, quantity_original, quantity_total FROM order_lines WHERE id = ?1 AND order_id = ?2",
                    params![line_id, order_id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?;
            let (title, original, current) = found.ok_or_else(|| ApiError::not_found("line"))?;
            if !(0..=original).contains(&form.quantity) {
                return Err(ApiError::bad_request(format!(
                    "quantity must be from 0 to {original}, the quantity ordered"
                )));
            }
            let p = order.presentation();
            if !EDITABLE.contains(&p.key) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    format!("lines can change only before the order ships (it is {})", p.text),
                ));
            }
            if form.quantity == current {
                return Ok(json!({"success": true, "changed": false, "quantity": current}));
            }
            let t = now();
            tx.execute(
                "UPDATE order_lines SET quantity_total = ?1 WHERE id = ?2",
                params![form.quantity, line_id],
            )?;
            tx.execute("UPDATE orders SET updated_at = ?1 WHERE id = ?2", params![t, order_id])?;
            let comment = if form.quantity == 0 {
                format!("Позиция удалена: {title}")
            } else {
                format!("Количество изменено: {title} — {} шт.", form.quantity)
            };
            tx.execute(
                "INSERT INTO order_history (order_id, status, fulfillment_status, custom_status_permalink, comment, actor, created_at)
                 VALUES (?1, ?2, ?3, ?2, ?4, 'manager', ?5)",
                params![order_id, order.custom_status_permalink, order.fulfillment_status, comment, t],
            )?;
            let history_id = tx.last_insert_rowid();
            outbox::enqueue(&tx, &public_url, order_id, &format!("upd_{history_id}"), t)?;
            tx.commit()?;
            Ok(json!({"success": true, "changed": true, "quantity": form.quantity, "comment": comment}))
        })
        .await?;
    state.outbox_wake.notify_one();
    if v["changed"] == true {
        crate::live::notify_managers(&state, &json!({"order_id": order_id, "line_id": line_id}))
            .await;
    }
    Ok(Json(v))
}
