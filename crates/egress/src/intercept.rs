//! TLS interception, for the HTTPS repositories a proxy holds a grant for and for nothing
//! else: the proxy ends the sandbox's TLS with a certificate its own CA signs for the host,
//! adds the grant's credential to the request, and sends it on over a TLS connection of its own
//! that checks the real server's certificate against the host's roots. The CA is made in memory
//! when agentd starts and never written to disk; sandboxes that need it trust it through their
//! CA bundle (`Interceptor::bundle`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

/// Hosts whose certificates are kept made; past it the cache starts again.
const MAX_HOSTS: usize = 256;

/// Where Debian (and most distributions) keep the system's CA bundle.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, thiserror::Error)]
pub enum InterceptError {
    #[error("cannot make the egress CA: {0}")]
    Ca(String),
    #[error("cannot set up TLS for the egress proxy: {0}")]
    Tls(String),
}

/// One process's interception CA and the TLS settings both sides use. Cheap to share.
pub struct Interceptor {
    ca_key: KeyPair,
    ca: rcgen::Certificate,
    /// Server settings per host, each with a certificate for that host.
    servers: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
    client: Arc<rustls::ClientConfig>,
    bundle: std::sync::OnceLock<String>,
}

impl std::fmt::Debug for Interceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Interceptor(<ca key redacted>)")
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl Interceptor {
    /// A new CA, and upstream connections checked against the host's roots (the system's
    /// store, or `SSL_CERT_FILE` where set).
    pub fn new() -> Result<Interceptor, InterceptError> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for c in native.certs {
            let _ = roots.add(c);
        }
        Self::with_roots(roots)
    }

    /// A new CA, with upstream connections checked against `roots`.
    pub fn with_roots(roots: rustls::RootCertStore) -> Result<Interceptor, InterceptError> {
        let ca_err = |e: rcgen::Error| InterceptError::Ca(e.to_string());
        let ca_key = KeyPair::generate().map_err(ca_err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(ca_err)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params
            .distinguished_name
            .push(DnType::CommonName, "agentd egress proxy");
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = params.self_signed(&ca_key).map_err(ca_err)?;
        let client = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| InterceptError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Interceptor {
            ca_key,
            ca,
            servers: Mutex::default(),
            client: Arc::new(client),
            bundle: std::sync::OnceLock::new(),
        })
    }

    /// The CA's certificate, PEM.
    pub fn ca_pem(&self) -> String {
        self.ca.pem()
    }

    /// The host's CA bundle (`SYSTEM_BUNDLE`, if it has one) with this CA added: what a sandbox
    /// whose repositories go through interception trusts.
    /// Read once, like the roots the upstream side checks against.
    pub fn bundle(&self) -> &str {
        self.bundle.get_or_init(|| {
            let mut b = std::fs::read_to_string(SYSTEM_BUNDLE).unwrap_or_default();
            if !b.is_empty() && !b.ends_with('\n') {
                b.push('\n');
            }
            b.push_str(&self.ca_pem());
            b
        })
    }

    /// Server settings with a certificate for `host`, made once per host and kept for the
    /// last `MAX_HOSTS` hosts. `host` must be a name a TLS client can ask for.
    pub(crate) fn server(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, InterceptError> {
        let host = host.to_ascii_lowercase();
        if host.len() > 253 || server_name(&host).is_none() {
            return Err(InterceptError::Tls(format!("{host:?} is not a host name")));
        }
        if let Some(c) = self.cached(&host) {
            return Ok(c);
        }
        // Made outside the lock: a key pair takes a while, and other sandboxes wait on it.
        let ca_err = |e: rcgen::Error| InterceptError::Ca(e.to_string());
        let key = KeyPair::generate().map_err(ca_err)?;
        let mut params = CertificateParams::new(vec![host.clone()]).map_err(ca_err)?;
        params.distinguished_name.push(DnType::CommonName, &host);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params
            .signed_by(&key, &self.ca, &self.ca_key)
            .map_err(ca_err)?;
        let chain = vec![
            CertificateDer::from(cert.der().to_vec()),
            CertificateDer::from(self.ca.der().to_vec()),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| InterceptError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| InterceptError::Tls(e.to_string()))?;
        // One request per connection, read here: HTTP/1.1 only.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        let mut servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        // A sandbox asking for ever new names must not grow this without end.
        if servers.len() >= MAX_HOSTS {
            servers.clear();
        }
        servers.insert(host, config.clone());
        Ok(config)
    }

    fn cached(&self, host: &str) -> Option<Arc<rustls::ServerConfig>> {
        let servers = self.servers.lock().unwrap_or_else(|e| e.into_inner());
        servers.get(host).cloned()
    }

    pub(crate) fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.client.clone())
    }
}

/// `host` as the name a TLS client sends and checks.
pub(crate) fn server_name(host: &str) -> Option<ServerName<'static>> {
    ServerName::try_from(host.to_owned()).ok()
}
