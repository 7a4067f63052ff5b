//! History memory under many busy channels: 10,000 channels, each sent events over the API, keep
//! the app's history within `max_bytes` (as `/usage` on the metrics listener reports it) in every
//! round, each round alone being more than the bound holds; the channels published to longest ago
//! are evicted (a position from before is refused as `epoch_changed`), and recovery goes on working
//! on the newest.

mod common;

use common::*;
use serde_json::{json, Value};

const MAX_BYTES: u64 = 1 << 20;
const CHANNELS: usize = 10_000;
const ROUNDS: usize = 3;

fn config() -> String {
    format!(
        "[server]\nmetrics_port = 0\n\n[[apps]]\nid = \"main\"\nkey = \"{KEY}\"\nsecret = \"{SECRET}\"\n\n\
         [apps.history]\nsize = 100\nmax_bytes = {MAX_BYTES}\n"
    )
}

async fn history_usage(metrics: u16) -> Value {
    let r = raw_http(metrics, "GET", "/usage", "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    let v: Value = serde_json::from_str(&r.body).expect("usage is JSON");
    v["apps"]
        .as_array()
        .and_then(|apps| apps.iter().find(|a| a["id"] == "main"))
        .map(|a| a["history"].clone())
        .expect("the app in /usage")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_busy_channels_stay_within_the_byte_bound() {
    let b = BrokerProcess::spawn(bin(), &config());
    let metrics = metrics_port(&b).await;
    let api = api(&b);
    let names: Vec<String> = (0..CHANNELS).map(|i| format!("busy-{i}")).collect();
    let data = json!({"pad": "x".repeat(100)}).to_string();
    // A socket on the first channel before anything is sent: its epoch, to try later.
    let mut first = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = first.subscribe(json!({"channel": "busy-0"})).await;
    let first_epoch = ok["position"]["epoch"]
        .as_str()
        .expect("an epoch")
        .to_owned();
    let mut peak = 0u64;
    for round in 0..ROUNDS {
        // One event on 100 channels per call, as the API allows.
        for chunk in names.chunks(100) {
            let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
            let r = api.trigger(&chunk, "tick", &data).await;
            assert_eq!(r.status, 200, "round {round}: {}", r.body);
        }
        let h = history_usage(metrics).await;
        let bytes = h["bytes"].as_u64().expect("bytes");
        assert_eq!(h["max_bytes"].as_u64(), Some(MAX_BYTES));
        assert!(
            bytes <= MAX_BYTES,
            "round {round}: {bytes} bytes kept, over the bound {MAX_BYTES}"
        );
        peak = peak.max(bytes);
        let streams = h["channels"].as_u64().expect("channels");
        assert!(
            streams > 0 && streams < CHANNELS as u64,
            "round {round}: {streams} streams; the bound must have evicted some and kept some"
        );
    }
    assert!(
        peak > MAX_BYTES / 2,
        "the run filled the history: peak {peak}"
    );

    // The newest channel's history works on: two more events recover from its last position.
    let last = names.last().expect("channels").as_str();
    let mut c = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = c.subscribe(json!({"channel": last})).await;
    let epoch = ok["position"]["epoch"]
        .as_str()
        .expect("an epoch")
        .to_owned();
    let top = ok["position"]["offset"].as_u64().expect("an offset");
    assert!(top >= 1, "{ok}");
    drop(c);
    for _ in 0..2 {
        assert_eq!(api.trigger(&[last], "tick", &data).await.status, 200);
    }
    let mut back = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = back
        .subscribe(json!({"channel": last, "recover": {"epoch": epoch, "offset": top}}))
        .await;
    let answer: Value = serde_json::from_str(ok["data"].as_str().expect("data")).expect("JSON");
    assert_eq!(
        answer["recovery"],
        json!({"recovered": true, "missed": 2}),
        "{ok}"
    );
    // The oldest channel was evicted: its first epoch is gone.
    let mut old = WsClient::connect(&b.ws_url(KEY)).await;
    let ok = old
        .subscribe(json!({"channel": "busy-0", "recover": {"epoch": first_epoch, "offset": 0}}))
        .await;
    let answer: Value = serde_json::from_str(ok["data"].as_str().expect("data")).expect("JSON");
    assert_eq!(
        answer["recovery"],
        json!({"recovered": false, "reason": "epoch_changed"}),
        "{ok}"
    );
    drop(first);
}
