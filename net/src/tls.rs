//! TLS for the connections the daemon and the client side open (notifications, OTLP,
//! PostgreSQL, the MCP gateway's upstreams): rustls with ring, the web PKI roots, plus a private CA
//! and a client certificate when configured. Every file is named in errors by the setting that gave it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why a TLS client configuration cannot be built. Each names the setting that gave the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read or holds no usable PEM.
    #[error("{setting} `{}`: {source}", .path.display())]
    File {
        /// The setting that named the file.
        setting: String,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// rustls refused the protocol versions (a build without them).
    #[error("TLS setup: {0}")]
    Setup(#[source] rustls::Error),
}

/// A PEM file and the setting (environment variable or flag) that named it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PemFile {
    /// The setting, for messages (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub setting: String,
    /// The file.
    pub path: PathBuf,
}

impl PemFile {
    /// `path` as given by `setting`.
    pub fn new(setting: &str, path: impl AsRef<Path>) -> PemFile {
        PemFile { setting: setting.to_owned(), path: path.as_ref().to_owned() }
    }

    fn error(&self, e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> TlsError {
        TlsError::File { setting: self.setting.clone(), path: self.path.clone(), source: e.into() }
    }

    fn certificates(&self) -> Result<Vec<CertificateDer<'static>>, TlsError> {
        let certs = CertificateDer::pem_file_iter(&self.path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.error(e))?;
        if certs.is_empty() {
            return Err(self.error("holds no PEM certificate"));
        }
        Ok(certs)
    }
}

/// A client configuration trusting the web PKI roots and the certificates in `ca`, presenting
/// `identity` (certificate chain, private key) when given.
pub fn client_config(
    ca: Option<&PemFile>,
    identity: Option<(&PemFile, &PemFile)>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    if let Some(ca) = ca {
        for cert in ca.certificates()? {
            roots.add(cert).map_err(|e| ca.error(e))?;
        }
    }
    let builder =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Setup)?
            .with_root_certificates(roots);
    match identity {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = cert.certificates()?;
            let private = PrivateKeyDer::from_pem_file(&key.path).map_err(|e| key.error(e))?;
            builder.with_client_auth_cert(chain, private).map_err(|e| key.error(e))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{PemFile, client_config};

    #[test]
    fn files_are_checked_and_named_by_their_setting() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["ca.test".into()]).unwrap();
        let client = rcgen::generate_simple_self_signed(vec!["client.test".into()]).unwrap();
        let write = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p
        };
        let ca_pem = PemFile::new("CA_VAR", write("ca.pem", &ca.cert.pem()));
        let cert = PemFile::new("CERT_VAR", write("client.pem", &client.cert.pem()));
        let key = PemFile::new("KEY_VAR", write("client-key.pem", &client.signing_key.serialize_pem()));
        assert!(
            client_config(Some(&ca_pem), Some((&cert, &key))).unwrap().client_auth_cert_resolver.has_certs()
        );
        assert!(!client_config(None, None).unwrap().client_auth_cert_resolver.has_certs());

        let garbage = PemFile::new("CA_VAR", write("garbage.pem", "not a certificate"));
        let e = client_config(Some(&garbage), None).unwrap_err().to_string();
        assert!(e.starts_with("CA_VAR `") && e.contains("no PEM certificate"), "{e}");
        let missing = PemFile::new("CA_VAR", dir.path().join("absent.pem"));
        assert!(client_config(Some(&missing), None).unwrap_err().to_string().starts_with("CA_VAR `"));
        // A key that is not the certificate's.
        let other = rcgen::generate_simple_self_signed(vec!["other.test".into()]).unwrap();
        let wrong = PemFile::new("KEY_VAR", write("other-key.pem", &other.signing_key.serialize_pem()));
        let e = client_config(None, Some((&cert, &wrong))).unwrap_err().to_string();
        assert!(e.starts_with("KEY_VAR `"), "{e}");
        // The key where the certificate should be.
        let swapped = PemFile::new("CERT_VAR", key.path.clone());
        assert!(
            client_config(None, Some((&swapped, &key))).unwrap_err().to_string().starts_with("CERT_VAR `")
        );
    }
}
