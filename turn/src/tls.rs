//! The TLS listener's configuration: rustls on the ring provider, from PEM files or given.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::Error;
use crate::config::TlsSource;

/// An acceptor for `source`.
pub(crate) fn acceptor(source: &TlsSource) -> Result<TlsAcceptor, Error> {
    let config = match source {
        TlsSource::Config(config) => config.clone(),
        TlsSource::Files { cert, key } => {
            let certs = CertificateDer::pem_file_iter(cert)
                .and_then(|i| i.collect::<Result<Vec<_>, _>>())
                .map_err(|e| Error::Tls(format!("certificate {}: {e}", cert.display())))?;
            if certs.is_empty() {
                return Err(Error::Tls(format!("no certificate in {}", cert.display())));
            }
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| Error::Tls(format!("private key {}: {e}", key.display())))?;
            Arc::new(server_config(certs, key)?)
        }
    };
    Ok(TlsAcceptor::from(config))
}

/// A rustls server configuration on the ring provider, TLS 1.2 and 1.3.
pub fn server_config(
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<rustls::ServerConfig, Error> {
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
        .map_err(|e| Error::Tls(e.to_string()))
}
