//! Relay announcements: every interval, `PUT {url}/{relay_id}` with
//! [`RelayAnnouncement`] (the relay's URLs and when to forget them) and its MAC under the
//! shared secret in the [`RELAY_HEADER`] header. A failure is logged and retried at the next
//! tick; it never stops the relay.

use std::time::Duration;

use cinder_proto::Timestamp;
use cinder_proto::calls::{RELAY_HEADER, RelayAnnouncement, relay_mac};
use tokio::sync::watch;

use crate::config::Announce;
use crate::server::unix_now;

/// How long one announcement may take.
const TIMEOUT: Duration = Duration::from_secs(10);

/// The request body and its MAC, for `urls` until `now + ttl`.
pub fn body_and_mac(
    secret: &[u8],
    relay_id: &str,
    urls: &[String],
    now: u64,
    ttl: Duration,
) -> (Vec<u8>, String) {
    let announcement = RelayAnnouncement {
        urls: urls.to_vec(),
        expires_at: Timestamp(now + ttl.as_secs()),
    };
    // A struct of strings and an integer always serializes.
    let body = serde_json::to_vec(&announcement).unwrap_or_default();
    let mac = relay_mac(secret, relay_id, &body);
    (body, mac)
}

/// Announces the relay until the server stops.
pub(crate) async fn run(
    announce: Announce,
    relay_id: String,
    secret: Vec<u8>,
    urls: Vec<String>,
    mut shutdown: watch::Receiver<bool>,
) {
    let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot build the announcement client; not announcing");
            return;
        }
    };
    let target = format!("{}/{relay_id}", announce.url.trim_end_matches('/'));
    let mut tick = tokio::time::interval(announce.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            _ = tick.tick() => {}
        }
        let (body, mac) = body_and_mac(&secret, &relay_id, &urls, unix_now(), announce.ttl);
        let sent = client
            .put(&target)
            .header(RELAY_HEADER, mac)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                tracing::debug!(status = r.status().as_u16(), "relay announced");
            }
            Ok(r) => tracing::warn!(status = r.status().as_u16(), "relay announcement refused"),
            Err(e) => tracing::warn!(error = %e, "relay announcement failed"),
        }
    }
}
