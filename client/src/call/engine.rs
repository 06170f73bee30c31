//! The call engine: one WebRTC connection to every other session in a voice channel's call
//! (a mesh), signalled through the channel (see [`crate::call`]).
//!
//! Each connection carries a data channel (a ping every second, each answered by a pong:
//! the round-trip time) and an Opus audio track, fed from an Ogg Opus file (a short tone by
//! default), looped. ICE uses the TURN relays of the credentials the server gave; with
//! `relay_only`, nothing but relayed candidates (the peers never learn each other's
//! addresses).
//!
//! Nothing here logs or prints SDP or ICE candidates: they hold ICE credentials, DTLS
//! fingerprints and addresses.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cinder_proto::calls::TurnCredentials;
use cinder_proto::{ChannelId, KeyBundle, UserId};
use rtc::media::Sample;
use rtc::media::io::ogg_reader::{OggHeaderType, OggReader};
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use serde::Serialize;
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::MediaStreamTrack;
use webrtc::media_stream::Track as _;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer, RTCIceTransportPolicy,
    RTCPeerConnectionIceEvent, RTCPeerConnectionState, RTCSessionDescription, RTCStatsReportEntry,
    Registry, StatsSelector, register_default_interceptors,
};
use webrtc::rtp_transceiver::RtpSender;

use super::{CallSession, CallSignal};
use crate::rooms::{Membership, Received};
use crate::{Client, ClientError, Identity};

/// The tone a call sends when given no audio file: one second of 440 Hz, Opus in Ogg, one
/// 20 ms packet per page (`opusenc --framesize 20 --max-delay 20`).
pub const DEFAULT_TONE: &[u8] = include_bytes!("tone.opus");

/// How long a connection may take to connect before it is given up (a Join whose device
/// vanished without a Leave is never answered); the next Join of that session tries again.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the data channel pings, and stats are reported.
const TICK: Duration = Duration::from_secs(1);
/// Most sessions whose candidates are kept for connections not made yet (a member could
/// name sessions that never offer).
const MAX_EARLY_SESSIONS: usize = 64;
/// Most candidates kept per such session.
const MAX_EARLY_CANDIDATES: usize = 64;
/// The payload type Opus is offered under.
const OPUS_PAYLOAD_TYPE: u8 = 111;

/// Why a call could not go on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The server or a room check failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The WebRTC stack failed (never with SDP or candidates in the text).
    #[error("WebRTC: {0}")]
    WebRtc(String),
    /// The audio file is not Ogg Opus.
    #[error("the audio is not an Ogg Opus file: {0}")]
    Audio(String),
}

/// What a call needs besides the room.
#[derive(Debug, Clone)]
pub struct CallOptions {
    /// TURN credentials and relay URLs ([`Client::turn_credentials`]).
    pub credentials: TurnCredentials,
    /// Use relayed candidates only (ICE transport policy `relay`).
    pub relay_only: bool,
    /// Ogg Opus audio to send, looped; [`DEFAULT_TONE`] if `None`.
    pub audio: Option<Vec<u8>>,
    /// The local UDP address to bind (`0.0.0.0:0`: every interface, any port).
    pub bind: String,
}

/// What the call reports as it goes, for a front end to show.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum CallEvent {
    /// This device is in the call (its Join is posted).
    InCall {
        /// This device's session.
        session: CallSession,
    },
    /// Another session announced itself.
    Joined {
        /// Whose.
        user: UserId,
        /// Which.
        session: CallSession,
    },
    /// Another session left.
    Left {
        /// Whose.
        user: UserId,
        /// Which.
        session: CallSession,
    },
    /// A connection to another session is up.
    Connected {
        /// Whose.
        user: UserId,
        /// Which.
        session: CallSession,
        /// The local candidate type of the selected pair: `relay`, `host`, `srflx`, `prflx`.
        candidate_type: String,
    },
    /// A connection failed, closed or was given up.
    Disconnected {
        /// Whose.
        user: UserId,
        /// Which.
        session: CallSession,
    },
    /// Every second: each connection's figures.
    Stats {
        /// One per other session this device holds a connection to.
        peers: Vec<PeerStats>,
    },
    /// At the end of the call: every session this device was connected to, with its last
    /// figures while connected.
    Summary {
        /// One per session connected to at some point.
        peers: Vec<PeerStats>,
    },
    /// Something went wrong that the call survives.
    Warning {
        /// What.
        message: String,
    },
}

/// One connection's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeerStats {
    /// Whose session.
    pub user: UserId,
    /// Which.
    pub session: CallSession,
    /// Whether it is connected.
    pub connected: bool,
    /// The local candidate type of the selected pair (`relay`, `host`, `srflx`, `prflx`).
    pub candidate_type: Option<String>,
    /// The ICE candidate pair's current round-trip time, in milliseconds.
    pub ice_rtt_ms: Option<f64>,
    /// The data channel's last ping round-trip time, in milliseconds.
    pub ping_rtt_ms: Option<f64>,
    /// Audio RTP packets received.
    pub audio_packets: u64,
    /// Data channel messages sent.
    pub data_sent: u64,
    /// Data channel messages received.
    pub data_received: u64,
}

/// The 20 ms Opus packets of an Ogg Opus file, with their durations.
fn opus_packets(ogg: &[u8]) -> Result<Vec<(Bytes, Duration)>, CallError> {
    let (mut reader, _) = OggReader::new(std::io::Cursor::new(ogg), true)
        .map_err(|e| CallError::Audio(e.to_string()))?;
    let mut packets = Vec::new();
    let mut granule = 0u64;
    while let Ok((page, header)) = reader.parse_next_page() {
        if header
            .opus_header_type(&page)
            .is_some_and(|t| matches!(t, OggHeaderType::OpusHead | OggHeaderType::OpusTags))
        {
            continue;
        }
        let samples = header.granule_position.saturating_sub(granule);
        granule = header.granule_position;
        if page.is_empty() {
            continue;
        }
        let duration = Duration::from_micros(samples.saturating_mul(1_000_000) / 48_000)
            .clamp(Duration::from_millis(2), Duration::from_millis(120));
        packets.push((page.freeze(), duration));
    }
    if packets.is_empty() {
        return Err(CallError::Audio("it holds no audio pages".into()));
    }
    Ok(packets)
}

/// A connection's counters, shared with its tasks.
#[derive(Default)]
struct Counters {
    audio_packets: AtomicU64,
    data_sent: AtomicU64,
    data_received: AtomicU64,
    /// The last ping's round trip, in microseconds (0: none yet).
    ping_rtt_us: AtomicU64,
}

type PeerKey = (UserId, CallSession);

/// What the engine's loop hears.
enum Event {
    /// A verified message of the channel.
    Message(Box<Received>),
    /// The messages from before the call have been read.
    CaughtUp,
    /// Reading the channel failed (it is retried).
    ReadFailed(ClientError),
    /// A connection gathered a candidate.
    LocalCandidate(PeerKey, RTCIceCandidateInit),
    /// A connection's state changed.
    State(PeerKey, RTCPeerConnectionState),
}

/// The handler a connection reports through.
struct Handler {
    key: PeerKey,
    events: mpsc::UnboundedSender<Event>,
    counters: Arc<Counters>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json()
            && !init.candidate.is_empty()
        {
            let _ = self.events.send(Event::LocalCandidate(self.key, init));
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.send(Event::State(self.key, state));
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        tokio::spawn(run_data_channel(dc, self.counters.clone()));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let counters = self.counters.clone();
        tokio::spawn(async move {
            while let Some(event) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(_) = event {
                    counters.audio_packets.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
}

/// Pings every second once open, answers pings with pongs, and times the round trips.
async fn run_data_channel(dc: Arc<dyn DataChannel>, counters: Arc<Counters>) {
    loop {
        match dc.poll().await {
            Some(DataChannelEvent::OnOpen) => break,
            Some(DataChannelEvent::OnClose) | None => return,
            Some(_) => {}
        }
    }
    let mut tick = tokio::time::interval(TICK);
    let mut seq = 0u64;
    let mut sent_at: BTreeMap<u64, Instant> = BTreeMap::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {
                seq += 1;
                if dc.send_text(&format!("ping {seq}")).await.is_err() {
                    return;
                }
                counters.data_sent.fetch_add(1, Ordering::Relaxed);
                sent_at.insert(seq, Instant::now());
                // Pings unanswered for long are forgotten.
                while sent_at.len() > 32 {
                    sent_at.pop_first();
                }
            }
            event = dc.poll() => match event {
                Some(DataChannelEvent::OnMessage(message)) => {
                    counters.data_received.fetch_add(1, Ordering::Relaxed);
                    let text = String::from_utf8_lossy(&message.data);
                    if let Some(n) = text.strip_prefix("ping ") {
                        if dc.send_text(&format!("pong {n}")).await.is_err() {
                            return;
                        }
                        counters.data_sent.fetch_add(1, Ordering::Relaxed);
                    } else if let Some(n) = text.strip_prefix("pong ")
                        && let Ok(n) = n.parse::<u64>()
                        && let Some(at) = sent_at.remove(&n)
                    {
                        let rtt = at.elapsed().as_micros().max(1);
                        counters
                            .ping_rtt_us
                            .store(u64::try_from(rtt).unwrap_or(u64::MAX), Ordering::Relaxed);
                    }
                }
                Some(DataChannelEvent::OnClose) | None => return,
                Some(_) => {}
            },
        }
    }
}

/// One connection to another session.
struct Peer {
    pc: Arc<dyn PeerConnection>,
    counters: Arc<Counters>,
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    offerer: bool,
    created: Instant,
    connected: bool,
    remote_set: bool,
    /// Candidates that came before the remote description.
    early: Vec<RTCIceCandidateInit>,
    candidate_type: Option<String>,
    ice_rtt_ms: Option<f64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Peer {
    async fn close(self) {
        for task in &self.tasks {
            task.abort();
        }
        let _ = self.pc.close().await;
    }
}

/// A running call's state.
struct Engine {
    me: UserId,
    session: CallSession,
    options: CallOptions,
    audio: Arc<Vec<(Bytes, Duration)>>,
    peers: BTreeMap<PeerKey, Peer>,
    /// Sessions seen leaving, or given up on at this Join number.
    left: std::collections::BTreeSet<PeerKey>,
    given_up: BTreeMap<PeerKey, u64>,
    /// Per session ever connected to, its last figures while connected.
    history: BTreeMap<PeerKey, PeerStats>,
    /// Whether the channel's messages from before this call have been read: until then,
    /// joins and leaves are taken in without a word, then who is in the call is reported.
    caught_up: bool,
    /// Sessions whose Join has been seen (and reported).
    seen: std::collections::BTreeSet<PeerKey>,
    /// Candidates for connections not made yet (a candidate read before its offer).
    early: BTreeMap<PeerKey, Vec<RTCIceCandidateInit>>,
    events: mpsc::UnboundedSender<Event>,
    out: mpsc::UnboundedSender<CallSignal>,
    report: mpsc::UnboundedSender<CallEvent>,
}

impl Engine {
    fn warn(&self, message: impl Into<String>) {
        let _ = self.report.send(CallEvent::Warning {
            message: message.into(),
        });
    }

    /// A new connection to `key`, with its audio track (and, for the offerer, its data
    /// channel) added.
    async fn connect(&self, key: PeerKey, offerer: bool) -> Result<Peer, CallError> {
        let webrtc = |what: &str| {
            let what = what.to_owned();
            move |e: webrtc::error::Error| CallError::WebRtc(format!("{what}: {e}"))
        };
        let mut media = MediaEngine::default();
        let opus = opus_codec();
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus.clone(),
                    payload_type: OPUS_PAYLOAD_TYPE,
                },
                RtpCodecKind::Audio,
            )
            .map_err(webrtc("registering Opus"))?;
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .map_err(webrtc("setting up RTP interceptors"))?;
        let credentials = &self.options.credentials;
        let ice_servers = if credentials.urls.is_empty() {
            Vec::new()
        } else {
            vec![RTCIceServer {
                urls: credentials.urls.clone(),
                username: credentials.username.clone(),
                credential: credentials.credential.clone(),
            }]
        };
        let policy = if self.options.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        };
        let counters = Arc::new(Counters::default());
        let handler = Arc::new(Handler {
            key,
            events: self.events.clone(),
            counters: counters.clone(),
        });
        let pc = PeerConnectionBuilder::new()
            .with_configuration(
                RTCConfigurationBuilder::new()
                    .with_ice_servers(ice_servers)
                    .with_ice_transport_policy(policy)
                    .build(),
            )
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_handler(handler)
            .with_udp_addrs(vec![self.options.bind.clone()])
            .build()
            .await
            .map_err(webrtc("making a peer connection"))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let mut ssrc = [0u8; 4];
        getrandom::fill(&mut ssrc).map_err(|_| ClientError::Randomness)?;
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    format!("cinder-{}", self.session),
                    format!("cinder-audio-{}", self.session),
                    "cinder-audio".to_owned(),
                    RtpCodecKind::Audio,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(u32::from_be_bytes(ssrc)),
                            ..Default::default()
                        },
                        codec: opus,
                        ..Default::default()
                    }],
                ),
            )
            .map_err(webrtc("making the audio track"))?,
        );
        let sender = pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(webrtc("adding the audio track"))?;
        let mut tasks = Vec::new();
        if offerer {
            let dc = pc
                .create_data_channel("cinder", None)
                .await
                .map_err(webrtc("opening the data channel"))?;
            tasks.push(tokio::spawn(run_data_channel(dc, counters.clone())));
        }
        Ok(Peer {
            pc,
            counters,
            track,
            sender,
            offerer,
            created: Instant::now(),
            connected: false,
            remote_set: false,
            early: self.early_for(key),
            candidate_type: None,
            ice_rtt_ms: None,
            tasks,
        })
    }

    fn early_for(&self, key: PeerKey) -> Vec<RTCIceCandidateInit> {
        self.early.get(&key).cloned().unwrap_or_default()
    }

    /// Acts on a verified message of the channel.
    async fn on_message(&mut self, r: Received) {
        let crate::rooms::Content::Call { signal } = r.content else {
            return;
        };
        let key = (r.sender, signal.session());
        if key == (self.me, self.session) || !signal.is_for(self.me, self.session) {
            return;
        }
        match signal {
            CallSignal::Join { session } => {
                if self.left.contains(&key) {
                    return;
                }
                if self.seen.insert(key) && self.caught_up {
                    let _ = self.report.send(CallEvent::Joined {
                        user: r.sender,
                        session,
                    });
                }
                // Of each pair, the smaller (user id, session) offers; a Join re-announced
                // restarts nothing that is connected or connecting.
                if (self.me, self.session) < key
                    && !self.peers.contains_key(&key)
                    && self.given_up.get(&key).is_none_or(|n| r.number > *n)
                {
                    self.given_up.remove(&key);
                    if let Err(e) = self.offer(key).await {
                        self.warn(format!("could not call {}: {e}", r.sender));
                    }
                }
            }
            CallSignal::Leave { session } => {
                self.left.insert(key);
                self.early.remove(&key);
                if let Some(peer) = self.peers.remove(&key) {
                    peer.close().await;
                }
                if self.seen.remove(&key) && self.caught_up {
                    let _ = self.report.send(CallEvent::Left {
                        user: r.sender,
                        session,
                    });
                }
            }
            CallSignal::Offer { sdp, .. } => {
                if self.left.contains(&key) || (self.me, self.session) < key {
                    // Only the smaller of a pair offers: an offer the other way is refused.
                    return;
                }
                if let Err(e) = self.answer(key, sdp).await {
                    self.warn(format!("could not answer {}: {e}", r.sender));
                }
            }
            CallSignal::Answer { sdp, .. } => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                if !peer.offerer || peer.remote_set {
                    return;
                }
                let applied = match RTCSessionDescription::answer(sdp) {
                    Ok(answer) => peer.pc.set_remote_description(answer).await.is_ok(),
                    Err(_) => false,
                };
                if !applied {
                    // The error text could quote the SDP: it is not shown.
                    self.warn(format!("the answer of {} does not apply", r.sender));
                    return;
                }
                peer.remote_set = true;
                for candidate in std::mem::take(&mut peer.early) {
                    let _ = peer.pc.add_ice_candidate(candidate).await;
                }
            }
            CallSignal::Candidate { candidate, .. } => {
                let Ok(init) = serde_json::from_str::<RTCIceCandidateInit>(&candidate) else {
                    return;
                };
                match self.peers.get_mut(&key) {
                    Some(peer) if peer.remote_set => {
                        let _ = peer.pc.add_ice_candidate(init).await;
                    }
                    Some(peer) => peer.early.push(init),
                    // Kept for a connection not made yet, within bounds (a member could
                    // name sessions that never offer).
                    None if self.early.len() < MAX_EARLY_SESSIONS
                        || self.early.contains_key(&key) =>
                    {
                        let early = self.early.entry(key).or_default();
                        if early.len() < MAX_EARLY_CANDIDATES {
                            early.push(init);
                        }
                    }
                    None => {}
                }
            }
        }
    }

    async fn offer(&mut self, key: PeerKey) -> Result<(), CallError> {
        let peer = self.connect(key, true).await?;
        let described = async {
            let offer = peer.pc.create_offer(None).await?;
            let sdp = offer.sdp.clone();
            peer.pc.set_local_description(offer).await?;
            Ok::<_, webrtc::error::Error>(sdp)
        }
        .await;
        let sdp = match described {
            Ok(sdp) => sdp,
            Err(e) => {
                peer.close().await;
                return Err(CallError::WebRtc(format!("making an offer: {e}")));
            }
        };
        self.early.remove(&key);
        self.peers.insert(key, peer);
        let _ = self.out.send(CallSignal::Offer {
            session: self.session,
            to: key.0,
            to_session: key.1,
            sdp,
        });
        Ok(())
    }

    async fn answer(&mut self, key: PeerKey, sdp: String) -> Result<(), CallError> {
        if let Some(old) = self.peers.remove(&key) {
            old.close().await;
        }
        let mut peer = self.connect(key, false).await?;
        let offer = RTCSessionDescription::offer(sdp)
            .map_err(|_| CallError::WebRtc("the offer does not parse".into()));
        let described = match offer {
            Ok(offer) => match peer.pc.set_remote_description(offer).await {
                // The error text could quote the SDP: it is not shown.
                Err(_) => Err(CallError::WebRtc("the offer does not apply".into())),
                Ok(()) => async {
                    let answer = peer.pc.create_answer(None).await?;
                    let sdp = answer.sdp.clone();
                    peer.pc.set_local_description(answer).await?;
                    Ok::<_, webrtc::error::Error>(sdp)
                }
                .await
                .map_err(|e| CallError::WebRtc(format!("making an answer: {e}"))),
            },
            Err(e) => Err(e),
        };
        let sdp = match described {
            Ok(sdp) => sdp,
            Err(e) => {
                peer.close().await;
                return Err(e);
            }
        };
        peer.remote_set = true;
        for candidate in std::mem::take(&mut peer.early) {
            let _ = peer.pc.add_ice_candidate(candidate).await;
        }
        self.early.remove(&key);
        self.peers.insert(key, peer);
        let _ = self.out.send(CallSignal::Answer {
            session: self.session,
            to: key.0,
            to_session: key.1,
            sdp,
        });
        Ok(())
    }

    async fn on_state(&mut self, key: PeerKey, state: RTCPeerConnectionState) {
        match state {
            RTCPeerConnectionState::Connected => {
                let Some(peer) = self.peers.get_mut(&key) else {
                    return;
                };
                if peer.connected {
                    return;
                }
                peer.connected = true;
                let feeder = tokio::spawn(feed_audio(
                    peer.track.clone(),
                    peer.sender.clone(),
                    self.audio.clone(),
                ));
                peer.tasks.push(feeder);
                let (candidate_type, rtt) = selected_pair(peer.pc.as_ref()).await;
                peer.candidate_type = candidate_type.clone();
                peer.ice_rtt_ms = rtt;
                let _ = self.report.send(CallEvent::Connected {
                    user: key.0,
                    session: key.1,
                    candidate_type: candidate_type.unwrap_or_else(|| "unknown".into()),
                });
            }
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                if let Some(peer) = self.peers.remove(&key) {
                    peer.close().await;
                    let _ = self.report.send(CallEvent::Disconnected {
                        user: key.0,
                        session: key.1,
                    });
                }
            }
            _ => {}
        }
    }

    /// Every second: gives up connections that never connected, and reports figures.
    async fn tick(&mut self) {
        let stale: Vec<PeerKey> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.connected && p.created.elapsed() > CONNECT_TIMEOUT)
            .map(|(k, _)| *k)
            .collect();
        for key in stale {
            if let Some(peer) = self.peers.remove(&key) {
                peer.close().await;
                self.given_up.insert(key, 0);
                let _ = self.report.send(CallEvent::Disconnected {
                    user: key.0,
                    session: key.1,
                });
            }
        }
        let mut peers = Vec::new();
        for (key, peer) in &mut self.peers {
            if peer.connected {
                let (candidate_type, rtt) = selected_pair(peer.pc.as_ref()).await;
                if candidate_type.is_some() {
                    peer.candidate_type = candidate_type;
                }
                if rtt.is_some() {
                    peer.ice_rtt_ms = rtt;
                }
            }
            let ping = peer.counters.ping_rtt_us.load(Ordering::Relaxed);
            let stats = PeerStats {
                user: key.0,
                session: key.1,
                connected: peer.connected,
                candidate_type: peer.candidate_type.clone(),
                ice_rtt_ms: peer.ice_rtt_ms,
                ping_rtt_ms: (ping > 0).then(|| ping as f64 / 1000.0),
                audio_packets: peer.counters.audio_packets.load(Ordering::Relaxed),
                data_sent: peer.counters.data_sent.load(Ordering::Relaxed),
                data_received: peer.counters.data_received.load(Ordering::Relaxed),
            };
            if stats.connected {
                self.history.insert(*key, stats.clone());
            }
            peers.push(stats);
        }
        let _ = self.report.send(CallEvent::Stats { peers });
    }
}

/// Opus as offered: 48 kHz, two channels in SDP (as RFC 7587 has it), in-band FEC.
fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// The selected candidate pair's local candidate type, and its current round-trip time in
/// milliseconds.
async fn selected_pair(pc: &dyn PeerConnection) -> (Option<String>, Option<f64>) {
    let report = pc.get_stats(Instant::now(), StatsSelector::None).await;
    let selected = report
        .transport()
        .map(|t| t.selected_candidate_pair_id.clone())
        .filter(|id| !id.is_empty());
    let pair = report
        .candidate_pairs()
        .find(|p| selected.as_deref() == Some(p.stats.id.as_str()))
        .or_else(|| report.candidate_pairs().find(|p| p.nominated));
    let Some(pair) = pair else {
        return (None, None);
    };
    let rtt = (pair.current_round_trip_time > 0.0).then_some(pair.current_round_trip_time * 1000.0);
    // The pair names the candidate by its ICE id; the report files it under that id, or
    // (rtc 0.21) under `RTCLocalIceCandidate_<id>`.
    let id = &pair.local_candidate_id;
    let local = [id.clone(), format!("RTCLocalIceCandidate_{id}")]
        .iter()
        .find_map(|key| match report.get(key) {
            Some(RTCStatsReportEntry::LocalCandidate(c)) => Some(c.candidate_type),
            _ => None,
        });
    // Its serde name is the type's name in SDP: host, srflx, prflx, relay.
    let kind = local.and_then(|t| {
        serde_json::to_value(t)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
    });
    (kind, rtt)
}

/// Sends the audio packets, paced, looped, until the connection goes.
async fn feed_audio(
    track: Arc<TrackLocalStaticSample>,
    sender: Arc<dyn RtpSender>,
    audio: Arc<Vec<(Bytes, Duration)>>,
) {
    let payload_type = match sender.get_parameters().await {
        Ok(p) => p
            .rtp_parameters
            .codecs
            .first()
            .map_or(OPUS_PAYLOAD_TYPE, |c| c.payload_type),
        Err(_) => return,
    };
    let Some(ssrc) = track.ssrcs().await.first().copied() else {
        return;
    };
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    loop {
        for (data, duration) in audio.iter() {
            tick.tick().await;
            let sample = Sample {
                data: data.clone(),
                duration: *duration,
                ..Sample::new(Instant::now())
            };
            if track
                .sample_writer(ssrc, payload_type)
                .write_sample(&sample)
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// How long a reader waits for a hole in the channel's numbers to fill before reading on
/// past it: a sender whose proposed number was taken posts under a number held for it,
/// after later numbers may already be up (and a burnt or deleted message leaves a hole
/// for good).
const HOLE_GRACE: Duration = Duration::from_secs(5);

/// Where a follower reads from: every number up to `floor` has been seen (or given up on);
/// `seen` holds the numbers above it seen already.
#[derive(Debug, Default)]
struct Cursor {
    floor: u64,
    seen: std::collections::BTreeSet<u64>,
    hole_since: Option<Instant>,
}

impl Cursor {
    /// Takes in a number read; whether it is new.
    fn take(&mut self, number: u64) -> bool {
        number > self.floor && self.seen.insert(number)
    }

    /// Moves the floor up over the numbers seen; past a hole only once it has waited
    /// [`HOLE_GRACE`] (from `now`).
    fn advance(&mut self, now: Instant) {
        loop {
            while self.seen.remove(&(self.floor + 1)) {
                self.floor += 1;
            }
            let Some(&next) = self.seen.first() else {
                self.hole_since = None;
                return;
            };
            let since = *self.hole_since.get_or_insert(now);
            if now.duration_since(since) < HOLE_GRACE {
                return;
            }
            // Given up on: read on from the next number seen.
            self.floor = next - 1;
            self.hole_since = None;
        }
    }
}

/// Follows the channel: reads every message after the last one read, whenever the live
/// socket says there is a newer one, and every second regardless (the socket is a hint;
/// without one, this polls). Reads again from a hole in the numbers until it fills (see
/// [`HOLE_GRACE`]), so a signal posted under a held number is not skipped.
async fn follow(
    client: Arc<Client>,
    m: Membership,
    channel: ChannelId,
    mut pins: BTreeMap<UserId, KeyBundle>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut cursor = Cursor::default();
    let mut caught_up = false;
    let mut socket = None;
    let mut next_connect = Instant::now();
    loop {
        if socket.is_none() && Instant::now() >= next_connect {
            next_connect = Instant::now() + Duration::from_secs(10);
            if let Ok(mut s) = client.live().await
                && s.follow(&client, &m, channel).await.is_ok()
            {
                socket = Some(s);
            }
        }
        let mut after = cursor.floor;
        loop {
            match client.read(&m, channel, after, &mut pins).await {
                Ok(page) => {
                    for (number, _) in &page.refused {
                        cursor.take(*number);
                    }
                    for r in page.messages {
                        if cursor.take(r.number)
                            && events.send(Event::Message(Box::new(r))).is_err()
                        {
                            return;
                        }
                    }
                    match page.last {
                        Some(last) if page.more => after = last,
                        _ => break,
                    }
                }
                Err(e) => {
                    if events.send(Event::ReadFailed(e)).is_err() {
                        return;
                    }
                    break;
                }
            }
        }
        cursor.advance(Instant::now());
        if !caught_up {
            caught_up = true;
            if events.send(Event::CaughtUp).is_err() {
                return;
            }
        }
        // With a hole open, read again soon whatever the socket says.
        let wait = if cursor.hole_since.is_some() {
            Duration::from_millis(250)
        } else {
            TICK
        };
        match socket.as_mut() {
            Some(s) => match tokio::time::timeout(wait, s.next()).await {
                Ok(Ok(Some(_))) | Err(_) => {}
                Ok(Ok(None) | Err(_)) => socket = None,
            },
            None => tokio::time::sleep(wait).await,
        }
        if events.is_closed() {
            return;
        }
    }
}

/// Posts the call's signals in order, one at a time (each counts on the sender's previous
/// message in the channel); gives the membership back when the call is over.
async fn post(
    client: Arc<Client>,
    me: Identity,
    mut m: Membership,
    channel: ChannelId,
    mut out: mpsc::UnboundedReceiver<CallSignal>,
    report: mpsc::UnboundedSender<CallEvent>,
) -> Membership {
    while let Some(signal) = out.recv().await {
        if let Err(e) = client.send_signal(&me, &mut m, channel, &signal).await {
            let _ = report.send(CallEvent::Warning {
                message: format!("a call signal was not sent: {e}"),
            });
        }
    }
    m
}

/// Everything a call runs in.
pub struct CallRoom {
    /// The server.
    pub client: Arc<Client>,
    /// Who is calling.
    pub me: Identity,
    /// The room (its verified state and keys).
    pub membership: Membership,
    /// The voice channel.
    pub channel: ChannelId,
    /// Pinned directory keys, to verify senders.
    pub pins: BTreeMap<UserId, KeyBundle>,
}

/// Joins the call in `room`'s channel and stays until `stop` resolves; then posts Leave,
/// closes every connection, and gives the membership back (it counts the signals sent).
/// Progress goes to `report`.
pub async fn run(
    room: CallRoom,
    options: CallOptions,
    report: mpsc::UnboundedSender<CallEvent>,
    stop: impl std::future::Future<Output = ()>,
) -> Result<Membership, CallError> {
    let audio = Arc::new(opus_packets(
        options.audio.as_deref().unwrap_or(DEFAULT_TONE),
    )?);
    let CallRoom {
        client,
        me,
        membership,
        channel,
        pins,
    } = room;
    let info = membership
        .spine()
        .channel(channel)
        .ok_or_else(|| ClientError::Input(format!("no channel {channel} in this room")))?;
    if !info.voice {
        return Err(ClientError::Input(format!("#{} is not a voice channel", info.name)).into());
    }
    // Re-announced every half burn time, so a late comer reads a Join that has not burnt.
    let announce_every = Duration::from_secs((info.burn_secs / 2).max(1));
    let session = CallSession::random()?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (out_tx, out_rx) = mpsc::unbounded_channel();
    let poster = tokio::spawn(post(
        client.clone(),
        me.clone(),
        membership.clone(),
        channel,
        out_rx,
        report.clone(),
    ));
    let follower = tokio::spawn(follow(
        client.clone(),
        membership,
        channel,
        pins,
        events_tx.clone(),
    ));
    let mut engine = Engine {
        me: me.user_id(),
        session,
        options,
        audio,
        peers: BTreeMap::new(),
        left: Default::default(),
        given_up: BTreeMap::new(),
        history: BTreeMap::new(),
        caught_up: false,
        seen: Default::default(),
        early: BTreeMap::new(),
        events: events_tx,
        out: out_tx,
        report: report.clone(),
    };
    let _ = engine.out.send(CallSignal::Join { session });
    let _ = report.send(CallEvent::InCall { session });
    let mut announce =
        tokio::time::interval_at(tokio::time::Instant::now() + announce_every, announce_every);
    let mut tick = tokio::time::interval(TICK);
    let mut read_warned = false;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = announce.tick() => {
                let _ = engine.out.send(CallSignal::Join { session });
            }
            _ = tick.tick() => engine.tick().await,
            event = events.recv() => match event {
                Some(Event::Message(r)) => engine.on_message(*r).await,
                Some(Event::CaughtUp) if !engine.caught_up => {
                    engine.caught_up = true;
                    for (user, session) in engine.seen.clone() {
                        let _ = report.send(CallEvent::Joined { user, session });
                    }
                }
                Some(Event::CaughtUp) => {}
                Some(Event::ReadFailed(e)) => {
                    if !read_warned {
                        engine.warn(format!("reading the channel failed (retrying): {e}"));
                        read_warned = true;
                    }
                }
                Some(Event::LocalCandidate(key, init)) => {
                    if let Ok(candidate) = serde_json::to_string(&init) {
                        let _ = engine.out.send(CallSignal::Candidate {
                            session,
                            to: key.0,
                            to_session: key.1,
                            candidate,
                        });
                    }
                }
                Some(Event::State(key, state)) => engine.on_state(key, state).await,
                None => break,
            },
        }
    }
    follower.abort();
    engine.tick().await;
    let _ = report.send(CallEvent::Summary {
        peers: engine.history.values().cloned().collect(),
    });
    let _ = engine.out.send(CallSignal::Leave { session });
    let peers = std::mem::take(&mut engine.peers);
    for (_, peer) in peers {
        peer.close().await;
    }
    drop(engine);
    let m = poster
        .await
        .map_err(|e| CallError::WebRtc(format!("the signal poster stopped: {e}")))?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_default_tone_is_a_second_of_20_ms_opus_packets() {
        let packets = opus_packets(DEFAULT_TONE).unwrap();
        assert!((45..=60).contains(&packets.len()), "{}", packets.len());
        // (The first page's granule counts the encoder's pre-skip, the last is trimmed.)
        let inner = &packets[1..packets.len() - 1];
        assert!(inner.iter().all(|(_, d)| *d == Duration::from_millis(20)));
        // Every packet is an Opus frame, not an Ogg Opus header page.
        assert!(packets.iter().all(|(p, _)| !p.starts_with(b"Opus")));
    }

    #[test]
    fn a_follower_reads_again_from_a_hole_until_it_fills_or_times_out() {
        let t0 = Instant::now();
        let mut c = Cursor::default();
        // 1, 2 and 4 are read; 3 (held for a sender) is not up yet.
        for n in [1, 2, 4] {
            assert!(c.take(n));
        }
        c.advance(t0);
        assert_eq!(c.floor, 2, "the next read starts before the hole");
        // Read again: 4 is not new; 3 has come.
        assert!(!c.take(4));
        assert!(c.take(3));
        c.advance(t0 + Duration::from_secs(1));
        assert_eq!((c.floor, c.hole_since), (4, None));
        // A hole that never fills (a burnt message) is read past after the grace.
        assert!(c.take(6));
        c.advance(t0 + Duration::from_secs(2));
        assert_eq!(c.floor, 4);
        c.advance(t0 + Duration::from_secs(2) + HOLE_GRACE);
        assert_eq!((c.floor, c.hole_since), (6, None));
        assert!(!c.take(5), "given up on");
    }

    /// An engine for `me`, offline: no relay, loopback only; with what it sends.
    fn engine(me: UserId, session: CallSession) -> (Engine, mpsc::UnboundedReceiver<CallSignal>) {
        let (events, _) = mpsc::unbounded_channel();
        let (out, out_rx) = mpsc::unbounded_channel();
        let (report, _) = mpsc::unbounded_channel();
        let engine = Engine {
            me,
            session,
            options: CallOptions {
                credentials: TurnCredentials {
                    username: String::new(),
                    credential: String::new(),
                    expires_at: cinder_proto::Timestamp(0),
                    urls: Vec::new(),
                },
                relay_only: false,
                audio: None,
                bind: "127.0.0.1:0".into(),
            },
            audio: Arc::new(opus_packets(DEFAULT_TONE).unwrap()),
            peers: BTreeMap::new(),
            left: Default::default(),
            given_up: BTreeMap::new(),
            history: BTreeMap::new(),
            caught_up: true,
            seen: Default::default(),
            early: BTreeMap::new(),
            events,
            out,
            report,
        };
        (engine, out_rx)
    }

    fn from(sender: UserId, number: u64, signal: CallSignal) -> Received {
        let now = cinder_proto::Timestamp::now();
        Received {
            number,
            sender,
            sender_name: None,
            sent_at: now,
            burn_at: now.plus(600),
            content: crate::rooms::Content::Call { signal },
            seq: number,
            hash: cinder_proto::Blob(vec![0; 32]),
            prev: cinder_proto::Blob(vec![0; 32]),
        }
    }

    #[tokio::test]
    async fn an_offer_addressed_to_another_session_is_ignored() {
        let (alice, bob, carol) = (UserId([1; 16]), UserId([2; 16]), UserId([3; 16]));
        let (sa, sb) = (CallSession([1; 16]), CallSession([2; 16]));
        // A real offer of Alice's (the smaller of the pair offers).
        let (offerer, _) = engine(alice, sa);
        let peer = offerer.connect((bob, sb), true).await.unwrap();
        let sdp = peer.pc.create_offer(None).await.unwrap().sdp;
        peer.close().await;
        let offer = |to, to_session| CallSignal::Offer {
            session: sa,
            to,
            to_session,
            sdp: sdp.clone(),
        };
        let (mut b, mut sent) = engine(bob, sb);
        // GIVEN the offer sent to Carol, then to another session of Bob's
        b.on_message(from(alice, 1, offer(carol, sb))).await;
        b.on_message(from(alice, 2, offer(bob, CallSession([9; 16]))))
            .await;
        // THEN Bob's engine makes no connection and answers nothing
        assert!(b.peers.is_empty());
        assert!(sent.try_recv().is_err());
        // WHEN it is sent to Bob's session, THEN he answers it
        b.on_message(from(alice, 3, offer(bob, sb))).await;
        assert!(b.peers.contains_key(&(alice, sa)));
        match sent.try_recv().unwrap() {
            CallSignal::Answer { to, to_session, .. } => assert_eq!((to, to_session), (alice, sa)),
            other => panic!("{other:?}"),
        }
        for (_, peer) in std::mem::take(&mut b.peers) {
            peer.close().await;
        }
    }

    #[tokio::test]
    async fn of_a_pair_only_the_smaller_offers() {
        let (alice, bob) = (UserId([1; 16]), UserId([2; 16]));
        let (sa, sb) = (CallSession([1; 16]), CallSession([2; 16]));
        // Bob, the larger, sees Alice's Join: he waits for her offer.
        let (mut b, mut b_sent) = engine(bob, sb);
        b.on_message(from(alice, 1, CallSignal::Join { session: sa }))
            .await;
        assert!(b.peers.is_empty() && b_sent.try_recv().is_err());
        // Alice sees Bob's Join: she offers, once, however often he re-announces.
        let (mut a, mut a_sent) = engine(alice, sa);
        a.on_message(from(bob, 2, CallSignal::Join { session: sb }))
            .await;
        a.on_message(from(bob, 3, CallSignal::Join { session: sb }))
            .await;
        assert!(matches!(
            a_sent.try_recv().unwrap(),
            CallSignal::Offer { to, to_session, .. } if (to, to_session) == (bob, sb)
        ));
        assert!(a_sent.try_recv().is_err(), "offered twice");
        for (_, peer) in std::mem::take(&mut a.peers) {
            peer.close().await;
        }
    }

    #[test]
    fn a_file_that_is_not_ogg_opus_is_refused() {
        assert!(matches!(
            opus_packets(b"RIFF....WAVEfmt "),
            Err(CallError::Audio(_))
        ));
    }
}
