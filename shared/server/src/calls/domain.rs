//! Calls rules: who gets TURN credentials, for how long, and which relay announcements
//! count.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use cinder_proto::calls::{
    RelayAnnouncement, TurnCredentials, limits, relay_id_valid, relay_mac_valid, turn_password,
    turn_username,
};
use cinder_proto::{Signer, Timestamp};
use zeroize::Zeroizing;

use crate::shards::domain::require_channel;
use crate::store::{ChannelRef, Relay, RelayStore, StoreError};
use crate::{Error, Result};

/// The secret the API shares with the TURN relays: it makes credentials they accept, and
/// proves their announcements. Never logged; wiped when dropped.
pub struct TurnSecret(Zeroizing<Vec<u8>>);

impl TurnSecret {
    /// Wraps the secret; at least 16 bytes.
    pub fn new(secret: Vec<u8>) -> Result<Self> {
        if secret.len() < 16 {
            return Err(Error::Internal(
                "the TURN secret must be at least 16 bytes".into(),
            ));
        }
        Ok(Self(Zeroizing::new(secret)))
    }

    /// A fresh random secret (the dev server's, for its own relay).
    pub fn random() -> Result<Self> {
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
        let secret = Zeroizing::new(secret);
        Ok(Self(Zeroizing::new(
            URL_SAFE_NO_PAD.encode(secret.as_slice()).into_bytes(),
        )))
    }

    /// The secret's bytes, to hand to a relay started in the same process.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for TurnSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TurnSecret(..)")
    }
}

/// TURN credentials for a channel's capability holder: a random user name that lapses
/// `secs` from now (at most an hour), and the URLs of the relays announced at `now`,
/// freshest first.
#[tracing::instrument(skip_all)]
pub async fn credentials(
    relays: &dyn RelayStore,
    secret: &TurnSecret,
    signer: Signer,
    channel: ChannelRef,
    (now, secs): (Timestamp, u64),
) -> Result<TurnCredentials> {
    require_channel(signer, channel)?;
    let mut user = [0u8; 12];
    getrandom::fill(&mut user).map_err(|e| Error::Internal(format!("randomness: {e}")))?;
    let expires_at = now.plus(secs.clamp(1, limits::MAX_CREDENTIAL_SECS));
    let username = turn_username(expires_at, &URL_SAFE_NO_PAD.encode(user));
    let credential = turn_password(&secret.0, &username);
    let mut live = relays.relays(now).await?;
    live.retain(|r| r.expires_at > now);
    live.sort_by_key(|r| std::cmp::Reverse(r.expires_at));
    let urls = live
        .into_iter()
        .take(limits::MAX_RELAYS_PER_ANSWER)
        .flat_map(|r| r.urls)
        .collect();
    Ok(TurnCredentials {
        username,
        credential,
        expires_at,
        urls,
    })
}

/// A relay's announcement: the MAC over the exact body is checked before the body is
/// read; then the URLs and the expiry must be within bounds. An announcement older than
/// the one stored (a replay) is refused with a conflict.
#[tracing::instrument(skip_all)]
pub async fn announce(
    relays: &dyn RelayStore,
    secret: &TurnSecret,
    relay_id: &str,
    (body, mac): (&[u8], Option<&str>),
    now: Timestamp,
) -> Result<()> {
    if !relay_id_valid(relay_id) {
        return Err(Error::InvalidParameter(
            "relay id: 1 to 64 letters, digits, '-' or '_'".into(),
        ));
    }
    if !mac.is_some_and(|mac| relay_mac_valid(&secret.0, relay_id, body, mac)) {
        return Err(Error::Unauthenticated);
    }
    let announcement: RelayAnnouncement = crate::extract::parse_json(body)?;
    if !announcement.urls_valid() {
        return Err(Error::InvalidParameter(format!(
            "urls: 1 to {} turn: or turns: URLs of at most {} bytes",
            limits::MAX_RELAY_URLS,
            limits::MAX_URL_BYTES
        )));
    }
    let latest = now.plus(limits::MAX_ANNOUNCEMENT_SECS);
    if announcement.expires_at <= now || announcement.expires_at > latest {
        return Err(Error::InvalidParameter(format!(
            "expires_at: after now and at most {} s ahead",
            limits::MAX_ANNOUNCEMENT_SECS
        )));
    }
    let relay = Relay {
        relay_id: relay_id.to_owned(),
        urls: announcement.urls,
        expires_at: announcement.expires_at,
    };
    match relays.announce(&relay).await {
        Ok(()) => Ok(()),
        Err(StoreError::Conflict) => Err(Error::VersionConflict),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;
    use cinder_proto::calls::relay_mac;
    use cinder_proto::{ChannelId, RoomId};

    use super::*;

    const NOW: Timestamp = Timestamp(1_800_000_000);

    /// Relays as given, served back without any filtering of their own: what the domain
    /// does with a relay at the edge of its expiry is then the domain's alone.
    #[derive(Default)]
    struct Relays(Mutex<Vec<Relay>>);

    #[async_trait]
    impl RelayStore for Relays {
        async fn announce(&self, relay: &Relay) -> Result<(), StoreError> {
            self.0.lock().unwrap().push(relay.clone());
            Ok(())
        }
        async fn relays(&self, _: Timestamp) -> Result<Vec<Relay>, StoreError> {
            Ok(self.0.lock().unwrap().clone())
        }
    }

    fn secret() -> TurnSecret {
        TurnSecret::new(b"sixteen byte key and more".to_vec()).unwrap()
    }

    #[test]
    fn the_secret_never_prints() {
        let shown = format!("{:?}", secret());
        assert_eq!(shown, "TurnSecret(..)");
        assert!(!shown.contains("sixteen"));
    }

    #[tokio::test]
    async fn credentials_name_only_relays_whose_announcement_runs_past_now() {
        let relays = Relays::default();
        for (id, expires_at) in [("lapsing", NOW), ("live", NOW.plus(1))] {
            relays.0.lock().unwrap().push(Relay {
                relay_id: id.into(),
                urls: vec![format!("turn:{id}.example:3478")],
                expires_at,
            });
        }
        let (room, channel) = (RoomId([1; 16]), ChannelId([2; 16]));
        let creds = credentials(
            &relays,
            &secret(),
            Signer::Channel(room, channel),
            ChannelRef { room, channel },
            (NOW, 600),
        )
        .await
        .unwrap();
        assert_eq!(creds.urls, ["turn:live.example:3478"]);
        assert_eq!(creds.expires_at, NOW.plus(600));
    }

    #[tokio::test]
    async fn an_announcement_may_reach_exactly_the_longest_expiry() {
        let relays = Relays::default();
        let secret = secret();
        let announce_until = |expires_at: Timestamp| {
            let body = serde_json::to_vec(&RelayAnnouncement {
                urls: vec!["turn:relay.example:3478".into()],
                expires_at,
            })
            .unwrap();
            let mac = relay_mac(secret.expose(), "r1", &body);
            (body, mac)
        };
        let (body, mac) = announce_until(NOW.plus(limits::MAX_ANNOUNCEMENT_SECS));
        announce(&relays, &secret, "r1", (&body, Some(&mac)), NOW)
            .await
            .unwrap();
        assert_eq!(relays.0.lock().unwrap().len(), 1);
        for expires_at in [NOW.plus(limits::MAX_ANNOUNCEMENT_SECS + 1), NOW] {
            let (body, mac) = announce_until(expires_at);
            let r = announce(&relays, &secret, "r1", (&body, Some(&mac)), NOW).await;
            assert!(matches!(r, Err(Error::InvalidParameter(_))), "{r:?}");
        }
        assert_eq!(relays.0.lock().unwrap().len(), 1);
    }
}
