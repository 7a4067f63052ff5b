//! TLS for tests: a front that terminates TLS with a committed test certificate for `localhost` and
//! `127.0.0.1` (signed by a test CA, valid until 2126) and relays to a plain backend, and a client
//! configuration that trusts that CA. This is what an `https://` broker or partner looks like to a
//! client under test, without touching the system's trust store. It must never be used outside tests.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};

/// The test CA, PEM.
pub const CA_PEM: &[u8] = include_bytes!("../tls/ca.pem");
/// The front's certificate, for `localhost` and `127.0.0.1`, signed by [`CA_PEM`]. Committed so
/// tests need no `openssl` at run time and get the same certificate everywhere.
const CERT_PEM: &[u8] = include_bytes!("../tls/server.pem");
/// The certificate's private key. A test key, public by design: it protects nothing.
const KEY_PEM: &[u8] = include_bytes!("../tls/server.key");

/// The `ring` provider named explicitly, so the tests do not depend on which rustls provider some
/// other crate of the build enabled as the process default.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Listens on a free loopback port, terminates TLS with the test certificate and relays each
/// connection to `backend` on 127.0.0.1. Returns the front's port; it runs until the runtime ends.
///
/// Each connection is relayed byte for byte (`copy_bidirectional`), so WebSocket upgrades and
/// keep-alive pass through unchanged; a failed handshake just drops that connection, which is what
/// a client with the wrong trust should see.
pub async fn front(backend: u16) -> u16 {
    let certs =
        vec![CertificateDer::from_pem_slice(CERT_PEM).expect("the committed test cert parses")];
    let key = PrivateKeyDer::from_pem_slice(KEY_PEM).expect("the committed test key parses");
    let server = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("the committed cert and key match");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind a free port");
    let port = listener.local_addr().expect("bound").port();
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

/// A client configuration that trusts the test CA (and nothing else).
pub fn client_config() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(CA_PEM).expect("the committed test CA parses"))
        .expect("a valid CA certificate");
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
