//! The broker's TLS: its settings, built from the files the config names,
//! and the accepting side of a handshake.
//!
//! Each shard keeps its own [`Settings`] (a thread-local): a SIGHUP builds
//! new ones once, from the files as they are then, and sends them to every
//! shard as a message. A connection uses the settings of the moment it
//! was accepted, to its end; new connections use the new ones.
//!
//! The client listener serves, on one port:
//! - a connection whose TLS hello offers [`PEER_ALPN`](super::PEER_ALPN),
//!   when peer TLS is configured: the cluster's own certificate, and it
//!   must show one the peer CA signed (a replica's fetches);
//! - any other TLS hello, when client TLS is configured: the client
//!   certificate, asking for the client's when `tls_client_ca` is set;
//! - plaintext, unless client TLS is configured (then it is closed).
//!
//! The quorum listener speaks only to peers: TLS with the cluster's
//! certificate, both ways, when peer TLS is configured.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, ServerConfig};

use super::{load_certs, load_key, load_roots, provider, PEER_ALPN};
use crate::auth::Principal;
use crate::net::{Stream, TcpStream};
use crate::rt;

/// The first byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// A broker's TLS settings at one moment.
#[derive(Default, Clone)]
pub struct Settings {
    /// The client listeners' (native and Kafka).
    pub client: Option<Arc<ServerConfig>>,
    /// The quorum port's, and the client listener's for replicas.
    pub peer_server: Option<Arc<ServerConfig>>,
    /// Connections this broker opens to its peers.
    pub peer_client: Option<Arc<ClientConfig>>,
}

/// The PEM files a broker's TLS settings are read from (the config's
/// `tls_*` and `peer_tls_*`).
#[derive(Debug, Clone, Default)]
pub struct Files {
    pub tls_cert: Option<std::path::PathBuf>,
    pub tls_key: Option<std::path::PathBuf>,
    pub tls_client_ca: Option<std::path::PathBuf>,
    pub peer_tls_cert: Option<std::path::PathBuf>,
    pub peer_tls_key: Option<std::path::PathBuf>,
    pub peer_tls_ca: Option<std::path::PathBuf>,
}

impl Settings {
    /// Builds the settings from `config`'s files; an error names the file
    /// and what is wrong with it.
    pub fn load(config: &Files) -> Result<Self, String> {
        let mut s = Settings::default();
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?;
            let builder = match &config.tls_client_ca {
                Some(ca) => builder.with_client_cert_verifier(
                    WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider())
                        .build()
                        .map_err(|e| format!("tls_client_ca {}: {e}", ca.display()))?,
                ),
                None => builder.with_no_client_auth(),
            };
            let c = builder.with_single_cert(load_certs(cert)?, load_key(key)?).map_err(|e| format!("tls_cert/tls_key: {e}"))?;
            s.client = Some(Arc::new(c));
        }
        if let (Some(cert), Some(key), Some(ca)) = (&config.peer_tls_cert, &config.peer_tls_key, &config.peer_tls_ca) {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(load_roots(ca)?, provider()).build().map_err(|e| format!("peer_tls_ca {}: {e}", ca.display()))?;
            let mut c = ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .with_client_cert_verifier(verifier)
                .with_single_cert(load_certs(cert)?, load_key(key)?)
                .map_err(|e| format!("peer_tls_cert/peer_tls_key: {e}"))?;
            c.alpn_protocols = vec![PEER_ALPN.to_vec()];
            s.peer_server = Some(Arc::new(c));
            s.peer_client = Some(super::client_config(ca, Some((cert, key)), Some(PEER_ALPN))?);
        }
        Ok(s)
    }
}

thread_local! {
    static CURRENT: RefCell<Rc<Settings>> = RefCell::new(Rc::new(Settings::default()));
}

/// This shard's settings now.
pub fn current() -> Rc<Settings> {
    CURRENT.with(|c| c.borrow().clone())
}

/// Replaces this shard's settings (at start, and on SIGHUP).
pub fn install(s: Settings) {
    CURRENT.with(|c| *c.borrow_mut() = Rc::new(s));
}

/// The common name of a certificate's subject, if it has one.
fn common_name(der: &[u8]) -> Option<String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let cn = cert.subject().iter_common_name().next()?.as_str().ok()?.to_string();
    Some(cn)
}

fn too_slow() -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake did not finish in time")
}

fn refused(why: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, why.into())
}

/// Takes a client listener's new connection through TLS when it speaks
/// it (see the module's comment), within `within`; returns the stream and
/// who the certificate says the client is.
pub async fn accept(tcp: TcpStream, within: Duration) -> io::Result<(Stream, Principal)> {
    let s = current();
    if s.client.is_none() && s.peer_server.is_none() {
        return Ok((Stream::Plain(tcp), Principal::Anonymous));
    }
    rt::timeout(within, async move {
        let mut first = [0u8; 1];
        if tcp.peek(&mut first).await? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before its first byte"));
        }
        if first[0] != TLS_HANDSHAKE {
            return match s.client {
                Some(_) => Err(refused("plaintext on a TLS listener")),
                None => Ok((Stream::Plain(tcp), Principal::Anonymous)),
            };
        }
        let start = futures_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let peer = start.client_hello().alpn().is_some_and(|mut a| a.any(|p| p == PEER_ALPN));
        let config = match (peer, &s.peer_server, &s.client) {
            (true, Some(p), _) => p.clone(),
            (_, _, Some(c)) => c.clone(),
            _ => return Err(refused("a TLS hello without the peer protocol on a listener whose TLS is for peers only")),
        };
        let stream = start.into_stream(config).await?;
        let cn = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| common_name(c));
        let principal = match (peer && s.peer_server.is_some(), cn) {
            (true, Some(cn)) => Principal::Broker(cn),
            (true, None) => return Err(refused("a peer certificate without a common name")),
            (false, Some(cn)) => Principal::User(cn),
            (false, None) => Principal::Anonymous,
        };
        Ok((Stream::Server(Box::new(stream)), principal))
    })
    .await
    .unwrap_or_else(|| Err(too_slow()))
}

/// Takes a quorum listener's new connection through the peer handshake,
/// when peer TLS is configured, within `within`.
pub async fn accept_peer(tcp: TcpStream, within: Duration) -> io::Result<Stream> {
    let Some(config) = current().peer_server.clone() else { return Ok(Stream::Plain(tcp)) };
    let s = rt::timeout(within, futures_rustls::TlsAcceptor::from(config).accept(tcp)).await.unwrap_or_else(|| Err(too_slow()))?;
    Ok(Stream::Server(Box::new(s)))
}

/// Connects to a peer's port, in TLS with the cluster's certificate when
/// peer TLS is configured (the peer's certificate must name `host`).
pub async fn connect_peer(host: &str, port: u16) -> io::Result<Stream> {
    let tcp = crate::net::connect_tcp(host, port).await?;
    match current().peer_client.clone() {
        None => Ok(Stream::Plain(tcp)),
        Some(cfg) => {
            let name = super::server_name(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
            let s = futures_rustls::TlsConnector::from(cfg).connect(name, tcp).await?;
            Ok(Stream::Client(Box::new(s)))
        }
    }
}
