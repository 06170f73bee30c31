//! The server: starting listeners, the control plane (Binding, Allocate, Refresh,
//! CreatePermission, ChannelBind with long-term credentials), the client-to-peer data path,
//! and a graceful stop.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use stun::attributes::*;
use stun::error_code::{ErrorCode, ErrorCodeAttribute};
use stun::fingerprint::FINGERPRINT;
use stun::integrity::MessageIntegrity;
use stun::message::*;
use stun::textattrs::TextAttribute;
use stun::uattrs::UnknownAttributes;
use stun::xoraddr::XorMappedAddress;
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::allocation::{
    self, Allocation, BindConflict, ClientSink, FiveTuple, Table, TableFull, Transport,
};
use crate::auth::{self, NonceCheck, Nonces};
use crate::config::Config;
use crate::metrics::{Counters, Snapshot};
use crate::{Error, announce, net, tcp, tls, udp, wire};

/// Attributes this server understands; a request with any other comprehension-required
/// attribute (type below 0x8000) is answered 420. DONT-FRAGMENT is among them: the relay
/// sends from sockets whose datagrams are never fragmented by the relay itself.
const KNOWN: [AttrType; 18] = [
    ATTR_MAPPED_ADDRESS,
    ATTR_USERNAME,
    ATTR_MESSAGE_INTEGRITY,
    ATTR_ERROR_CODE,
    ATTR_UNKNOWN_ATTRIBUTES,
    ATTR_REALM,
    ATTR_NONCE,
    ATTR_XORMAPPED_ADDRESS,
    ATTR_CHANNEL_NUMBER,
    ATTR_LIFETIME,
    ATTR_XOR_PEER_ADDRESS,
    ATTR_DATA,
    ATTR_XOR_RELAYED_ADDRESS,
    ATTR_REQUESTED_ADDRESS_FAMILY,
    ATTR_EVEN_PORT,
    ATTR_REQUESTED_TRANSPORT,
    ATTR_DONT_FRAGMENT,
    ATTR_RESERVATION_TOKEN,
];

/// How long a port reserved by EVEN-PORT's R bit is held (RFC 8656 §7.2: 30 s).
const RESERVATION: Duration = Duration::from_secs(30);

/// IANA protocol number of UDP, the only REQUESTED-TRANSPORT relayed.
const PROTO_UDP: u8 = 17;

/// The addresses a started server listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LocalAddrs {
    /// The UDP listener.
    pub udp: Option<SocketAddr>,
    /// The TCP listener.
    pub tcp: Option<SocketAddr>,
    /// The TLS listener.
    pub tls: Option<SocketAddr>,
}

/// What a request's sender is: its five-tuple and how to reach it.
pub(crate) struct Ctx {
    pub five_tuple: FiveTuple,
    pub sink: ClientSink,
}

/// A request that passed the long-term credential check.
struct Auth {
    username: String,
    key: Vec<u8>,
}

/// An error answer: code and reason phrase.
type Refuse = (u16, &'static str);

/// What every task of one server shares.
pub(crate) struct Shared {
    pub config: Config,
    nonces: Nonces,
    pub table: Arc<Table>,
    pub counters: Arc<Counters>,
    /// The relayed address's IP as peers see it.
    relay_ip: IpAddr,
    port_cursor: AtomicU64,
    /// Relay sockets held for a RESERVATION-TOKEN, and until when.
    reservations: Mutex<HashMap<[u8; 8], (UdpSocket, Instant)>>,
    pub shutdown: watch::Receiver<bool>,
}

/// A running TURN server. Dropping it stops it too, without waiting.
pub struct Server {
    shared: Arc<Shared>,
    local: LocalAddrs,
    urls: Vec<String>,
    relay_id: String,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Server {
    /// Binds every configured listener and starts serving.
    pub async fn start(config: Config) -> Result<Server, Error> {
        if config.secret.is_empty() {
            return Err(Error::Config("the shared secret is empty".into()));
        }
        if config.udp.is_none() && config.tcp.is_none() && config.tls.is_none() {
            return Err(Error::Config("no listener is configured".into()));
        }
        if config.ports.is_empty() || (*config.ports.start() == 0 && *config.ports.end() != 0) {
            return Err(Error::Config(format!(
                "relay port range {:?} is empty or starts at 0",
                config.ports
            )));
        }
        let relay_ip = match (config.public_ip, config.relay_bind) {
            (Some(ip), _) => ip,
            (None, ip) if !ip.is_unspecified() => ip,
            _ => {
                return Err(Error::Config(
                    "relays bind to an unspecified address: set a public IP or a relay IP".into(),
                ));
            }
        };
        let (stop, shutdown) = watch::channel(false);
        let mut seed = [0u8; 8];
        getrandom::fill(&mut seed).map_err(std::io::Error::other)?;
        let shared = Arc::new(Shared {
            nonces: Nonces::new(config.nonce_lifetime)?,
            table: Arc::new(Table::default()),
            counters: Arc::new(Counters::default()),
            relay_ip,
            port_cursor: AtomicU64::new(u64::from_le_bytes(seed)),
            reservations: Mutex::default(),
            shutdown,
            config,
        });
        let config = &shared.config;
        let mut tasks = JoinSet::new();
        let mut local = LocalAddrs::default();
        if let Some(addr) = config.udp {
            let socket = Arc::new(net::udp_socket(addr, config.socket_buffer)?);
            local.udp = Some(socket.local_addr()?);
            tasks.spawn(udp::serve(shared.clone(), socket));
        }
        if let Some(addr) = config.tcp {
            let listener = net::tcp_listener(addr)?;
            local.tcp = Some(listener.local_addr()?);
            tasks.spawn(tcp::serve(shared.clone(), listener, Transport::Tcp, None));
        }
        if let Some(t) = &config.tls {
            let acceptor = tls::acceptor(&t.source)?;
            let listener = net::tcp_listener(t.addr)?;
            local.tls = Some(listener.local_addr()?);
            tasks.spawn(tcp::serve(
                shared.clone(),
                listener,
                Transport::Tls,
                Some(acceptor),
            ));
        }
        let host = config.public_ip.unwrap_or(relay_ip);
        let urls = urls(host, &local);
        let relay_id = random_id()?;
        if let Some(every) = config.stats_interval {
            tasks.spawn(log_counters(shared.clone(), every));
        }
        if let Some(a) = &config.announce {
            tasks.spawn(announce::run(
                a.clone(),
                relay_id.clone(),
                config.secret.clone(),
                urls.clone(),
                shared.shutdown.clone(),
            ));
        }
        tracing::info!(
            udp = ?local.udp,
            tcp = ?local.tcp,
            tls = ?local.tls,
            relay_ip = %relay_ip,
            ports = ?config.ports,
            realm = %config.realm,
            relay_id = %relay_id,
            "TURN server listening"
        );
        Ok(Server {
            shared,
            local,
            urls,
            relay_id,
            stop,
            tasks,
        })
    }

    /// The addresses the listeners are bound to (with the OS's ports when 0 was asked).
    pub fn local_addrs(&self) -> LocalAddrs {
        self.local
    }

    /// The counters now.
    pub fn counters(&self) -> Snapshot {
        self.shared.counters.snapshot()
    }

    /// The relay's ICE server URLs (`turn:IP:PORT?transport=udp`, …), as announced.
    pub fn urls(&self) -> &[String] {
        &self.urls
    }

    /// This process's random relay id, as announced.
    pub fn relay_id(&self) -> &str {
        &self.relay_id
    }

    /// Stops accepting, closes every connection and allocation, and waits for them.
    pub async fn shutdown(mut self) {
        // Listeners, connections and every allocation's task watch this.
        let _ = self.stop.send(true);
        let drain = async {
            while self.tasks.join_next().await.is_some() {}
            while self
                .shared
                .counters
                .allocations_current
                .load(Ordering::Relaxed)
                > 0
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        if tokio::time::timeout(Duration::from_secs(5), drain)
            .await
            .is_err()
        {
            tracing::warn!("stopped before every task had finished");
        }
        let c = self.counters();
        c.log();
        tracing::info!("TURN server stopped");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn random_id() -> Result<String, Error> {
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).map_err(std::io::Error::other)?;
    Ok(hex::encode(id))
}

/// ICE server URLs for the listeners, at `host`.
fn urls(host: IpAddr, local: &LocalAddrs) -> Vec<String> {
    let host = match host {
        IpAddr::V4(ip) => ip.to_string(),
        IpAddr::V6(ip) => format!("[{ip}]"),
    };
    let mut urls = Vec::new();
    if let Some(a) = local.udp {
        urls.push(format!("turn:{host}:{}?transport=udp", a.port()));
    }
    if let Some(a) = local.tcp {
        urls.push(format!("turn:{host}:{}?transport=tcp", a.port()));
    }
    if let Some(a) = local.tls {
        urls.push(format!("turns:{host}:{}?transport=tcp", a.port()));
    }
    urls
}

async fn log_counters(shared: Arc<Shared>, every: Duration) {
    let mut shutdown = shared.shutdown.clone();
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => shared.counters.snapshot().log(),
        }
    }
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A response to `req` of `class`, with its header written.
fn reply(req: &Message, class: MessageClass) -> Message {
    let mut r = Message::new();
    r.typ = MessageType::new(req.typ.method, class);
    r.transaction_id = req.transaction_id;
    r.write_header();
    r
}

fn error_reply(req: &Message, (code, reason): Refuse) -> Message {
    let mut r = reply(req, CLASS_ERROR_RESPONSE);
    let attr = ErrorCodeAttribute {
        code: ErrorCode(code),
        reason: reason.as_bytes().to_vec(),
    };
    // Adding an attribute to a message being built only appends bytes: it cannot fail.
    let _ = attr.add_to(&mut r);
    r
}

/// Signs (when there is a key) and fingerprints a response, and returns its bytes.
fn finish(mut r: Message, key: Option<&[u8]>) -> Vec<u8> {
    // Neither can fail on a message built here: MESSAGE-INTEGRITY only refuses to follow
    // a FINGERPRINT, which is added last.
    if let Some(key) = key {
        let _ = MessageIntegrity(key.to_vec()).add_to(&mut r);
    }
    let _ = FINGERPRINT.add_to(&mut r);
    r.raw
}

fn add_xor(r: &mut Message, attr: AttrType, addr: SocketAddr) {
    let x = XorMappedAddress {
        ip: addr.ip(),
        port: addr.port(),
    };
    // Only refuses addresses of unknown families, and SocketAddr has none.
    let _ = x.add_to_as(r, attr);
}

impl Shared {
    /// Answers a STUN request (indications other than Send and responses get no answer).
    pub(crate) fn handle_stun(&self, raw: &[u8], ctx: &Ctx) -> Option<Vec<u8>> {
        let mut m = Message::new();
        m.unmarshal_binary(raw).ok()?;
        if m.typ.class != CLASS_REQUEST {
            return None;
        }
        if m.contains(ATTR_FINGERPRINT) && FINGERPRINT.check(&m).is_err() {
            return None;
        }
        let unknown: Vec<AttrType> = m
            .attributes
            .0
            .iter()
            .map(|a| a.typ)
            .filter(|t| t.0 < 0x8000 && !KNOWN.contains(t))
            .collect();
        if !unknown.is_empty() {
            let mut r = error_reply(&m, (420, "Unknown Attribute"));
            let _ = UnknownAttributes(unknown).add_to(&mut r);
            return Some(finish(r, None));
        }
        let method = m.typ.method;
        if method == METHOD_BINDING {
            let mut r = reply(&m, CLASS_SUCCESS_RESPONSE);
            add_xor(&mut r, ATTR_XORMAPPED_ADDRESS, ctx.five_tuple.client);
            return Some(finish(r, None));
        }
        if ![
            METHOD_ALLOCATE,
            METHOD_REFRESH,
            METHOD_CREATE_PERMISSION,
            METHOD_CHANNEL_BIND,
        ]
        .contains(&method)
        {
            return Some(finish(error_reply(&m, (400, "Bad Request")), None));
        }
        let auth = match self.authenticate(&mut m, ctx.five_tuple.client) {
            Ok(auth) => auth,
            Err(r) => return Some(r),
        };
        let result = match method {
            METHOD_ALLOCATE => self.allocate(&m, &auth, ctx),
            METHOD_REFRESH => self.refresh(&m, &auth, ctx),
            METHOD_CREATE_PERMISSION => self.create_permission(&m, &auth, ctx),
            _ => self.channel_bind(&m, &auth, ctx),
        };
        Some(match result {
            Ok(bytes) => bytes,
            Err(refuse) => {
                tracing::debug!(
                    client = %ctx.five_tuple.client,
                    method = %method,
                    code = refuse.0,
                    "request refused"
                );
                finish(error_reply(&m, refuse), Some(&auth.key))
            }
        })
    }

    /// A 401 or 438 with the realm and a fresh nonce, so the client can (re)try.
    fn challenge(&self, m: &Message, refuse: Refuse, client: SocketAddr) -> Vec<u8> {
        let mut r = error_reply(m, refuse);
        let realm = TextAttribute::new(ATTR_REALM, self.config.realm.clone());
        let nonce = TextAttribute::new(ATTR_NONCE, self.nonces.issue(client, unix_now()));
        let _ = realm.add_to(&mut r);
        let _ = nonce.add_to(&mut r);
        finish(r, None)
    }

    /// The long-term credential mechanism (RFC 8489 §9.2) with REST credentials: every
    /// refusal of a credential is 401 with a fresh nonce, never 400.
    fn authenticate(&self, m: &mut Message, client: SocketAddr) -> Result<Auth, Vec<u8>> {
        let unauthorized = (401, "Unauthorized");
        if !m.contains(ATTR_MESSAGE_INTEGRITY) {
            return Err(self.challenge(m, unauthorized, client));
        }
        let (Ok(username), Ok(realm), Ok(nonce)) = (
            TextAttribute::get_from_as(m, ATTR_USERNAME),
            TextAttribute::get_from_as(m, ATTR_REALM),
            TextAttribute::get_from_as(m, ATTR_NONCE),
        ) else {
            return Err(finish(error_reply(m, (400, "Bad Request")), None));
        };
        let now = unix_now();
        if self.nonces.check(&nonce.text, client, now) == NonceCheck::Stale {
            return Err(self.challenge(m, (438, "Stale Nonce"), client));
        }
        let mut key = Vec::new();
        let why = if realm.text != self.config.realm {
            Some("realm")
        } else if let Err(e) = auth::check_rest_username(&username.text, now) {
            Some(match e {
                auth::CredentialError::Malformed => "malformed username",
                auth::CredentialError::Expired => "expired username",
            })
        } else {
            let password = auth::rest_password(&self.config.secret, &username.text);
            key = auth::long_term_key(&username.text, &realm.text, &password);
            MessageIntegrity(key.clone())
                .check(m)
                .err()
                .map(|_| "message integrity")
        };
        if let Some(why) = why {
            Counters::add(&self.counters.auth_failures, 1);
            tracing::info!(client = %client, why, "credentials refused");
            return Err(self.challenge(m, unauthorized, client));
        }
        Ok(Auth {
            username: username.text,
            key,
        })
    }

    /// The allocation of this five-tuple, if it belongs to this user.
    fn owned(&self, auth: &Auth, ctx: &Ctx) -> Result<Arc<Allocation>, Refuse> {
        let alloc = self
            .table
            .get(&ctx.five_tuple)
            .ok_or((437, "Allocation Mismatch"))?;
        if alloc.username != auth.username {
            return Err((441, "Wrong Credentials"));
        }
        Ok(alloc)
    }

    /// The lifetime to grant: the request's (or the default), at most the maximum, at
    /// least the default; zero stays zero (RFC 8656 §7.2, §7.3).
    fn lifetime(&self, m: &Message) -> Duration {
        let asked = m
            .get(ATTR_LIFETIME)
            .ok()
            .and_then(|v| <[u8; 4]>::try_from(v.as_slice()).ok())
            .map(|v| Duration::from_secs(u32::from_be_bytes(v).into()));
        match asked {
            Some(d) if d.is_zero() => d,
            Some(d) => d
                .min(self.config.max_lifetime)
                .max(self.config.default_lifetime),
            None => self.config.default_lifetime,
        }
    }

    fn allocate(&self, m: &Message, auth: &Auth, ctx: &Ctx) -> Result<Vec<u8>, Refuse> {
        if let Some(existing) = self.table.get(&ctx.five_tuple) {
            // A retransmission of the request that made it gets the same answer.
            if existing.allocate_reply.0 == m.transaction_id.0 {
                return Ok(existing.allocate_reply.1.clone());
            }
            return Err((437, "Allocation Mismatch"));
        }
        let transport = m
            .get(ATTR_REQUESTED_TRANSPORT)
            .map_err(|_| (400, "Bad Request"))?;
        if transport.len() != 4 {
            return Err((400, "Bad Request"));
        }
        if transport[0] != PROTO_UDP {
            return Err((442, "Unsupported Transport Protocol"));
        }
        if let Ok(family) = m.get(ATTR_REQUESTED_ADDRESS_FAMILY) {
            let want_v6 = match family.first() {
                Some(1) => false,
                Some(2) => true,
                _ => return Err((400, "Bad Request")),
            };
            if want_v6 != self.relay_ip.is_ipv6() {
                return Err((440, "Address Family not Supported"));
            }
        }
        match self.table.has_room(
            &auth.username,
            self.config.user_quota,
            self.config.max_allocations,
        ) {
            Ok(()) => {}
            Err(TableFull::User) => {
                Counters::add(&self.counters.refused_quota, 1);
                return Err((486, "Allocation Quota Reached"));
            }
            Err(TableFull::Server) => {
                Counters::add(&self.counters.refused_quota, 1);
                return Err((508, "Insufficient Capacity"));
            }
        }
        let lifetime = self.lifetime(m);
        // EVEN-PORT asks for an even port, and with its R bit for the next port to be held
        // for a second allocation, which names it by the RESERVATION-TOKEN returned.
        let even = m.get(ATTR_EVEN_PORT).ok();
        let reserve = even
            .as_ref()
            .is_some_and(|v| v.first().is_some_and(|b| b & 0x80 != 0));
        let token = m.get(ATTR_RESERVATION_TOKEN).ok();
        if token.is_some() && even.is_some() {
            return Err((400, "Bad Request"));
        }
        let (relay, reserved) = match &token {
            Some(t) => match self.take_reservation(t) {
                Some(s) => (s, None),
                None => return Err((508, "Insufficient Capacity")),
            },
            None => match self.bind_relay(even.is_some(), reserve) {
                Some(pair) => pair,
                None => {
                    Counters::add(&self.counters.refused_quota, 1);
                    tracing::warn!("no relay port free");
                    return Err((508, "Insufficient Capacity"));
                }
            },
        };
        let port = relay
            .local_addr()
            .map_err(|_| (500, "Server Error"))?
            .port();
        let relayed = SocketAddr::new(self.relay_ip, port);

        let mut r = reply(m, CLASS_SUCCESS_RESPONSE);
        add_xor(&mut r, ATTR_XOR_RELAYED_ADDRESS, relayed);
        r.add(ATTR_LIFETIME, &(lifetime.as_secs() as u32).to_be_bytes());
        add_xor(&mut r, ATTR_XORMAPPED_ADDRESS, ctx.five_tuple.client);
        if let Some(held) = reserved {
            r.add(ATTR_RESERVATION_TOKEN, &self.hold(held));
        }
        let bytes = finish(r, Some(&auth.key));

        let alloc = Arc::new(Allocation::new(
            ctx.five_tuple,
            auth.username.clone(),
            relayed,
            Arc::new(relay),
            ctx.sink.clone(),
            lifetime,
            self.config.bandwidth,
            (m.transaction_id.0, bytes.clone()),
            self.counters.clone(),
        ));
        self.table.insert(alloc.clone());
        Counters::add(&self.counters.allocations_current, 1);
        Counters::add(&self.counters.allocations_total, 1);
        tracing::info!(
            client = %ctx.five_tuple.client,
            transport = ?ctx.five_tuple.transport,
            relayed = %relayed,
            user = %auth.username,
            lifetime = lifetime.as_secs(),
            "allocation made"
        );
        tokio::spawn(allocation::relay(
            alloc,
            self.table.clone(),
            self.counters.clone(),
            self.shutdown.clone(),
        ));
        Ok(bytes)
    }

    /// A relay socket on a free port (an even one when asked), and with `reserve` the
    /// socket of the port above it too.
    fn bind_relay(&self, even: bool, reserve: bool) -> Option<(UdpSocket, Option<UdpSocket>)> {
        let (lo, hi) = (*self.config.ports.start(), *self.config.ports.end());
        let ip = self.config.relay_bind;
        let buffer = self.config.socket_buffer;
        let span = u64::from(hi - lo) + 1;
        for _ in 0..span.clamp(64, 256) {
            let socket = if lo == 0 {
                // The OS chooses; odd ports are given back until an even one comes.
                net::udp_socket(SocketAddr::new(ip, 0), buffer).ok()?
            } else {
                // Ports are tried from a cursor that moves by a large odd step, so
                // consecutive allocations spread over the range without a random draw.
                let n = self
                    .port_cursor
                    .fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
                let mut port = u64::from(lo) + n % span;
                if even && port % 2 == 1 {
                    port -= 1;
                }
                if port < u64::from(lo) {
                    continue;
                }
                match net::udp_socket(SocketAddr::new(ip, port as u16), buffer) {
                    Ok(s) => s,
                    Err(_) => continue,
                }
            };
            let port = socket.local_addr().ok()?.port();
            if even && port % 2 == 1 {
                continue;
            }
            if !reserve {
                return Some((socket, None));
            }
            let next = port.checked_add(1).filter(|p| lo == 0 || *p <= hi)?;
            if let Ok(held) = net::udp_socket(SocketAddr::new(ip, next), buffer) {
                return Some((socket, Some(held)));
            }
        }
        None
    }

    /// Holds `socket` for a later Allocate with the returned RESERVATION-TOKEN, for
    /// [`RESERVATION`]; expired holds are let go here.
    fn hold(&self, socket: UdpSocket) -> [u8; 8] {
        let mut token = [0u8; 8];
        // Tokens only need to be hard to guess for other clients; on the (never seen)
        // failure of the OS's generator a port-derived token still works for its owner.
        if getrandom::fill(&mut token).is_err() {
            let port = socket.local_addr().map_or(0, |a| a.port());
            token[..2].copy_from_slice(&port.to_be_bytes());
        }
        let now = Instant::now();
        let mut held = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        held.retain(|_, (_, until)| *until > now);
        held.insert(token, (socket, now + RESERVATION));
        token
    }

    fn take_reservation(&self, token: &[u8]) -> Option<UdpSocket> {
        let token: [u8; 8] = token.try_into().ok()?;
        let mut held = self.reservations.lock().unwrap_or_else(|e| e.into_inner());
        let (socket, until) = held.remove(&token)?;
        (until > Instant::now()).then_some(socket)
    }

    fn refresh(&self, m: &Message, auth: &Auth, ctx: &Ctx) -> Result<Vec<u8>, Refuse> {
        let alloc = self.owned(auth, ctx)?;
        let lifetime = self.lifetime(m);
        if lifetime.is_zero() {
            self.table.remove(&alloc);
            alloc.closed.notify_one();
        } else {
            alloc.refresh(lifetime);
        }
        let mut r = reply(m, CLASS_SUCCESS_RESPONSE);
        r.add(ATTR_LIFETIME, &(lifetime.as_secs() as u32).to_be_bytes());
        Ok(finish(r, Some(&auth.key)))
    }

    /// Whether clients may relay to `peer` through this allocation: the peer policy (403)
    /// and the relay's address family (443).
    fn check_peer(&self, peer: SocketAddr, ctx: &Ctx) -> Result<(), Refuse> {
        if let Err(why) = self.config.peers.check(peer.ip()) {
            Counters::add(&self.counters.refused_peer, 1);
            tracing::info!(
                client = %ctx.five_tuple.client,
                peer = %peer.ip(),
                class = %why,
                "peer refused"
            );
            return Err((403, "Forbidden"));
        }
        if peer.is_ipv6() != self.relay_ip.is_ipv6() {
            return Err((443, "Peer Address Family Mismatch"));
        }
        Ok(())
    }

    fn create_permission(&self, m: &Message, auth: &Auth, ctx: &Ctx) -> Result<Vec<u8>, Refuse> {
        let alloc = self.owned(auth, ctx)?;
        let mut peers = Vec::new();
        for a in m.attributes.0.iter() {
            if a.typ == ATTR_XOR_PEER_ADDRESS {
                let peer = wire::read_xor_address(&a.value, &m.transaction_id.0)
                    .ok_or((400, "Bad Request"))?;
                self.check_peer(peer, ctx)?;
                peers.push(peer);
            }
        }
        if peers.is_empty() {
            return Err((400, "Bad Request"));
        }
        // All or none: nothing is installed unless every peer passed.
        let ips: Vec<IpAddr> = peers.iter().map(|p| p.ip()).collect();
        alloc
            .permit(&ips, self.config.permission_lifetime)
            .map_err(|_| (508, "Insufficient Capacity"))?;
        Ok(finish(reply(m, CLASS_SUCCESS_RESPONSE), Some(&auth.key)))
    }

    fn channel_bind(&self, m: &Message, auth: &Auth, ctx: &Ctx) -> Result<Vec<u8>, Refuse> {
        let alloc = self.owned(auth, ctx)?;
        let channel = m
            .get(ATTR_CHANNEL_NUMBER)
            .ok()
            .filter(|v| v.len() == 4)
            .map(|v| u16::from_be_bytes([v[0], v[1]]))
            .filter(|c| wire::CHANNELS.contains(c))
            .ok_or((400, "Bad Request"))?;
        let value = m
            .get(ATTR_XOR_PEER_ADDRESS)
            .map_err(|_| (400, "Bad Request"))?;
        let peer =
            wire::read_xor_address(&value, &m.transaction_id.0).ok_or((400, "Bad Request"))?;
        self.check_peer(peer, ctx)?;
        alloc
            .bind(
                channel,
                peer,
                self.config.channel_lifetime,
                self.config.permission_lifetime,
            )
            .map_err(|e| match e {
                BindConflict::Full => (508, "Insufficient Capacity"),
                BindConflict::ChannelTaken | BindConflict::PeerTaken => (400, "Bad Request"),
            })?;
        Ok(finish(reply(m, CLASS_SUCCESS_RESPONSE), Some(&auth.key)))
    }

    /// Relays a client's ChannelData to the channel's peer.
    pub(crate) fn channel_data(&self, alloc: &Allocation, raw: &[u8]) {
        let Some((channel, data)) = wire::channel_data(raw) else {
            return;
        };
        match alloc.channel_peer(channel, data.len()) {
            Ok(peer) => self.to_peer(alloc, data, peer),
            Err(why) => allocation::count_drop(&self.counters, why),
        }
    }

    /// Relays a client's Send indication to its peer, if the policy and a permission
    /// allow it; otherwise drops it (indications get no answer).
    pub(crate) fn send_indication(&self, alloc: &Allocation, raw: &[u8]) {
        let Some((peer, data)) = wire::send_indication(raw) else {
            return;
        };
        if self.config.peers.check(peer.ip()).is_err() {
            Counters::add(&self.counters.dropped_filter, 1);
            return;
        }
        match alloc.admit_to_peer(peer, data.len()) {
            Ok(()) => self.to_peer(alloc, data, peer),
            Err(why) => allocation::count_drop(&self.counters, why),
        }
    }

    fn to_peer(&self, alloc: &Allocation, data: &[u8], peer: SocketAddr) {
        match alloc.relay.try_send_to(data, peer) {
            Ok(_) => {
                Counters::add(&self.counters.packets_to_peer, 1);
                Counters::add(&self.counters.bytes_to_peer, data.len() as u64);
            }
            Err(_) => Counters::add(&self.counters.dropped_queue, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_every_listener_at_the_public_host() {
        let local = LocalAddrs {
            udp: Some("0.0.0.0:3478".parse().expect("addr")),
            tcp: Some("0.0.0.0:3478".parse().expect("addr")),
            tls: Some("0.0.0.0:443".parse().expect("addr")),
        };
        assert_eq!(
            urls("203.0.113.7".parse().expect("ip"), &local),
            [
                "turn:203.0.113.7:3478?transport=udp",
                "turn:203.0.113.7:3478?transport=tcp",
                "turns:203.0.113.7:443?transport=tcp",
            ]
        );
        let v6 = LocalAddrs {
            udp: Some("[::]:3478".parse().expect("addr")),
            ..LocalAddrs::default()
        };
        assert_eq!(
            urls("2001:db8::1".parse().expect("ip"), &v6),
            ["turn:[2001:db8::1]:3478?transport=udp"]
        );
    }
}
