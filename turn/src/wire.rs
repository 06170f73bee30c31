//! The per-packet wire formats, read and written in place without allocating: ChannelData
//! (RFC 8656 §12), Send indications in and Data indications out (§11), and stream framing.
//!
//! Control messages (Allocate, Refresh, …) go through the `stun` crate's codec in
//! [`crate::server`]; this module is only what every relayed packet touches.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// STUN's magic cookie.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// A STUN header's size.
pub const HEADER: usize = 20;
/// Message type of a Send indication (method 0x006, class indication).
pub const SEND_INDICATION: u16 = 0x0016;
/// Message type of a Data indication (method 0x007, class indication).
pub const DATA_INDICATION: u16 = 0x0017;
/// XOR-PEER-ADDRESS.
pub const ATTR_XOR_PEER_ADDRESS: u16 = 0x0012;
/// DATA.
pub const ATTR_DATA: u16 = 0x0013;
/// The channel numbers a client may bind: RFC 5766's 0x4000–0x7FFF. RFC 8656 §12 narrows
/// new bindings to 0x4000–0x4FFF, but clients written to RFC 5766 (coturn's among them)
/// still pick from the whole range, and every number in it frames as ChannelData.
pub const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFF;
/// Room to leave before a received payload for the largest header written in front of it
/// (a Data indication to an IPv6 peer: 20 + 4 + 20 + 4 bytes).
pub const HEADROOM: usize = 48;

/// What the first bytes of a datagram or stream frame are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A STUN message (first two bits 00).
    Stun,
    /// ChannelData (first two bits 01).
    ChannelData,
    /// Neither: dropped (and a stream carrying it is closed).
    Other,
}

/// The kind of a message from its first byte.
pub fn kind(first: u8) -> Kind {
    match first >> 6 {
        0 => Kind::Stun,
        1 => Kind::ChannelData,
        _ => Kind::Other,
    }
}

/// The length of the frame at the start of a stream buffer, once its 4-byte prefix is in:
/// a STUN message is 20 bytes plus its length; ChannelData is 4 plus its length, padded to
/// a multiple of 4 over streams (RFC 8656 §12.5).
pub fn frame_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 4 {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    match kind(buf[0]) {
        Kind::Stun => Some(HEADER + len),
        Kind::ChannelData => Some((4 + len + 3) & !3),
        Kind::Other => None,
    }
}

/// A ChannelData message's channel number and payload; `None` if truncated.
pub fn channel_data(buf: &[u8]) -> Option<(u16, &[u8])> {
    if buf.len() < 4 {
        return None;
    }
    let channel = u16::from_be_bytes([buf[0], buf[1]]);
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let data = buf.get(4..4 + len)?;
    Some((channel, data))
}

/// Whether `buf` is a STUN message of type `typ` with a whole body.
pub fn is_stun_type(buf: &[u8], typ: u16) -> bool {
    buf.len() >= HEADER
        && u16::from_be_bytes([buf[0], buf[1]]) == typ
        && u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) == MAGIC_COOKIE
        && buf.len() >= HEADER + u16::from_be_bytes([buf[2], buf[3]]) as usize
}

/// A Send indication's XOR-PEER-ADDRESS and DATA; `None` if either is missing or malformed.
/// Other attributes (DONT-FRAGMENT, FINGERPRINT) are skipped.
pub fn send_indication(buf: &[u8]) -> Option<(SocketAddr, &[u8])> {
    if !is_stun_type(buf, SEND_INDICATION) {
        return None;
    }
    let len = u16::from_be_bytes([buf[2], buf[3]]) as usize;
    let tid = &buf[8..HEADER];
    let mut attrs = &buf[HEADER..HEADER + len];
    let (mut peer, mut data) = (None, None);
    while attrs.len() >= 4 {
        let typ = u16::from_be_bytes([attrs[0], attrs[1]]);
        let alen = u16::from_be_bytes([attrs[2], attrs[3]]) as usize;
        let value = attrs.get(4..4 + alen)?;
        match typ {
            ATTR_XOR_PEER_ADDRESS if peer.is_none() => peer = Some(read_xor_address(value, tid)?),
            ATTR_DATA if data.is_none() => data = Some(value),
            _ => {}
        }
        attrs = attrs.get((4 + alen + 3) & !3..).unwrap_or(&[]);
    }
    Some((peer?, data?))
}

/// Decodes an XOR-…-ADDRESS value (RFC 8489 §14.2).
pub fn read_xor_address(value: &[u8], tid: &[u8]) -> Option<SocketAddr> {
    if value.len() < 4 {
        return None;
    }
    let cookie = MAGIC_COOKIE.to_be_bytes();
    let port = u16::from_be_bytes([value[2], value[3]]) ^ (MAGIC_COOKIE >> 16) as u16;
    let ip = match (value[1], value.len()) {
        (0x01, 8) => {
            let mut o = [0u8; 4];
            for (i, b) in o.iter_mut().enumerate() {
                *b = value[4 + i] ^ cookie[i];
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        (0x02, 20) => {
            let mut o = [0u8; 16];
            for (i, b) in o.iter_mut().enumerate() {
                let mask = if i < 4 { cookie[i] } else { tid[i - 4] };
                *b = value[4 + i] ^ mask;
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

fn xor_address_len(addr: SocketAddr) -> usize {
    match addr {
        SocketAddr::V4(_) => 8,
        SocketAddr::V6(_) => 20,
    }
}

fn write_xor_address(out: &mut [u8], addr: SocketAddr, tid: &[u8; 12]) {
    let cookie = MAGIC_COOKIE.to_be_bytes();
    out[0] = 0;
    out[2..4].copy_from_slice(&(addr.port() ^ (MAGIC_COOKIE >> 16) as u16).to_be_bytes());
    match addr.ip() {
        IpAddr::V4(ip) => {
            out[1] = 0x01;
            for (i, b) in ip.octets().iter().enumerate() {
                out[4 + i] = b ^ cookie[i];
            }
        }
        IpAddr::V6(ip) => {
            out[1] = 0x02;
            for (i, b) in ip.octets().iter().enumerate() {
                let mask = if i < 4 { cookie[i] } else { tid[i - 4] };
                out[4 + i] = b ^ mask;
            }
        }
    }
}

/// How many bytes of padding follow `len` bytes to reach a multiple of 4.
pub fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// Writes a ChannelData header in the 4 bytes before `buf[start..start + len]` and, when
/// `pad`, zero padding after it; returns the frame's range in `buf`.
///
/// `start` must be at least 4 and `buf` must have room for the padding (the caller
/// receives into `buf[HEADROOM..len - 3]`).
pub fn frame_channel_data(
    buf: &mut [u8],
    start: usize,
    len: usize,
    channel: u16,
    pad: bool,
) -> std::ops::Range<usize> {
    let begin = start - 4;
    buf[begin..begin + 2].copy_from_slice(&channel.to_be_bytes());
    buf[begin + 2..start].copy_from_slice(&(len as u16).to_be_bytes());
    let mut end = start + len;
    if pad {
        let p = padding(len);
        buf[end..end + p].fill(0);
        end += p;
    }
    begin..end
}

/// Writes a Data indication (XOR-PEER-ADDRESS, DATA) around `buf[start..start + len]`, in
/// place: the header and attributes go in the headroom before it, the padding after it.
/// Returns the message's range in `buf`.
pub fn frame_data_indication(
    buf: &mut [u8],
    start: usize,
    len: usize,
    peer: SocketAddr,
    tid: &[u8; 12],
) -> std::ops::Range<usize> {
    let alen = xor_address_len(peer);
    let begin = start - (HEADER + 4 + alen + 4);
    let body = 4 + alen + 4 + len + padding(len);
    let h = &mut buf[begin..start];
    h[0..2].copy_from_slice(&DATA_INDICATION.to_be_bytes());
    h[2..4].copy_from_slice(&(body as u16).to_be_bytes());
    h[4..8].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    h[8..20].copy_from_slice(tid);
    h[20..22].copy_from_slice(&ATTR_XOR_PEER_ADDRESS.to_be_bytes());
    h[22..24].copy_from_slice(&(alen as u16).to_be_bytes());
    write_xor_address(&mut h[24..24 + alen], peer, tid);
    let d = 24 + alen;
    h[d..d + 2].copy_from_slice(&ATTR_DATA.to_be_bytes());
    h[d + 2..d + 4].copy_from_slice(&(len as u16).to_be_bytes());
    let end = start + len;
    let p = padding(len);
    buf[end..end + p].fill(0);
    begin..end + p
}

#[cfg(test)]
mod tests {
    use super::*;
    use stun::message::{Message, Setter};
    use stun::xoraddr::XorMappedAddress;

    #[test]
    fn stream_frames_are_stun_or_padded_channel_data() {
        assert_eq!(frame_len(&[0x00, 0x01, 0x00, 0x08]), Some(28));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x05]), Some(12));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x08]), Some(12));
        assert_eq!(frame_len(&[0x40, 0x00, 0x00, 0x00]), Some(4));
        assert_eq!(frame_len(&[0x80, 0x00, 0x00, 0x00]), None);
        assert_eq!(frame_len(&[0x00, 0x01]), None);
    }

    #[test]
    fn data_indications_written_in_place_decode_with_the_stun_crate() {
        for peer in ["203.0.113.9:4000", "[2001:db8::7]:5000"] {
            let peer: SocketAddr = peer.parse().expect("addr");
            let payload = b"hello, peer";
            let mut buf = vec![0u8; HEADROOM + payload.len() + 3];
            buf[HEADROOM..HEADROOM + payload.len()].copy_from_slice(payload);
            let tid = [7u8; 12];
            let r = frame_data_indication(&mut buf, HEADROOM, payload.len(), peer, &tid);
            let mut m = Message::new();
            m.unmarshal_binary(&buf[r]).expect("decodes");
            assert_eq!(m.typ.value(), DATA_INDICATION);
            let mut got = XorMappedAddress::default();
            got.get_from_as(&m, stun::attributes::ATTR_XOR_PEER_ADDRESS)
                .expect("peer");
            assert_eq!(SocketAddr::new(got.ip, got.port), peer);
            assert_eq!(
                m.get(stun::attributes::ATTR_DATA).expect("data"),
                payload.to_vec()
            );
        }
    }

    #[test]
    fn send_indications_from_the_stun_crate_parse_in_place() {
        for peer in ["198.51.100.1:9", "[2001:db8::1]:65535"] {
            let peer: SocketAddr = peer.parse().expect("addr");
            let mut m = Message::new();
            m.set_type(stun::message::MessageType::new(
                stun::message::METHOD_SEND,
                stun::message::CLASS_INDICATION,
            ));
            m.new_transaction_id().expect("tid");
            m.write_header();
            XorMappedAddress {
                ip: peer.ip(),
                port: peer.port(),
            }
            .add_to_as(&mut m, stun::attributes::ATTR_XOR_PEER_ADDRESS)
            .expect("peer");
            m.add(stun::attributes::ATTR_DONT_FRAGMENT, &[]);
            m.add(stun::attributes::ATTR_DATA, b"abcde");
            stun::fingerprint::FINGERPRINT
                .add_to(&mut m)
                .expect("fingerprint");
            assert_eq!(send_indication(&m.raw), Some((peer, &b"abcde"[..])));
            assert_eq!(send_indication(&m.raw[..m.raw.len() - 1]), None);
        }
    }

    #[test]
    fn channel_data_framing_pads_only_when_asked() {
        let mut buf = vec![0xffu8; HEADROOM + 8];
        let r = frame_channel_data(&mut buf, HEADROOM, 5, 0x4001, true);
        assert_eq!(r.len(), 12);
        assert_eq!(&buf[r.start..r.start + 4], &[0x40, 0x01, 0x00, 0x05]);
        assert_eq!(&buf[r.end - 3..r.end], &[0, 0, 0]);
        let r = frame_channel_data(&mut buf, HEADROOM, 5, 0x4001, false);
        assert_eq!(r.len(), 9);
        assert_eq!(channel_data(&buf[r]), Some((0x4001, &[0xff; 5][..])));
        assert_eq!(channel_data(&[0x40, 0x00, 0x00, 0x09, 1, 2]), None);
    }
}
