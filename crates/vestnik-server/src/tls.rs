//! Native TLS with rustls: `tls_cert` and `tls_key` make the one port serve `wss://` and `https://`.
//!
//! The certificate chain and key are read once at start (PEM; the key may be PKCS#8, PKCS#1 or SEC1),
//! so a bad file stops the broker with a clear message instead of failing every handshake. Only
//! HTTP/1.1 is offered over ALPN, since WebSocket upgrades need it. Each handshake is bounded by
//! `tls_handshake_timeout` (see [`crate::server`]). This module must never fall back to plain TCP on a
//! TLS port.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::ServerConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file could not be read or holds no certificate.
    #[error("tls_cert {path}: {message}")]
    Cert {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// The key file could not be read or holds no private key.
    #[error("tls_key {path}: {message}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the pair (for example, the key does not match the certificate).
    #[error("tls_cert and tls_key do not make a usable pair: {0}")]
    Pair(#[from] rustls::Error),
}

/// The acceptor for the configured certificate, or `None` when TLS is off.
///
/// Built once at start and cloned per connection (an `Arc` inside). The `ring` provider is named
/// explicitly so the server does not depend on which rustls provider another crate of the build
/// made the process default.
pub fn acceptor(server: &ServerConfig) -> Result<Option<TlsAcceptor>, TlsError> {
    let (Some(cert), Some(key)) = (&server.tls_cert, &server.tls_key) else {
        return Ok(None);
    };
    let chain = read_chain(cert)?;
    let key = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(TlsAcceptor::from(Arc::new(config))))
}

/// Reads every certificate of a PEM file (leaf first); an empty chain is an error.
fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |message: String| TlsError::Cert {
        path: path.display().to_string(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if chain.is_empty() {
        return Err(err("no PEM certificate found".into()));
    }
    Ok(chain)
}

/// Reads the first private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| TlsError::Key {
        path: path.display().to_string(),
        message: format!("{e} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)"),
    })
}
