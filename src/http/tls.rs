//! TLS through rustls: `--certfile`, `--keyfile`, `--ca-certs`.
//!
//! Certificates and keys are PEM files (RSA, ECDSA or Ed25519 keys, PKCS#1,
//! SEC1 or PKCS#8). With `--ca-certs`, clients must present a certificate that
//! chains to one of those authorities (mutual TLS). Only HTTP/1.1 is offered
//! through ALPN. A request served over TLS has `wsgi.url_scheme` `https`.

use std::path::Path;
use std::sync::Arc;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Build a server configuration from PEM files.
///
/// # Errors
///
/// A one-line message naming the option and file that could not be used.
pub fn server_config(
    certfile: &Path,
    keyfile: &Path,
    ca_certs: Option<&Path>,
) -> Result<Arc<ServerConfig>, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certfile)
        .and_then(Iterator::collect)
        .map_err(|e| format!("--certfile {}: {e}", certfile.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "--certfile {}: no certificate in the file",
            certfile.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(keyfile)
        .map_err(|e| format!("--keyfile {}: {e}", keyfile.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match ca_certs {
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("--ca-certs {}: {e}", path.display()))?
            {
                let cert = cert.map_err(|e| format!("--ca-certs {}: {e}", path.display()))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("--ca-certs {}: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--ca-certs {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("--certfile/--keyfile: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_and_empty_files_are_named() {
        let err =
            server_config(Path::new("/nonexistent/cert.pem"), Path::new("/x"), None).unwrap_err();
        assert!(err.starts_with("--certfile /nonexistent/cert.pem"), "{err}");
        let empty = std::env::temp_dir().join(format!("ferrule-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "").unwrap();
        let err = server_config(&empty, &empty, None).unwrap_err();
        assert!(err.contains("no certificate"), "{err}");
        let _ = std::fs::remove_file(&empty);
    }
}
