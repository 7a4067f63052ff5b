//! Part 3: partner webhooks through the outbox. The full order goes to the demo receiver on
//! creation and every change, in order; a failing partner is retried until it accepts; a partner
//! that refuses the key is parked; an unreachable one keeps being retried; the receiver checks
//! keys, fields, duplicates and staleness.

mod common;

use std::time::Duration;

use common::*;
use rusqlite::OptionalExtension;
use serde_json::{json, Value};

const WAIT_DELIVERY: Duration = Duration::from_secs(20);

async fn received(shop: &Shop, partner: &str, order: i64) -> Option<Value> {
    let r = shop
        .json(
            "GET",
            &format!("/partner/{partner}/orders/{order}?key={PARTNER_KEY}"),
            None,
            &Value::Null,
        )
        .await;
    (r.status == 200).then_some(r.json)
}

async fn received_count(shop: &Shop, partner: &str, order: i64, n: usize) -> Value {
    eventually(
        &format!("{n} webhooks for order {order} at {partner}"),
        WAIT_DELIVERY,
        || async {
            received(shop, partner, order)
                .await
                .filter(|v| v["count"] == n)
        },
    )
    .await
}

#[tokio::test]
async fn creation_and_changes_send_the_full_order_in_order() {
    let shop = Shop::start().await;
    let created = shop
        .admin("POST", "/admin/orders.json", &json!({"order": {"client_id": ALICE, "order_lines_attributes": [{"product_id": 1, "quantity": 2}, {"product_id": 3, "quantity": 1}], "delivery_price": 190}}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json["id"].as_i64().unwrap();
    let got = received_count(&shop, "demo-partner", id, 1).await;
    let o = &got["last"];
    assert_eq!(got["webhook_ids"], json!([format!("order_{id}")]));
    assert_eq!(o["id"], format!("order_{id}"));
    assert_eq!(o["checkout_id"], format!("checkout_{id}"));
    assert_eq!(
        o["permalink_url"],
        format!("{}/orders/{id}", shop.running.public_url)
    );
    assert_eq!(o["event_id"], format!("order_{id}"));
    assert!(o["created_time"].as_str().unwrap().ends_with('Z'));
    assert_eq!(o["currency"], "RUB");
    assert_eq!(
        o["ucp"]["capabilities"]["dev.ucp.shopping.order"][0]["version"],
        "2026-01-23"
    );
    let lines = o["line_items"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["status"], "processing");
    assert_eq!(
        lines[0]["quantity"],
        json!({"total": 2, "fulfilled": 0, "original": 2})
    );
    assert_eq!(lines[0]["item"]["price"], 59000);
    let exp = &o["fulfillment"]["expectations"][0];
    assert_eq!(exp["method_type"], "shipping");
    assert_eq!(exp["destination"]["address_locality"], "Москва");
    assert_eq!(exp["line_items"].as_array().unwrap().len(), 2);
    assert_eq!(o["fulfillment"]["events"], json!([]));
    let total = |t: &str| {
        o["totals"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["type"] == t)
            .unwrap()["amount"]
            .clone()
    };
    assert_eq!(total("subtotal"), 59000 * 2 + 15000);
    assert_eq!(total("fulfillment"), 19000);
    assert_eq!(total("total"), 59000 * 2 + 15000 + 19000);

    let manager = shop.login(MANAGER).await;
    for status in ["confirmed", "preparing", "ready", "shipped", "delivered"] {
        let r = shop
            .json(
                "POST",
                &format!("/api/manager/orders/{id}/status"),
                Some(&manager),
                &json!({"status": status}),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let got = received_count(&shop, "demo-partner", id, 6).await;
    let ids: Vec<String> = got["webhook_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids[0], format!("order_{id}"));
    assert!(
        ids[1].starts_with("upd_"),
        "confirmed appends nothing: {ids:?}"
    );
    assert_eq!(
        &ids[2..],
        &[
            format!("evt_{id}_1"),
            format!("evt_{id}_2"),
            format!("evt_{id}_3"),
            format!("evt_{id}_4")
        ]
    );
    let o = &got["last"];
    let events = o["fulfillment"]["events"].as_array().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["processing", "processing", "shipped", "delivered"]);
    let shipped = &events[2];
    let number = shipped["tracking_number"].as_str().unwrap();
    assert_eq!(
        shipped["tracking_url"],
        format!("{}/track/{number}", shop.running.public_url)
    );
    assert_eq!(shipped["carrier"], "Vestnik Courier");
    assert_eq!(o["line_items"][0]["status"], "fulfilled");
    assert_eq!(o["line_items"][0]["quantity"]["fulfilled"], 2);
    let track = shop.call("GET", &format!("/track/{number}"), &[], "").await;
    assert_eq!(track.status, 200);
    assert!(track.body.contains("Доставлен"));
}

#[tokio::test]
async fn the_outbox_survives_a_failing_partner_and_keeps_order() {
    let shop = Shop::start().await;
    let mode = shop
        .call(
            "POST",
            &format!("/partner/demo-partner/mode?key={PARTNER_KEY}"),
            &[("Content-Type", "application/json")],
            r#"{"fail_next": 2}"#,
        )
        .await;
    assert_eq!(mode.status, 200, "{}", mode.body);
    let manager = shop.login(MANAGER).await;
    for status in ["confirmed", "preparing"] {
        let r = shop
            .json(
                "POST",
                "/api/manager/orders/1001/status",
                Some(&manager),
                &json!({"status": status}),
            )
            .await;
        assert_eq!(r.status, 200);
    }
    let got = received_count(&shop, "demo-partner", 1001, 2).await;
    let ids = got["webhook_ids"].as_array().unwrap();
    assert!(
        ids[0].as_str().unwrap().starts_with("upd_") && ids[1] == "evt_1001_1",
        "sent in commit order: {ids:?}"
    );
    // The receiver stores before it answers, so the worker records the delivery just after.
    let rows: Vec<(i64, Option<i64>, bool)> = eventually("both rows recorded as delivered", WAIT_DELIVERY, || async {
        let rows: Vec<(i64, Option<i64>, bool)> = shop
            .query(|c| {
                let mut st = c.prepare("SELECT attempts, last_status, delivered_at IS NOT NULL FROM outbox WHERE order_id = 1001 ORDER BY id")?;
                let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
                rows.collect()
            })
            .await;
        rows.iter().all(|r| r.2).then_some(rows)
    })
    .await;
    assert_eq!(
        rows,
        vec![(3, Some(200), true), (1, Some(200), true)],
        "two 503s, then delivered; the later row waited"
    );
}

#[tokio::test]
async fn refused_partners_are_parked_and_unreachable_ones_retried() {
    let shop = Shop::start_with(&[
        "--partners",
        "demo-partner|self|demo-partner-key,bad-key|self|wrong-key,gone|http://127.0.0.1:9|k,v2|self|demo-partner-key|2026-04-08",
        "--partner-receiver-keys",
        "demo-partner|demo-partner-key,bad-key|demo-partner-key,v2|demo-partner-key",
    ])
    .await;
    let manager = shop.login(MANAGER).await;
    let r = shop
        .json(
            "POST",
            "/api/manager/orders/1003/status",
            Some(&manager),
            &json!({"status": "cancelled", "comment": "Нет в наличии"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    received_count(&shop, "demo-partner", 1003, 1).await;
    let v2 = received_count(&shop, "v2", 1003, 1).await;
    let state = |partner: &'static str| {
        let shop = &shop;
        async move {
            shop.query(move |c| {
                c.query_row(
                    "SELECT attempts, last_status, parked, delivered_at IS NOT NULL FROM outbox WHERE partner_id = ?1",
                    [partner],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, bool>(2)?, r.get::<_, bool>(3)?)),
                )
            })
            .await
        }
    };
    let parked = eventually("the bad-key row parked", WAIT_DELIVERY, || async {
        Some(state("bad-key").await).filter(|s| s.2)
    })
    .await;
    assert_eq!(parked, (1, Some(401), true, false), "a 401 is not retried");
    let gone = eventually("the unreachable partner retried", WAIT_DELIVERY, || async {
        Some(state("gone").await).filter(|s| s.0 >= 2)
    })
    .await;
    assert_eq!(
        (gone.1, gone.2, gone.3),
        (None, false, false),
        "transport errors retry, never park"
    );

    // The cancellation in both UCP versions.
    let v1 = received(&shop, "demo-partner", 1003).await.unwrap();
    let kinds = |o: &Value| {
        o["adjustments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(v1["last"]["fulfillment"]["events"][0]["type"], "canceled");
    assert_eq!(
        kinds(&v1["last"]),
        ["cancellation"],
        "order 1003 was not paid: no refund"
    );
    assert_eq!(
        v1["last"]["adjustments"][0]["amount"],
        29000 * 3 - 3000,
        "the total: 3 × 290 less 30 bonuses"
    );
    let o2 = &v2["last"];
    assert!(
        o2.get("event_id").is_none(),
        "2026-04-08 carries ids in headers"
    );
    assert_eq!(
        o2["adjustments"][0]["totals"][0]["amount"],
        -(29000 * 3 - 3000)
    );
    assert_eq!(o2["ucp"]["version"], "2026-04-08");
    assert_eq!(o2["line_items"][0]["status"], "removed");
    assert_eq!(
        o2["line_items"][0]["quantity"],
        json!({"total": 0, "fulfilled": 0, "original": 3})
    );
    assert_eq!(
        v1["last"]["line_items"][0]["status"], "processing",
        "2026-01-23 has no removed status"
    );
}

#[tokio::test]
async fn the_receiver_checks_key_fields_duplicates_and_staleness() {
    let shop = Shop::start_with(&[
        "--partners",
        "",
        "--partner-receiver-keys",
        "p1|demo-partner-key,p2|p2-key",
    ])
    .await;
    let path = "/webhooks/partners/p1/events/order";
    let body = json!({"id": "order_1", "checkout_id": "c", "line_items": [], "fulfillment": {}, "totals": [], "permalink_url": "u"}).to_string();
    let send = |headers: Vec<(&'static str, String)>, body: String, query: &'static str| {
        let shop = &shop;
        async move {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            shop.call("POST", &format!("{path}{query}"), &h, &body)
                .await
        }
    };
    let hdr = |key: &str, id: &str, ts: i64| {
        vec![
            ("Content-Type", "application/json".to_owned()),
            ("X-Goog-Api-Key", key.to_owned()),
            ("Webhook-Id", id.to_owned()),
            ("Webhook-Timestamp", ts.to_string()),
        ]
    };
    let no_key = send(
        vec![("Content-Type", "application/json".into())],
        body.clone(),
        "",
    )
    .await;
    assert_eq!(no_key.status, 401);
    assert!(no_key.json["error"].is_string());
    let wrong = send(hdr("nope", "a", 100), body.clone(), "").await;
    assert_eq!(wrong.status, 401);
    let ok = send(hdr(PARTNER_KEY, "a", 100), body.clone(), "").await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.json["ucp"]["capabilities"]["dev.ucp.shopping.order"].is_array());
    let dup = send(hdr(PARTNER_KEY, "a", 100), body.clone(), "").await;
    assert_eq!(dup.status, 200, "a duplicate is acknowledged");
    let stale = send(hdr(PARTNER_KEY, "b", 99), body.clone(), "").await;
    assert_eq!(stale.status, 409);
    let query_key = send(
        vec![
            ("Content-Type", "application/json".into()),
            ("Webhook-Id", "c".into()),
            ("Webhook-Timestamp", "101".into()),
        ],
        body.clone(),
        "?key=demo-partner-key",
    )
    .await;
    assert_eq!(query_key.status, 200, "the key may come in the query");
    let incomplete = send(
        hdr(PARTNER_KEY, "d", 102),
        json!({"id": "order_1"}).to_string(),
        "",
    )
    .await;
    assert_eq!(incomplete.status, 400);
    assert!(incomplete.json["error"]
        .as_str()
        .unwrap()
        .contains("checkout_id"));
    let garbage = send(hdr(PARTNER_KEY, "e", 103), "{".into(), "").await;
    assert_eq!(garbage.status, 400);
    let got = shop
        .json(
            "GET",
            &format!("/partner/p1/orders/order_1?key={PARTNER_KEY}"),
            None,
            &Value::Null,
        )
        .await;
    assert_eq!(got.json["count"], 2);
    assert_eq!(got.json["webhook_ids"], json!(["a", "c"]));
    let anon = shop
        .json("GET", "/partner/p1/orders/order_1", None, &Value::Null)
        .await;
    assert_eq!(anon.status, 401);

    // Each key opens only its own partner id; an id the receiver does not know is 404.
    let other_partners_key = send(hdr("p2-key", "f", 104), body.clone(), "").await;
    assert_eq!(other_partners_key.status, 401, "p2's key does not open p1");
    let h: Vec<(&str, String)> = hdr("p2-key", "f", 104);
    let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let own = shop
        .call("POST", "/webhooks/partners/p2/events/order", &h, &body)
        .await;
    assert_eq!(own.status, 200, "{}", own.body);
    for key in [PARTNER_KEY, "p2-key"] {
        let h = hdr(key, "g", 105);
        let h: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let unknown = shop
            .call("POST", "/webhooks/partners/p3/events/order", &h, &body)
            .await;
        assert_eq!(
            (unknown.status, &unknown.json),
            (404, &json!({"error": "partner not found"})),
            "an unknown partner id, key {key}"
        );
    }
    let unknown_read = shop
        .json(
            "GET",
            &format!("/partner/p3/orders/order_1?key={PARTNER_KEY}"),
            None,
            &Value::Null,
        )
        .await;
    assert_eq!(unknown_read.status, 404);
    let foreign_mode = shop
        .json(
            "POST",
            "/partner/p1/mode?key=p2-key",
            None,
            &json!({"fail_next": 1}),
        )
        .await;
    assert_eq!(foreign_mode.status, 401);
}

#[tokio::test]
async fn retries_stop_after_the_give_up_window() {
    // An unreachable partner and a one-second window: the row is retried, then parked as failed
    // with its last error, and the order's next row is sent after it.
    let down = free_port();
    let shop = Shop::start_with(&[
        "--partners",
        &format!("gone|http://127.0.0.1:{down}|k"),
        "--outbox-give-up-secs",
        "1",
    ])
    .await;
    let manager = shop.login(MANAGER).await;
    for status in ["confirmed", "preparing"] {
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
    let rows = eventually("both rows given up", WAIT_DELIVERY, || async {
        let rows = shop
            .query(|c| {
                c.prepare("SELECT attempts, parked, delivered_at IS NULL, last_status, last_error FROM outbox WHERE partner_id = 'gone' ORDER BY id")?
                    .query_map([], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, bool>(1)?,
                            r.get::<_, bool>(2)?,
                            r.get::<_, Option<i64>>(3)?,
                            r.get::<_, Option<String>>(4)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .await;
        (rows.len() == 2 && rows.iter().all(|r| r.1)).then_some(rows)
    })
    .await;
    for (attempts, _, undelivered, status, error) in rows {
        assert!(undelivered);
        assert!(attempts >= 1);
        assert_eq!(status, None, "a transport error has no status");
        let error = error.expect("the last error is kept");
        assert!(
            error.starts_with("gave up after 1 s of retries: "),
            "{error}"
        );
        assert!(
            error.len() > "gave up after 1 s of retries: ".len(),
            "{error}"
        );
    }
}

#[tokio::test]
async fn https_partners_get_their_webhooks() {
    let port = free_port();
    // The shop's own receiver behind TLS with the test certificate: what an `https://` partner
    // looks like; the outbox is told to trust the test CA.
    let front = vestnik_testkit::tls::front(port).await;
    let tls = vestnik_testkit::tls::client_config();
    let partners =
        format!("secure|https://localhost:{front}|demo-partner-key,plain|self|demo-partner-key");
    let shop = Shop::start_custom(
        &format!("127.0.0.1:{port}"),
        &[
            "--partners",
            &partners,
            "--partner-receiver-keys",
            "secure|demo-partner-key,plain|demo-partner-key",
        ],
        |s| s.partner_tls = Some(tls),
    )
    .await;
    let manager = shop.login(MANAGER).await;
    let r = shop
        .json(
            "POST",
            "/api/manager/orders/1002/status",
            Some(&manager),
            &json!({"status": "confirmed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let secure = received_count(&shop, "secure", 1002, 1).await;
    let plain = received_count(&shop, "plain", 1002, 1).await;
    assert_eq!(secure["webhook_ids"], plain["webhook_ids"]);
    assert_eq!(secure["last"]["id"], "order_1002");
    let row = shop
        .query(|c| {
            c.query_row(
                "SELECT attempts, last_status FROM outbox WHERE partner_id = 'secure'",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
        })
        .await;
    assert_eq!(
        row,
        (1, Some(200)),
        "delivered over TLS at the first attempt"
    );
}

#[tokio::test]
async fn https_partners_are_checked_against_the_trusted_roots() {
    // The production default trusts only the public roots: the test CA's partner is refused at
    // the handshake, retried (a transport error), never delivered.
    let port = free_port();
    let front = vestnik_testkit::tls::front(port).await;
    let partners = format!("secure|https://localhost:{front}|demo-partner-key");
    let shop = Shop::start_custom(
        &format!("127.0.0.1:{port}"),
        &[
            "--partners",
            &partners,
            "--partner-receiver-keys",
            "secure|demo-partner-key",
        ],
        |_| {},
    )
    .await;
    let manager = shop.login(MANAGER).await;
    let r = shop
        .json(
            "POST",
            "/api/manager/orders/1002/status",
            Some(&manager),
            &json!({"status": "confirmed"}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let error = eventually("a refused handshake", WAIT_DELIVERY, || async {
        shop.query(|c| {
            c.query_row(
                "SELECT last_error FROM outbox WHERE partner_id = 'secure' AND delivered_at IS NULL AND attempts >= 1",
                [],
                |r| r.get::<_, Option<String>>(0),
            )
            .optional()
        })
        .await
        .flatten()
    })
    .await;
    assert!(error.to_lowercase().contains("certificate"), "{error}");
}

#[tokio::test]
async fn pending_rows_survive_a_crash_and_are_sent_after_restart() {
    // A partner that is down: nothing listens on its port.
    let down = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "late|http://127.0.0.1:{}|{PARTNER_KEY}",
        down.local_addr().unwrap().port()
    );
    drop(down);
    let shop = Shop::start_with(&["--partners", &dead]).await;
    let manager = shop.login(MANAGER).await;
    let r = shop
        .json(
            "POST",
            "/api/manager/orders/1001/status",
            Some(&manager),
            &json!({"status": "confirmed"}),
        )
        .await;
    assert_eq!(r.status, 200);
    let webhook_id: String = eventually("a failed attempt", WAIT_DELIVERY, || async {
        let row = shop.query(|c| {
            c.query_row(
                "SELECT webhook_id, attempts, delivered_at IS NULL FROM outbox WHERE partner_id = 'late'",
                [],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, bool>(2)?)),
            )
        })
        .await;
        // Pending after at least one failed attempt.
        (row.1 >= 1 && row.2).then_some(row.0)
    })
    .await;

    // The shop dies; the partner comes back (as this shop's own receiver); the row is sent.
    let shop = shop
        .restart(&[
            "--partners",
            "late|self|demo-partner-key",
            "--partner-receiver-keys",
            "late|demo-partner-key",
        ])
        .await;
    let got = received_count(&shop, "late", 1001, 1).await;
    assert_eq!(got["webhook_ids"], json!([webhook_id]));
    assert_eq!(got["last"]["line_items"].as_array().unwrap().len(), 2);
}
