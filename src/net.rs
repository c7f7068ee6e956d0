//! The seam over glommio's TCP listener and stream.

use std::io;
use std::net::SocketAddr;

/// A connected client socket; implements `futures::io::{AsyncRead, AsyncWrite}`.
pub type Stream = glommio::net::TcpStream;

/// A listening socket bound with SO_REUSEPORT, so every shard can bind the
/// same address and the kernel spreads connections between them.
pub struct Listener(glommio::net::TcpListener);

impl Listener {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        Ok(Listener(glommio::net::TcpListener::bind(addr)?))
    }

    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.0.local_addr()?)
    }

    pub async fn accept(&self) -> io::Result<Stream> {
        let s = self.0.accept().await?;
        s.set_nodelay(true)?;
        Ok(s)
    }
}

/// Connects to `addr` (a host name is resolved first), with `nodelay`.
pub async fn connect(host: &str, port: u16) -> io::Result<Stream> {
    use std::net::ToSocketAddrs;
    let addr = (host, port).to_socket_addrs()?.next().ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{host} has no address")))?;
    let s = glommio::net::TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}
