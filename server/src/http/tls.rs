//! TLS: a certificate chain and key from files, or one generated once into the state dir.

use super::tokens::sha256;
use super::*;

/// Loads or creates the self-signed certificate in `<state dir>/tls/`.
pub(super) fn self_signed(state_dir: &Path, listen: &SocketAddr) -> Result<(PathBuf, PathBuf), ServerError> {
    let dir = state_dir.join("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let mut names = vec!["localhost".to_owned(), "127.0.0.1".to_owned(), "::1".to_owned()];
    if !listen.ip().is_unspecified() && !is_loopback(listen) {
        names.push(listen.ip().to_string());
    }
    let made = rcgen::generate_simple_self_signed(names).map_err(ListenerError::SelfSigned)?;
    crate::private_dir(&dir)?;
    write_private(&key, made.signing_key.serialize_pem().as_bytes())?;
    std::fs::write(&cert, made.cert.pem()).map_err(|e| ServerError::io("write", &cert, e))?;
    Ok((cert, key))
}

pub(super) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), ServerError> {
    use std::io::Write;
    faramesh_daemon::service::files::create_private(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(|e| ServerError::io("write", path, e))
}

/// `AB:CD:…` of the SHA-256 of the first certificate's DER.
pub(super) fn fingerprint(der: &[u8]) -> String {
    sha256(der).iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

pub(super) fn tls_acceptor(
    cert: &Path,
    key: &Path,
) -> Result<(tokio_rustls::TlsAcceptor, String), ListenerError> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem = |what, path: &Path| {
        let path = path.to_owned();
        move |source| ListenerError::Pem { what, path, source }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(pem("certificate", cert))?;
    let first = certs.first().ok_or_else(|| ListenerError::NoCertificate(cert.to_owned()))?;
    let print = fingerprint(first.as_ref());
    let key = PrivateKeyDer::from_pem_file(key).map_err(pem("private key", key))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(ListenerError::Tls)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(ListenerError::Tls)?;
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), print))
}
