//! Part 1's API against the real broker: a status change writes order_history and reaches
//! `private-user-{id}` with the cookbook's payload; refusals (invalid status, backwards move,
//! wrong role, foreign channel, unassigned courier, bad coordinates) answer 4xx JSON and change
//! nothing.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn status_change_writes_history_and_reaches_the_owner_only() {
    let shop = Shop::start().await;
    let manager = shop.login(MANAGER).await;
    let mut alice = shop.customer_socket(ALICE).await;
    let mut bob = shop.customer_socket(BOB).await;

    let r = shop
        .json(
            "POST",
            "/api/manager/orders/1001/status",
            Some(&manager),
            &json!({"status": "confirmed", "comment": "Принят"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["success"], true);

    let ev = alice.expect_event("order:status").await;
    assert_eq!(ev["channel"], "private-user-1");
    let d = data(&ev);
    assert_eq!(d["order_id"], 1001);
    assert_eq!(d["status"], "confirmed");
    assert_eq!(d["status_text"], "Подтверждён");
    assert_eq!(d["status_icon"], "✅");
    assert_eq!(d["step"], 1);
    assert_eq!(d["comment"], "Принят");
    assert!(
        d["updated_at"].as_str().unwrap().ends_with('Z'),
        "ISO 8601: {d}"
    );
    bob.expect_no_event("order:status", Duration::from_millis(300))
        .await;

    let rows: Vec<(String, Option<String>, String)> = shop
        .query(|c| {
            let mut st = c.prepare("SELECT status, comment, actor FROM order_history WHERE order_id = 1001 ORDER BY id")?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            rows.collect()
        })
        .await;
    assert_eq!(
        rows.last().unwrap(),
        &(
            "confirmed".to_owned(),
            Some("Принят".to_owned()),
            "manager".to_owned()
        )
    );

    // The cookbook's form alias reaches the same function.
    let form = shop
        .call(
            "POST",
            "/update_order.php",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &manager),
            ],
            "order_id=1001&status=preparing&comment=",
        )
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(data(&alice.expect_event("order:status").await)["step"], 2);
}

#[tokio::test]
async fn status_refusals() {
    let shop = Shop::start().await;
    let manager = shop.login(MANAGER).await;
    let alice = shop.login(ALICE).await;
    let mut socket = shop.customer_socket(ALICE).await;
    let path = "/api/manager/orders/1001/status";

    let bad = shop
        .json(
            "POST",
            path,
            Some(&manager),
            &json!({"status": "teleported"}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.json.clone()),
        (400, json!({"error": "Invalid status"}))
    );
    let form = shop
        .call(
            "POST",
            "/update_order.php",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &manager),
            ],
            "order_id=1001&status=nope",
        )
        .await;
    assert_eq!(
        (form.status, form.json),
        (400, json!({"error": "Invalid status"}))
    );
    let anon = shop
        .json("POST", path, None, &json!({"status": "confirmed"}))
        .await;
    assert_eq!(
        (anon.status, anon.json),
        (401, json!({"error": "Unauthorized"}))
    );
    let customer = shop
        .json("POST", path, Some(&alice), &json!({"status": "confirmed"}))
        .await;
    assert_eq!(
        (customer.status, customer.json),
        (403, json!({"error": "Forbidden"}))
    );
    let missing = shop
        .json(
            "POST",
            "/api/manager/orders/9999/status",
            Some(&manager),
            &json!({"status": "confirmed"}),
        )
        .await;
    assert_eq!(missing.status, 404);
    let no_body = shop
        .json("POST", path, Some(&manager), &json!({"comment": "x"}))
        .await;
    assert_eq!(no_body.status, 400);
    assert!(no_body.json["error"].is_string(), "{}", no_body.body);
    let long = shop
        .json(
            "POST",
            path,
            Some(&manager),
            &json!({"status": "confirmed", "comment": "x".repeat(501)}),
        )
        .await;
    assert_eq!(long.status, 400);

    let ok = shop
        .json("POST", path, Some(&manager), &json!({"status": "shipped"}))
        .await;
    assert_eq!(ok.status, 200);
    socket.expect_event("order:status").await;
    let back = shop
        .json(
            "POST",
            path,
            Some(&manager),
            &json!({"status": "confirmed"}),
        )
        .await;
    assert_eq!(back.status, 409, "{}", back.body);
    let cancel = shop
        .json(
            "POST",
            path,
            Some(&manager),
            &json!({"status": "cancelled"}),
        )
        .await;
    assert_eq!(
        cancel.status, 409,
        "no cancelling once shipped: {}",
        cancel.body
    );
    socket
        .expect_no_event("order:status", Duration::from_millis(300))
        .await;
    let status: String = shop
        .query(|c| {
            c.query_row(
                "SELECT custom_status_permalink FROM orders WHERE id = 1001",
                [],
                |r| r.get(0),
            )
        })
        .await;
    assert_eq!(status, "shipped", "refusals changed nothing");
}

#[tokio::test]
async fn courier_location_only_from_the_assigned_courier() {
    let shop = Shop::start().await;
    let courier = shop.login(COURIER).await;
    let other = shop.login(OTHER_COURIER).await;
    let manager = shop.login(MANAGER).await;
    let mut alice = shop.customer_socket(ALICE).await;
    let path = "/api/courier/orders/1001/location";

    let r = shop
        .json(
            "POST",
            path,
            Some(&courier),
            &json!({"lat": 55.75, "lng": 37.61}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ev = alice.expect_event("order:courier-location").await;
    let d = data(&ev);
    assert_eq!(
        (d["order_id"].clone(), d["lat"].clone(), d["lng"].clone()),
        (json!(1001), json!(55.75), json!(37.61))
    );
    assert!(d["updated_at"].is_string());

    let stranger = shop
        .json("POST", path, Some(&other), &json!({"lat": 1.0, "lng": 1.0}))
        .await;
    assert_eq!(
        (stranger.status, stranger.json),
        (403, json!({"error": "Forbidden"}))
    );
    let unassigned = shop
        .json(
            "POST",
            "/api/courier/orders/1003/location",
            Some(&courier),
            &json!({"lat": 1.0, "lng": 1.0}),
        )
        .await;
    assert_eq!(unassigned.status, 403, "1003 has no courier");
    let not_courier = shop
        .json(
            "POST",
            path,
            Some(&manager),
            &json!({"lat": 1.0, "lng": 1.0}),
        )
        .await;
    assert_eq!(not_courier.status, 403);
    let anon = shop
        .json("POST", path, None, &json!({"lat": 1.0, "lng": 1.0}))
        .await;
    assert_eq!(anon.status, 401);
    let bad = shop
        .json(
            "POST",
            path,
            Some(&courier),
            &json!({"lat": 91.0, "lng": 0.0}),
        )
        .await;
    assert_eq!(bad.status, 400);
    let text = shop
        .json(
            "POST",
            path,
            Some(&courier),
            &json!({"lat": "north", "lng": 0.0}),
        )
        .await;
    assert_eq!(text.status, 400);
    alice
        .expect_no_event("order:courier-location", Duration::from_millis(300))
        .await;

    // Reassigning hands the order to the other courier, whose fix now goes through.
    let assign = shop
        .json(
            "POST",
            "/api/manager/orders/1001/courier",
            Some(&manager),
            &json!({"courier_id": OTHER_COURIER}),
        )
        .await;
    assert_eq!(assign.status, 200, "{}", assign.body);
    let not_a_courier = shop
        .json(
            "POST",
            "/api/manager/orders/1001/courier",
            Some(&manager),
            &json!({"courier_id": ALICE}),
        )
        .await;
    assert_eq!(not_a_courier.status, 400);
    let form = shop
        .call(
            "POST",
            "/update_courier_location.php",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &other),
            ],
            "order_id=1001&lat=55.7&lng=37.6",
        )
        .await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert_eq!(
        data(&alice.expect_event("order:courier-location").await)["lat"],
        55.7
    );
    let old = shop
        .json(
            "POST",
            path,
            Some(&courier),
            &json!({"lat": 1.0, "lng": 1.0}),
        )
        .await;
    assert_eq!(old.status, 403);
}

#[tokio::test]
async fn channel_and_user_auth() {
    let shop = Shop::start().await;
    let alice = shop.login(ALICE).await;
    let anon = shop
        .form(
            "/pusher/auth",
            None,
            "socket_id=1.2&channel_name=private-user-1",
        )
        .await;
    assert_eq!(
        (anon.status, anon.json),
        (401, json!({"error": "Unauthorized"}))
    );
    let foreign = shop
        .form(
            "/pusher/auth",
            Some(&alice),
            "socket_id=1.2&channel_name=private-user-2",
        )
        .await;
    assert_eq!(
        (foreign.status, foreign.json),
        (403, json!({"error": "Forbidden"}))
    );
    let other_kind = shop
        .form(
            "/pusher/auth",
            Some(&alice),
            "socket_id=1.2&channel_name=presence-user-1",
        )
        .await;
    assert_eq!(other_kind.status, 403);
    let bad_socket = shop
        .form(
            "/pusher/auth",
            Some(&alice),
            "socket_id=nope&channel_name=private-user-1",
        )
        .await;
    assert_eq!(bad_socket.status, 400);
    let stale = shop
        .call(
            "POST",
            "/pusher/auth",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", "shop_session=forged"),
            ],
            "socket_id=1.2&channel_name=private-user-1",
        )
        .await;
    assert_eq!(stale.status, 401);
    // The session is checked before the form: no session is 401 even with a broken form, and a
    // signed-in caller with a broken form gets the 400.
    for (path, body) in [
        ("/pusher/auth", "channel_name=private-user-1"),
        ("/pusher/auth", ""),
        ("/pusher/user-auth", ""),
    ] {
        let r = shop.form(path, None, body).await;
        assert_eq!(
            (r.status, &r.json),
            (401, &json!({"error": "Unauthorized"})),
            "{path} {body:?}"
        );
        let r = shop.form(path, Some(&alice), body).await;
        assert_eq!(r.status, 400, "{path} {body:?}: {}", r.body);
        assert!(r.json["error"].is_string());
    }

    // The user sign-in signature is accepted by the broker.
    let mut ws = WsClient::connect(&shop.broker.ws_url("shop-key")).await;
    let body = format!("socket_id={}", ws.socket_id);
    let signed = shop.form("/pusher/user-auth", Some(&alice), &body).await;
    assert_eq!(signed.status, 200, "{}", signed.body);
    let user_data: Value =
        serde_json::from_str(signed.json["user_data"].as_str().unwrap()).unwrap();
    assert_eq!(user_data["id"], "1");
    ws.send(&json!({"event": "pusher:signin", "data": {"auth": signed.json["auth"], "user_data": signed.json["user_data"]}}))
        .await;
    ws.expect_event("pusher:signin_success").await;
    let anon_user = shop.form("/pusher/user-auth", None, &body).await;
    assert_eq!(anon_user.status, 401);
}

#[tokio::test]
async fn the_order_state_is_the_owners_only() {
    let shop = Shop::start().await;
    let alice = shop.login(ALICE).await;
    let bob = shop.login(BOB).await;
    let own = shop
        .json("GET", "/api/orders/1001", Some(&alice), &Value::Null)
        .await;
    assert_eq!(own.status, 200);
    assert_eq!(own.json["status"]["status"], "pending");
    assert_eq!(own.json["timeline"].as_array().unwrap().len(), 6);
    assert_eq!(own.json["lines"].as_array().unwrap().len(), 2);
    let other = shop
        .json("GET", "/api/orders/1001", Some(&bob), &Value::Null)
        .await;
    assert_eq!(other.status, 404);
    let anon = shop
        .json("GET", "/api/orders/1001", None, &Value::Null)
        .await;
    assert_eq!(anon.status, 401);
    let page = shop
        .call("GET", "/orders/1001", &[("Cookie", &bob)], "")
        .await;
    assert_eq!(page.status, 404);
    let js = shop.call("GET", "/static/pusher.min.js", &[], "").await;
    assert!(js.body.contains("Pusher JavaScript Library v8.6.0") || js.body.len() > 50_000);
    // The helpers every page shares are served, and every page loads them before its own script.
    let shared = shop.call("GET", "/static/shop.js", &[], "").await;
    assert_eq!(shared.status, 200);
    assert!(shared.body.contains("window.Shop"), "{}", shared.body);
}

#[tokio::test]
async fn malformed_requests_get_json_errors() {
    let shop = Shop::start().await;
    let manager = shop.login(MANAGER).await;
    let cases = [
        shop.json("GET", "/api/orders/abc", Some(&manager), &Value::Null)
            .await,
        shop.json("GET", "/no/such/route", None, &Value::Null).await,
        shop.json(
            "GET",
            "/api/manager/orders/1001/status",
            Some(&manager),
            &Value::Null,
        )
        .await,
        shop.call(
            "POST",
            "/api/manager/orders/1001/status",
            &[("Content-Type", "application/json"), ("Cookie", &manager)],
            "{not json",
        )
        .await,
        shop.call(
            "POST",
            "/api/manager/orders/1001/status",
            &[("Content-Type", "application/json"), ("Cookie", &manager)],
            &format!(
                r#"{{"status":"confirmed","comment":"{}"}}"#,
                "x".repeat(70_000)
            ),
        )
        .await,
    ];
    let statuses: Vec<u16> = cases.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [400, 404, 405, 400, 413]);
    for r in &cases {
        assert!(r.json["error"].is_string(), "{} {}", r.status, r.body);
    }
}

#[tokio::test]
async fn broker_webhooks_mark_customers_online_for_the_manager() {
    let shop = Shop::start_with_broker_webhooks().await;
    let manager = shop.login(MANAGER).await;
    let online = |body: &Value| -> Vec<i64> {
        let mut ids: Vec<i64> = body["orders"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["online"] == true)
            .map(|o| o["id"].as_i64().unwrap())
            .collect();
        ids.sort();
        ids
    };
    let list = || shop.json("GET", "/api/manager/orders", Some(&manager), &Value::Null);
    assert_eq!(online(&list().await.json), Vec::<i64>::new());

    let alice = shop.customer_socket(ALICE).await;
    eventually(
        "Alice online after channel_occupied",
        Duration::from_secs(10),
        || async { (online(&list().await.json) == [1001, 1003]).then_some(()) },
    )
    .await;
    drop(alice);
    eventually(
        "Alice offline after channel_vacated",
        Duration::from_secs(10),
        || async { online(&list().await.json).is_empty().then_some(()) },
    )
    .await;

    let body = r#"{"time_ms":1,"events":[{"name":"channel_occupied","channel":"private-user-2"}]}"#;
    let forged = shop
        .call(
            "POST",
            "/pusher/webhooks",
            &[
                ("Content-Type", "application/json"),
                ("X-Pusher-Key", "shop-key"),
                ("X-Pusher-Signature", &"0".repeat(64)),
            ],
            body,
        )
        .await;
    assert_eq!(forged.status, 401);
    assert!(forged.json["error"].is_string());
    let sig = vestnik_protocol::webhook::sign_webhook("shop-secret", b"[]");
    let bad_body = shop
        .call(
            "POST",
            "/pusher/webhooks",
            &[
                ("Content-Type", "application/json"),
                ("X-Pusher-Key", "shop-key"),
                ("X-Pusher-Signature", &sig),
            ],
            "[]",
        )
        .await;
    assert_eq!(bad_body.status, 400);
    assert!(
        online(&list().await.json).is_empty(),
        "refused webhooks change nothing"
    );
}

/// The map config in an order page: `{"lat":…,"lng":…}` or null.
fn map_center(html: &str) -> Value {
    let start = html
        .find(r#"<script id="config" type="application/json">"#)
        .unwrap();
    let rest = &html[start..];
    let json = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str::<Value>(json).unwrap()["mapCenter"].clone()
}

#[tokio::test]
async fn the_order_page_map_is_centred_on_the_destination() {
    let shop = Shop::start().await;
    for (user, order, lat, lng) in [
        (ALICE, 1001, 55.7596, 37.61),
        (BOB, 1002, 59.9357, 30.328),
        (VERA, 1004, 55.7963, 49.1088),
    ] {
        let cookie = shop.login(user).await;
        let page = shop
            .call(
                "GET",
                &format!("/orders/{order}"),
                &[("Cookie", &cookie)],
                "",
            )
            .await;
        assert_eq!(page.status, 200);
        assert_eq!(
            map_center(&page.body),
            json!({"lat": lat, "lng": lng}),
            "order {order}"
        );
    }
    // A new order goes to the customer's last address, and its point comes along.
    let created = shop
        .admin(
            "POST",
            "/admin/orders.json",
            &json!({"order": {"client_id": BOB, "order_lines_attributes": [{"product_id": 2, "quantity": 1}]}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json["id"].as_i64().unwrap();
    let bob = shop.login(BOB).await;
    let page = shop
        .call("GET", &format!("/orders/{id}"), &[("Cookie", &bob)], "")
        .await;
    assert_eq!(
        map_center(&page.body),
        json!({"lat": 59.9357, "lng": 30.328})
    );
}

/// A socket subscribed to `private-managers` through the shop's auth endpoint as `cookie`.
async fn managers_socket(shop: &Shop, cookie: &str) -> WsClient {
    let mut ws = WsClient::connect(&shop.broker.ws_url("shop-key")).await;
    let r = shop
        .form(
            "/pusher/auth",
            Some(cookie),
            &format!("socket_id={}&channel_name=private-managers", ws.socket_id),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let ok = ws
        .subscribe(json!({"channel": "private-managers", "auth": r.json["auth"]}))
        .await;
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    ws
}

#[tokio::test]
async fn the_managers_channel_is_live_and_for_managers_only() {
    let shop = Shop::start().await;
    // Customers and couriers are refused the managers' channel.
    for user in [ALICE, BOB, COURIER] {
        let cookie = shop.login(user).await;
        let r = shop
            .form(
                "/pusher/auth",
                Some(&cookie),
                "socket_id=1.2&channel_name=private-managers",
            )
            .await;
        assert_eq!(
            (r.status, r.json),
            (403, json!({"error": "Forbidden"})),
            "user {user}"
        );
    }
    let anon = shop
        .form(
            "/pusher/auth",
            None,
            "socket_id=1.2&channel_name=private-managers",
        )
        .await;
    assert_eq!(anon.status, 401);

    let manager = shop.login(MANAGER).await;
    let mut managers = managers_socket(&shop, &manager).await;
    // Every kind of change reaches the managers: a status change by a manager, a courier
    // assignment, a change through the admin API, a line edit and a new order.
    let r = shop
        .json(
            "POST",
            "/api/manager/orders/1002/status",
            Some(&manager),
            &json!({"status": "confirmed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = data(&managers.expect_event("order:updated").await);
    assert_eq!(
        (d["order_id"].clone(), d["status"].clone()),
        (json!(1002), json!("confirmed"))
    );
    let r = shop
        .json(
            "POST",
            "/api/manager/orders/1003/courier",
            Some(&manager),
            &json!({"courier_id": OTHER_COURIER}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = data(&managers.expect_event("order:updated").await);
    assert_eq!(
        (d["order_id"].clone(), d["courier_id"].clone()),
        (json!(1003), json!(OTHER_COURIER))
    );
    let r = shop
        .admin(
            "PUT",
            "/admin/orders/1004.json",
            &json!({"order": {"custom_status_permalink": "preparing"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        data(&managers.expect_event("order:updated").await)["order_id"],
        1004
    );
    let line: i64 = shop
        .query(|c| {
            c.query_row(
                "SELECT min(id) FROM order_lines WHERE order_id = 1002",
                [],
                |r| r.get(0),
            )
        })
        .await;
    let r = shop
        .json(
            "POST",
            &format!("/api/manager/orders/1002/lines/{line}"),
            Some(&manager),
            &json!({"quantity": 0}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        data(&managers.expect_event("order:updated").await)["order_id"],
        1002
    );
    let created = shop
        .admin(
            "POST",
            "/admin/orders.json",
            &json!({"order": {"client_id": BOB, "order_lines_attributes": [{"product_id": 3, "quantity": 1}]}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        data(&managers.expect_event("order:updated").await)["order_id"],
        1005
    );

    // The manager's list carries prices and dates.
    let list = shop
        .json("GET", "/api/manager/orders", Some(&manager), &Value::Null)
        .await;
    let row = list.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["id"] == 1001)
        .unwrap()
        .clone();
    assert_eq!(row["total_minor"], 157_000, "1 480 − 100 + 190 roubles");
    assert_eq!(row["created_at"], "2026-01-01T01:00:00Z");
    assert!(row["updated_at"].is_string());
}

#[tokio::test]
async fn my_orders_and_the_total_broken_down() {
    let shop = Shop::start().await;
    let alice = shop.login(ALICE).await;
    let bob = shop.login(BOB).await;
    let mine = shop
        .json("GET", "/api/orders", Some(&alice), &Value::Null)
        .await;
    assert_eq!(mine.status, 200, "{}", mine.body);
    let ids: Vec<i64> = mine.json["orders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1003, 1001], "Alice's orders, newest first");
    let first = &mine.json["orders"][1];
    assert_eq!(first["public_id"], "M-1001");
    assert_eq!(first["status_text"], "Ожидает подтверждения");
    assert_eq!(first["title"], "Ожидает подтверждения");
    assert_eq!(first["total_minor"], 157_000);
    assert_eq!(
        first["items"][0],
        json!({"title": "Пицца Маргарита", "quantity": 2})
    );
    let bobs = shop
        .json("GET", "/api/orders", Some(&bob), &Value::Null)
        .await;
    assert_eq!(bobs.json["orders"].as_array().unwrap().len(), 1);
    assert_eq!(bobs.json["orders"][0]["id"], 1002);
    let anon = shop.json("GET", "/api/orders", None, &Value::Null).await;
    assert_eq!(anon.status, 401);

    // `/` is the list for a customer (the page's shell; its script loads the list), not a jump to
    // the latest order.
    let home = shop.call("GET", "/", &[("Cookie", &alice)], "").await;
    assert_eq!(home.status, 200);
    assert!(home.body.contains("Мои заказы"), "{}", home.body);
    assert!(home.body.contains("/static/orders.js"));

    // The order page's state breaks the total down: lines − discounts − bonuses + delivery.
    let state = shop
        .json("GET", "/api/orders/1001", Some(&alice), &Value::Null)
        .await;
    assert_eq!(
        state.json["breakdown"],
        json!({"items_minor": 148_000, "discount_minor": 10_000, "used_bonuses_minor": 0,
               "delivery_price_minor": 19_000, "total_minor": 157_000})
    );
    let b = shop
        .json("GET", "/api/orders/1003", Some(&alice), &Value::Null)
        .await
        .json["breakdown"]
        .clone();
    assert_eq!(b["used_bonuses_minor"], 3000);
    assert_eq!(
        b["items_minor"].as_i64().unwrap()
            - b["discount_minor"].as_i64().unwrap()
            - b["used_bonuses_minor"].as_i64().unwrap()
            + b["delivery_price_minor"].as_i64().unwrap(),
        b["total_minor"].as_i64().unwrap()
    );
}
