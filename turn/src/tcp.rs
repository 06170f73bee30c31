//! The TCP and TLS listeners: STUN messages and ChannelData de-framed from a stream
//! (RFC 8656 §12.5: ChannelData padded to 4 bytes). An allocation made over a connection
//! lives no longer than the connection.
//!
//! Over plain TCP, whoever has a frame for the client (the connection's reader for
//! answers, the allocation's task for relayed packets) writes it to the socket itself with
//! a non-blocking write; only what the kernel does not take at once is queued, in order,
//! for a writer task. Over TLS, frames go through a queue to one writer that makes each
//! its own TLS record and flushes when the queue drains.

use std::sync::Arc;
use std::time::Duration;

use std::sync::Mutex;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};
use tokio_rustls::TlsAcceptor;

use crate::allocation::{Allocation, ClientSink, FiveTuple, Transport};
use crate::server::{Ctx, Shared};
use crate::wire::{self, Kind};

/// How long a TLS handshake may take.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// The reader's buffer to start with.
const READ_BUFFER: usize = 4 * 1024;

/// Accepts connections until the server stops.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    listener: TcpListener,
    transport: Transport,
    tls: Option<TlsAcceptor>,
) {
    let mut shutdown = shared.shutdown.clone();
    let Ok(local) = listener.local_addr() else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            r = listener.accept() => match r {
                Ok((stream, client)) => {
                    let _ = stream.set_nodelay(true);
                    let five_tuple = FiveTuple { transport, client, server: local };
                    tokio::spawn(connection(shared.clone(), stream, five_tuple, tls.clone()));
                }
                Err(e) => {
                    // Out of descriptors or similar: back off rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

async fn connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    five_tuple: FiveTuple,
    tls: Option<TlsAcceptor>,
) {
    match tls {
        None => run_tcp(shared, stream, five_tuple).await,
        Some(acceptor) => match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
            Ok(Ok(stream)) => run_tls(shared, stream, five_tuple).await,
            Ok(Err(e)) => {
                tracing::debug!(client = %five_tuple.client, error = %e, "TLS handshake failed");
            }
            Err(_) => tracing::debug!(client = %five_tuple.client, "TLS handshake timed out"),
        },
    }
}

/// A plain TCP connection's write side: frames are written straight to the socket while
/// nothing is queued, and queued (up to a limit) behind what the kernel did not take.
#[derive(Debug)]
pub(crate) struct DirectSink {
    stream: Arc<TcpStream>,
    pending: Mutex<BytesMut>,
    wake: Notify,
    limit: usize,
}

impl DirectSink {
    /// Writes or queues `frame`; false if it was dropped (queue over its limit, unless
    /// `force`) or the connection failed.
    pub(crate) fn send(&self, frame: &[u8], force: bool) -> bool {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !pending.is_empty() {
            if !force && pending.len() + frame.len() > self.limit {
                return false;
            }
            // The writer task was woken when the queue began.
            pending.extend_from_slice(frame);
            return true;
        }
        match self.stream.try_write(frame) {
            Ok(n) if n == frame.len() => return true,
            Ok(n) => pending.extend_from_slice(&frame[n..]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                pending.extend_from_slice(frame);
            }
            Err(_) => return false,
        }
        drop(pending);
        self.wake.notify_one();
        true
    }

    /// Writes what was queued, whenever something is, until the connection fails.
    async fn drain(self: Arc<Self>) {
        loop {
            self.wake.notified().await;
            loop {
                if self.stream.writable().await.is_err() {
                    return;
                }
                let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                if pending.is_empty() {
                    break;
                }
                match self.stream.try_write(&pending) {
                    Ok(n) => pending.advance(n),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
                if pending.is_empty() {
                    break;
                }
            }
        }
    }
}

async fn run_tcp(shared: Arc<Shared>, stream: TcpStream, five_tuple: FiveTuple) {
    let stream = Arc::new(stream);
    let sink = Arc::new(DirectSink {
        stream: stream.clone(),
        pending: Mutex::new(BytesMut::new()),
        wake: Notify::new(),
        limit: shared.config.stream_queue,
    });
    let writer = tokio::spawn(sink.clone().drain());
    let mut shutdown = shared.shutdown.clone();
    let mut conn = Conn::new(shared.clone(), five_tuple, ClientSink::Tcp(sink));
    loop {
        conn.make_room();
        tokio::select! {
            _ = shutdown.changed() => break,
            r = stream.readable() => if r.is_err() { break },
        }
        match stream.try_read_buf(&mut conn.buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => break,
        }
        if !conn.frames().await {
            break;
        }
    }
    conn.close();
    writer.abort();
}

async fn run_tls<S>(shared: Arc<Shared>, stream: S, five_tuple: FiveTuple)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut shutdown = shared.shutdown.clone();
    let (mut rd, wr) = tokio::io::split(stream);
    // The queue's limit in frames, for media packets of about a kilobyte.
    let (tx, rx) = mpsc::channel::<Bytes>((shared.config.stream_queue / 1024).max(16));
    let mut writer = tokio::spawn(write(wr, rx));
    let mut conn = Conn::new(shared.clone(), five_tuple, ClientSink::Stream(tx));
    loop {
        conn.make_room();
        tokio::select! {
            _ = shutdown.changed() => break,
            r = rd.read_buf(&mut conn.buf) => match r {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            },
        }
        if !conn.frames().await {
            break;
        }
    }
    conn.close();
    // The writer ends when the allocation's task has let go of its sender.
    if tokio::time::timeout(Duration::from_secs(1), &mut writer)
        .await
        .is_err()
    {
        writer.abort();
    }
}

/// One connection's read side: its buffer, its allocation, and how to answer it.
struct Conn {
    shared: Arc<Shared>,
    five_tuple: FiveTuple,
    sink: ClientSink,
    buf: BytesMut,
    alloc: Option<Arc<Allocation>>,
}

impl Conn {
    fn new(shared: Arc<Shared>, five_tuple: FiveTuple, sink: ClientSink) -> Conn {
        Conn {
            shared,
            five_tuple,
            sink,
            // Grown to the largest frame seen (at most 64 KiB + 20): small for media,
            // whole for anything.
            buf: BytesMut::with_capacity(READ_BUFFER),
            alloc: None,
        }
    }

    fn make_room(&mut self) {
        if self.buf.capacity() - self.buf.len() < READ_BUFFER / 2 {
            self.buf.reserve(READ_BUFFER);
        }
    }

    /// Handles every whole frame in the buffer; false if the connection must close.
    async fn frames(&mut self) -> bool {
        while self.buf.len() >= 4 {
            let Some(len) = wire::frame_len(&self.buf) else {
                tracing::debug!(client = %self.five_tuple.client, "not STUN or ChannelData; closing");
                return false;
            };
            if self.buf.len() < len {
                self.buf.reserve(len - self.buf.len());
                break;
            }
            let frame = &self.buf[..len];
            match wire::kind(frame[0]) {
                Kind::ChannelData => {
                    if let Some(a) = &self.alloc {
                        self.shared.channel_data(a, frame);
                    }
                }
                Kind::Stun if wire::is_stun_type(frame, wire::SEND_INDICATION) => {
                    if let Some(a) = &self.alloc {
                        self.shared.send_indication(a, frame);
                    }
                }
                _ => {
                    let ctx = Ctx {
                        five_tuple: self.five_tuple,
                        sink: self.sink.clone(),
                    };
                    if let Some(answer) = self.shared.handle_stun(frame, &ctx) {
                        let sent = match &self.sink {
                            ClientSink::Tcp(direct) => direct.send(&answer, true),
                            ClientSink::Stream(tx) => tx.send(Bytes::from(answer)).await.is_ok(),
                            ClientSink::Udp(_) => false,
                        };
                        if !sent {
                            return false;
                        }
                    }
                    self.alloc = self.shared.table.get(&self.five_tuple);
                }
            }
            self.buf.advance(len);
        }
        true
    }

    /// The connection is gone, and its allocation with it (RFC 8656 §3.1).
    fn close(&mut self) {
        if let Some(a) = self.shared.table.get(&self.five_tuple) {
            self.shared.table.remove(&a);
            a.closed.notify_one();
        }
        self.alloc = None;
    }
}

/// Writes queued frames to the TLS stream, one TLS record each, flushing when the queue
/// drains. Records are not merged: some clients (coturn's among them) read one message
/// per record and drop the rest of a record that carries several.
async fn write<W: AsyncWrite + Unpin>(mut w: W, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(frame) = rx.recv().await {
        if w.write_all(&frame).await.is_err() {
            return;
        }
        while let Ok(frame) = rx.try_recv() {
            if w.write_all(&frame).await.is_err() {
                return;
            }
        }
        if w.flush().await.is_err() {
            return;
        }
    }
    let _ = w.shutdown().await;
}
