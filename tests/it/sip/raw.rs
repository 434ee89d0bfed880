//! A small SIP client over UDP for what SIPp 3.6.1 cannot do: answer a
//! challenge that offers SHA-256 first (it refuses any algorithm but MD5),
//! replay a request, compare two refusals. Digests are computed here, with
//! md-5 and sha2, independently of the server's hashing.

use std::fmt::Write;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::harness::Deadline;

use md5::Md5;
use sha2::{Digest, Sha256};

/// The algorithms of RFC 8760 (their names are the protocol's).
pub use callflow::sip::digest::Algorithm;

/// A SIP message received: its first line, headers and body.
#[derive(Debug, Clone)]
pub struct Message {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub text: String,
}

impl Message {
    /// Parses a datagram; `None` for what is not a SIP message (a
    /// keep-alive's CRLF).
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let mut lines = head.split("\r\n");
        let start = lines.next()?.trim().to_owned();
        if start.is_empty() {
            return None;
        }
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect();
        Some(Self {
            start,
            headers,
            body: body.to_owned(),
            text: text.clone(),
        })
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        let rest = self.start.strip_prefix("SIP/2.0 ")?;
        rest.get(..3)?.parse().ok()
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        (!self.start.starts_with("SIP/")).then(|| self.start.split(' ').next().unwrap_or(""))
    }

    /// Every value of a header (case-insensitive name).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.all(name).into_iter().next()
    }

    /// The method of the `CSeq` header.
    pub fn cseq_method(&self) -> Option<&str> {
        self.header("CSeq")?.split_whitespace().nth(1)
    }

    /// The tag of the To header.
    pub fn to_tag(&self) -> Option<&str> {
        self.header("To")?
            .split(';')
            .find_map(|p| p.trim().strip_prefix("tag="))
    }

    /// The URI inside `<...>` of the Contact header.
    pub fn contact_uri(&self) -> Option<&str> {
        let contact = self.header("Contact")?;
        contact.split_once('<')?.1.split_once('>').map(|(u, _)| u)
    }
}

/// A SIP user agent on an ephemeral UDP port of 127.0.0.1.
pub struct Client {
    socket: UdpSocket,
    pub server: SocketAddr,
    pub port: u16,
    /// Everything received, for failure messages.
    pub seen: std::cell::RefCell<Vec<String>>,
}

impl Client {
    pub fn new(server: SocketAddr) -> Self {
        Self::on_port(server, 0)
    }

    /// A client on `port` of 127.0.0.1 (0: any free one).
    pub fn on_port(server: SocketAddr, port: u16) -> Self {
        let socket = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        let port = socket.local_addr().unwrap().port();
        Self {
            socket,
            server,
            port,
            seen: std::cell::RefCell::default(),
        }
    }

    /// A branch no other request of this process used.
    pub fn branch() -> String {
        static NEXT: AtomicU32 = AtomicU32::new(1);
        format!(
            "z9hG4bK-raw-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// This client's Via header (a new branch unless one is given).
    pub fn via(&self, branch: &str) -> String {
        format!("SIP/2.0/UDP 127.0.0.1:{};rport;branch={branch}", self.port)
    }

    pub fn send(&self, text: &str) {
        self.socket.send_to(text.as_bytes(), self.server).unwrap();
    }

    /// The next message within `timeout`.
    pub fn next(&self, timeout: Duration) -> Option<Message> {
        let deadline = Deadline::after(timeout);
        let mut buf = vec![0_u8; 65_536];
        loop {
            let left = deadline.left()?;
            self.socket
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let Ok((len, _)) = self.socket.recv_from(&mut buf) else {
                return None;
            };
            if let Some(message) = Message::parse(&buf[..len]) {
                self.seen.borrow_mut().push(message.start.clone());
                return Some(message);
            }
        }
    }

    /// The next final response to a `method` request (provisional ones and
    /// other messages skipped), or a panic saying what came instead.
    pub fn final_response(&self, method: &str) -> Message {
        let deadline = Deadline::after(Duration::from_secs(10));
        while let Some(left) = deadline.left() {
            let Some(message) = self.next(left) else {
                break;
            };
            if message.status().is_some_and(|s| s >= 200) && message.cseq_method() == Some(method) {
                return message;
            }
        }
        panic!(
            "no final response to {method} in 10 s; received: {:?}",
            self.seen.borrow()
        );
    }

    /// The next request of `method` from the server.
    pub fn request_from_server(&self, method: &str, timeout: Duration) -> Message {
        let deadline = Deadline::after(timeout);
        while let Some(left) = deadline.left() {
            let Some(message) = self.next(left) else {
                break;
            };
            if message.method() == Some(method) {
                return message;
            }
        }
        panic!(
            "no {method} from the server in {timeout:?}; received: {:?}",
            self.seen.borrow()
        );
    }

    /// Answers a request from the server with `200 OK`.
    pub fn ok(&self, request: &Message) {
        let mut text = String::from("SIP/2.0 200 OK\r\n");
        for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
            for value in request.all(name) {
                let _ = write!(text, "{name}: {value}\r\n");
            }
        }
        text.push_str("Content-Length: 0\r\n\r\n");
        self.send(&text);
    }
}

/// The requests of one dialog of a [`Client`]: its Call-ID, From tag and
/// the headers every request carries.
pub struct Dialog<'a> {
    client: &'a Client,
    from_user: &'a str,
    to: String,
    call_id: String,
    from_tag: String,
}

impl<'a> Dialog<'a> {
    pub fn new(client: &'a Client, from_user: &'a str, to: String, call_id: &str) -> Self {
        Self {
            client,
            from_user,
            to,
            call_id: format!("{call_id}-{}@127.0.0.1", std::process::id()),
            from_tag: format!("tag-{call_id}"),
        }
    }

    /// The headers every request of the dialog carries.
    pub fn headers(
        &self,
        branch: &str,
        cseq: &str,
        to_tag: Option<&str>,
    ) -> Vec<(&'static str, String)> {
        let to = match to_tag {
            Some(tag) => format!("<{}>;tag={tag}", self.to),
            None => format!("<{}>", self.to),
        };
        vec![
            ("Via", self.client.via(branch)),
            (
                "From",
                format!(
                    "<sip:{}@siptest.example.com>;tag={}",
                    self.from_user, self.from_tag
                ),
            ),
            ("To", to),
            ("Call-ID", self.call_id.clone()),
            ("CSeq", cseq.to_owned()),
            (
                "Contact",
                format!("<sip:{}@127.0.0.1:{}>", self.from_user, self.client.port),
            ),
            ("Max-Forwards", "70".to_owned()),
        ]
    }
}

/// A request: start line, headers in order, body (Content-Length added).
pub fn request(method: &str, uri: &str, headers: &[(&str, String)], body: &str) -> String {
    let mut text = format!("{method} {uri} SIP/2.0\r\n");
    for (name, value) in headers {
        let _ = write!(text, "{name}: {value}\r\n");
    }
    let _ = write!(text, "Content-Length: {}\r\n\r\n{body}", body.len());
    text
}

/// `H(text)` in hex: computed here, not by the server's code, so that the
/// test would catch a server that hashes wrong.
fn hash(algorithm: Algorithm, text: &str) -> String {
    let bytes = match algorithm {
        Algorithm::Md5 => Md5::digest(text.as_bytes()).to_vec(),
        Algorithm::Sha256 => Sha256::digest(text.as_bytes()).to_vec(),
    };
    bytes.iter().fold(String::new(), |mut hex, b| {
        let _ = write!(hex, "{b:02x}");
        hex
    })
}

/// A challenge (`WWW-Authenticate` / `Proxy-Authenticate`).
#[derive(Debug, Clone)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: String,
    pub qop: Option<String>,
}

impl Challenge {
    /// Parses `Digest realm="..", nonce="..", algorithm=.., qop=".."`.
    pub fn parse(value: &str) -> Option<Self> {
        let params = value.trim().strip_prefix("Digest")?;
        let get = |key: &str| {
            params.split(',').find_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case(key)
                    .then(|| v.trim().trim_matches('"').to_owned())
            })
        };
        Some(Self {
            realm: get("realm")?,
            nonce: get("nonce")?,
            algorithm: get("algorithm").unwrap_or_else(|| "MD5".to_owned()),
            qop: get("qop"),
        })
    }

    /// The challenges of a response (`header`: `WWW-Authenticate` or
    /// `Proxy-Authenticate`) by algorithm.
    pub fn of(response: &Message, header: &str) -> Vec<Self> {
        response
            .all(header)
            .into_iter()
            .filter_map(Self::parse)
            .collect()
    }
}

/// What a client answers to a challenge.
pub struct Answer<'a> {
    pub algorithm: Algorithm,
    pub username: &'a str,
    pub password: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    pub nc: u32,
    pub cnonce: &'a str,
}

/// The `Authorization` / `Proxy-Authorization` value answering `challenge`
/// (qop=auth, RFC 2617 §3.2.2 with RFC 8760's algorithms).
pub fn authorization(challenge: &Challenge, answer: &Answer<'_>) -> String {
    let algorithm = answer.algorithm;
    let ha1 = hash(
        algorithm,
        &format!(
            "{}:{}:{}",
            answer.username, challenge.realm, answer.password
        ),
    );
    let ha2 = hash(algorithm, &format!("{}:{}", answer.method, answer.uri));
    let nc = format!("{:08x}", answer.nc);
    let response = hash(
        algorithm,
        &format!(
            "{ha1}:{}:{nc}:{}:auth:{ha2}",
            challenge.nonce, answer.cnonce
        ),
    );
    format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{response}\", \
         algorithm={}, qop=auth, nc={nc}, cnonce=\"{}\"",
        answer.username,
        challenge.realm,
        challenge.nonce,
        answer.uri,
        algorithm.name(),
        answer.cnonce
    )
}

/// RFC 2617 §3.5's worked example: this client computes digests right.
#[test]
fn rfc_2617_example() {
    let challenge = Challenge::parse(
        "Digest realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", qop=\"auth\"",
    )
    .unwrap();
    let value = authorization(
        &challenge,
        &Answer {
            algorithm: Algorithm::Md5,
            username: "Mufasa",
            password: "Circle Of Life",
            method: "GET",
            uri: "/dir/index.html",
            nc: 1,
            cnonce: "0a4f113b",
        },
    );
    assert!(
        value.contains("response=\"6629fae49393a05397450978507c4ef1\""),
        "{value}"
    );
}
