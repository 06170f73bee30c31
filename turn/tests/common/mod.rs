//! A small TURN client over UDP, built on the `stun` crate, that reports each answer's
//! exact error code; and servers on 127.0.0.1 for it to talk to.
#![allow(dead_code, missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cinder_turn::{Config, Server};
use stun::attributes::*;
use stun::error_code::ErrorCodeAttribute;
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;

pub const SECRET: &[u8] = b"test secret";
pub const REALM: &str = "cinder.test";

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A REST username valid for an hour, and its password.
pub fn credentials(user: &str) -> (String, String) {
    let username = format!("{}:{user}", now() + 3600);
    let password = cinder_turn::auth::rest_password(SECRET, &username);
    (username, password)
}

/// A loopback server with the test secret and realm.
pub fn config() -> Config {
    Config::loopback(REALM, SECRET.to_vec())
}

pub async fn start(config: Config) -> Server {
    Server::start(config).await.expect("server starts")
}

/// What a request got back.
#[derive(Debug)]
pub struct Answer {
    pub message: Message,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        self.message.typ.class == CLASS_SUCCESS_RESPONSE
    }

    /// The error code, or 0 for a success.
    pub fn code(&self) -> u16 {
        let mut e = ErrorCodeAttribute::default();
        match e.get_from(&self.message) {
            Ok(()) => e.code.0,
            Err(_) => 0,
        }
    }

    pub fn text(&self, attr: AttrType) -> Option<String> {
        TextAttribute::get_from_as(&self.message, attr)
            .ok()
            .map(|t| t.text)
    }

    pub fn xor(&self, attr: AttrType) -> Option<SocketAddr> {
        let mut a = XorMappedAddress::default();
        a.get_from_as(&self.message, attr).ok()?;
        Some(SocketAddr::new(a.ip, a.port))
    }
}

/// A TURN client on one UDP socket.
pub struct Client {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub username: String,
    pub password: String,
    pub realm: String,
    pub nonce: String,
    /// Whether `request` retries after a 438 (off to see the 438 itself).
    pub retry_stale: bool,
    /// The last request `request` sent.
    pub last: Option<Message>,
}

impl Client {
    pub async fn new(server: SocketAddr, username: String, password: String) -> Client {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
        Client {
            socket,
            server,
            username,
            password,
            realm: String::new(),
            nonce: String::new(),
            retry_stale: true,
            last: None,
        }
    }

    /// A client with fresh valid credentials for `user`.
    pub async fn valid(server: SocketAddr, user: &str) -> Client {
        let (u, p) = credentials(user);
        Client::new(server, u, p).await
    }

    pub fn message(method: Method, class: MessageClass) -> Message {
        let mut m = Message::new();
        m.typ = MessageType::new(method, class);
        m.new_transaction_id().expect("transaction id");
        m.write_header();
        m
    }

    /// Sends `m` as is and waits for the answer with its transaction id.
    pub async fn exchange(&self, m: &Message) -> Answer {
        self.socket
            .send_to(&m.raw, self.server)
            .await
            .expect("send");
        let mut buf = vec![0u8; 2048];
        loop {
            let (n, _) =
                tokio::time::timeout(Duration::from_secs(3), self.socket.recv_from(&mut buf))
                    .await
                    .expect("an answer within 3 s")
                    .expect("recv");
            let mut a = Message::new();
            if a.unmarshal_binary(&buf[..n]).is_ok() && a.transaction_id == m.transaction_id {
                return Answer { message: a };
            }
        }
    }

    /// Sends a request with `attrs`, signed with the credentials; learns realm and nonce
    /// from a 401 or 438 first (and once more if the nonce went stale).
    pub async fn request(&mut self, method: Method, attrs: &[(AttrType, Vec<u8>)]) -> Answer {
        self.request_with_peers(method, attrs, &[]).await
    }

    /// [`Client::request`] with XOR-PEER-ADDRESS attributes, encoded against the
    /// request's own transaction id.
    pub async fn request_with_peers(
        &mut self,
        method: Method,
        attrs: &[(AttrType, Vec<u8>)],
        peers: &[SocketAddr],
    ) -> Answer {
        for _ in 0..3 {
            let mut m = Client::message(method, CLASS_REQUEST);
            for (t, v) in attrs {
                m.add(*t, v);
            }
            for peer in peers {
                let value = xor_value_for(*peer, &m.transaction_id.0);
                m.add(ATTR_XOR_PEER_ADDRESS, &value);
            }
            if !self.nonce.is_empty() {
                TextAttribute::new(ATTR_USERNAME, self.username.clone())
                    .add_to(&mut m)
                    .expect("username");
                TextAttribute::new(ATTR_REALM, self.realm.clone())
                    .add_to(&mut m)
                    .expect("realm");
                TextAttribute::new(ATTR_NONCE, self.nonce.clone())
                    .add_to(&mut m)
                    .expect("nonce");
                MessageIntegrity::new_long_term_integrity(
                    self.username.clone(),
                    self.realm.clone(),
                    self.password.clone(),
                )
                .add_to(&mut m)
                .expect("integrity");
            }
            FINGERPRINT.add_to(&mut m).expect("fingerprint");
            let answer = self.exchange(&m).await;
            self.last = Some(m);
            let code = answer.code();
            let first = self.nonce.is_empty();
            if code == 401 || code == 438 {
                self.realm = answer.text(ATTR_REALM).expect("401 and 438 carry REALM");
                self.nonce = answer.text(ATTR_NONCE).expect("401 and 438 carry NONCE");
                if first || (code == 438 && self.retry_stale) {
                    continue;
                }
            }
            return answer;
        }
        panic!("no answer past the nonce");
    }

    pub async fn allocate(&mut self) -> Answer {
        self.request(
            METHOD_ALLOCATE,
            &[(ATTR_REQUESTED_TRANSPORT, vec![17, 0, 0, 0])],
        )
        .await
    }

    /// Allocates and returns the relayed address.
    pub async fn relayed(&mut self) -> SocketAddr {
        let a = self.allocate().await;
        assert!(a.is_success(), "allocate: {}", a.code());
        a.xor(ATTR_XOR_RELAYED_ADDRESS)
            .expect("XOR-RELAYED-ADDRESS")
    }

    pub async fn create_permission(&mut self, peer: SocketAddr) -> Answer {
        self.request_with_peers(METHOD_CREATE_PERMISSION, &[], &[peer])
            .await
    }

    pub async fn channel_bind(&mut self, channel: u16, peer: SocketAddr) -> Answer {
        let mut number = channel.to_be_bytes().to_vec();
        number.extend([0, 0]);
        self.request_with_peers(
            METHOD_CHANNEL_BIND,
            &[(ATTR_CHANNEL_NUMBER, number)],
            &[peer],
        )
        .await
    }

    pub async fn refresh(&mut self, lifetime: u32) -> Answer {
        self.request(
            METHOD_REFRESH,
            &[(ATTR_LIFETIME, lifetime.to_be_bytes().to_vec())],
        )
        .await
    }

    /// Sends ChannelData on `channel`.
    pub async fn channel_data(&self, channel: u16, payload: &[u8]) {
        let mut frame = channel.to_be_bytes().to_vec();
        frame.extend((payload.len() as u16).to_be_bytes());
        frame.extend(payload);
        self.socket
            .send_to(&frame, self.server)
            .await
            .expect("send");
    }

    /// Sends a Send indication to `peer`.
    pub async fn send_indication(&self, peer: SocketAddr, payload: &[u8]) {
        let mut m = Client::message(METHOD_SEND, CLASS_INDICATION);
        m.add(
            ATTR_XOR_PEER_ADDRESS,
            &xor_value_for(peer, &m.transaction_id.0),
        );
        m.add(ATTR_DATA, payload);
        self.socket
            .send_to(&m.raw, self.server)
            .await
            .expect("send");
    }
}

/// An XOR-…-ADDRESS value for a message with transaction id `tid`.
pub fn xor_value_for(peer: SocketAddr, tid: &[u8; 12]) -> Vec<u8> {
    let mut m = Message::new();
    m.transaction_id = stun::agent::TransactionId(*tid);
    m.write_header();
    XorMappedAddress {
        ip: peer.ip(),
        port: peer.port(),
    }
    .add_to_as(&mut m, ATTR_XOR_PEER_ADDRESS)
    .expect("xor address");
    m.get(ATTR_XOR_PEER_ADDRESS).expect("value")
}

/// Waits until `f` holds of the server's counters, or panics after 3 s.
pub async fn until(server: &Server, what: &str, f: impl Fn(&cinder_turn::Snapshot) -> bool) {
    for _ in 0..300 {
        if f(&server.counters()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{what}: counters {:?}", server.counters());
}
