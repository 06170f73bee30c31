//! The live socket: hear at once that a followed channel has a new or deleted message.
//!
//! A notice is a hint, never content: it names a room, a channel and a number, and a
//! client that hears one reads the channel itself ([`Client::read`]) from the last number
//! it has shown, with every check a page gets. A server that lies in a notice can make a
//! client read early or late, never show something the room did not send.
//!
//! A socket can drop at any time, and notices sent while it was down are gone: on every
//! (re)connect a client first lists the channel from the last number it has shown, then
//! follows the notices (see docs/API.md, "The live socket").
//!
//! The socket's URL: the dev server serves it on its own address, `ws://host:port/live`
//! (derived from the base URL unless [`Client::with_live_url`] says otherwise); in AWS it
//! is the separate WebSocket API's `wss://…` URL.

use std::collections::VecDeque;

use cinder_proto::live::{ClientFrame, Place, Proof, ServerFrame};
use cinder_proto::{ChannelId, Nonce};
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::rooms::Membership;
use crate::rooms::capabilities::channel_capability;
use crate::{Client, ClientError};

/// The live socket's URL for a server at `base_url`, as the dev server serves it:
/// `http(s)://host` becomes `ws(s)://host/live`.
pub fn derived_live_url(base_url: &str) -> String {
    let base = base_url.trim_end_matches('/');
    let rest = if let Some(rest) = base.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = base.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        base.to_owned()
    };
    format!("{rest}/live")
}

impl Client {
    /// A proof, for the live socket, that this client holds `channel`'s capability: signed
    /// with the current channel key's capability, at this client's corrected clock, with a
    /// fresh nonce. Good once, within the server's window.
    pub fn live_proof(&self, m: &Membership, channel: ChannelId) -> Result<Proof, ClientError> {
        let (_, key) = m.channel_key(channel)?;
        let cap = channel_capability(key, m.room, channel);
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|_| ClientError::Randomness)?;
        Ok(Proof::sign(
            &cap,
            Place {
                room: m.room,
                channel,
            },
            self.now(),
            Nonce(nonce),
        ))
    }

    /// Opens the live socket at [`Client::live_url`].
    pub async fn live(&self) -> Result<LiveSocket, ClientError> {
        LiveSocket::connect(&self.live_url()).await
    }
}

/// The TLS configuration for wss://: rustls with its `ring` provider named here, not
/// picked from the process (a program that also links the AWS SDK has two providers, and
/// rustls then refuses to guess), and the Web PKI roots.
fn tls_config() -> Result<std::sync::Arc<rustls::ClientConfig>, ClientError> {
    let roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| ClientError::Internal(format!("TLS setup: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(std::sync::Arc::new(config))
}

/// An open live socket.
#[derive(Debug)]
pub struct LiveSocket {
    url: String,
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Frames read while waiting for a subscription's answer.
    pending: VecDeque<ServerFrame>,
}

impl LiveSocket {
    /// Connects to the live socket at `url` (`ws://` or `wss://`).
    pub async fn connect(url: &str) -> Result<Self, ClientError> {
        let (ws, _) = tokio_tungstenite::connect_async_tls_with_config(
            url,
            None,
            false,
            Some(tokio_tungstenite::Connector::Rustls(tls_config()?)),
        )
        .await
        .map_err(|e| unreachable(url, e))?;
        Ok(Self {
            url: url.to_owned(),
            ws,
            pending: VecDeque::new(),
        })
    }

    /// Sends a subscription with these proofs, without waiting for the answers (one
    /// [`ServerFrame::Subscribed`] or [`ServerFrame::Refused`] per proof, from
    /// [`LiveSocket::next`]).
    pub async fn subscribe(&mut self, proofs: Vec<Proof>) -> Result<(), ClientError> {
        self.send(&ClientFrame::Subscribe { channels: proofs })
            .await
    }

    /// Stops following these channels.
    pub async fn unsubscribe(&mut self, places: Vec<Place>) -> Result<(), ClientError> {
        self.send(&ClientFrame::Unsubscribe { channels: places })
            .await
    }

    /// Subscribes to `channel` of `m` with a fresh proof and waits for the answer: `Ok` once
    /// the server has accepted it (notices follow), the server's refusal otherwise. Notices
    /// read meanwhile are kept for [`LiveSocket::next`].
    pub async fn follow(
        &mut self,
        client: &Client,
        m: &Membership,
        channel: ChannelId,
    ) -> Result<(), ClientError> {
        let proof = client.live_proof(m, channel)?;
        let place = proof.place();
        self.subscribe(vec![proof]).await?;
        let mut kept = VecDeque::new();
        let answer = loop {
            match self.read_frame().await? {
                None => {
                    break Err(ClientError::Unreachable {
                        url: self.url.clone(),
                        reason: "the live socket closed".into(),
                        cause: None,
                    });
                }
                Some(ServerFrame::Subscribed { room, channel })
                    if room == place.room && channel == place.channel =>
                {
                    break Ok(());
                }
                Some(ServerFrame::Refused {
                    room,
                    channel,
                    code,
                }) if room == place.room && channel == place.channel => {
                    break Err(ClientError::Api {
                        status: 401,
                        body: cinder_proto::ErrorBody {
                            code,
                            message: "the live socket refused the subscription".into(),
                            field: None,
                            reserved: None,
                        },
                    });
                }
                Some(ServerFrame::Error { code, message }) => {
                    break Err(ClientError::Api {
                        status: 400,
                        body: cinder_proto::ErrorBody {
                            code,
                            message,
                            field: None,
                            reserved: None,
                        },
                    });
                }
                Some(other) => kept.push_back(other),
            }
        };
        kept.append(&mut self.pending);
        self.pending = kept;
        answer
    }

    /// The next frame from the server; `None` once the socket has closed.
    pub async fn next(&mut self) -> Result<Option<ServerFrame>, ClientError> {
        if let Some(frame) = self.pending.pop_front() {
            return Ok(Some(frame));
        }
        self.read_frame().await
    }

    /// Sends a ping (an idle socket is closed by API Gateway after ten minutes).
    pub async fn ping(&mut self) -> Result<(), ClientError> {
        let url = self.url.clone();
        self.ws
            .send(Message::Ping(Vec::new().into()))
            .await
            .map_err(|e| unreachable(&url, e))
    }

    /// Closes the socket.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    async fn send(&mut self, frame: &ClientFrame) -> Result<(), ClientError> {
        let json = serde_json::to_string(frame).map_err(|e| ClientError::Input(e.to_string()))?;
        let url = self.url.clone();
        self.ws
            .send(Message::Text(json.into()))
            .await
            .map_err(|e| unreachable(&url, e))
    }

    async fn read_frame(&mut self) -> Result<Option<ServerFrame>, ClientError> {
        loop {
            let message = match self.ws.next().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(unreachable(&self.url, e)),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).map(Some).map_err(|e| {
                        ClientError::Verification(format!("a live frame does not parse: {e}"))
                    });
                }
                Message::Close(_) => return Ok(None),
                // Pings are answered by the library; nothing else is a frame.
                _ => continue,
            }
        }
    }
}

fn unreachable(url: &str, e: tokio_tungstenite::tungstenite::Error) -> ClientError {
    ClientError::Unreachable {
        url: url.to_owned(),
        reason: e.to_string(),
        cause: Some(Box::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::{LiveSocket, derived_live_url};

    /// wss:// builds its TLS configuration (rustls, webpki roots) without a panic, and a
    /// server that is not TLS is an error.
    #[tokio::test]
    async fn wss_to_a_server_without_tls_is_an_error() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                use tokio::io::AsyncWriteExt;
                let _ = stream.write_all(b"HTTP/1.1 400 no\r\n\r\n").await;
            }
        });
        let e = LiveSocket::connect(&format!("wss://localhost:{}/live", addr.port()))
            .await
            .err()
            .unwrap();
        assert!(matches!(e, crate::ClientError::Unreachable { .. }), "{e}");
    }

    #[test]
    fn the_dev_servers_live_url_is_its_own_address() {
        assert_eq!(
            derived_live_url("http://127.0.0.1:8787/"),
            "ws://127.0.0.1:8787/live"
        );
        assert_eq!(
            derived_live_url("https://example.test"),
            "wss://example.test/live"
        );
    }
}
