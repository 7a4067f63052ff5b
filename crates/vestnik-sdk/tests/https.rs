//! The SDK over https: a TLS front (tokio-rustls with a test CA) relays to the real broker, and
//! a trigger signed and sent over TLS reaches a subscriber. A client that does not trust the CA is
//! refused with a typed transport error.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use vestnik_sdk::{Client, Config, Error, Scheme};
use vestnik_testkit::{broker_binary, BrokerProcess, WsClient};

const APPS: &str = r#"
[[apps]]
id = "shop"
key = "shop-key"
secret = "shop-secret"
"#;

const CA: &[u8] = include_bytes!("tls/ca.pem");
const CERT: &[u8] = include_bytes!("tls/server.pem");
const KEY: &[u8] = include_bytes!("tls/server.key");

/// Listens on a free port, terminates TLS and relays each connection to `backend`.
async fn tls_front(backend: u16) -> u16 {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = vec![CertificateDer::from_pem_slice(CERT).expect("test cert")];
    let key = PrivateKeyDer::from_pem_slice(KEY).expect("test key");
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("cert and key match");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = TcpStream::connect(("127.0.0.1", backend)).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    port
}

fn trusting_test_ca() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA).expect("test CA"))
        .unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn trigger_over_https_reaches_the_subscriber() {
    let broker = BrokerProcess::spawn(&broker_binary(), APPS);
    let port = tls_front(broker.port).await;
    let mut cfg = Config::local("shop", "shop-key", "shop-secret");
    cfg.scheme = Scheme::Https;
    cfg.host = "localhost".into();
    cfg.port = port;
    let sdk = Client::with_tls_config(cfg.clone(), trusting_test_ca());

    let mut ws = WsClient::connect(&broker.ws_url("shop-key")).await;
    let auth = sdk
        .authorize_channel(&ws.socket_id, "private-user-1", None)
        .unwrap();
    let ok = ws
        .subscribe(json!({"channel": "private-user-1", "auth": auth.auth}))
        .await;
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");

    sdk.trigger(
        &["private-user-1"],
        "order:status",
        &json!({"order_id": 7}),
        None,
    )
    .await
    .expect("trigger over TLS accepted");
    let ev = ws.expect_event("order:status").await;
    assert_eq!(ev["data"], r#"{"order_id":7}"#);

    // The default client trusts only the public roots: the test CA is refused.
    let public_roots = Client::new(cfg).unwrap();
    match public_roots
        .trigger(&["private-user-1"], "e", "x", None)
        .await
    {
        Err(Error::Transport(msg)) => assert!(msg.to_lowercase().contains("certificate"), "{msg}"),
        other => panic!("expected a certificate error, got {other:?}"),
    }
}
