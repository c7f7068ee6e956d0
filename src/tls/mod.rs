//! TLS settings read from PEM files, on rustls with ring's primitives: the
//! client side here (the SDK, the console tools, and a broker's own
//! connections to its peers), the broker's accepting side in
//! [`server`].
//!
//! Certificates are named by file, read when a setting is built, and
//! never again: a broker re-reads its files on SIGHUP by building new
//! settings (see `server::Settings::load`).

#[cfg(feature = "broker")]
pub mod server;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The ALPN protocol a broker offers when it connects to a peer, so the
/// peer answers with the cluster's own certificate and asks for ours
/// (see `server::accept`).
pub const PEER_ALPN: &[u8] = b"shardlog-peer";

/// The crypto provider every TLS setting uses.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificate chain in a PEM file, leaf first.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read certificates from {}: {e}", path.display()))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| format!("cannot read a private key from {}: {e}", path.display()))
}

/// The certificate authorities in a PEM file, as roots of trust.
pub fn load_roots(path: &Path) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for c in load_certs(path)? {
        roots.add(c).map_err(|e| format!("{}: not a usable CA certificate: {e}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// A client's TLS setting: trusts the authorities in `ca`, and shows the
/// certificate and key of `identity` when the server asks for one.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>, alpn: Option<&[u8]>) -> Result<Arc<ClientConfig>, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(load_roots(ca)?);
    let mut config = match identity {
        Some((cert, key)) => builder.with_client_auth_cert(load_certs(cert)?, load_key(key)?).map_err(|e| format!("{}: {e}", cert.display()))?,
        None => builder.with_no_client_auth(),
    };
    if let Some(p) = alpn {
        config.alpn_protocols = vec![p.to_vec()];
    }
    Ok(Arc::new(config))
}

/// The name a server's certificate must carry for a connection to `host`
/// (a DNS name or an IP address).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string()).map_err(|e| format!("'{host}' cannot name a TLS server: {e}"))
}

/// Where a client connects and how: the TLS setting, if any, and the
/// SASL credentials, if any.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    pub tls: Option<Arc<ClientConfig>>,
    pub sasl: Option<crate::auth::Credentials>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSecurity").field("tls", &self.tls.is_some()).field("sasl", &self.sasl.as_ref().map(|c| (&c.user, c.mechanism))).finish()
    }
}
