//! Other users' keys, verified. A bundle from the server is accepted only if it chains,
//! signature by signature, from the version this device pinned before, or, for a user seen
//! for the first time, from a version 1 whose id derives from its key.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use cinder_proto::{KeyBundle, Timestamp, UserId, VerifyKey};

use crate::{Client, ClientError};

/// Checks that `chain` (oldest first) leads from `pinned` (or from scratch) to its last
/// bundle, and returns that bundle.
pub fn verify_chain(
    pinned: Option<&KeyBundle>,
    chain: &[KeyBundle],
) -> Result<KeyBundle, ClientError> {
    let bad = |why: String| ClientError::Verification(why);
    let mut prev = pinned.cloned();
    for bundle in chain {
        match &prev {
            None => bundle.verify_genesis().map_err(|e| {
                bad(format!(
                    "first key of {} does not verify: {e}",
                    bundle.user_id
                ))
            })?,
            Some(p) => bundle.verify_successor(p).map_err(|e| {
                bad(format!(
                    "rotation to version {} does not verify: {e}",
                    bundle.version
                ))
            })?,
        }
        prev = Some(bundle.clone());
    }
    prev.ok_or_else(|| bad("the server returned no keys".into()))
}

impl Client {
    /// Fetches `user`'s current bundle and proves it descends from `pinned`. Returns the
    /// verified bundle, which the caller should pin in place of the old one.
    pub async fn verified_keys(
        &self,
        user: UserId,
        pinned: Option<&KeyBundle>,
    ) -> Result<KeyBundle, ClientError> {
        let current = self.key(user).await?;
        if current.user_id != user {
            return Err(ClientError::Verification(
                "the server answered for another user".into(),
            ));
        }
        if let Some(p) = pinned {
            if current.version < p.version {
                return Err(ClientError::Verification(format!(
                    "the server offers version {} of these keys but version {} was seen before",
                    current.version, p.version
                )));
            }
            if current.version == p.version {
                return if &current == p {
                    Ok(current)
                } else {
                    Err(ClientError::Verification(
                        "the server changed a pinned key without a rotation".into(),
                    ))
                };
            }
        }
        let mut chain = Vec::new();
        let mut after = pinned.map_or(0, |p| p.version);
        loop {
            let page = self.chain(user, after).await?;
            let Some(last) = page.bundles.last() else {
                break;
            };
            // A page that does not move on would have this loop ask for it forever.
            if last.version <= after {
                return Err(ClientError::Verification(
                    "a page of the key chain does not move on".into(),
                ));
            }
            after = last.version;
            chain.extend(page.bundles);
            if !page.more || after >= current.version {
                break;
            }
        }
        let verified = verify_chain(pinned, &chain)?;
        if verified != current {
            return Err(ClientError::Verification(
                "the key chain does not end at the current keys".into(),
            ));
        }
        Ok(verified)
    }
}

/// A version of someone's directory keys, verified: what a page of messages is checked
/// against (see [`crate::rooms::messages::OpenedPage::verify`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignerKey {
    /// The Ed25519 key of that version.
    pub key: VerifyKey,
    /// When the next version was made, if this one has been superseded: what it signs
    /// must be dated no later (with a clock allowance).
    pub superseded_at: Option<Timestamp>,
}

/// Directory keys fetched and verified once per operation (a page of messages, a run of
/// room states): the current version through the pinned chain, an older one through the
/// whole chain from version 1, which must end at the current keys. Each user's keys are
/// asked for and verified once; later calls for that user are answered from memory.
#[derive(Default)]
pub(crate) struct KeyCache {
    known: BTreeMap<UserId, Option<Vec<KeyBundle>>>,
}

impl KeyCache {
    /// Version `version` of `user`'s keys, verified; `None` if it does not verify or the
    /// directory cannot be asked. Pins move forward to what was verified.
    pub async fn key(
        &mut self,
        client: &Client,
        pins: &mut BTreeMap<UserId, KeyBundle>,
        user: UserId,
        version: u64,
    ) -> Option<SignerKey> {
        if let Entry::Vacant(slot) = self.known.entry(user) {
            let current = client.verified_keys(user, pins.get(&user)).await.ok();
            if let Some(k) = &current {
                pins.insert(user, k.clone());
            }
            slot.insert(current.map(|k| vec![k]));
        }
        let known = self.known.get_mut(&user)?.as_mut()?;
        if version < known.last()?.version && known.len() == 1 {
            let mut chain = Vec::new();
            let mut after = 0;
            while let Ok(page) = client.chain(user, after).await {
                // An empty page ends the walk, and so does one that does not move on.
                let Some(last) = page.bundles.last().filter(|b| b.version > after) else {
                    break;
                };
                after = last.version;
                chain.extend(page.bundles);
                if !page.more {
                    break;
                }
            }
            match verify_chain(None, &chain) {
                Ok(end) if known.last() == Some(&end) => *known = chain,
                _ => return None,
            }
        }
        let at = known.iter().position(|b| b.version == version)?;
        Some(SignerKey {
            key: known[at].sign_key,
            superseded_at: known.get(at + 1).map(|b| b.created_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Identity;
    use cinder_proto::Timestamp;

    #[test]
    fn chains_verify_from_scratch_and_from_a_pin() {
        let v1 = Identity::generate(Timestamp(1)).unwrap();
        let v2 = v1.rotated(Timestamp(2)).unwrap();
        let v3 = v2.rotated(Timestamp(3)).unwrap();
        let all = [v1.bundle.clone(), v2.bundle.clone(), v3.bundle.clone()];
        assert_eq!(verify_chain(None, &all).unwrap(), v3.bundle);
        assert_eq!(
            verify_chain(Some(&v1.bundle), &all[1..]).unwrap(),
            v3.bundle
        );
        // A chain that skips a link, or that starts from someone else's pin, is refused.
        assert!(verify_chain(Some(&v1.bundle), &all[2..]).is_err());
        let stranger = Identity::generate(Timestamp(1)).unwrap();
        assert!(verify_chain(Some(&stranger.bundle), &all[1..]).is_err());
    }

    /// A dev server on the embedded store, and that store, to plant key versions in
    /// without the rotation limit.
    async fn directory() -> (Client, std::sync::Arc<cinder_sqlite::SqliteStore>) {
        directory_behind(|app| app).await
    }

    /// [`directory`], its server answering through `lie` (a layer that rewrites answers).
    async fn directory_behind(
        lie: impl FnOnce(axum::Router) -> axum::Router,
    ) -> (Client, std::sync::Arc<cinder_sqlite::SqliteStore>) {
        use cinder_server::Clock;
        let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
        let store = cinder_dev::open_store(dir.path()).unwrap();
        let secrets = std::sync::Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
        let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let objects = cinder_dev::media_store(dir.path(), &url, Clock::system()).unwrap();
        let app = lie(cinder_dev::app(
            store.clone(),
            secrets,
            Clock::system(),
            objects,
        ));
        tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
        (Client::new(&url), store)
    }

    /// `n` versions of one user's keys, oldest first; and the last identity.
    fn rotations(n: u64) -> (Vec<KeyBundle>, Identity) {
        let mut id = Identity::generate(Timestamp(1_000)).unwrap();
        let mut all = vec![id.bundle.clone()];
        for v in 2..=n {
            id = id.rotated(Timestamp(1_000 + v)).unwrap();
            all.push(id.bundle.clone());
        }
        (all, id)
    }

    /// `n` versions of one user's keys, oldest first, all stored; and the last identity.
    async fn versions(store: &cinder_sqlite::SqliteStore, n: u64) -> (Vec<KeyBundle>, Identity) {
        use cinder_server::store::KeyStore;
        let (all, id) = rotations(n);
        for bundle in &all {
            store.insert(bundle).await.unwrap();
        }
        (all, id)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_chain_longer_than_a_page_is_walked_to_the_current_keys() {
        let (client, store) = directory().await;
        let page = cinder_proto::api::limits::MAX_CHAIN_PAGE as u64;
        let (all, _) = versions(&store, page + 2).await;
        let (first, current) = (&all[0], all.last().unwrap());
        let user = first.user_id;
        // From scratch and from a pin on the first page, the walk takes every page.
        assert_eq!(&client.verified_keys(user, None).await.unwrap(), current);
        assert_eq!(
            &client.verified_keys(user, Some(first)).await.unwrap(),
            current
        );
        // An old version, through the cache: the whole chain, which ends at the current
        // keys; a version's key is superseded when the next was made.
        let (mut cache, mut pins) = (KeyCache::default(), BTreeMap::new());
        let v1 = cache.key(&client, &mut pins, user, 1).await.unwrap();
        assert_eq!(v1.key, first.sign_key);
        assert_eq!(v1.superseded_at, Some(all[1].created_at));
        let last = cache.key(&client, &mut pins, user, page + 2).await.unwrap();
        assert_eq!((last.key, last.superseded_at), (current.sign_key, None));
        assert_eq!(pins.get(&user), Some(current));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_page_of_the_chain_that_does_not_move_on_ends_the_walk() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let asked = std::sync::Arc::new(AtomicUsize::new(0));
        let count = asked.clone();
        let (all, _) = rotations(3);
        let chain = all.clone();
        // GIVEN a server that answers a read of the chain after version N with version N
        // (the first after 0) and says more follow
        let (client, store) = directory_behind(move |app| {
            app.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let (chain, count) = (chain.clone(), count.clone());
                    async move {
                        use axum::response::IntoResponse;
                        let Some(after) = request
                            .uri()
                            .query()
                            .and_then(|q| q.strip_prefix("after="))
                            .and_then(|n| n.parse::<usize>().ok())
                            .filter(|_| request.uri().path().ends_with("/chain"))
                        else {
                            return next.run(request).await;
                        };
                        count.fetch_add(1, Ordering::SeqCst);
                        axum::Json(cinder_proto::api::ChainPage {
                            bundles: vec![chain[after.max(1) - 1].clone()],
                            more: true,
                        })
                        .into_response()
                    }
                },
            ))
        })
        .await;
        for bundle in &all {
            cinder_server::store::KeyStore::insert(&*store, bundle)
                .await
                .unwrap();
        }
        let user = all[0].user_id;
        let ends = std::time::Duration::from_secs(10);
        // THEN a walk from a pin is refused after one page that does not move on,
        let from_pin = tokio::time::timeout(ends, client.verified_keys(user, Some(&all[0])))
            .await
            .expect("the walk ends");
        assert!(
            matches!(&from_pin, Err(ClientError::Verification(why)) if why.contains("does not move on")),
            "{from_pin:?}"
        );
        assert_eq!(asked.swap(0, Ordering::SeqCst), 1);
        // and one from scratch after the first page and the one that repeats it;
        let from_scratch = tokio::time::timeout(ends, client.verified_keys(user, None))
            .await
            .expect("the walk ends");
        assert!(from_scratch.is_err(), "{from_scratch:?}");
        assert_eq!(asked.swap(0, Ordering::SeqCst), 2);
        // and the cache finds no old version it cannot walk to.
        let (mut cache, mut pins) = (KeyCache::default(), BTreeMap::new());
        let old = tokio::time::timeout(ends, cache.key(&client, &mut pins, user, 1))
            .await
            .expect("the walk ends");
        assert_eq!(old, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_pinned_current_version_needs_no_history() {
        use cinder_server::store::KeyStore;
        let (client, store) = directory().await;
        // The server keeps only version 2 (its history lost, or withheld); this device
        // pinned version 2 before.
        let v1 = Identity::generate(Timestamp(1_000)).unwrap();
        let v2 = v1.rotated(Timestamp(1_001)).unwrap();
        store.insert(&v2.bundle).await.unwrap();
        let user = v2.user_id();
        let mut pins = BTreeMap::from([(user, v2.bundle.clone())]);
        let mut cache = KeyCache::default();
        let key = cache.key(&client, &mut pins, user, 2).await.unwrap();
        assert_eq!((key.key, key.superseded_at), (v2.bundle.sign_key, None));
        // Version 1 needs the chain from scratch, which the server cannot give.
        assert_eq!(cache.key(&client, &mut pins, user, 1).await, None);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_old_version_counts_only_on_a_chain_ending_at_the_keys_verified_first() {
        use cinder_server::store::KeyStore;
        let (client, store) = directory().await;
        let (all, last) = versions(&store, 2).await;
        let user = all[0].user_id;
        let (mut cache, mut pins) = (KeyCache::default(), BTreeMap::new());
        let v2 = cache.key(&client, &mut pins, user, 2).await.unwrap();
        assert_eq!(v2.key, all[1].sign_key);
        // The keys rotate after this operation verified version 2: the chain from scratch
        // now ends at version 3, not at what the operation checks signatures against.
        let v3 = last.rotated(Timestamp(2_000)).unwrap();
        store.insert(&v3.bundle).await.unwrap();
        assert_eq!(cache.key(&client, &mut pins, user, 1).await, None);
    }
}
