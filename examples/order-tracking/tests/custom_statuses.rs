//! Part 2, the inSales-shaped admin API: custom statuses (GET creates the missing defaults, POST
//! makes a unique permalink from the title, colours from the palette, one default per system
//! status, PUT with `_` or `-`), the order status rules (mismatch 422 and nothing changes, one
//! field fills the other), the `custom_status[]` filter, live events carrying the title and
//! colour, Russian titles for the seeded statuses, and every custom-status route in XML.

mod common;

use common::*;
use serde_json::{json, Value};

fn permalinks(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s["permalink"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn custom_statuses_api() {
    let shop = Shop::start().await;
    let anon = shop
        .json("GET", "/admin/custom_statuses.json", None, &Value::Null)
        .await;
    assert_eq!(
        (anon.status, anon.json),
        (401, json!({"error": "Unauthorized"}))
    );

    let list = shop
        .admin("GET", "/admin/custom_statuses.json", &Value::Null)
        .await;
    assert_eq!(list.status, 200);
    let all = list.json.as_array().unwrap();
    assert_eq!(
        all.len(),
        8,
        "the seven cookbook statuses and the created `returned` default"
    );
    let returned = all
        .iter()
        .find(|s| s["system_status"] == "returned")
        .unwrap();
    assert_eq!(returned["permalink"], "returned");
    assert_eq!(returned["is_default"], true);
    for system in [
        "new",
        "accepted",
        "approved",
        "dispatched",
        "delivered",
        "returned",
        "declined",
    ] {
        let defaults = all
            .iter()
            .filter(|s| s["system_status"] == system && s["is_default"] == true)
            .count();
        assert_eq!(defaults, 1, "one default for {system}");
    }
    assert_eq!(
        shop.admin("GET", "/admin/custom_statuses.json", &Value::Null)
            .await
            .json
            .as_array()
            .unwrap()
            .len(),
        8,
        "a second GET creates nothing"
    );

    let created = shop
        .admin(
            "POST",
            "/admin/custom_statuses.json",
            &json!({"custom_status": {"system_status": "new", "title": "New (ordered by phone)"}}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.json["permalink"], "new-ordered-by-phone");
    assert_eq!(created.json["system_status"], "new");
    assert_eq!(created.json["is_default"], false);
    assert_eq!(
        created.json["position"], 2,
        "second status of `new`, as in the document's example"
    );
    assert!(created.json["color"].as_str().unwrap().starts_with('#'));
    assert!(created.json["created_at"].is_string() && created.json["id"].is_number());

    let again = shop
        .admin(
            "POST",
            "/admin/custom_statuses.json",
            &json!({"custom_status": {"system_status": "new", "title": "New (ordered by phone)"}}),
        )
        .await;
    assert_eq!(
        again.json["permalink"], "new-ordered-by-phone-2",
        "permalinks stay unique"
    );

    for (body, what) in [
        (
            json!({"custom_status": {"system_status": "new", "title": "x", "color": "#123456"}}),
            "off-palette colour",
        ),
        (
            json!({"custom_status": {"system_status": "lost", "title": "x"}}),
            "unknown system status",
        ),
        (
            json!({"custom_status": {"system_status": "new"}}),
            "no title",
        ),
        (
            json!({"custom_status": {"system_status": "new", "title": "  "}}),
            "blank title",
        ),
        (json!({"status": {}}), "wrong envelope"),
    ] {
        let r = shop
            .admin("POST", "/admin/custom_statuses.json", &body)
            .await;
        assert_eq!(r.status, 400, "{what}: {}", r.body);
        assert!(r.json["error"].is_string(), "{what}: {}", r.body);
    }
    let broken = shop
        .call(
            "POST",
            "/admin/custom_statuses.json",
            &[
                ("Content-Type", "application/json"),
                ("Authorization", ADMIN_AUTH),
            ],
            r##"{"custom_status": {"color": "#929594",}}"##,
        )
        .await;
    assert_eq!(
        broken.status, 400,
        "the document's trailing comma is invalid JSON"
    );

    // PUT with the document's underscores; making it the default unsets the old one.
    let put = shop
        .admin(
            "PUT",
            "/admin/custom_statuses/new_ordered_by_phone.json",
            &json!({"custom_status": {"color": "#929594", "is_default": true}}),
        )
        .await;
    assert_eq!((put.status, put.json), (200, json!({"status": "ok"})));
    let list = shop
        .admin("GET", "/admin/custom_statuses.json", &Value::Null)
        .await
        .json;
    let by = |p: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["permalink"] == p)
            .unwrap()
            .clone()
    };
    assert_eq!(by("new-ordered-by-phone")["color"], "#929594");
    assert_eq!(by("new-ordered-by-phone")["is_default"], true);
    assert_eq!(by("pending")["is_default"], false);
    let missing = shop
        .admin(
            "PUT",
            "/admin/custom_statuses/nope.json",
            &json!({"custom_status": {"title": "x"}}),
        )
        .await;
    assert_eq!(missing.status, 404);
    let bad_colour = shop
        .admin(
            "PUT",
            "/admin/custom_statuses/pending.json",
            &json!({"custom_status": {"color": "red"}}),
        )
        .await;
    assert_eq!(bad_colour.status, 400);
    assert!(permalinks(&list).contains(&"new-ordered-by-phone-2".to_owned()));
}

#[tokio::test]
async fn order_status_rules_and_live_custom_status() {
    let shop = Shop::start().await;
    let mut alice = shop.customer_socket(ALICE).await;
    let packed = shop
        .admin("POST", "/admin/custom_statuses.json", &json!({"custom_status": {"system_status": "approved", "title": "Packed with care", "color": "#D361B8"}}))
        .await;
    assert_eq!(packed.status, 201);

    // A mismatch is refused and changes nothing.
    let bad = shop
        .admin(
            "PUT",
            "/admin/orders/1001.json",
            &json!({"order": {"fulfillment_status": "new", "custom_status_permalink": "shipped"}}),
        )
        .await;
    assert_eq!(
        (bad.status, bad.json),
        (
            422,
            json!({"message": "incompatible fulfillment and custom statuses"})
        )
    );
    let order = shop
        .admin("GET", "/admin/orders/1001.json", &Value::Null)
        .await
        .json;
    assert_eq!(
        (
            order["fulfillment_status"].clone(),
            order["custom_status_permalink"].clone()
        ),
        (json!("new"), json!("pending"))
    );
    let history: i64 = shop
        .query(|c| {
            c.query_row(
                "SELECT count(*) FROM order_history WHERE order_id = 1001",
                [],
                |r| r.get(0),
            )
        })
        .await;
    assert_eq!(history, 1);

    // Only the system status: its default custom status.
    let r = shop
        .admin(
            "PUT",
            "/admin/orders/1001.json",
            &json!({"order": {"fulfillment_status": "accepted"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["custom_status_permalink"], "confirmed");
    let d = data(&alice.expect_event("order:status").await);
    assert_eq!(
        (d["status"].clone(), d["fulfillment_status"].clone()),
        (json!("confirmed"), json!("accepted"))
    );

    // Only the custom status: its system status; the event carries its title and colour.
    let r = shop
        .admin(
            "PUT",
            "/admin/orders/1001.json",
            &json!({"order": {"custom_status_permalink": "packed_with_care"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["fulfillment_status"], "approved");
    let d = data(&alice.expect_event("order:status").await);
    assert_eq!(
        d["custom_status"],
        json!({"permalink": "packed-with-care", "title": "Packed with care", "color": "#D361B8"})
    );
    assert_eq!(
        d["status_text"], "Готовится",
        "a custom status takes its system status's text"
    );
    assert_eq!(d["step"], 2);

    // A system permalink in custom_status_permalink acts as the system status.
    let r = shop
        .admin(
            "PUT",
            "/admin/orders/1001.json",
            &json!({"order": {"custom_status_permalink": "dispatched"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        (
            r.json["fulfillment_status"].clone(),
            r.json["custom_status_permalink"].clone()
        ),
        (json!("dispatched"), json!("shipped"))
    );
    assert_eq!(
        data(&alice.expect_event("order:status").await)["status"],
        "shipped"
    );

    let unknown = shop
        .admin(
            "PUT",
            "/admin/orders/1001.json",
            &json!({"order": {"custom_status_permalink": "teleported"}}),
        )
        .await;
    assert_eq!(unknown.status, 400);
    let empty = shop
        .admin("PUT", "/admin/orders/1001.json", &json!({"order": {}}))
        .await;
    assert_eq!(empty.status, 400);
    let missing = shop
        .admin(
            "PUT",
            "/admin/orders/77.json",
            &json!({"order": {"fulfillment_status": "new"}}),
        )
        .await;
    assert_eq!(missing.status, 404);

    // Creation follows the same rules and tells the owner.
    let created = shop
        .admin("POST", "/admin/orders.json", &json!({"order": {"client_id": ALICE, "order_lines_attributes": [{"product_id": 2, "quantity": 1}], "custom_status_permalink": "new-ordered-by-phone"}}))
        .await;
    assert_eq!(
        created.status, 400,
        "no such custom status yet: {}",
        created.body
    );
    let created = shop
        .admin("POST", "/admin/orders.json", &json!({"order": {"client_id": ALICE, "order_lines_attributes": [{"product_id": 2, "quantity": 1}]}}))
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(
        (
            created.json["fulfillment_status"].clone(),
            created.json["custom_status_permalink"].clone()
        ),
        (json!("new"), json!("pending"))
    );
    let d = data(&alice.expect_event("order:status").await);
    assert_eq!(d["order_id"], created.json["id"]);
    let mismatch = shop
        .admin("POST", "/admin/orders.json", &json!({"order": {"client_id": ALICE, "order_lines_attributes": [{"product_id": 2, "quantity": 1}], "fulfillment_status": "new", "custom_status_permalink": "shipped"}}))
        .await;
    assert_eq!(mismatch.status, 422);
    for body in [
        json!({"order": {"client_id": ALICE, "order_lines_attributes": []}}),
        json!({"order": {"client_id": ALICE, "order_lines_attributes": [{"product_id": 99, "quantity": 1}]}}),
        json!({"order": {"client_id": MANAGER, "order_lines_attributes": [{"product_id": 1, "quantity": 1}]}}),
        json!({"order": {"client_id": ALICE, "order_lines_attributes": [{"product_id": 1, "quantity": 0}]}}),
    ] {
        let r = shop.admin("POST", "/admin/orders.json", &body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
    }
}

#[tokio::test]
async fn orders_filter_by_system_or_custom_permalinks() {
    let shop = Shop::start().await;
    for (id, body) in [
        (
            1001,
            json!({"order": {"custom_status_permalink": "shipped"}}),
        ),
        (1002, json!({"order": {"fulfillment_status": "accepted"}})),
        (1004, json!({"order": {"fulfillment_status": "declined"}})),
    ] {
        let r = shop
            .admin("PUT", &format!("/admin/orders/{id}.json"), &body)
            .await;
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let ids = |v: &Value| {
        v.as_array()
            .unwrap()
            .iter()
            .map(|o| o["id"].as_i64().unwrap())
            .collect::<Vec<_>>()
    };
    let r = shop
        .admin(
            "GET",
            "/admin/orders.json?custom_status[]=shipped&custom_status[]=declined",
            &Value::Null,
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        ids(&r.json),
        vec![1001, 1004],
        "a custom and a system permalink, mixed"
    );
    let quoted = shop
        .admin(
            "GET",
            "/admin/orders.json?custom_status%5B%5D='confirmed'",
            &Value::Null,
        )
        .await;
    assert_eq!(ids(&quoted.json), vec![1002], "the document's quoted form");
    let all = shop.admin("GET", "/admin/orders.json", &Value::Null).await;
    assert_eq!(ids(&all.json), vec![1001, 1002, 1003, 1004]);
    let paged = shop
        .admin("GET", "/admin/orders.json?per_page=2&page=2", &Value::Null)
        .await;
    assert_eq!(ids(&paged.json), vec![1003, 1004]);
    let by_system = shop
        .admin(
            "GET",
            "/admin/orders.json?fulfillment_status=new",
            &Value::Null,
        )
        .await;
    assert_eq!(ids(&by_system.json), vec![1003]);
    assert_eq!(
        all.json[0]["custom_status"]["title"], "В доставке",
        "the seeded statuses speak the shop's language"
    );
    let bad = shop
        .admin("GET", "/admin/orders.json?page=0", &Value::Null)
        .await;
    assert_eq!(bad.status, 400);
    let anon = shop
        .json("GET", "/admin/orders.json", None, &Value::Null)
        .await;
    assert_eq!(anon.status, 401);
}

#[tokio::test]
async fn seeded_statuses_have_russian_titles_that_stay_editable() {
    let shop = Shop::start().await;
    let list = shop
        .admin("GET", "/admin/custom_statuses.json", &Value::Null)
        .await
        .json;
    let title = |list: &Value, p: &str| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|s| s["permalink"] == p)
            .unwrap()["title"]
            .clone()
    };
    for (permalink, want) in [
        ("pending", "Ожидает подтверждения"),
        ("confirmed", "Подтверждён"),
        ("preparing", "Готовится"),
        ("ready", "Готов к выдаче"),
        ("shipped", "В доставке"),
        ("delivered", "Доставлен"),
        ("cancelled", "Отменён"),
        ("returned", "Возврат"),
    ] {
        assert_eq!(title(&list, permalink), want, "{permalink}");
    }
    let put = shop
        .admin(
            "PUT",
            "/admin/custom_statuses/shipped.json",
            &json!({"custom_status": {"title": "Курьер в пути"}}),
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    let list = shop
        .admin("GET", "/admin/custom_statuses.json", &Value::Null)
        .await
        .json;
    assert_eq!(title(&list, "shipped"), "Курьер в пути");
    let manager = shop.login(MANAGER).await;
    let rows = shop
        .json("GET", "/api/manager/orders", Some(&manager), &Value::Null)
        .await;
    let statuses = rows.json["statuses"].as_array().unwrap();
    assert!(
        statuses
            .iter()
            .any(|s| s["permalink"] == "shipped" && s["title"] == "Курьер в пути"),
        "the manager's list shows the edited title: {statuses:?}"
    );
}

const XML_AUTH: [(&str, &str); 2] = [
    ("Content-Type", "application/xml"),
    ("Authorization", ADMIN_AUTH),
];

fn is_xml(r: &HttpResponse) -> bool {
    r.header("content-type")
        .is_some_and(|t| t.starts_with("application/xml"))
        && r.body
            .starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>")
}

#[tokio::test]
async fn custom_statuses_in_xml() {
    let shop = Shop::start().await;

    // GET: the list as Rails writes it, the missing `returned` default created as in JSON.
    let list = shop
        .call("GET", "/admin/custom_statuses.xml", &XML_AUTH, "")
        .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(is_xml(&list), "{}", list.body);
    assert!(list
        .body
        .contains("<custom-statuses type=\"array\">\n  <custom-status>\n"));
    assert_eq!(list.body.matches("<custom-status>").count(), 8);
    for element in [
        "<permalink>pending</permalink>",
        "<title>Ожидает подтверждения</title>",
        "<system-status>new</system-status>",
        "<color>#E2AC54</color>",
        "<is-default type=\"boolean\">true</is-default>",
        "<position type=\"integer\">1</position>",
        "<permalink>returned</permalink>",
    ] {
        assert!(list.body.contains(element), "{element} in {}", list.body);
    }
    assert!(list
        .body
        .contains("<created-at type=\"dateTime\">2026-01-01T00:00:00Z</created-at>"));
    let anon = shop
        .call(
            "GET",
            "/admin/custom_statuses.xml",
            &[("Content-Type", "application/xml")],
            "",
        )
        .await;
    assert_eq!(anon.status, 401);
    assert!(is_xml(&anon));
    assert!(
        anon.body
            .contains("<errors>\n  <error>Unauthorized</error>\n</errors>"),
        "{}",
        anon.body
    );

    // POST: a <custom-status> in, the new one out (201), with a unique permalink.
    let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<custom-status>\n  \
                <system-status>new</system-status>\n  <title>New (ordered by phone)</title>\n  \
                <color>#D361B8</color>\n</custom-status>\n";
    let created = shop
        .call("POST", "/admin/custom_statuses.xml", &XML_AUTH, body)
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert!(is_xml(&created));
    assert!(created.body.contains("\n<custom-status>\n"));
    assert!(created
        .body
        .contains("<permalink>new-ordered-by-phone</permalink>"));
    assert!(created.body.contains("<color>#D361B8</color>"));
    assert!(created
        .body
        .contains("<is-default type=\"boolean\">false</is-default>"));
    let json_view = shop
        .admin("GET", "/admin/custom_statuses.json", &Value::Null)
        .await;
    assert!(permalinks(&json_view.json).contains(&"new-ordered-by-phone".to_owned()));

    // POST refusals, each in XML with the JSON route's status.
    for (content_type, body, status, what) in [
        (
            "application/xml",
            "<custom-status><system-status>new</system-status><title>x</title><color>#123456</color></custom-status>",
            400,
            "color must be one of the palette",
        ),
        (
            "application/xml",
            "<custom-status><system-status>lost</system-status><title>x</title></custom-status>",
            400,
            "system_status must be one of",
        ),
        (
            "application/xml",
            "<custom-status><title>x</title>",
            400,
            "body is not a custom-status record",
        ),
        (
            "application/xml",
            "<order><title>x</title></order>",
            400,
            "the root element must be &lt;custom-status&gt;",
        ),
        (
            "application/json",
            r#"{"custom_status": {"system_status": "new", "title": "x"}}"#,
            415,
            "Expected request with `Content-Type: application/xml`",
        ),
    ] {
        let r = shop
            .call(
                "POST",
                "/admin/custom_statuses.xml",
                &[("Content-Type", content_type), ("Authorization", ADMIN_AUTH)],
                body,
            )
            .await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert!(is_xml(&r), "{what}: {}", r.body);
        assert!(
            r.body.contains("<errors>\n  <error>") && r.body.contains(what),
            "{what}: {}",
            r.body
        );
    }

    // PUT with the document's underscores: Rails' `<hash><status>ok</status></hash>`.
    let put = shop
        .call(
            "PUT",
            "/admin/custom_statuses/new_ordered_by_phone.xml",
            &XML_AUTH,
            "<custom-status><color>#929594</color><is-default type=\"boolean\">true</is-default></custom-status>",
        )
        .await;
    assert_eq!(put.status, 200, "{}", put.body);
    assert!(is_xml(&put));
    assert!(
        put.body.contains("<hash>\n  <status>ok</status>\n</hash>"),
        "{}",
        put.body
    );
    let after = shop
        .call("GET", "/admin/custom_statuses.xml", &XML_AUTH, "")
        .await;
    let record = after
        .body
        .split("<custom-status>")
        .find(|r| r.contains("<permalink>new-ordered-by-phone</permalink>"))
        .unwrap();
    assert!(record.contains("<color>#929594</color>"), "{record}");
    assert!(record.contains("<is-default type=\"boolean\">true</is-default>"));
    for (path, body, status, what) in [
        (
            "/admin/custom_statuses/nope.xml",
            "<custom-status><title>x</title></custom-status>",
            404,
            "custom status not found",
        ),
        (
            "/admin/custom_statuses/pending.xml",
            "<custom-status><color>red</color></custom-status>",
            400,
            "color must be one of the palette",
        ),
        (
            "/admin/custom_statuses/pending.xml",
            "<custom-status><position>first</position></custom-status>",
            400,
            "position must be an integer",
        ),
    ] {
        let r = shop.call("PUT", path, &XML_AUTH, body).await;
        assert_eq!(r.status, status, "{what}: {}", r.body);
        assert!(is_xml(&r) && r.body.contains(what), "{what}: {}", r.body);
    }
    let anon_put = shop
        .call(
            "PUT",
            "/admin/custom_statuses/pending.xml",
            &[("Content-Type", "application/xml")],
            "<custom-status><title>x</title></custom-status>",
        )
        .await;
    assert_eq!(anon_put.status, 401);
    assert!(is_xml(&anon_put));
    let other_ext = shop
        .call("PUT", "/admin/custom_statuses/pending.yaml", &XML_AUTH, "")
        .await;
    assert_eq!(other_ext.status, 404);
}
