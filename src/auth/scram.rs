//! SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka speaks
//! them: no channel binding (the `n,,` header), and Kafka's extensions
//! in the client's first message are accepted but grant nothing.
//!
//! Sans-IO: [`ServerExchange`] and [`ClientExchange`] turn one message
//! into the next; the transport (Kafka's SaslAuthenticate, or the native
//! protocol's) carries them. The server keeps only the salted keys of a
//! password ([`ScramCredential`]), never the password; a client proves
//! it knows the password without sending it.
//!
//! Every message is parsed from untrusted bytes: sizes are bounded by
//! [`MAX_MESSAGE_BYTES`], and any malformed field is an error, never a
//! panic.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use serde::{Deserialize, Serialize};

/// The longest SCRAM message either side accepts.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// Iterations for new credentials, Kafka's default and minimum.
pub const DEFAULT_ITERATIONS: u32 = 4096;
/// Iterations a client accepts from a server: at least this many...
pub const MIN_ITERATIONS: u32 = 4096;
/// ...and at most this many (Kafka's own bound), so a hostile server
/// cannot make a client spin.
pub const MAX_ITERATIONS: u32 = 16384;
const NONCE_BYTES: usize = 24;
const SALT_BYTES: usize = 16;

/// A SCRAM mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Mechanism {
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl Mechanism {
    pub const ALL: [Mechanism; 2] = [Mechanism::ScramSha256, Mechanism::ScramSha512];

    /// Its name in SASL (and Kafka's settings).
    pub fn name(self) -> &'static str {
        match self {
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.name().eq_ignore_ascii_case(s.trim()))
    }

    fn hmac(self) -> hmac::Algorithm {
        match self {
            Mechanism::ScramSha256 => hmac::HMAC_SHA256,
            Mechanism::ScramSha512 => hmac::HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Mechanism::ScramSha256 => &digest::SHA256,
            Mechanism::ScramSha512 => &digest::SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Mechanism::ScramSha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Mechanism::ScramSha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }

    fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        hmac::sign(&hmac::Key::new(self.hmac(), key), data).as_ref().to_vec()
    }

    fn hash(self, data: &[u8]) -> Vec<u8> {
        digest::digest(self.digest(), data).as_ref().to_vec()
    }

    fn salted_password(self, password: &str, salt: &[u8], iterations: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.len()];
        let n = std::num::NonZeroU32::new(iterations.max(1)).expect("at least 1");
        pbkdf2::derive(self.pbkdf2(), n, salt, password.as_bytes(), &mut out);
        out
    }
}

impl std::fmt::Display for Mechanism {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the server stores of a password for one mechanism (RFC 5802 §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredential {
    pub salt: Vec<u8>,
    pub iterations: u32,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// Salts and derives a password's keys, with a fresh random salt.
    pub fn new(mechanism: Mechanism, password: &str, iterations: u32) -> Self {
        Self::with_salt(mechanism, password, &random::<SALT_BYTES>(), iterations)
    }

    pub fn with_salt(mechanism: Mechanism, password: &str, salt: &[u8], iterations: u32) -> Self {
        let salted = mechanism.salted_password(password, salt, iterations);
        let client_key = mechanism.mac(&salted, b"Client Key");
        ScramCredential { salt: salt.to_vec(), iterations, stored_key: mechanism.hash(&client_key), server_key: mechanism.mac(&salted, b"Server Key") }
    }

    /// Whether it can be used with `mechanism` (keys of its length, a
    /// salt, iterations within bounds): a credential read from the
    /// quorum's log is checked before use.
    pub fn is_sound(&self, mechanism: Mechanism) -> bool {
        self.stored_key.len() == mechanism.len()
            && self.server_key.len() == mechanism.len()
            && !self.salt.is_empty()
            && self.salt.len() <= 256
            && (MIN_ITERATIONS..=MAX_ITERATIONS).contains(&self.iterations)
    }
}

/// Why an exchange failed. `Auth` is a wrong user or password, which the
/// client is told in the same words whichever it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("authentication failed: invalid credentials with SASL mechanism {0}")]
    Auth(Mechanism),
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("the server's signature does not match: it does not know this user's credentials")]
    ServerSignature,
    #[error("the server asked for {0} iterations, outside {MIN_ITERATIONS}..={MAX_ITERATIONS}")]
    Iterations(u32),
    #[error("the server refused: {0}")]
    ServerError(String),
}

fn random<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new().fill(&mut b).expect("the system's random source works");
    b
}

fn nonce() -> String {
    B64.encode(random::<NONCE_BYTES>())
}

/// `a=value` attributes of a message, in order.
fn attributes(msg: &str) -> Result<Vec<(u8, &str)>, ScramError> {
    msg.split(',')
        .map(|a| {
            let b = a.as_bytes();
            if b.len() < 2 || b[1] != b'=' || !b[0].is_ascii_alphabetic() {
                return Err(ScramError::Malformed("an attribute is not a=value"));
            }
            Ok((b[0], &a[2..]))
        })
        .collect()
}

fn text(bytes: &[u8]) -> Result<&str, ScramError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(ScramError::Malformed("the message is too long"));
    }
    std::str::from_utf8(bytes).map_err(|_| ScramError::Malformed("not UTF-8"))
}

/// A SASL name with `=2C` and `=3D` decoded (RFC 5802 §5.1).
fn decode_name(s: &str) -> Result<String, ScramError> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i..i + 3) {
            Some("=2C") => out.push(','),
            Some("=3D") => out.push('='),
            _ => return Err(ScramError::Malformed("a user name has a bad escape")),
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

fn encode_name(s: &str) -> String {
    s.replace('=', "=3D").replace(',', "=2C")
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The server's side of one exchange.
pub struct ServerExchange {
    mechanism: Mechanism,
    state: ServerState,
}

enum ServerState {
    /// Waits for the client's first message.
    Start,
    /// Sent the server-first message; waits for the client's proof.
    Challenged {
        user: String,
        credential: Option<ScramCredential>,
        auth_prefix: String,
        nonce: String,
    },
    Done,
}

/// What the server does after a client message.
#[derive(Debug, PartialEq, Eq)]
pub enum ServerStep {
    /// Send this and wait for the client's next message.
    Challenge(Vec<u8>),
    /// Authenticated as the user; send this final message.
    Success { user: String, message: Vec<u8> },
}

impl ServerExchange {
    pub fn new(mechanism: Mechanism) -> Self {
        ServerExchange { mechanism, state: ServerState::Start }
    }

    pub fn mechanism(&self) -> Mechanism {
        self.mechanism
    }

    /// Handles the client's next message. `lookup` finds a user's
    /// credential for this mechanism; for a user it does not know, the
    /// exchange goes on with a made-up salt and fails at the proof, so a
    /// client cannot tell a wrong user from a wrong password.
    pub fn step(&mut self, msg: &[u8], lookup: impl FnOnce(&str) -> Option<ScramCredential>) -> Result<ServerStep, ScramError> {
        let m = self.mechanism;
        match std::mem::replace(&mut self.state, ServerState::Done) {
            ServerState::Start => {
                let msg = text(msg)?;
                let bare = msg.strip_prefix("n,,").ok_or(ScramError::Malformed("channel binding is not supported; the message must start with n,,"))?;
                let attrs = attributes(bare)?;
                let user = match attrs.first() {
                    Some((b'n', u)) => decode_name(u)?,
                    _ => return Err(ScramError::Malformed("the first message must name the user")),
                };
                let client_nonce = match attrs.get(1) {
                    Some((b'r', r)) if !r.is_empty() => *r,
                    _ => return Err(ScramError::Malformed("the first message must carry a nonce")),
                };
                if attrs[2..].iter().any(|(k, v)| *k == b't' && v.starts_with("okenauth")) || bare.contains(",tokenauth=") {
                    return Err(ScramError::Malformed("delegation tokens are not supported"));
                }
                let credential = lookup(&user).filter(|c| c.is_sound(m));
                let (salt, iterations) = match &credential {
                    Some(c) => (c.salt.clone(), c.iterations),
                    None => (fake_salt(&user), DEFAULT_ITERATIONS),
                };
                let nonce = format!("{client_nonce}{}", self::nonce());
                let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
                let auth_prefix = format!("{bare},{server_first}");
                self.state = ServerState::Challenged { user, credential, auth_prefix, nonce };
                Ok(ServerStep::Challenge(server_first.into_bytes()))
            }
            ServerState::Challenged { user, credential, auth_prefix, nonce } => {
                let msg = text(msg)?;
                let (without_proof, proof) = msg.rsplit_once(",p=").ok_or(ScramError::Malformed("the final message has no proof"))?;
                let attrs = attributes(without_proof)?;
                match attrs.first() {
                    // base64 of "n,,": no channel binding.
                    Some((b'c', "biws")) => {}
                    _ => return Err(ScramError::Malformed("the final message's channel binding must be biws (n,,)")),
                }
                // The nonce must end with the server's: librdkafka 2.0 sends
                // the client's part twice, and Kafka's brokers check only
                // the end, as this does.
                match attrs.get(1) {
                    Some((b'r', r)) if r.ends_with(nonce.as_str()) => {}
                    _ => return Err(ScramError::Auth(m)),
                }
                let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("the proof is not base64"))?;
                let Some(c) = credential else { return Err(ScramError::Auth(m)) };
                let auth_message = format!("{auth_prefix},{without_proof}");
                let signature = m.mac(&c.stored_key, auth_message.as_bytes());
                if proof.len() != signature.len() {
                    return Err(ScramError::Auth(m));
                }
                let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
                if !ct_eq(&m.hash(&client_key), &c.stored_key) {
                    return Err(ScramError::Auth(m));
                }
                let server_signature = m.mac(&c.server_key, auth_message.as_bytes());
                Ok(ServerStep::Success { user, message: format!("v={}", B64.encode(server_signature)).into_bytes() })
            }
            ServerState::Done => Err(ScramError::Malformed("the exchange is over")),
        }
    }
}

/// The same made-up salt for an unknown user every time this process is
/// asked, so asking twice does not tell a user that exists from one that
/// does not.
fn fake_salt(user: &str) -> Vec<u8> {
    static KEY: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    let key = KEY.get_or_init(random::<32>);
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), user.as_bytes()).as_ref()[..SALT_BYTES].to_vec()
}

/// The client's side of one exchange.
pub struct ClientExchange {
    mechanism: Mechanism,
    password: String,
    state: ClientState,
}

enum ClientState {
    Start {
        user: String,
    },
    /// Sent the first message.
    First {
        bare: String,
        nonce: String,
    },
    /// Sent the proof; expects the server's signature.
    Final {
        server_signature: Vec<u8>,
    },
    Done,
}

impl ClientExchange {
    pub fn new(mechanism: Mechanism, user: &str, password: &str) -> Self {
        ClientExchange { mechanism, password: password.to_string(), state: ClientState::Start { user: user.to_string() } }
    }

    /// The client's first message.
    pub fn first(&mut self) -> Vec<u8> {
        let ClientState::Start { user } = std::mem::replace(&mut self.state, ClientState::Done) else {
            return Vec::new();
        };
        let nonce = nonce();
        let bare = format!("n={},r={nonce}", encode_name(&user));
        let msg = format!("n,,{bare}").into_bytes();
        self.state = ClientState::First { bare, nonce };
        msg
    }

    /// The answer to the server's first message: the proof.
    pub fn respond(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let m = self.mechanism;
        let ClientState::First { bare, nonce } = std::mem::replace(&mut self.state, ClientState::Done) else {
            return Err(ScramError::Malformed("the exchange is not at the server's first message"));
        };
        let server_first = text(server_first)?;
        if let Some(e) = server_first.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let attrs = attributes(server_first)?;
        let (r, s, i) = match attrs.as_slice() {
            [(b'r', r), (b's', s), (b'i', i), ..] => (*r, *s, *i),
            _ => return Err(ScramError::Malformed("the server's first message is not r=,s=,i=")),
        };
        if !r.starts_with(&nonce) || r.len() == nonce.len() {
            return Err(ScramError::Malformed("the server's nonce does not extend the client's"));
        }
        let salt = B64.decode(s).map_err(|_| ScramError::Malformed("the salt is not base64"))?;
        let iterations: u32 = i.parse().map_err(|_| ScramError::Malformed("the iteration count is not a number"))?;
        if !(MIN_ITERATIONS..=MAX_ITERATIONS).contains(&iterations) {
            return Err(ScramError::Iterations(iterations));
        }
        let salted = m.salted_password(&self.password, &salt, iterations);
        let client_key = m.mac(&salted, b"Client Key");
        let stored_key = m.hash(&client_key);
        let without_proof = format!("c=biws,r={r}");
        let auth_message = format!("{bare},{server_first},{without_proof}");
        let signature = m.mac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let server_key = m.mac(&salted, b"Server Key");
        self.state = ClientState::Final { server_signature: m.mac(&server_key, auth_message.as_bytes()) };
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server's final message: it proves the server holds this
    /// user's credentials.
    pub fn finish(&mut self, server_final: &[u8]) -> Result<(), ScramError> {
        let ClientState::Final { server_signature } = std::mem::replace(&mut self.state, ClientState::Done) else {
            return Err(ScramError::Malformed("the exchange is not at the server's final message"));
        };
        let msg = text(server_final)?;
        if let Some(e) = msg.strip_prefix("e=") {
            return Err(ScramError::ServerError(e.to_string()));
        }
        let v = msg.strip_prefix("v=").ok_or(ScramError::Malformed("the server's final message is not v="))?;
        let v = B64.decode(v.split(',').next().unwrap_or_default()).map_err(|_| ScramError::Malformed("the server signature is not base64"))?;
        if !ct_eq(&v, &server_signature) {
            return Err(ScramError::ServerSignature);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(m: Mechanism, stored_for: &str, user: &str, password: &str) -> Result<String, ScramError> {
        let cred = ScramCredential::new(m, "pencil", DEFAULT_ITERATIONS);
        let mut server = ServerExchange::new(m);
        let mut client = ClientExchange::new(m, user, password);
        let ServerStep::Challenge(first) = server.step(&client.first(), |u| (u == stored_for).then(|| cred.clone()))? else { panic!("a challenge first") };
        let proof = client.respond(&first)?;
        match server.step(&proof, |_| None)? {
            ServerStep::Success { user, message } => {
                client.finish(&message)?;
                Ok(user)
            }
            ServerStep::Challenge(_) => panic!("success or failure after the proof"),
        }
    }

    #[test]
    fn the_right_password_authenticates_and_a_wrong_one_or_user_does_not() {
        for m in Mechanism::ALL {
            assert_eq!(exchange(m, "user,=x", "user,=x", "pencil").unwrap(), "user,=x");
            assert_eq!(exchange(m, "user", "user", "pen").unwrap_err(), ScramError::Auth(m));
            assert_eq!(exchange(m, "user", "other", "pencil").unwrap_err(), ScramError::Auth(m));
        }
    }

    /// RFC 7677's SCRAM-SHA-256 example: our derivation gives its keys.
    #[test]
    fn rfc7677_example_keys() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let c = ScramCredential::with_salt(Mechanism::ScramSha256, "pencil", &salt, 4096);
        let mut server = ServerExchange::new(Mechanism::ScramSha256);
        server.state = ServerState::Challenged {
            user: "user".into(),
            credential: Some(c),
            auth_prefix: "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into(),
            nonce: "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        };
        let step =
            server.step(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=", |_| None).unwrap();
        assert_eq!(step, ServerStep::Success { user: "user".into(), message: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec() });
    }

    /// librdkafka 2.0's final message repeats the client's nonce in front.
    #[test]
    fn a_final_nonce_that_ends_with_the_servers_is_accepted() {
        let m = Mechanism::ScramSha256;
        let cred = ScramCredential::new(m, "pw", DEFAULT_ITERATIONS);
        let mut server = ServerExchange::new(m);
        let ServerStep::Challenge(first) = server.step(b"n,,n=u,r=abc", |_| Some(cred.clone())).unwrap() else { panic!() };
        let first = String::from_utf8(first).unwrap();
        let nonce = first.strip_prefix("r=").unwrap().split(',').next().unwrap();
        let salted = m.salted_password("pw", &cred.salt, cred.iterations);
        let client_key = m.mac(&salted, b"Client Key");
        let without_proof = format!("c=biws,r=abc{nonce}");
        let auth = format!("n=u,r=abc,{first},{without_proof}");
        let sig = m.mac(&m.hash(&client_key), auth.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&sig).map(|(a, b)| a ^ b).collect();
        let fin = format!("{without_proof},p={}", B64.encode(proof));
        assert!(matches!(server.step(fin.as_bytes(), |_| None), Ok(ServerStep::Success { .. })));
        let mut other = ServerExchange::new(m);
        other.step(b"n,,n=u,r=abc", |_| Some(cred.clone())).unwrap();
        assert_eq!(other.step(b"c=biws,r=abcX,p=AAAA", |_| None).unwrap_err(), ScramError::Auth(m), "a nonce not ending with the server's");
    }

    #[test]
    fn hostile_messages_are_errors_not_panics() {
        let inputs: [&[u8]; 10] = [b"", b"n,,", b"n,,n=", b"n,,n=a", b"n,,n=a,r=", b"y,,n=a,r=b", b"n,,n=a=,r=b", b"\xff\xfe", b"n,,=,=", &[b'a'; 5000]];
        for i in inputs {
            assert!(ServerExchange::new(Mechanism::ScramSha256).step(i, |_| None).is_err(), "{i:?}");
        }
        let mut s = ServerExchange::new(Mechanism::ScramSha512);
        s.step(b"n,,n=a,r=b", |_| None).unwrap();
        for i in [&b"c=biws"[..], b"c=biws,p=!!", b",p=", b"p="] {
            let mut s2 = ServerExchange::new(Mechanism::ScramSha512);
            s2.step(b"n,,n=a,r=b", |_| None).unwrap();
            assert!(s2.step(i, |_| None).is_err());
        }
        let mut c = ClientExchange::new(Mechanism::ScramSha256, "a", "b");
        c.first();
        assert_eq!(c.respond(b"r=x,s=AAAA,i=4096").unwrap_err(), ScramError::Malformed("the server's nonce does not extend the client's"));
        let mut c = ClientExchange::new(Mechanism::ScramSha256, "a", "b");
        let first = String::from_utf8(c.first()).unwrap();
        let n = first.rsplit_once("r=").unwrap().1;
        assert_eq!(c.respond(format!("r={n}x,s=AAAA,i=99999999").as_bytes()).unwrap_err(), ScramError::Iterations(99999999));
    }
}
