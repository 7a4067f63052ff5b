//! Part 4: the mobile app's hooks. The shared secret is required (401 otherwise); the history
//! pages newest first with `nextPage` only while more remain; each order carries the document's
//! fields (`usedBonuses` and `retryPaymentMethod` with real values among them); the app's cancel
//! and rating hooks go through the same status function.

mod common;

use common::*;
use serde_json::{json, Value};

async fn history(shop: &Shop, body: Value) -> HttpResponse {
    let auth = format!("Bearer {MOBILE_SECRET}");
    shop.call(
        "POST",
        "/mobile/order-history",
        &[
            ("Content-Type", "application/json"),
            ("Authorization", &auth),
        ],
        &body.to_string(),
    )
    .await
}

#[tokio::test]
async fn the_secret_is_required() {
    let shop = Shop::start().await;
    let body = json!({"userIdentifier": "1", "page": 1}).to_string();
    for headers in [
        vec![("Content-Type", "application/json")],
        vec![
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer wrong"),
        ],
        vec![
            ("Content-Type", "application/json"),
            ("Authorization", "Basic bW9iaWxlLXNlY3JldA=="),
        ],
    ] {
        let r = shop
            .call("POST", "/mobile/order-history", &headers, &body)
            .await;
        assert_eq!((r.status, r.json), (401, json!({"error": "Unauthorized"})));
    }
    let with_key = shop
        .json(
            "POST",
            "/mobile/order-history",
            None,
            &json!({"userIdentifier": "1", "page": 1, "key": MOBILE_SECRET}),
        )
        .await;
    assert_eq!(with_key.status, 200, "the key may come in the body");
    for path in ["/mobile/order-status", "/mobile/rating"] {
        let r = shop.json("POST", path, None, &json!({"id": "1001"})).await;
        assert_eq!(r.status, 401, "{path}");
    }
    let not_json = shop
        .call(
            "POST",
            "/mobile/order-history",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", "Bearer mobile-secret"),
            ],
            "{",
        )
        .await;
    assert_eq!(not_json.status, 400);
    // The secret is checked before the body: without it, a wrong content type or broken JSON is
    // still 401 on every hook; with it, they get 415 and 400.
    for path in [
        "/mobile/order-history",
        "/mobile/order-status",
        "/mobile/rating",
    ] {
        for (headers, body) in [
            (vec![("Content-Type", "text/plain")], r#"{"id": "1001"}"#),
            (vec![("Content-Type", "application/json")], "{"),
            (vec![], ""),
            (
                vec![
                    ("Content-Type", "text/plain"),
                    ("Authorization", "Bearer wrong"),
                ],
                "{",
            ),
        ] {
            let r = shop.call("POST", path, &headers, body).await;
            assert_eq!(
                (r.status, &r.json),
                (401, &json!({"error": "Unauthorized"})),
                "{path} {headers:?} {body:?}"
            );
        }
        let auth = [
            ("Content-Type", "text/plain"),
            ("Authorization", "Bearer mobile-secret"),
        ];
        let wrong_type = shop.call("POST", path, &auth, r#"{"id": "1001"}"#).await;
        assert_eq!(wrong_type.status, 415, "{path}: {}", wrong_type.body);
        assert!(wrong_type.json["error"].is_string());
        let auth = [
            ("Content-Type", "application/json"),
            ("Authorization", "Bearer mobile-secret"),
        ];
        let broken = shop.call("POST", path, &auth, "{").await;
        assert_eq!(broken.status, 400, "{path}: {}", broken.body);
        assert!(broken.json["error"].is_string());
    }
}

#[tokio::test]
async fn history_pages_and_fields() {
    let shop = Shop::start().await;
    // Vera has one seeded order; eleven more make two pages of ten.
    for _ in 0..11 {
        let r = shop
            .admin("POST", "/admin/orders.json", &json!({"order": {"client_id": VERA, "order_lines_attributes": [{"product_id": 3, "quantity": 1}]}}))
            .await;
        assert_eq!(r.status, 201);
    }
    let first = history(&shop, json!({"userIdentifier": "3", "page": 1})).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json["orders"].as_array().unwrap().len(), 10);
    assert_eq!(first.json["nextPage"], 2);
    let second = history(&shop, json!({"userIdentifier": 3, "page": 2})).await;
    assert_eq!(second.json["orders"].as_array().unwrap().len(), 2);
    assert!(
        second.json.get("nextPage").is_none(),
        "no nextPage on the last page: {}",
        second.body
    );
    let all: Vec<i64> = first.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second.json["orders"].as_array().unwrap())
        .map(|o| o["createdOn"].as_i64().unwrap())
        .collect();
    assert!(
        all.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {all:?}"
    );
    assert_eq!(
        second.json["orders"][1]["id"], "1004",
        "the seeded order is the oldest"
    );
    let beyond = history(&shop, json!({"userIdentifier": "3", "page": 3})).await;
    assert_eq!(beyond.json, json!({"orders": []}));
    let unknown = history(&shop, json!({"userIdentifier": "999", "page": 1})).await;
    assert_eq!(unknown.json, json!({"orders": []}));
    let bad_page = history(&shop, json!({"userIdentifier": "3", "page": 0})).await;
    assert_eq!(bad_page.status, 400);
    let no_user = history(&shop, json!({"page": 1})).await;
    assert_eq!(no_user.status, 400);

    // Alice's 1001 shipped: the document's fields.
    let manager = shop.login(MANAGER).await;
    for status in ["confirmed", "shipped"] {
        let r = shop
            .json(
                "POST",
                "/api/manager/orders/1001/status",
                Some(&manager),
                &json!({"status": status, "comment": "Курьер выехал"}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let alice = history(&shop, json!({"userIdentifier": "1", "page": 1})).await;
    let o = alice.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "1001")
        .unwrap()
        .clone();
    assert_eq!(o["publicId"], "M-1001");
    assert_eq!(o["status"], "В доставке");
    assert_eq!(o["statusMessage"], "Курьер выехал");
    assert_eq!(o["inProgress"], true);
    assert_eq!(o["cancellable"], false);
    assert!(o["createdOn"].is_i64() && o["updatedOn"].as_i64() >= o["createdOn"].as_i64());
    assert_eq!(o["itemsPrice"], 1480.0, "2 × 590 + 2 × 150");
    assert_eq!(o["deliveryPrice"], 190.0);
    assert_eq!(
        o["price"],
        1480.0 - 50.0 - 50.0 + 190.0,
        "line discount 50 and order discount 50"
    );
    let tracking = o["trackingUrl"].as_str().unwrap();
    assert!(tracking.starts_with(&format!("{}/track/", shop.running.public_url)));
    let item = &o["items"][0];
    for k in [
        "privateId",
        "name",
        "image",
        "price",
        "quantity",
        "discount",
        "subtotal",
        "removed",
    ] {
        assert!(item.get(k).is_some(), "item has {k}: {item}");
    }
    assert_eq!(
        (
            item["price"].clone(),
            item["quantity"].clone(),
            item["subtotal"].clone()
        ),
        (json!(590.0), json!(2), json!(1130.0))
    );
    let d = &o["publicDeliveryDetails"];
    assert_eq!(d["courierName"], "Иван Курьеров");
    assert_eq!(d["trackingUrl"], tracking);
    assert_eq!(
        o["publicPaymentDetails"],
        json!({"paid": true, "paymentComment": "Оплачено картой"})
    );
    let pending = alice.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "1003")
        .unwrap()
        .clone();
    assert_eq!(pending["cancellable"], true);
    assert!(pending.get("trackingUrl").is_none());
    assert_eq!(o["usedBonuses"], 0.0);
    assert_eq!(o["retryPaymentMethod"], Value::Null, "a paid order");
    assert_eq!(pending["usedBonuses"], 30.0);
    assert_eq!(pending["price"], 870.0 - 30.0, "3 × 290 less 30 bonuses");
}

#[tokio::test]
async fn bonuses_and_paying_again() {
    let shop = Shop::start().await;
    let orders = |v: &Value| v["orders"].as_array().unwrap().clone();
    let find = |list: &[Value], id: &str| list.iter().find(|o| o["id"] == id).unwrap().clone();
    let alice = orders(
        &history(&shop, json!({"userIdentifier": "1", "page": 1}))
            .await
            .json,
    );
    let bob = orders(
        &history(&shop, json!({"userIdentifier": "2", "page": 1}))
            .await
            .json,
    );
    let vera = orders(
        &history(&shop, json!({"userIdentifier": "3", "page": 1}))
            .await
            .json,
    );

    // Every entry carries both keys: the payment id or null, and the bonuses spent.
    for o in alice.iter().chain(&bob).chain(&vera) {
        assert!(o.get("retryPaymentMethod").is_some(), "{o}");
        assert!(o["usedBonuses"].is_number(), "{o}");
        let sum = o["itemsPrice"].as_f64().unwrap()
            - o["appliedDiscount"].as_f64().unwrap()
            - o["usedBonuses"].as_f64().unwrap()
            + o["deliveryPrice"].as_f64().unwrap();
        assert!((o["price"].as_f64().unwrap() - sum).abs() < 0.001, "{o}");
    }
    // 1003: paid online, not paid yet: it can be paid again, with the fields the document needs.
    let unpaid = find(&alice, "1003");
    assert_eq!(unpaid["retryPaymentMethod"], "card_online");
    assert_eq!(unpaid["publicPaymentDetails"]["paid"], false);
    let d = &unpaid["publicDeliveryDetails"];
    assert!(
        d["title"].is_string() && d["buyerName"] == "Алиса Петрова" && d["buyerPhone"].is_string()
    );
    // 1002: cash to the courier: nothing to pay again. 1004: paid.
    assert_eq!(find(&bob, "1002")["retryPaymentMethod"], Value::Null);
    assert_eq!(find(&vera, "1004")["retryPaymentMethod"], Value::Null);

    // Paid at last (the admin API's financial_status): no retry any more; partners hear of it.
    let paid = shop
        .admin(
            "PUT",
            "/admin/orders/1003.json",
            &json!({"order": {"financial_status": "paid"}}),
        )
        .await;
    assert_eq!(paid.status, 200, "{}", paid.body);
    assert_eq!(paid.json["financial_status"], "paid");
    assert_eq!(
        paid.json["custom_status_permalink"], "pending",
        "the status stays"
    );
    let after = orders(
        &history(&shop, json!({"userIdentifier": "1", "page": 1}))
            .await
            .json,
    );
    assert_eq!(find(&after, "1003")["retryPaymentMethod"], Value::Null);
    assert_eq!(find(&after, "1003")["publicPaymentDetails"]["paid"], true);
    let rows: i64 = shop
        .query(|c| {
            c.query_row(
                "SELECT count(*) FROM outbox WHERE order_id = 1003",
                [],
                |r| r.get(0),
            )
        })
        .await;
    assert_eq!(rows, 1, "one outbox row for the payment");
    let bad = shop
        .admin(
            "PUT",
            "/admin/orders/1003.json",
            &json!({"order": {"financial_status": "refunded"}}),
        )
        .await;
    assert_eq!(bad.status, 400);

    // A cancelled unpaid online order is not offered for payment.
    let fresh = Shop::start().await;
    let r = fresh
        .admin(
            "PUT",
            "/admin/orders/1003.json",
            &json!({"order": {"custom_status_permalink": "cancelled"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let cancelled = orders(
        &history(&fresh, json!({"userIdentifier": "1", "page": 1}))
            .await
            .json,
    );
    assert_eq!(find(&cancelled, "1003")["retryPaymentMethod"], Value::Null);
}

#[tokio::test]
async fn cancel_and_rate_from_the_app() {
    let shop = Shop::start().await;
    let mut alice = shop.customer_socket(ALICE).await;
    let auth = format!("Bearer {MOBILE_SECRET}");
    let post = |path: &'static str, body: Value| {
        let shop = &shop;
        let auth = auth.clone();
        async move {
            shop.call(
                "POST",
                path,
                &[
                    ("Content-Type", "application/json"),
                    ("Authorization", &auth),
                ],
                &body.to_string(),
            )
            .await
        }
    };
    let r = post(
        "/mobile/order-status",
        json!({"id": "1003", "status": "canceled", "reason": "Передумала"}),
    )
    .await;
    assert_eq!(
        r.json,
        json!({"success": true, "status": "cancelled", "message": "Отменён"})
    );
    let d = data(&alice.expect_event("order:status").await);
    assert_eq!(
        (
            d["order_id"].clone(),
            d["status"].clone(),
            d["comment"].clone()
        ),
        (json!(1003), json!("cancelled"), json!("Передумала"))
    );
    let actor: String = shop
        .query(|c| {
            c.query_row(
                "SELECT actor FROM order_history WHERE order_id = 1003 ORDER BY id DESC LIMIT 1",
                [],
                |r| r.get(0),
            )
        })
        .await;
    assert_eq!(actor, "mobile_app");
    let again = post(
        "/mobile/order-status",
        json!({"id": "1003", "status": "canceled"}),
    )
    .await;
    assert_eq!(again.json["success"], false);
    let other = post(
        "/mobile/order-status",
        json!({"id": "1001", "status": "paused"}),
    )
    .await;
    assert_eq!(other.json["success"], false);
    let missing = post(
        "/mobile/order-status",
        json!({"id": "42", "status": "canceled"}),
    )
    .await;
    assert_eq!(missing.status, 404);

    // Delivered orders ask for a rating until one is given.
    let manager = shop.login(MANAGER).await;
    for status in ["shipped", "delivered"] {
        assert_eq!(
            shop.json(
                "POST",
                "/api/manager/orders/1001/status",
                Some(&manager),
                &json!({"status": status})
            )
            .await
            .status,
            200
        );
    }
    let h = history(&shop, json!({"userIdentifier": "1", "page": 1})).await;
    let o = |v: &Value| {
        v["orders"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["id"] == "1001")
            .unwrap()
            .clone()
    };
    assert_eq!(o(&h.json)["ratingRequired"], true);
    assert_eq!(o(&h.json)["inProgress"], false);
    let bad = post("/mobile/rating", json!({"orderId": "1001", "rating": 6})).await;
    assert_eq!(bad.status, 400);
    let rated = post(
        "/mobile/rating",
        json!({"orderId": "1001", "rating": 5, "comment": "Быстро"}),
    )
    .await;
    assert_eq!(rated.json, json!({"success": true}));
    let h = history(&shop, json!({"userIdentifier": "1", "page": 1})).await;
    assert_eq!(
        (
            o(&h.json)["rating"].clone(),
            o(&h.json)["ratingComment"].clone(),
            o(&h.json)["ratingRequired"].clone()
        ),
        (json!(5), json!("Быстро"), json!(false))
    );
}

#[tokio::test]
async fn a_line_removed_before_shipping_shows_as_removed() {
    let shop = Shop::start().await;
    let manager = shop.login(MANAGER).await;
    let alice = shop.login(ALICE).await;
    let lines: Vec<(i64, String)> = shop
        .query(|c| {
            c.prepare("SELECT id, title FROM order_lines WHERE order_id = ?1 ORDER BY id")?
                .query_map([1001], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect()
        })
        .await;
    let (pizza, drink) = (lines[0].0, lines[1].0);
    let foreign_line: i64 = shop
        .query(|c| {
            c.query_row(
                "SELECT MIN(id) FROM order_lines WHERE order_id = 1002",
                [],
                |r| r.get(0),
            )
        })
        .await;
    let path = |line: i64| format!("/api/manager/orders/1001/lines/{line}");

    // Refusals: who, which line, which quantity.
    let anon = shop
        .json("POST", &path(drink), None, &json!({"quantity": 0}))
        .await;
    assert_eq!(anon.status, 401);
    let customer = shop
        .json("POST", &path(drink), Some(&alice), &json!({"quantity": 0}))
        .await;
    assert_eq!(customer.status, 403);
    let foreign = shop
        .json(
            "POST",
            &path(foreign_line),
            Some(&manager),
            &json!({"quantity": 0}),
        )
        .await;
    assert_eq!(
        (foreign.status, &foreign.json),
        (404, &json!({"error": "line not found"}))
    );
    let too_many = shop
        .json(
            "POST",
            &path(drink),
            Some(&manager),
            &json!({"quantity": 3}),
        )
        .await;
    assert_eq!(too_many.status, 400, "{}", too_many.body);
    let negative = shop
        .json(
            "POST",
            &path(drink),
            Some(&manager),
            &json!({"quantity": -1}),
        )
        .await;
    assert_eq!(negative.status, 400);

    // The lemonade goes, one pizza of two goes.
    let removed = shop
        .json(
            "POST",
            &path(drink),
            Some(&manager),
            &json!({"quantity": 0}),
        )
        .await;
    assert_eq!(removed.status, 200, "{}", removed.body);
    assert_eq!(removed.json["changed"], true);
    let fewer = shop
        .json(
            "POST",
            &path(pizza),
            Some(&manager),
            &json!({"quantity": 1}),
        )
        .await;
    assert_eq!(fewer.status, 200, "{}", fewer.body);

    let page = history(&shop, json!({"userIdentifier": "1", "page": 1})).await;
    let order = page.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == "1001")
        .unwrap()
        .clone();
    let items = order["items"].as_array().unwrap();
    let shape: Vec<(String, i64, bool)> = items
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap().to_owned(),
                i["quantity"].as_i64().unwrap(),
                i["removed"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            ("Пицца Маргарита".to_owned(), 1, false),
            ("Пицца Маргарита".to_owned(), 1, true),
            ("Лимонад".to_owned(), 2, true),
        ]
    );
    assert_eq!(order["itemsPrice"], 590.0, "only what is kept is charged");
    assert_eq!(
        order["statusMessage"],
        "Количество изменено: Пицца Маргарита — 1 шт."
    );

    // Each edit wrote history and sent partners the new full order.
    let comments: Vec<Option<String>> = shop
        .query(|c| {
            c.prepare("SELECT comment FROM order_history WHERE order_id = 1001 ORDER BY id")?
                .query_map([], |r| r.get(0))?
                .collect()
        })
        .await;
    assert_eq!(comments.len(), 3, "{comments:?}");
    assert_eq!(comments[1].as_deref(), Some("Позиция удалена: Лимонад"));
    let got = eventually(
        "both edits at the partner",
        std::time::Duration::from_secs(20),
        || async {
            let r = shop
                .json(
                    "GET",
                    &format!("/partner/demo-partner/orders/1001?key={PARTNER_KEY}"),
                    None,
                    &Value::Null,
                )
                .await;
            (r.status == 200 && r.json["count"] == 2).then_some(r.json)
        },
    )
    .await;
    let partner_lines = got["last"]["line_items"].as_array().unwrap();
    assert_eq!(partner_lines[0]["quantity"]["total"], 1);
    assert_eq!(
        partner_lines[1]["quantity"],
        json!({"total": 0, "fulfilled": 0, "original": 2})
    );

    // Once shipped, lines are fixed.
    for status in ["confirmed", "preparing", "shipped"] {
        let r = shop
            .json(
                "POST",
                "/api/manager/orders/1001/status",
                Some(&manager),
                &json!({"status": status}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let late = shop
        .json(
            "POST",
            &path(pizza),
            Some(&manager),
            &json!({"quantity": 0}),
        )
        .await;
    assert_eq!(late.status, 409, "{}", late.body);
    assert!(late.json["error"]
        .as_str()
        .unwrap()
        .contains("before the order ships"));
}
