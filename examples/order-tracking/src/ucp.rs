//! The full-order snapshot partners receive, in the shape of the UCP order capability.
//!
//! The body is the 2026-01-23 shape (`event_id` and `created_time` in the body, non-negative
//! totals, `amount` on adjustments) with the harmless 2026-04-08 extras (`currency`,
//! `quantity.original`); a partner set to 2026-04-08 gets signed adjustment totals, `removed`
//! lines and no body ids (they travel in the `Webhook-*` headers). This module only reads rows:
//! it never writes and never sends.

use rusqlite::Connection;
use serde_json::{json, Value};

use crate::db::iso;
use crate::orders::{self, Line, Order};

/// The order capability's name.
pub const CAPABILITY: &str = "dev.ucp.shopping.order";

/// The version whose body carries `event_id` and `created_time`.
pub const V_2026_01_23: &str = "2026-01-23";

/// The version with signed adjustment totals and header-borne ids.
pub const V_2026_04_08: &str = "2026-04-08";

/// The fields a partner must find in every body (Google's rejection reasons).
pub const REQUIRED_FIELDS: [&str; 6] = [
    "id",
    "checkout_id",
    "line_items",
    "fulfillment",
    "totals",
    "permalink_url",
];

fn line_status(l: &Line, version: &str, total: i64) -> &'static str {
    if version == V_2026_04_08 && total == 0 {
        "removed"
    } else if l.quantity_fulfilled >= total && total > 0 {
        "fulfilled"
    } else if l.quantity_fulfilled > 0 {
        "partial"
    } else {
        "processing"
    }
}

/// Builds the snapshot of `order_id` for a partner on `version`; `None` if there is no such order.
pub fn snapshot(
    c: &Connection,
    public_url: &str,
    order_id: i64,
    version: &str,
    webhook_id: &str,
    timestamp: i64,
) -> rusqlite::Result<Option<Value>> {
    let Some(order) = orders::load(c, order_id)? else {
        return Ok(None);
    };
    let lines = orders::lines(c, order_id)?;
    let signed = version == V_2026_04_08;
    // 2026-04-08 shows a cancelled order's lines as removed (total 0, the original kept).
    let removed_all = signed && order.presentation().key == "cancelled";
    let line_items: Vec<Value> = lines
        .iter()
        .map(|l| {
            let total = if removed_all { 0 } else { l.quantity_total };
            let subtotal = l.unit_price_minor * total;
            json!({
                "id": format!("li_{}", l.id),
                "item": {
                    "id": format!("product_{}", l.product_id),
                    "title": l.title,
                    "price": l.unit_price_minor,
                    "image_url": format!("{public_url}{}", l.image_url),
                },
                "quantity": {
                    "total": total,
                    "fulfilled": l.quantity_fulfilled.min(total),
                    "original": l.quantity_original,
                },
                "totals": [
                    {"type": "subtotal", "amount": subtotal},
                    {"type": "total", "amount": subtotal - l.discount_minor},
                ],
                "status": line_status(l, version, total),
            })
        })
        .collect();
    let all_lines: Vec<Value> = lines
        .iter()
        .filter(|l| l.quantity_total > 0)
        .map(|l| json!({"id": format!("li_{}", l.id), "quantity": l.quantity_total}))
        .collect();
    // Bonuses spent lower the total as a discount does; UCP has no separate type for them.
    let discount = order.discounts_minor(&lines) + order.used_bonuses_minor;
    let totals = json!([
        {"type": "subtotal", "amount": Order::items_minor(&lines)},
        {"type": "discount", "amount": if signed { -discount } else { discount }},
        {"type": "fulfillment", "amount": order.delivery_price_minor},
        {"type": "total", "amount": order.total_minor(&lines)},
    ]);
    let events = fulfillment_events(c, order_id, &all_lines)?;
    let adjustments = adjustments(c, order_id, signed)?;
    let mut body = json!({
        "ucp": {"version": version, "capabilities": {CAPABILITY: [{"version": version}]}},
        "id": format!("order_{}", order.id),
        "checkout_id": format!("checkout_{}", order.id),
        "permalink_url": format!("{public_url}/orders/{}", order.id),
        "currency": "RUB",
        "line_items": line_items,
        "fulfillment": {
            "expectations": [{
                "id": format!("exp_{}", order.id),
                "line_items": all_lines,
                "method_type": order.method_type,
                "destination": {
                    "street_address": order.street_address,
                    "address_locality": order.address_locality,
                    "postal_code": order.postal_code,
                    "address_country": order.address_country,
                    "first_name": order.buyer_name.split(' ').next().unwrap_or_default(),
                    "last_name": order.buyer_name.split(' ').nth(1).unwrap_or_default(),
                    "phone_number": order.buyer_phone,
                },
                "description": "Доставка курьером, 1–2 дня",
                "fulfillable_on": "now",
            }],
            "events": events,
        },
        "adjustments": adjustments,
        "totals": totals,
    });
    if !signed {
        body["event_id"] = Value::from(webhook_id);
        body["created_time"] = Value::from(iso(timestamp));
    }
    Ok(Some(body))
}

fn fulfillment_events(
    c: &Connection,
    order_id: i64,
    all_lines: &[Value],
) -> rusqlite::Result<Vec<Value>> {
    let mut st = c.prepare(
        "SELECT id, type, occurred_at, tracking_number, tracking_url, carrier, description
         FROM fulfillment_events WHERE order_id = ?1 ORDER BY occurred_at, rowid",
    )?;
    let rows = st.query_map([order_id], |r| {
        let mut e = json!({
            "id": r.get::<_, String>(0)?,
            "type": r.get::<_, String>(1)?,
            "occurred_at": iso(r.get(2)?),
            "line_items": all_lines,
            "description": r.get::<_, String>(6)?,
        });
        for (i, key) in [(3, "tracking_number"), (4, "tracking_url"), (5, "carrier")] {
            if let Some(v) = r.get::<_, Option<String>>(i)? {
                e[key] = Value::from(v);
            }
        }
        Ok(e)
    })?;
    rows.collect()
}

fn adjustments(c: &Connection, order_id: i64, signed: bool) -> rusqlite::Result<Vec<Value>> {
    let mut st = c.prepare(
        "SELECT id, type, status, occurred_at, description, amount_minor
         FROM adjustments WHERE order_id = ?1 ORDER BY occurred_at, rowid",
    )?;
    let rows = st.query_map([order_id], |r| {
        let amount: i64 = r.get(5)?;
        let mut a = json!({
            "id": r.get::<_, String>(0)?,
            "type": r.get::<_, String>(1)?,
            "status": r.get::<_, String>(2)?,
            "occurred_at": iso(r.get(3)?),
            "description": r.get::<_, String>(4)?,
        });
        if signed {
            a["totals"] = json!([{"type": "total", "amount": -amount}]);
        } else {
            a["amount"] = Value::from(amount);
        }
        Ok(a)
    })?;
    rows.collect()
}
