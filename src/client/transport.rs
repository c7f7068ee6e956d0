//! A blocking socket to a broker, in plaintext or TLS, that one thread
//! may read while another writes (see [`Transport::try_clone`]).
//!
//! In TLS the two handles share the rustls connection under a mutex,
//! held only to encrypt or decrypt, never across a socket call: a reader
//! blocked on the socket never stops the writer, and the reverse.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::ClientConnection;

/// Bytes read from the socket at once in TLS.
const RAW_READ_BYTES: usize = 64 << 10;

/// A connected socket.
pub enum Transport {
    /// Plaintext.
    Plain(TcpStream),
    /// TLS over the socket.
    Tls(TlsSocket),
}

/// One handle on a TLS connection.
pub struct TlsSocket {
    sock: TcpStream,
    conn: Arc<Mutex<ClientConnection>>,
    /// Bytes read from the socket and not yet given to rustls.
    raw: Vec<u8>,
    at: usize,
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Transport {
    /// Connects to `host:port`, in TLS when `tls` is given (the broker's
    /// certificate must name `host`).
    pub fn connect(host: &str, port: u16, tls: Option<&Arc<rustls::ClientConfig>>) -> io::Result<Self> {
        let mut sock = TcpStream::connect((host, port))?;
        sock.set_nodelay(true)?;
        let Some(cfg) = tls else { return Ok(Transport::Plain(sock)) };
        let name = crate::tls::server_name(host).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut conn = ClientConnection::new(cfg.clone(), name).map_err(tls_error)?;
        sock.set_read_timeout(Some(Duration::from_secs(30)))?;
        while conn.is_handshaking() {
            conn.complete_io(&mut sock)?;
        }
        sock.set_read_timeout(None)?;
        Ok(Transport::Tls(TlsSocket { sock, conn: Arc::new(Mutex::new(conn)), raw: Vec::new(), at: 0 }))
    }

    fn sock(&self) -> &TcpStream {
        match self {
            Transport::Plain(s) => s,
            Transport::Tls(t) => &t.sock,
        }
    }

    /// Bounds how long a read waits.
    pub fn set_read_timeout(&self, d: Option<Duration>) -> io::Result<()> {
        self.sock().set_read_timeout(d)
    }

    /// Closes both directions for every handle.
    pub fn shutdown(&self) -> io::Result<()> {
        self.sock().shutdown(std::net::Shutdown::Both)
    }

    /// A second handle on the same connection: one may read while the
    /// other writes (not two readers at once).
    pub fn try_clone(&self) -> io::Result<Self> {
        Ok(match self {
            Transport::Plain(s) => Transport::Plain(s.try_clone()?),
            Transport::Tls(t) => Transport::Tls(TlsSocket { sock: t.sock.try_clone()?, conn: t.conn.clone(), raw: Vec::new(), at: 0 }),
        })
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let t = match self {
            Transport::Plain(s) => return s.read(buf),
            Transport::Tls(t) => t,
        };
        loop {
            {
                let mut c = t.conn.lock().expect("the TLS state is never left poisoned");
                match c.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                // Nothing decrypted is waiting: feed rustls what was read.
                if t.at < t.raw.len() {
                    let n = c.read_tls(&mut &t.raw[t.at..])?;
                    t.at += n;
                    c.process_new_packets().map_err(tls_error)?;
                    continue;
                }
            }
            t.raw.resize(RAW_READ_BYTES, 0);
            t.at = 0;
            let n = match t.sock.read(&mut t.raw) {
                Ok(n) => n,
                Err(e) => {
                    t.raw.clear();
                    return Err(e);
                }
            };
            t.raw.truncate(n);
            if n == 0 {
                return Ok(0);
            }
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let t = match self {
            Transport::Plain(s) => return s.write(buf),
            Transport::Tls(t) => t,
        };
        let mut out = Vec::with_capacity(buf.len().min(1 << 20) + 64);
        let n = {
            let mut c = t.conn.lock().expect("the TLS state is never left poisoned");
            let n = c.writer().write(buf)?;
            while c.wants_write() {
                c.write_tls(&mut out)?;
            }
            n
        };
        t.sock.write_all(&out)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
