//! Micro-benchmarks of the protocol crate's hot pieces: encoding an event frame, parsing a client
//! frame, verifying a channel signature and a signed API request.
#![allow(missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use vestnik_protocol::auth::{self, SignedRequest};
use vestnik_protocol::{ClientMessage, ServerMessage};

fn encode(c: &mut Criterion) {
    let data = r#"{"order_id":1234,"status":"shipped","status_text":"Order shipped","step":5}"#;
    c.bench_function("encode channel event (80 B data)", |b| {
        b.iter(|| {
            ServerMessage::ChannelEvent {
                event: black_box("order:status"),
                channel: black_box("private-user-42"),
                data: black_box(data),
                user_id: None,
                position: None,
            }
            .encode()
        })
    });
}

fn parse(c: &mut Criterion) {
    let frame = r#"{"event":"pusher:subscribe","data":{"auth":"app-key:58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4","channel":"private-user-42"}}"#;
    c.bench_function("parse subscribe frame", |b| {
        b.iter(|| ClientMessage::parse(black_box(frame)).unwrap())
    });
}

fn signatures(c: &mut Criterion) {
    let auth = auth::sign_channel("key", "secret", "1234.1234", "private-foobar", None);
    c.bench_function("verify channel signature", |b| {
        b.iter(|| {
            auth::verify_channel(
                "key",
                "secret",
                black_box("1234.1234"),
                "private-foobar",
                None,
                black_box(&auth),
            )
            .unwrap()
        })
    });
    let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
    let query = auth::sign_request("key", "secret", "POST", "/apps/3/events", &[], body, 1_000);
    c.bench_function("verify signed API request", |b| {
        b.iter(|| {
            SignedRequest {
                method: "POST",
                path: "/apps/3/events",
                query: black_box(&query),
                body: black_box(body),
            }
            .verify("secret", 1_000)
            .unwrap()
        })
    });
}

criterion_group!(benches, encode, parse, signatures);
criterion_main!(benches);
