//! The webhook receiver of a chaos run: a small HTTP server that checks each request's
//! `X-Pusher-Signature` against the app secret and records every event it carries, by id.
//!
//! It answers 200 at once to every request it could read (401 to a bad signature), so any
//! duplicate it sees comes from the brokers, not from its own slowness. It records; it never
//! judges (see `roster`).

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::roster::Hook;

/// What the receiver has seen.
#[derive(Debug, Default)]
pub struct Received {
    /// Every event of every correctly signed request, in receipt order.
    pub hooks: Vec<Hook>,
    /// Requests refused for a bad or missing signature.
    pub bad_signatures: u64,
    /// Requests whose body was not a webhook body.
    pub malformed: u64,
}

#[derive(Deserialize)]
struct Body {
    events: Vec<Event>,
}

#[derive(Deserialize)]
struct Event {
    name: String,
    #[serde(default)]
    channel: String,
    #[serde(default)]
    user_id: Option<String>,
    id: String,
}

/// A running receiver.
#[derive(Debug)]
pub struct Receiver {
    /// Its URL, for the nodes' config.
    pub url: String,
    /// What it has received.
    pub received: Arc<Mutex<Received>>,
    cancel: CancellationToken,
}

impl Receiver {
    /// Listens on a free loopback port; requests are verified with `secret`.
    pub async fn start(secret: String) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook receiver")?;
        let addr: SocketAddr = listener.local_addr()?;
        let received = Arc::new(Mutex::new(Received::default()));
        let cancel = CancellationToken::new();
        let (rec, stop, secret) = (Arc::clone(&received), cancel.clone(), Arc::new(secret));
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    () = stop.cancelled() => return,
                    accepted = listener.accept() => match accepted {
                        Ok((s, _)) => s,
                        Err(_) => continue,
                    },
                };
                let (rec, secret) = (Arc::clone(&rec), Arc::clone(&secret));
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let (rec, secret) = (Arc::clone(&rec), Arc::clone(&secret));
                        async move { Ok::<_, hyper::Error>(handle(req, &rec, &secret).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Self {
            url: format!("http://{addr}/webhook"),
            received,
            cancel,
        })
    }

    /// Stops accepting.
    pub fn stop(&self) {
        self.cancel.cancel();
    }
}

async fn handle(
    req: Request<hyper::body::Incoming>,
    rec: &Mutex<Received>,
    secret: &str,
) -> Response<Full<Bytes>> {
    let signature = req
        .headers()
        .get("x-pusher-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        return reply(400);
    };
    if !vestnik_protocol::webhook::verify_webhook(secret, &body, &signature) {
        rec.lock().bad_signatures += 1;
        return reply(401);
    }
    let Ok(parsed) = serde_json::from_slice::<Body>(&body) else {
        rec.lock().malformed += 1;
        return reply(400);
    };
    let mut rec = rec.lock();
    rec.hooks.extend(parsed.events.into_iter().map(|e| Hook {
        id: e.id,
        name: e.name,
        channel: e.channel,
        user_id: e.user_id,
    }));
    reply(200)
}

fn reply(status: u16) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = hyper::StatusCode::from_u16(status).expect("a valid status code");
    r
}
