//! TLS to the database, as the URL asks for it with libpq's parameters:
//! - no `sslmode`, or `disable`: plain TCP (a private network, a local socket);
//! - `prefer`: TLS when the server offers it, plain TCP when it does not;
//! - `require`, `verify-ca`, `verify-full`: TLS or no connection.
//!
//! Whenever TLS is used the server's certificate is verified, chain and host name, against
//! `sslrootcert=PATH` (PEM) if the URL names one, else the system's trusted roots. libpq's
//! `require` would accept any certificate; a database that holds every session's log is not a
//! place to accept an impostor, so agentd treats all three modes as `verify-full`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::OpenError;

/// The TLS settings of a URL that `tokio_postgres::Config` does not keep.
#[derive(Debug, Clone, Default)]
pub struct Tls {
    /// Trusted roots instead of the system's.
    pub root_cert: Option<PathBuf>,
}

/// Parse `url` into the driver's config and the TLS settings it carries.
pub fn parse(url: &str) -> Result<(tokio_postgres::Config, Tls), OpenError> {
    let mut tls = Tls::default();
    let mut mode_given = false;
    let url = match url.split_once('?') {
        None => url.to_owned(),
        Some((base, query)) => {
            let mut kept = Vec::new();
            for pair in query.split('&').filter(|p| !p.is_empty()) {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                match k {
                    "sslrootcert" => {
                        let path = percent_encoding::percent_decode_str(v).decode_utf8_lossy();
                        tls.root_cert = Some(PathBuf::from(path.as_ref()));
                    }
                    // The driver knows disable, prefer and require; the verifying modes are
                    // require with the verification every mode gets here.
                    "sslmode" if matches!(v, "verify-ca" | "verify-full") => {
                        mode_given = true;
                        kept.push("sslmode=require".to_owned());
                    }
                    "sslmode" => {
                        mode_given = true;
                        kept.push(pair.to_owned());
                    }
                    _ => kept.push(pair.to_owned()),
                }
            }
            if kept.is_empty() {
                base.to_owned()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        }
    };
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|e| OpenError::Url(format!("{e}")))?;
    if !mode_given {
        // The driver's default is prefer; agentd's is what it always was: no TLS unless asked.
        config.ssl_mode(SslMode::Disable);
    }
    Ok((config, tls))
}

/// The connector for `tls` under `mode`: every connection of the pool and the `LISTEN` one
/// use it. With TLS off it is never used, so the system's roots are not read at start.
pub fn connector(tls: &Tls, mode: SslMode) -> Result<MakeRustlsConnect, OpenError> {
    let mut roots = rustls::RootCertStore::empty();
    match &tls.root_cert {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| OpenError::Tls(format!("sslrootcert {}: {e}", path.display())))?;
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| OpenError::Tls(format!("sslrootcert {}: {e}", path.display())))?;
            }
        }
        None if mode == SslMode::Disable => {}
        None => {
            // Unreadable system roots only matter if TLS is used; then the handshake says so.
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| OpenError::Tls(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_sslmode_means_no_tls_and_verifying_modes_are_require() {
        let (c, t) = parse("postgres://u@h/db").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Disable);
        assert!(t.root_cert.is_none());
        let (c, t) =
            parse("postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Require);
        assert_eq!(
            t.root_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        let (c, _) = parse("postgres://u@h/db?sslmode=prefer&application_name=x").unwrap();
        assert_eq!(c.get_ssl_mode(), SslMode::Prefer);
        assert_eq!(c.get_application_name(), Some("x"));
    }

    #[test]
    fn a_missing_root_certificate_file_is_named() {
        let e = connector(
            &Tls {
                root_cert: Some("/nonexistent/ca.pem".into()),
            },
            SslMode::Require,
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("/nonexistent/ca.pem"), "{e}");
    }
}
