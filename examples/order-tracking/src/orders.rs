//! Orders and the one status transition function every entry point calls.
//!
//! `change_status` updates the order, appends `order_history`, appends the UCP fulfillment events
//! or adjustments the new status implies, and writes one outbox row per partner, all in one SQLite
//! transaction. It returns the realtime payload; the caller triggers it after the commit (the
//! trigger is best-effort, the outbox is the durable part). This module never talks to the broker
//! or to partners itself.

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction};
use serde::Serialize;
use serde_json::{json, Value};

use crate::db::{iso, now};
use crate::error::ApiError;
use crate::outbox;
use crate::status::{self, check_transition, presentation, Presentation};

/// An order row with its resolved custom status.
#[derive(Debug, Clone, Serialize)]
pub struct Order {
    /// The id.
    pub id: i64,
    /// The number shown to people, e.g. `M-1001`.
    pub public_id: String,
    /// The customer.
    pub user_id: i64,
    /// The assigned courier, if any.
    pub courier_id: Option<i64>,
    /// The system status.
    pub fulfillment_status: String,
    /// The custom status.
    pub custom_status_permalink: String,
    /// The custom status's title.
    pub custom_status_title: String,
    /// The custom status's colour.
    pub custom_status_color: String,
    /// `pending` or `paid`.
    pub financial_status: String,
    /// How it was or will be paid.
    pub payment_comment: String,
    /// Delivery price, kopecks.
    pub delivery_price_minor: i64,
    /// Order discount, kopecks.
    pub discount_minor: i64,
    /// `shipping` or `pickup`.
    pub method_type: String,
    /// Destination street.
    pub street_address: String,
    /// Destination city.
    pub address_locality: String,
    /// Destination postal code.
    pub postal_code: String,
    /// Destination country (ISO alpha-2).
    pub address_country: String,
    /// Buyer's name.
    pub buyer_name: String,
    /// Buyer's phone.
    pub buyer_phone: String,
    /// Buyer's email.
    pub buyer_email: String,
    /// Set when shipped.
    pub tracking_number: Option<String>,
    /// Set when shipped.
    pub carrier: Option<String>,
    /// The customer's rating, 1 to 5.
    pub rating: Option<i64>,
    /// The customer's rating comment.
    pub rating_comment: Option<String>,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
    /// The destination's latitude, when known (the order page's map centre).
    pub destination_lat: Option<f64>,
    /// The destination's longitude, when known.
    pub destination_lng: Option<f64>,
    /// How the order is paid: `card_online` or `cash_on_delivery`.
    pub payment_method: String,
    /// Loyalty bonuses spent on the order, kopecks (one bonus is one rouble).
    pub used_bonuses_minor: i64,
}

/// The payment method of an order paid on the site by card; the only one that can be retried.
pub const PAYMENT_CARD_ONLINE: &str = "card_online";

/// The carrier name shown in tracking (the shop delivers with its own couriers).
pub const CARRIER: &str = "Vestnik Courier";

const ORDER_COLUMNS: &str = "o.id, o.public_id, o.user_id, o.courier_id, o.fulfillment_status,
    o.custom_status_permalink, cs.title, cs.color, o.financial_status, o.payment_comment,
    o.delivery_price_minor, o.discount_minor, o.method_type, o.street_address, o.address_locality,
    o.postal_code, o.address_country, o.buyer_name, o.buyer_phone, o.buyer_email,
    o.tracking_number, o.carrier, o.rating, o.rating_comment, o.created_at, o.updated_at,
    o.destination_lat, o.destination_lng, o.payment_method, o.used_bonuses_minor";

/// `SELECT … FROM orders o JOIN custom_statuses cs` with the columns [`Order::from_row`] reads.
pub fn order_select() -> String {
    format!(
        "SELECT {ORDER_COLUMNS} FROM orders o JOIN custom_statuses cs ON cs.permalink = o.custom_status_permalink"
    )
}

impl Order {
    /// Reads a row selected by [`order_select`].
    pub fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(Self {
            id: r.get(0)?,
            public_id: r.get(1)?,
            user_id: r.get(2)?,
            courier_id: r.get(3)?,
            fulfillment_status: r.get(4)?,
            custom_status_permalink: r.get(5)?,
            custom_status_title: r.get(6)?,
            custom_status_color: r.get(7)?,
            financial_status: r.get(8)?,
            payment_comment: r.get(9)?,
            delivery_price_minor: r.get(10)?,
            discount_minor: r.get(11)?,
            method_type: r.get(12)?,
            street_address: r.get(13)?,
            address_locality: r.get(14)?,
            postal_code: r.get(15)?,
            address_country: r.get(16)?,
            buyer_name: r.get(17)?,
            buyer_phone: r.get(18)?,
            buyer_email: r.get(19)?,
            tracking_number: r.get(20)?,
            carrier: r.get(21)?,
            rating: r.get(22)?,
            rating_comment: r.get(23)?,
            created_at: r.get(24)?,
            updated_at: r.get(25)?,
            destination_lat: r.get(26)?,
            destination_lng: r.get(27)?,
            payment_method: r.get(28)?,
            used_bonuses_minor: r.get(29)?,
        })
    }

    /// How the order's status is shown to the customer.
    pub fn presentation(&self) -> Presentation {
        presentation(&self.custom_status_permalink, &self.fulfillment_status)
    }

    /// Sum of the lines before discounts, kopecks.
    pub fn items_minor(lines: &[Line]) -> i64 {
        lines
            .iter()
            .map(|l| l.unit_price_minor * l.quantity_total)
            .sum()
    }

    /// Sum of line and order discounts, kopecks.
    pub fn discounts_minor(&self, lines: &[Line]) -> i64 {
        self.discount_minor + lines.iter().map(|l| l.discount_minor).sum::<i64>()
    }

    /// What the customer pays, kopecks: the lines, less the discounts and the bonuses spent, plus
    /// delivery.
    pub fn total_minor(&self, lines: &[Line]) -> i64 {
        Self::items_minor(lines) - self.discounts_minor(lines) - self.used_bonuses_minor
            + self.delivery_price_minor
    }

    /// The payment method a customer may pay this order with again, or `None`: an order paid
    /// online that is not paid yet and still goes ahead (not cancelled or returned) can be paid
    /// again; cash is paid to the courier, and a paid order is done.
    pub fn retry_payment_method(&self) -> Option<&'static str> {
        let open = !matches!(self.presentation().key, "cancelled" | "returned");
        (open && self.financial_status == "pending" && self.payment_method == PAYMENT_CARD_ONLINE)
            .then_some(PAYMENT_CARD_ONLINE)
    }

    /// The destination's `(lat, lng)`, when both are known.
    pub fn destination(&self) -> Option<(f64, f64)> {
        self.destination_lat.zip(self.destination_lng)
    }

    /// The public tracking page, once shipped.
    pub fn tracking_url(&self, public_url: &str) -> Option<String> {
        self.tracking_number
            .as_ref()
            .map(|t| format!("{public_url}/track/{t}"))
    }
}

/// One order line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The id.
    pub id: i64,
    /// The product.
    pub product_id: i64,
    /// Title at order time.
    pub title: String,
    /// Image URL (relative to the shop).
    pub image_url: String,
    /// Unit price, kopecks.
    pub unit_price_minor: i64,
    /// Quantity ordered.
    pub quantity_original: i64,
    /// Quantity now in the order (0 when removed).
    pub quantity_total: i64,
    /// Quantity handed over.
    pub quantity_fulfilled: i64,
    /// Line discount, kopecks.
    pub discount_minor: i64,
}

/// Loads one order.
pub fn load(c: &Connection, id: i64) -> rusqlite::Result<Option<Order>> {
    c.query_row(
        &format!("{} WHERE o.id = ?1", order_select()),
        [id],
        Order::from_row,
    )
    .optional()
}

/// Loads an order's lines in id order.
pub fn lines(c: &Connection, order_id: i64) -> rusqlite::Result<Vec<Line>> {
    let mut st = c.prepare(
        "SELECT id, product_id, title, image_url, unit_price_minor, quantity_original,
                quantity_total, quantity_fulfilled, discount_minor
         FROM order_lines WHERE order_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([order_id], |r| {
        Ok(Line {
            id: r.get(0)?,
            product_id: r.get(1)?,
            title: r.get(2)?,
            image_url: r.get(3)?,
            unit_price_minor: r.get(4)?,
            quantity_original: r.get(5)?,
            quantity_total: r.get(6)?,
            quantity_fulfilled: r.get(7)?,
            discount_minor: r.get(8)?,
        })
    })?;
    rows.collect()
}

/// An order's history, oldest first, as the page's timeline shows it.
pub fn history(c: &Connection, order_id: i64) -> rusqlite::Result<Vec<Value>> {
    let mut st = c.prepare(
        "SELECT status, fulfillment_status, comment, actor, created_at FROM order_history
         WHERE order_id = ?1 ORDER BY id",
    )?;
    let rows = st.query_map([order_id], |r| {
        let status: String = r.get(0)?;
        let system: String = r.get(1)?;
        let p = presentation(&status, &system);
        Ok(json!({
            "status": status,
            "status_text": p.text,
            "status_icon": p.icon,
            "step": p.step,
            "comment": r.get::<_, Option<String>>(2)?,
            "actor": r.get::<_, String>(3)?,
            "created_at": iso(r.get(4)?),
        }))
    })?;
    rows.collect()
}

/// A custom status as stored.
#[derive(Debug, Clone, Serialize)]
pub struct CustomStatus {
    /// The id.
    pub id: i64,
    /// The title.
    pub title: String,
    /// The unique permalink.
    pub permalink: String,
    /// The system status it extends.
    pub system_status: String,
    /// A palette colour.
    pub color: String,
    /// Whether new orders (or a bare system status) get it.
    pub is_default: bool,
    /// Position in the back office.
    pub position: i64,
    /// Unix seconds.
    pub created_at: i64,
    /// Unix seconds.
    pub updated_at: i64,
}

const CUSTOM_COLUMNS: &str =
    "id, title, permalink, system_status, color, is_default, position, created_at, updated_at";

fn custom_from_row(r: &Row<'_>) -> rusqlite::Result<CustomStatus> {
    Ok(CustomStatus {
        id: r.get(0)?,
        title: r.get(1)?,
        permalink: r.get(2)?,
        system_status: r.get(3)?,
        color: r.get(4)?,
        is_default: r.get(5)?,
        position: r.get(6)?,
        created_at: r.get(7)?,
        updated_at: r.get(8)?,
    })
}

/// Every custom status, by position.
pub fn custom_statuses(c: &Connection) -> rusqlite::Result<Vec<CustomStatus>> {
    let mut st = c.prepare(&format!(
        "SELECT {CUSTOM_COLUMNS} FROM custom_statuses ORDER BY position, id"
    ))?;
    let rows = st.query_map([], custom_from_row)?;
    rows.collect()
}

/// One custom status by permalink (`_` and `-` are the same).
pub fn custom_status(c: &Connection, permalink: &str) -> rusqlite::Result<Option<CustomStatus>> {
    c.query_row(
        &format!("SELECT {CUSTOM_COLUMNS} FROM custom_statuses WHERE permalink = ?1"),
        [permalink.replace('_', "-")],
        custom_from_row,
    )
    .optional()
}

/// Makes sure every system status has a default custom status, as inSales's GET does: a system
/// status with none gets one whose permalink is the system permalink; one with custom statuses but
/// no default gets its first promoted. Returns how many were created or promoted.
pub fn ensure_defaults(c: &Connection) -> rusqlite::Result<usize> {
    let mut changed = 0;
    for system in status::SYSTEM_STATUSES {
        let has_default: bool = c.query_row(
            "SELECT EXISTS(SELECT 1 FROM custom_statuses WHERE system_status = ?1 AND is_default = 1)",
            [system],
            |r| r.get(0),
        )?;
        if has_default {
            continue;
        }
        let first: Option<i64> = c
            .query_row(
                "SELECT id FROM custom_statuses WHERE system_status = ?1 ORDER BY position, id LIMIT 1",
                [system],
                |r| r.get(0),
            )
            .optional()?;
        match first {
            Some(id) => {
                c.execute(
                    "UPDATE custom_statuses SET is_default = 1 WHERE id = ?1",
                    [id],
                )?;
            }
            None => {
                let t = now();
                c.execute(
                    "INSERT INTO custom_statuses (permalink, title, system_status, color, is_default, position, created_at, updated_at)
                     VALUES (?1, ?2, ?1, ?3, 1, (SELECT COALESCE(MAX(position), 0) + 1 FROM custom_statuses), ?4, ?4)",
                    params![system, status::system_title(system), status::system_color(system), t],
                )?;
            }
        }
        changed += 1;
    }
    Ok(changed)
}

/// Why a requested status could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// Neither a custom nor a system status (the cookbook's `400 {"error":"Invalid status"}`).
    #[error("Invalid status")]
    Unknown,
    /// The custom status extends another system status (inSales's message).
    #[error("incompatible fulfillment and custom statuses")]
    Incompatible,
}

/// Resolves the inSales pair under its rules: both given must agree; only a system status takes its
/// default custom status; only a custom status takes its system status; a system permalink given as
/// the custom status acts as the system status. Returns `(fulfillment_status, custom_permalink)`.
pub fn resolve(
    c: &Connection,
    fulfillment: Option<&str>,
    custom: Option<&str>,
) -> Result<(String, String), ApiErrorOr<ResolveError>> {
    let mut fulfillment = fulfillment.map(str::to_owned);
    if let Some(custom) = custom {
        if let Some(cs) = custom_status(c, custom)? {
            return match fulfillment {
                Some(f) if f != cs.system_status => Err(ResolveError::Incompatible.into()),
                _ => Ok((cs.system_status, cs.permalink)),
            };
        }
        if !status::is_system(custom) {
            return Err(ResolveError::Unknown.into());
        }
        match &fulfillment {
            Some(f) if f != custom => return Err(ResolveError::Incompatible.into()),
            _ => fulfillment = Some(custom.to_owned()),
        }
    }
    let f = fulfillment.ok_or(ResolveError::Unknown)?;
    if !status::is_system(&f) {
        return Err(ResolveError::Unknown.into());
    }
    ensure_defaults(c)?;
    let default: String = c.query_row(
        "SELECT permalink FROM custom_statuses WHERE system_status = ?1 AND is_default = 1",
        [&f],
        |r| r.get(0),
    )?;
    Ok((f, default))
}

/// Either a database failure or a domain refusal `E`.
#[derive(Debug)]
pub enum ApiErrorOr<E> {
    /// The database failed.
    Api(ApiError),
    /// The request was refused.
    Refused(E),
}

impl<E> From<rusqlite::Error> for ApiErrorOr<E> {
    fn from(e: rusqlite::Error) -> Self {
        Self::Api(e.into())
    }
}

impl From<ResolveError> for ApiErrorOr<ResolveError> {
    fn from(e: ResolveError) -> Self {
        Self::Refused(e)
    }
}

/// Who changed a status (the `order_history.actor` column).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The manager page or its API.
    Manager,
    /// The inSales-shaped admin API.
    Api,
    /// The mobile app's server.
    MobileApp,
    /// The shop itself (order creation).
    System,
}

impl Actor {
    fn as_str(self) -> &'static str {
        match self {
            Actor::Manager => "manager",
            Actor::Api => "api",
            Actor::MobileApp => "mobile_app",
            Actor::System => "system",
        }
    }
}

/// A committed change: whom to tell and what.
#[derive(Debug, Clone)]
pub struct Change {
    /// The order's owner (`private-user-{user_id}`).
    pub user_id: i64,
    /// The `order:status` payload.
    pub payload: Value,
}

/// Why a change was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No such order.
    #[error("order not found")]
    NotFound,
    /// The move is not allowed from the current status.
    #[error(transparent)]
    Transition(#[from] status::TransitionError),
    /// The database failed.
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
}

fn next_id(
    tx: &Transaction<'_>,
    table: &str,
    prefix: &str,
    order_id: i64,
) -> rusqlite::Result<String> {
    let n: i64 = tx.query_row(
        &format!("SELECT count(*) FROM {table} WHERE order_id = ?1"),
        [order_id],
        |r| r.get(0),
    )?;
    Ok(format!("{prefix}_{order_id}_{}", n + 1))
}

/// The one status transition: see the module docs. `target` is `(fulfillment_status,
/// custom_permalink)` from [`resolve`].
pub fn change_status(
    c: &mut Connection,
    public_url: &str,
    order_id: i64,
    target: (String, String),
    actor: Actor,
    comment: Option<String>,
) -> Result<Change, ChangeError> {
    let tx = c.transaction()?;
    let before = load(&tx, order_id)?.ok_or(ChangeError::NotFound)?;
    let to = presentation(&target.1, &target.0);
    check_transition(before.presentation(), to)?;
    let t = now();
    tx.execute(
        "UPDATE orders SET fulfillment_status = ?1, custom_status_permalink = ?2, updated_at = ?3 WHERE id = ?4",
        params![target.0, target.1, t, order_id],
    )?;
    let repeat = before.presentation().key == to.key;
    let mut primary: Option<String> = None;
    if !repeat {
        primary = apply_effects(&tx, &before, to, public_url, t)?;
    }
    tx.execute(
        "INSERT INTO order_history (order_id, status, fulfillment_status, custom_status_permalink, comment, actor, created_at)
         VALUES (?1, ?2, ?3, ?2, ?4, ?5, ?6)",
        params![order_id, target.1, target.0, comment, actor.as_str(), t],
    )?;
    let history_id = tx.last_insert_rowid();
    let webhook_id = primary.unwrap_or_else(|| format!("upd_{history_id}"));
    outbox::enqueue(&tx, public_url, order_id, &webhook_id, t)?;
    let after = load(&tx, order_id)?.ok_or(ChangeError::NotFound)?;
    tx.commit()?;
    Ok(Change {
        user_id: after.user_id,
        payload: status_payload(&after, comment.as_deref(), public_url),
    })
}

/// Appends the UCP events and adjustments that entering `to` implies; returns the id of the one
/// that names the webhook, if any.
fn apply_effects(
    tx: &Transaction<'_>,
    order: &Order,
    to: Presentation,
    public_url: &str,
    t: i64,
) -> rusqlite::Result<Option<String>> {
    let event = |kind: &str, description: &str, tracking: bool| -> rusqlite::Result<String> {
        let id = next_id(tx, "fulfillment_events", "evt", order.id)?;
        let (number, url, carrier) = if tracking {
            let number: Option<String> = tx.query_row(
                "SELECT tracking_number FROM orders WHERE id = ?1",
                [order.id],
                |r| r.get(0),
            )?;
            let url = number.as_ref().map(|n| format!("{public_url}/track/{n}"));
            (number, url, Some(CARRIER))
        } else {
            (None, None, None)
        };
        tx.execute(
            "INSERT INTO fulfillment_events (id, order_id, type, occurred_at, tracking_number, tracking_url, carrier, description)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![id, order.id, kind, t, number, url, carrier, description],
        )?;
        Ok(id)
    };
    let adjustment = |kind: &str, description: &str, amount: i64| -> rusqlite::Result<String> {
        let id = next_id(tx, "adjustments", "adj", order.id)?;
        tx.execute(
            "INSERT INTO adjustments (id, order_id, type, status, occurred_at, description, amount_minor)
             VALUES (?1, ?2, ?3, 'completed', ?4, ?5, ?6)",
            params![id, order.id, kind, t, description, amount],
        )?;
        Ok(id)
    };
    let total = order.total_minor(&lines(tx, order.id)?);
    Ok(match to.key {
        "preparing" => Some(event("processing", "Заказ готовится", false)?),
        "ready" => Some(event("processing", "Заказ упакован и ждёт курьера", false)?),
        "shipped" => {
            tx.execute(
                "UPDATE orders SET tracking_number = COALESCE(tracking_number, 'VST' || id || '-' || ?2), carrier = ?3 WHERE id = ?1",
                params![order.id, t, CARRIER],
            )?;
            tx.execute(
                "UPDATE order_lines SET quantity_fulfilled = quantity_total WHERE order_id = ?1",
                [order.id],
            )?;
            Some(event("shipped", "Передан курьеру", true)?)
        }
        "delivered" => Some(event("delivered", "Доставлен покупателю", true)?),
        "cancelled" => {
            let id = event("canceled", "Заказ отменён", false)?;
            adjustment("cancellation", "Заказ отменён", total)?;
            if order.financial_status == "paid" {
                adjustment("refund", "Возврат оплаты", total)?;
            }
            Some(id)
        }
        "returned" => {
            let id = adjustment("return", "Возврат заказа", total)?;
            adjustment("refund", "Возврат оплаты", total)?;
            Some(id)
        }
        _ => None,
    })
}

/// The `order:status` payload: the cookbook's fields, plus the custom status and tracking URL.
pub fn status_payload(order: &Order, comment: Option<&str>, public_url: &str) -> Value {
    let p = order.presentation();
    let mut v = json!({
        "order_id": order.id,
        "status": order.custom_status_permalink,
        "status_text": p.text,
        "status_icon": p.icon,
        "step": p.step,
        "comment": comment,
        "updated_at": iso(order.updated_at),
        "fulfillment_status": order.fulfillment_status,
        "custom_status": {
            "permalink": order.custom_status_permalink,
            "title": order.custom_status_title,
            "color": order.custom_status_color,
        },
    });
    if let Some(url) = order.tracking_url(public_url) {
        v["tracking_url"] = Value::from(url);
    }
    v
}
