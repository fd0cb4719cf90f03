//! An OTLP destination from the OpenTelemetry variables (`OTEL_EXPORTER_OTLP_*`) or
//! `serve --otlp-endpoint`.

/// Where OTLP logs go, from the standard variables or `serve --otlp-endpoint`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Otlp {
    /// The logs URL (`…/v1/logs`).
    pub endpoint: String,
    /// Extra request headers (authentication), from `OTEL_EXPORTER_OTLP_[LOGS_]HEADERS`.
    pub headers: Vec<(String, String)>,
    /// Resource attributes (`OTEL_RESOURCE_ATTRIBUTES`, `service.name`).
    pub resource: Vec<(String, String)>,
    /// A private CA to trust besides the web PKI (`OTEL_EXPORTER_OTLP_[LOGS_]CERTIFICATE`).
    pub ca: Option<crate::tls::PemFile>,
    /// A client certificate and its key for mutual TLS
    /// (`OTEL_EXPORTER_OTLP_[LOGS_]CLIENT_CERTIFICATE`, `…_CLIENT_KEY`).
    pub identity: Option<(crate::tls::PemFile, crate::tls::PemFile)>,
}

/// Why the OpenTelemetry settings cannot be used: the variable or flag, and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum OtlpSettingError {
    /// A variable or the flag holds a value that cannot be used.
    #[error("{0}")]
    Invalid(String),
    /// A certificate or key file the variables name cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
}

fn invalid<T>(why: String) -> Result<T, OtlpSettingError> {
    Err(OtlpSettingError::Invalid(why))
}

impl Otlp {
    /// The OTLP destination the environment (and `--otlp-endpoint`, which wins) configure, if
    /// any: `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT` as is, else `OTEL_EXPORTER_OTLP_ENDPOINT` with
    /// `/v1/logs` appended; headers from `OTEL_EXPORTER_OTLP_LOGS_HEADERS` or
    /// `OTEL_EXPORTER_OTLP_HEADERS`; `OTEL_RESOURCE_ATTRIBUTES` and `OTEL_SERVICE_NAME`.
    pub fn from_env(
        flag: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Otlp>, OtlpSettingError> {
        let var = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let endpoint =
            match (flag, var("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"), var("OTEL_EXPORTER_OTLP_ENDPOINT")) {
                (Some(f), _, _) => f.to_owned(),
                (None, Some(logs), _) => logs,
                (None, None, Some(base)) => format!("{}/v1/logs", base.trim_end_matches('/')),
                (None, None, None) => return Ok(None),
            };
        if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
            return invalid(format!("the OTLP endpoint `{endpoint}` must start with http:// or https://"));
        }
        let protocol = var("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL").or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        if let Some(p) = protocol.filter(|p| p != "http/protobuf") {
            return invalid(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL `{p}` is not supported: Faramesh sends OTLP logs as http/protobuf"
            ));
        }
        let headers = pairs(
            &var("OTEL_EXPORTER_OTLP_LOGS_HEADERS")
                .or_else(|| var("OTEL_EXPORTER_OTLP_HEADERS"))
                .unwrap_or_default(),
            "OTEL_EXPORTER_OTLP_HEADERS",
        )?;
        let mut resource =
            pairs(&var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default(), "OTEL_RESOURCE_ATTRIBUTES")?;
        let service = var("OTEL_SERVICE_NAME")
            .or_else(|| resource.iter().find(|(k, _)| k == "service.name").map(|(_, v)| v.clone()))
            .unwrap_or_else(|| "faramesh".into());
        resource.retain(|(k, _)| k != "service.name");
        resource.insert(0, ("service.name".into(), service));
        // The logs-specific variable wins over the general one, file by file.
        let file = |name: &str| {
            let logs = format!("OTEL_EXPORTER_OTLP_LOGS_{name}");
            let general = format!("OTEL_EXPORTER_OTLP_{name}");
            var(&logs)
                .map(|p| crate::tls::PemFile::new(&logs, p))
                .or_else(|| var(&general).map(|p| crate::tls::PemFile::new(&general, p)))
        };
        let ca = file("CERTIFICATE");
        let identity = match (file("CLIENT_CERTIFICATE"), file("CLIENT_KEY")) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            (Some(f), None) | (None, Some(f)) => {
                return invalid(format!(
                    "{} is set without its pair: mutual TLS needs both OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    f.setting
                ));
            }
        };
        let o = Otlp { endpoint, headers, resource, ca, identity };
        // The files are read now, so a wrong one stops the start rather than every batch.
        o.client()?;
        Ok(Some(o))
    }

    /// The HTTP client for this destination: the web PKI roots, the private CA and the client
    /// certificate when configured.
    pub fn client(&self) -> Result<crate::http::Client, crate::tls::TlsError> {
        let identity = self.identity.as_ref().map(|(c, k)| (c, k));
        Ok(crate::http::Client::with_config(crate::tls::client_config(self.ca.as_ref(), identity)?))
    }
}

/// `k=v,k2=v2` (values percent-decoded), as the OpenTelemetry variables write them.
fn pairs(text: &str, what: &str) -> Result<Vec<(String, String)>, OtlpSettingError> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return invalid(format!("{what}: `{item}` is not `key=value`"));
        };
        out.push((k.trim().to_owned(), percent_decode(v.trim())));
    }
    Ok(out)
}

/// `s` with each `%` and two hex digits read as the byte they name (anything else as written),
/// bytes that are not UTF-8 replaced.
fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn percent_decoding_reads_two_hex_digit_escapes_only() {
        use super::percent_decode;
        assert_eq!(percent_decode("Bearer%20abc%3D%3d"), "Bearer abc==");
        assert_eq!(percent_decode("caf%C3%A9"), "café");
        // What is not an escape stays as written.
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%4"), "%4");
        assert_eq!(percent_decode("%zz%4g"), "%zz%4g");
        assert_eq!(percent_decode("%%41"), "%A");
        // Bytes that are not UTF-8 are replaced, not dropped.
        assert_eq!(percent_decode("a%FFb"), "a\u{fffd}b");
    }

    #[test]
    fn a_plus_sign_is_not_part_of_a_percent_escape() {
        assert_eq!(super::percent_decode("%+5x"), "%+5x");
    }

    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| (*v).to_owned())
    }

    #[test]
    fn the_standard_variables_configure_otlp() {
        assert_eq!(Otlp::from_env(None, &env(&[])).unwrap(), None);
        let o = Otlp::from_env(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20abc, x-tenant=7"),
                ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=prod,service.name=gate"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(o.endpoint, "http://collector:4318/v1/logs");
        assert_eq!(
            o.headers,
            vec![("authorization".into(), "Bearer abc".into()), ("x-tenant".into(), "7".into())]
        );
        assert_eq!(o.resource[0], ("service.name".to_owned(), "gate".to_owned()));
        let logs = Otlp::from_env(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4318"),
                ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "https://b/logs"),
            ]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(logs.endpoint, "https://b/logs");
        let flag = Otlp::from_env(Some("http://c:4318/v1/logs"), &env(&[("OTEL_SERVICE_NAME", "edge")]))
            .unwrap()
            .unwrap();
        assert_eq!((flag.endpoint.as_str(), flag.resource[0].1.as_str()), ("http://c:4318/v1/logs", "edge"));
        let grpc = Otlp::from_env(
            None,
            &env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a:4317"),
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ]),
        );
        assert!(grpc.unwrap_err().to_string().contains("http/protobuf"));
        let bad = Otlp::from_env(
            None,
            &env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://a"), ("OTEL_EXPORTER_OTLP_HEADERS", "nokey")]),
        );
        assert!(bad.unwrap_err().to_string().contains("`nokey` is not `key=value`"));
    }

    #[test]
    fn tls_files_come_from_the_standard_variables_and_are_read_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ca = rcgen::generate_simple_self_signed(vec!["collector.test".into()]).unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.cert.pem()).unwrap();
        let (cert_path, key_path) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_path, ca.cert.pem()).unwrap();
        std::fs::write(&key_path, ca.signing_key.serialize_pem()).unwrap();
        let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
        let vars = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), "https://collector.test:4318".to_owned()),
            ("OTEL_EXPORTER_OTLP_CERTIFICATE".to_owned(), "/nowhere/general.pem".to_owned()),
            ("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE".to_owned(), path(&ca_path)),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE".to_owned(), path(&cert_path)),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY".to_owned(), path(&key_path)),
        ];
        let env = |vars: Vec<(String, String)>| {
            move |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let o = Otlp::from_env(None, &env(vars.clone())).unwrap().unwrap();
        // The logs variable wins over the general one.
        assert_eq!(o.ca, Some(crate::tls::PemFile::new("OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE", &ca_path)));
        let (cert, key) = o.identity.clone().unwrap();
        assert_eq!((cert.path, key.setting.as_str()), (cert_path.clone(), "OTEL_EXPORTER_OTLP_CLIENT_KEY"));

        // A CA file that is not there stops the start, naming the variable.
        let mut gone = vars.clone();
        gone.retain(|(k, _)| k != "OTEL_EXPORTER_OTLP_LOGS_CERTIFICATE");
        let e = Otlp::from_env(None, &env(gone)).unwrap_err().to_string();
        assert!(e.starts_with("OTEL_EXPORTER_OTLP_CERTIFICATE `/nowhere/general.pem`"), "{e}");
        // A client certificate without its key.
        let mut half = vars.clone();
        half.retain(|(k, _)| k != "OTEL_EXPORTER_OTLP_CLIENT_KEY");
        let e = Otlp::from_env(None, &env(half)).unwrap_err().to_string();
        assert!(e.contains("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE is set without its pair"), "{e}");
    }
}
