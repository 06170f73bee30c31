//! The hostile-server suite for rooms and messages. Each test plays a server that lies: it
//! writes what it likes straight into its own store (forged room states, planted messages,
//! replayed envelopes) or runs on a clock of its choosing, usually together with a user of
//! the directory or a member. Each names the attack, and fails if its defence is removed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use cinder_proto::rooms::{Room, Shard};
use cinder_proto::{ChannelId, ErrorCode, KeyBundle, RoomId, Timestamp, UserId, VerifyKey};
use cinder_server::Clock;
use cinder_server::store::{ChannelRef, InboxStore, RoomStore, ShardStore};
use cinder_sqlite::SqliteStore;

use super::capabilities::{admin_capability, member_capability, spine_key};
use super::invites::InviteKind;
use super::state::{
    Head, SIGN_DOMAIN, SignedSpine, check_genesis, open_entry, sign_and_seal, spine_aad,
};
use super::*;
use crate::{Client, ClientError, Identity};

struct World {
    client: Client,
    /// The server's own store: what a hostile operator can rewrite at will.
    store: Arc<SqliteStore>,
    /// Its media files (the data folder's `media/`), just as rewritable.
    objects: Arc<cinder_dev::media::FileObjects>,
    data: std::path::PathBuf,
    /// Where it listens, for a second client with a clock of its own.
    url: String,
}

async fn world_with(clock: Clock) -> World {
    world_behind(clock, |app| app).await
}

/// A world whose server answers through `lie`: the dev server's router as the test wraps
/// it (a layer that rewrites answers, routes put in front of its own).
async fn world_behind(clock: Clock, lie: impl FnOnce(axum::Router) -> axum::Router) -> World {
    let dir = Box::leak(Box::new(tempfile::tempdir().unwrap()));
    let store = cinder_dev::open_store(dir.path()).unwrap();
    let secrets = Arc::new(cinder_dev::master_secret(dir.path()).unwrap());
    let listener = cinder_dev::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let objects = cinder_dev::media_store(dir.path(), &url, clock.clone()).unwrap();
    let app = lie(cinder_dev::app(
        store.clone(),
        secrets,
        clock,
        objects.clone(),
    ));
    tokio::spawn(cinder_dev::serve(listener, app, std::future::pending()));
    World {
        client: Client::new(&url),
        store,
        objects,
        data: dir.path().to_owned(),
        url,
    }
}

async fn world() -> World {
    world_with(Clock::system()).await
}

struct User {
    me: Identity,
    rooms: BTreeMap<RoomId, Membership>,
    pins: BTreeMap<UserId, KeyBundle>,
}

impl User {
    async fn new(w: &World) -> Self {
        let me = Identity::generate(Timestamp::now()).unwrap();
        w.client.publish(&me.bundle).await.unwrap();
        Self {
            me,
            rooms: BTreeMap::new(),
            pins: BTreeMap::new(),
        }
    }

    fn id(&self) -> UserId {
        self.me.user_id()
    }

    async fn accept(&mut self, w: &World) -> Vec<RoomId> {
        w.client
            .accept_invites(&self.me, &mut self.rooms, &mut self.pins)
            .await
            .unwrap()
    }

    async fn sync(&mut self, w: &World, room: RoomId) -> Result<Spine, ClientError> {
        let m = self.rooms.get_mut(&room).unwrap();
        w.client.room(m, &mut self.pins).await
    }

    async fn read(&mut self, w: &World, room: RoomId, channel: ChannelId) -> messages::Page {
        let m = self.rooms[&room].clone();
        w.client.read(&m, channel, 0, &mut self.pins).await.unwrap()
    }

    async fn invite(&mut self, w: &World, room: RoomId, who: &User, name: &str) {
        let m = self.rooms.get_mut(&room).unwrap();
        w.client
            .invite(&self.me, m, &who.me.bundle, name, &mut self.pins)
            .await
            .unwrap();
    }
}

/// Alice's room "Team" with one text channel (burn 3600 s); Bob and Carol accepted.
async fn team(w: &World) -> (User, User, User, RoomId, ChannelId) {
    let (mut alice, mut bob, mut carol) =
        (User::new(w).await, User::new(w).await, User::new(w).await);
    let (m, spine) = w
        .client
        .create_room(
            &alice.me,
            "alice",
            "Team",
            &[("general".into(), false, 3600)],
        )
        .await
        .unwrap();
    let (room, general) = (m.room, spine.channels[0].id);
    alice.rooms.insert(room, m);
    alice.invite(w, room, &bob, "bob").await;
    alice.invite(w, room, &carol, "carol").await;
    assert_eq!(bob.accept(w).await, vec![room]);
    assert_eq!(carol.accept(w).await, vec![room]);
    (alice, bob, carol, room, general)
}

/// `admin` adds `who` to the room's state as a member, and sends them no keys; returns the
/// admin's membership at the new version.
async fn add_to_state(
    w: &World,
    admin: &mut User,
    room: RoomId,
    who: &User,
    name: &str,
) -> Membership {
    let m = admin.rooms.get_mut(&room).unwrap();
    let mut spine = m.spine().clone();
    spine.members.push(SpineMember {
        user_id: who.id(),
        name: name.into(),
        status: String::new(),
        admin: false,
        avatar: None,
    });
    let next = m.clone();
    *m = w.client.commit(&admin.me, m, next, spine).await.unwrap();
    m.clone()
}

/// The server stores `spine`, signed by `signer` and sealed under `keys`' master key, as the
/// room's next version, with the capability keys `keys` make: so `keys` "verify" at the
/// server, exactly as a server that accepts an attacker's capabilities would have it.
async fn plant_state(w: &World, signer: &Identity, keys: &Membership, spine: &Spine) {
    let (sealed, _) = sign_and_seal(signer, keys, spine).unwrap();
    let current = w.store.room(&keys.room).await.unwrap().unwrap();
    let caps = keys.capabilities().unwrap();
    let next = Room {
        room_id: keys.room,
        version: current.version + 1,
        spine: sealed,
        admin_key: caps.admin,
        member_key: caps.member,
        channels: caps.channels,
    };
    w.store.update_room(&next).await.unwrap();
}

/// The server stores `sealed` as the room's next version, keeping its capability keys.
async fn plant_sealed(w: &World, room: RoomId, sealed: cinder_proto::Blob) {
    let current = w.store.room(&room).await.unwrap().unwrap();
    w.store
        .update_room(&Room {
            version: current.version + 1,
            spine: sealed,
            ..current
        })
        .await
        .unwrap();
}

/// The server stores a message of its choosing at `number`, straight into its database:
/// over a hold, a gap or anything else, as only the operator can.
async fn plant_shard(w: &World, room: RoomId, channel: ChannelId, shard: Shard) {
    let db = rusqlite::Connection::open(w.data.join(cinder_dev::DB_FILE)).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    db.execute(
        "INSERT OR REPLACE INTO shards (channel, number, burn_at, shard, hold) VALUES (?1, ?2, ?3, ?4, NULL)",
        rusqlite::params![
            ChannelRef { room, channel }.to_string(),
            i64::try_from(shard.number).unwrap(),
            i64::try_from(shard.burn_at.0).unwrap(),
            serde_json::to_string(&shard).unwrap(),
        ],
    )
    .unwrap();
}

fn shard_from(post: cinder_proto::rooms::PostShard, number: u64) -> Shard {
    Shard {
        number,
        ciphertext: post.ciphertext,
        burn_at: post.burn_at,
        posted_at: Timestamp::now(),
        delete_hash: post.delete_hash,
        media: post.media,
    }
}

fn next_state(head: &Membership) -> Spine {
    let mut s = head.spine().clone();
    s.version += 1;
    s.prev = head.head_hash().clone();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_and_the_server_cannot_swap_a_members_room_keys() {
    let w = world().await;
    let (_alice, mut bob, _carol, room, general) = team(&w).await;
    let mallory = User::new(&w).await;
    let before = bob.rooms[&room].clone();

    // GIVEN Mallory's own keys for the room, and a next version that looks like a re-key
    // naming her admin, extending Bob's pinned state, signed by her
    let mut forged = bob.rooms[&room].clone();
    forged.master_keys = [(2, Secret32::random().unwrap())].into_iter().collect();
    forged.channel_keys = [(
        general,
        [(2, Secret32::random().unwrap())].into_iter().collect(),
    )]
    .into_iter()
    .collect();
    forged.admin_key = Some(Secret32::random().unwrap());
    let mut spine = next_state(&before);
    spine.epoch = 2;
    spine.members = vec![
        SpineMember {
            user_id: mallory.id(),
            name: "alice".into(),
            status: String::new(),
            admin: true,
            avatar: None,
        },
        spine.member(bob.id()).unwrap().clone(),
    ];
    for c in &mut spine.channels {
        c.cutoffs.insert(1, 100);
    }
    let caps = forged.capabilities().unwrap();
    (spine.admin_key, spine.member_key, spine.channel_keys) =
        (caps.admin, caps.member, caps.channels);
    spine.former = before
        .spine()
        .members
        .iter()
        .filter(|m| m.user_id != bob.id())
        .map(|m| FormerMember {
            user_id: m.user_id,
            name: m.name.clone(),
            last_epoch: 1,
        })
        .collect();
    let (_, hash) = sign_and_seal(&mallory.me, &forged, &spine).unwrap();
    forged.head = Head {
        spine: spine.clone(),
        hash,
    };
    // WHEN the server takes her capabilities and state, and she sends Bob "new keys"
    plant_state(&w, &mallory.me, &forged, &spine).await;
    w.client
        .send_keys(&mallory.me, &forged, &bob.me.bundle, InviteKind::Rekey)
        .await
        .unwrap();

    // THEN Bob installs nothing: same keys, same verified state
    assert_eq!(bob.accept(&w).await, Vec::<RoomId>::new());
    let after = &bob.rooms[&room];
    assert_eq!(after.master_keys, before.master_keys);
    assert_eq!(after.channel_keys, before.channel_keys);
    assert_eq!(after.head_hash(), before.head_hash());
    assert!(after.spine().is_admin(_alice.id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_and_the_server_cannot_forge_the_room_state() {
    let w = world().await;
    let (_alice, mut bob, carol, room, _) = team(&w).await;
    let before = bob.rooms[&room].clone();

    // GIVEN Carol, a member but no admin, signs a next version making herself admin
    let carol_m = carol.rooms[&room].clone();
    let mut spine = next_state(&carol_m);
    spine.name = "Carol's now".into();
    for m in &mut spine.members {
        m.admin |= m.user_id == carol.id();
    }
    // Her membership has no admin seed: seal with the room's keys, keep the server's caps.
    let (sealed, _) = sign_and_seal(&carol.me, &with_admin_seed(&carol_m), &spine).unwrap();
    plant_sealed(&w, room, sealed).await;

    // THEN Bob refuses it and keeps what he verified
    let refused = bob.sync(&w, room).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Verification(why) if why.contains("not an admin")),
        "{refused}"
    );
    assert_eq!(bob.rooms[&room].head_hash(), before.head_hash());
    assert_eq!(bob.rooms[&room].spine().name, "Team");
}

/// A copy of `m` holding some admin seed, so a forger can seal and sign a state with it.
fn with_admin_seed(m: &Membership) -> Membership {
    let mut m = m.clone();
    m.admin_key = Some(Secret32::random().unwrap());
    m
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_admin_and_the_server_cannot_sign_the_next_state() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, _) = team(&w).await;
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .grant_admin(&alice.me, m, bob.id(), &mut alice.pins)
        .await
        .unwrap();
    assert_eq!(bob.accept(&w).await, vec![room]);
    assert!(bob.rooms[&room].holds_admin_key());
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .revoke_admin(&alice.me, m, bob.id(), &mut alice.pins)
        .await
        .unwrap();
    bob.sync(&w, room).await.unwrap();
    carol.sync(&w, room).await.unwrap();
    let before = carol.rooms[&room].clone();

    // GIVEN Bob, no longer admin, signs a version removing Alice's admin
    let bob_m = bob.rooms[&room].clone();
    let mut spine = next_state(&bob_m);
    for m in &mut spine.members {
        m.admin = m.user_id == bob.id();
    }
    spine.admin_key = ed25519_dalek::SigningKey::from_bytes(&[7; 32])
        .verifying_key()
        .into();
    let (sealed, _) = sign_and_seal(&bob.me, &with_admin_seed(&bob_m), &spine).unwrap();
    plant_sealed(&w, room, sealed).await;

    // THEN Carol refuses it
    let refused = carol.sync(&w, room).await.unwrap_err();
    assert!(matches!(refused, ClientError::Verification(_)), "{refused}");
    assert_eq!(carol.rooms[&room].head_hash(), before.head_hash());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cannot_relabel_an_old_state_as_new() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, _) = team(&w).await;
    // One more version, so there is an older one to replay.
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .add_channel(&alice.me, m, ("random", false, 60), &mut alice.pins)
        .await
        .unwrap();
    bob.sync(&w, room).await.unwrap();
    let before = bob.rooms[&room].clone();
    let log = w.store.spines(&room, 0, 100).await.unwrap();
    let old = log[log.len() - 2].spine.clone();
    plant_sealed(&w, room, old).await;
    let refused = bob.sync(&w, room).await.unwrap_err();
    assert!(matches!(refused, ClientError::Verification(_)), "{refused}");
    assert_eq!(bob.rooms[&room].spine().version, before.spine().version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_invitation_does_not_roll_keys_back() {
    let w = world().await;
    let (mut alice, mut bob, carol, room, general) = team(&w).await;
    // GIVEN the server kept a copy of an envelope Bob already used
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .invite(&alice.me, m, &bob.me.bundle, "bob", &mut alice.pins)
        .await
        .unwrap();
    let old = w
        .store
        .list(&bob.id(), None, 10, Timestamp::now())
        .await
        .unwrap();
    assert_eq!(old.len(), 1);
    bob.accept(&w).await;
    // WHEN Carol is removed, Bob takes the new keys, and the server replays the old envelope
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .kick(&alice.me, m, carol.id(), &mut alice.pins)
        .await
        .unwrap();
    assert_eq!(bob.accept(&w).await, vec![room]);
    let before = bob.rooms[&room].clone();
    assert_eq!(before.spine().epoch, 2);
    let stored = w
        .store
        .put(&bob.id(), &old[0], cinder_proto::api::limits::MAX_INBOX)
        .await
        .unwrap();
    assert!(stored, "the replay is back in the inbox");

    // THEN nothing moves back, and Bob still posts under the new keys
    assert_eq!(bob.accept(&w).await, Vec::<RoomId>::new());
    let after = &bob.rooms[&room];
    assert_eq!(after.master().unwrap().0, 2);
    assert_eq!(after.channel_key(general).unwrap().0, 2);
    assert_eq!(after.head_hash(), before.head_hash());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_refuse_old_keys_past_their_cutoff_and_non_members() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, general) = team(&w).await;
    w.client
        .send_message(
            &carol.me,
            carol.rooms.get_mut(&room).unwrap(),
            general,
            "before",
            600,
        )
        .await
        .unwrap();
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .kick(&alice.me, m, carol.id(), &mut alice.pins)
        .await
        .unwrap();
    bob.accept(&w).await;
    let cutoff = bob.rooms[&room].spine().channel(general).unwrap().cutoffs[&1];

    // GIVEN the server posts, for Carol, messages under her old key: one numbered at the
    // cut-off (as if written before her removal) and one after it
    let mut old = carol.rooms[&room].clone();
    let now = Timestamp::now();
    let mut at = |n| {
        seal_message(
            &carol.me,
            &mut old,
            general,
            n,
            "still here",
            now,
            now.plus(600),
        )
    };
    plant_shard(&w, room, general, shard_from(at(cutoff).unwrap(), cutoff)).await;
    plant_shard(
        &w,
        room,
        general,
        shard_from(at(cutoff + 5).unwrap(), cutoff + 5),
    )
    .await;
    // and, for Mallory, who never was a member, one under a leaked current key
    let mallory = User::new(&w).await;
    let mut leaked = bob.rooms[&room].clone();
    let post = seal_message(
        &mallory.me,
        &mut leaked,
        general,
        cutoff + 6,
        "hi",
        now,
        now.plus(600),
    );
    plant_shard(&w, room, general, shard_from(post.unwrap(), cutoff + 6)).await;

    // THEN Bob shows the message from before the cut-off, and refuses the others
    let page = bob.read(&w, room, general).await;
    let texts: Vec<_> = page
        .messages
        .iter()
        .map(|r| (r.number, r.text().unwrap_or_default()))
        .collect();
    assert_eq!(texts, vec![(1, "before"), (cutoff, "still here")]);
    assert_eq!(
        page.refused,
        vec![
            (cutoff + 5, Refusal::AfterCutoff),
            (cutoff + 6, Refusal::NotAMember)
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_directory_key_cannot_sign_new_messages() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    // GIVEN Alice replaced her keys a while ago, and her old key leaked
    let now = Timestamp::now();
    let rotated = alice.me.rotated(Timestamp(now.0 - 1000)).unwrap();
    w.client.rotate(&rotated.bundle).await.unwrap();
    // WHEN the old key signs a message now
    w.client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "from the thief",
            600,
        )
        .await
        .unwrap();
    w.client
        .send_message(
            &rotated,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "from alice",
            600,
        )
        .await
        .unwrap();
    // THEN readers refuse it
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.refused, vec![(1, Refusal::RetiredKey)]);
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.messages[0].text().unwrap(), "from alice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cannot_move_renumber_or_prolong_a_message() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let n = w
        .client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "here",
            600,
        )
        .await
        .unwrap();
    let ch = ChannelRef {
        room,
        channel: general,
    };
    let real = w
        .store
        .shard(&ch, n, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    // Renumbered: the same ciphertext under another number.
    plant_shard(
        &w,
        room,
        general,
        Shard {
            number: n + 10,
            ..real.clone()
        },
    )
    .await;
    // Prolonged: the same ciphertext with a later burn time.
    let later = Timestamp(real.burn_at.0 + 3000);
    plant_shard(
        &w,
        room,
        general,
        Shard {
            number: n + 11,
            burn_at: later,
            ..real.clone()
        },
    )
    .await;
    // A message that asks to live longer than the channel allows.
    let now = Timestamp::now();
    let long = seal_message(
        &alice.me,
        alice.rooms.get_mut(&room).unwrap(),
        general,
        n + 12,
        "x",
        now,
        now.plus(36_000),
    );
    plant_shard(&w, room, general, shard_from(long.unwrap(), n + 12)).await;
    // Moved: into another room's channel (Alice's second room).
    let (other, spine) = w
        .client
        .create_room(
            &alice.me,
            "alice",
            "Other",
            &[("general".into(), false, 3600)],
        )
        .await
        .unwrap();
    plant_shard(&w, other.room, spine.channels[0].id, real.clone()).await;

    let page = bob.read(&w, room, general).await;
    assert_eq!(page.messages.len(), 1);
    assert_eq!(
        page.refused,
        vec![
            (n + 10, Refusal::Unreadable),
            (n + 11, Refusal::Unreadable),
            (n + 12, Refusal::BadTimes)
        ]
    );
    let moved = w
        .client
        .read(&other, spine.channels[0].id, 0, &mut BTreeMap::new())
        .await;
    assert_eq!(moved.unwrap().refused, vec![(n, Refusal::Unreadable)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_running_late_cannot_show_a_burnt_message() {
    // GIVEN a server whose clock runs ten minutes behind, so it still serves what burnt
    let (clock, _time) = Clock::manual(Timestamp(Timestamp::now().0 - 600));
    let w = world_with(clock).await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    // WHEN Alice posts a message that burns in a minute
    w.client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "gone soon",
            60,
        )
        .await
        .unwrap();
    // THEN the server serves it, but Bob's client, by its own clock, does not show it
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.messages, vec![]);
    assert_eq!(page.refused, vec![(1, Refusal::Burnt)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_admins_share_and_replace_the_admin_key() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, _) = team(&w).await;
    for who in [bob.id(), carol.id()] {
        let m = alice.rooms.get_mut(&room).unwrap();
        w.client
            .grant_admin(&alice.me, m, who, &mut alice.pins)
            .await
            .unwrap();
    }
    bob.accept(&w).await;
    carol.accept(&w).await;
    assert!(bob.rooms[&room].holds_admin_key() && carol.rooms[&room].holds_admin_key());
    // Removing an admin replaces the admin key; the admins who stay get the new one.
    let m = bob.rooms.get_mut(&room).unwrap();
    w.client
        .kick(&bob.me, m, carol.id(), &mut bob.pins)
        .await
        .unwrap();
    alice.accept(&w).await;
    let spine = alice.sync(&w, room).await.unwrap();
    assert_eq!(spine.epoch, 2);
    assert!(
        alice.rooms[&room].holds_admin_key(),
        "alice got the new admin key"
    );
    let old_admin = carol.rooms[&room].admin().unwrap().verifying_key();
    assert_ne!(cinder_proto::VerifyKey::from(old_admin), spine.admin_key);
    // Bob revokes Alice: the admin key is replaced, and Alice's old one is dropped.
    let m = bob.rooms.get_mut(&room).unwrap();
    w.client
        .revoke_admin(&bob.me, m, alice.id(), &mut bob.pins)
        .await
        .unwrap();
    alice.sync(&w, room).await.unwrap();
    assert!(
        !alice.rooms[&room].holds_admin_key(),
        "a revoked admin drops the old key"
    );
    // Bob hands admin to Alice and gives it up, in one signed change.
    let m = bob.rooms.get_mut(&room).unwrap();
    w.client
        .transfer_admin(&bob.me, m, alice.id(), &mut bob.pins)
        .await
        .unwrap();
    // (Alice reads the room first: the admin key is checked against versions she has
    // already moved to.)
    alice.sync(&w, room).await.unwrap();
    assert_eq!(alice.accept(&w).await, vec![room]);
    let spine = alice.sync(&w, room).await.unwrap();
    assert!(spine.is_admin(alice.id()) && !spine.is_admin(bob.id()));
    assert!(alice.rooms[&room].holds_admin_key());
    assert!(!bob.rooms[&room].holds_admin_key());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_written_before_a_key_rotation_still_verify() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    w.client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "before",
            600,
        )
        .await
        .unwrap();
    let rotated = alice.me.rotated(Timestamp::now()).unwrap();
    w.client.rotate(&rotated.bundle).await.unwrap();
    w.client
        .send_message(
            &rotated,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "after",
            600,
        )
        .await
        .unwrap();
    let page = bob.read(&w, room, general).await;
    let texts: Vec<_> = page
        .messages
        .iter()
        .map(|r| r.text().unwrap_or_default())
        .collect();
    assert_eq!((texts, page.refused), (vec!["before", "after"], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invitations_must_be_signed_by_their_sender_for_their_recipient() {
    let w = world().await;
    let (mut alice, _bob, _carol, room, _) = team(&w).await;
    let mut dave = User::new(&w).await;
    let mallory = User::new(&w).await;
    // Alice adds Dave to the state, but the server hands Dave envelopes of its own making:
    let keys = add_to_state(&w, &mut alice, room, &dave, "dave").await;
    // one claiming to be from Alice but dropped (and signed) by Mallory,
    let mut body = invite_body(&keys, &alice.me, &dave.me);
    let forged = seal_invite(&mallory.me, &dave.me.bundle, &body, None);
    w.client
        .drop_envelope(&mallory.me, dave.id(), forged, None)
        .await
        .unwrap();
    // one from Alice's account whose signature is Mallory's,
    let wrong_signer = seal_invite(&alice.me, &dave.me.bundle, &body, Some(&mallory.me));
    w.client
        .drop_envelope(&alice.me, dave.id(), wrong_signer, None)
        .await
        .unwrap();
    // and one Alice signed for Bob, re-sealed to Dave.
    body["recipient"] = serde_json::json!(_bob.id());
    let for_bob = seal_invite(&alice.me, &dave.me.bundle, &body, None);
    w.client
        .drop_envelope(&alice.me, dave.id(), for_bob, None)
        .await
        .unwrap();
    // THEN Dave joins nothing, and every forgery is gone from his inbox
    assert_eq!(dave.accept(&w).await, Vec::<RoomId>::new());
    assert!(dave.rooms.is_empty());
    let left = w.client.inbox(&dave.me, None, None).await.unwrap();
    assert!(left.envelopes.is_empty(), "forgeries are deleted");
    // while the real invitation works
    w.client
        .send_keys(&alice.me, &keys, &dave.me.bundle, InviteKind::Join)
        .await
        .unwrap();
    assert_eq!(dave.accept(&w).await, vec![room]);
}

/// An invitation body as `send_keys` writes it, as JSON to tamper with.
fn invite_body(m: &Membership, from: &Identity, to: &Identity) -> serde_json::Value {
    crate::secret::exposing(|| invite_json(m, from, to))
}

fn invite_json(m: &Membership, from: &Identity, to: &Identity) -> serde_json::Value {
    serde_json::json!({
        "kind": "join",
        "room": m.room,
        "recipient": to.user_id(),
        "from": from.user_id(),
        "head_version": m.spine().version,
        "head_hash": m.head_hash(),
        "master_key": m.master().unwrap().1,
        "channel_keys": m.spine().channels.iter()
            .map(|c| (c.id.to_string(), serde_json::to_value(m.channel_key(c.id).unwrap().1).unwrap()))
            .collect::<serde_json::Map<_, _>>(),
    })
}

/// Seals `body` to `to`, signed by `signer` (or `by` if given), as an envelope would be.
fn seal_invite(
    signer: &Identity,
    to: &KeyBundle,
    body: &serde_json::Value,
    by: Option<&Identity>,
) -> Vec<u8> {
    use ed25519_dalek::Signer as _;
    use hpke::{Deserializable, Serializable};
    let bytes = serde_json::to_vec(body).unwrap();
    let key = by.unwrap_or(signer).signing_key();
    let signature = key.sign(&[b"cinder/invite-signature/v2\0".as_slice(), &bytes].concat());
    let plaintext = serde_json::to_vec(&serde_json::json!({
        "body": cinder_proto::Blob(bytes),
        "signature": cinder_proto::Signature(signature.to_bytes()),
    }))
    .unwrap();
    let pk =
        <hpke::kem::X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(to.hpke_key.as_bytes())
            .unwrap();
    let (encapped, ct) = hpke::single_shot_seal::<
        hpke::aead::AesGcm256,
        hpke::kdf::HkdfSha256,
        hpke::kem::X25519HkdfSha256,
        _,
    >(
        &hpke::OpModeS::Base,
        &pk,
        b"cinder/invite/v2",
        &plaintext,
        &to.user_id.0,
        &mut rand_core_09::UnwrapErr(rand_core_09::OsRng),
    )
    .unwrap();
    [encapped.to_bytes().as_slice(), &ct].concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signature_on_a_message_is_refused() {
    let w = world().await;
    let (alice, mut bob, _carol, room, general) = team(&w).await;
    // GIVEN a member (Carol) with the channel key writes a message claiming to be Alice's
    let mut forger = _carol;
    let mut keys = forger.rooms[&room].clone();
    let impostor = Identity {
        bundle: alice.me.bundle.clone(),
        seeds: forger.me.seeds.clone(),
    };
    w.client
        .send_message(&impostor, &mut keys, general, "I am alice", 600)
        .await
        .unwrap();
    forger.rooms.insert(room, keys);
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.messages, vec![]);
    assert_eq!(page.refused, vec![(1, Refusal::BadSignature)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_move_past_a_page_of_messages_they_refuse() {
    let w = world().await;
    let (_alice, mut bob, _carol, room, general) = team(&w).await;
    // GIVEN a channel whose first page holds only garbage
    for n in 1..=3 {
        plant_shard(
            &w,
            room,
            general,
            Shard {
                number: n,
                ciphertext: cinder_proto::Blob(vec![n as u8; 80]),
                burn_at: Timestamp::now().plus(600),
                posted_at: Timestamp::now(),
                delete_hash: None,
                media: Vec::new(),
            },
        )
        .await;
    }
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.messages, vec![]);
    assert_eq!(page.refused.len(), 3);
    // THEN the page's cursor still moves on, so a reader is never stuck on it
    assert_eq!(page.last, Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_notice_a_message_the_server_withholds() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let mut numbers = Vec::new();
    for text in ["one", "two", "three"] {
        let m = alice.rooms.get_mut(&room).unwrap();
        numbers.push(
            w.client
                .send_message(&alice.me, m, general, text, 600)
                .await
                .unwrap(),
        );
    }
    // WHEN the server drops the second
    let ch = ChannelRef {
        room,
        channel: general,
    };
    assert!(w.store.delete_shard(&ch, numbers[1]).await.unwrap());
    // THEN the reader shows two and reports one missing before the third
    let page = bob.read(&w, room, general).await;
    let mut continuity = Continuity::default();
    let breaks: Vec<_> = page
        .messages
        .iter()
        .filter_map(|r| continuity.observe(r))
        .collect();
    assert_eq!(
        breaks,
        vec![Break::Missing {
            sender: alice.id(),
            count: 1,
            number: numbers[2]
        }]
    );
    // and one sent in order after that follows on
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .send_message(&alice.me, m, general, "four", 600)
        .await
        .unwrap();
    let page = w
        .client
        .read(&bob.rooms[&room], general, numbers[2], &mut bob.pins)
        .await
        .unwrap();
    assert_eq!(continuity.observe(&page.messages[0]), None);
}

#[test]
fn only_a_refusal_deletes_an_envelope_never_a_failure_to_ask() {
    use cinder_proto::{ErrorBody, ErrorCode};
    let api = |status, code| ClientError::Api {
        status,
        body: ErrorBody {
            code,
            message: String::new(),
            field: None,
            reserved: None,
        },
    };
    assert!(invites::definitive(&ClientError::Verification(
        "forged".into()
    )));
    assert!(invites::definitive(&api(404, ErrorCode::UnknownUser)));
    assert!(!invites::definitive(&api(500, ErrorCode::Internal)));
    assert!(!invites::definitive(&api(429, ErrorCode::RateLimited)));
    assert!(!invites::definitive(&ClientError::Unreachable {
        url: "http://127.0.0.1:1".into(),
        reason: "refused".into(),
        cause: None,
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_that_does_not_extend_the_pinned_one_is_refused_even_from_an_admin() {
    let w = world().await;
    let (alice, mut bob, carol, room, _) = team(&w).await;
    let before = bob.rooms[&room].clone();
    // GIVEN an admin-signed next version on another branch (its `prev` is not Bob's pin)
    let mut forked = next_state(&before);
    forked.prev = cinder_proto::Blob(vec![9; 32]);
    forked.name = "Elsewhere".into();
    plant_state(&w, &alice.me, &alice.rooms[&room], &forked).await;
    let refused = bob.sync(&w, room).await.unwrap_err();
    assert!(matches!(refused, ClientError::Verification(_)), "{refused}");
    assert_eq!(bob.rooms[&room].spine().name, "Team");

    // AND an admin-signed version that drops a member without new keys is refused too
    let w = world().await;
    let (alice, mut bob, carol2, room, _) = team(&w).await;
    let _ = carol;
    let mut quiet = next_state(&bob.rooms[&room]);
    quiet.members.retain(|m| m.user_id != carol2.id());
    quiet.former.push(FormerMember {
        user_id: carol2.id(),
        name: "carol".into(),
        last_epoch: 1,
    });
    plant_state(&w, &alice.me, &alice.rooms[&room], &quiet).await;
    let refused = bob.sync(&w, room).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Verification(why) if why.contains("without new keys")),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_from_another_branch_is_refused_though_it_names_its_own_parent() {
    let w = world().await;
    let (alice, mut bob, _carol, room, _) = team(&w).await;
    let base = bob.rooms[&room].clone();
    // GIVEN two admin-signed next versions of Bob's state, on two branches,
    let mut left = next_state(&base);
    left.name = "Left".into();
    let mut right = next_state(&base);
    right.name = "Right".into();
    let (_, right_hash) = sign_and_seal(&alice.me, &alice.rooms[&room], &right).unwrap();
    // and Bob shown the left one
    plant_state(&w, &alice.me, &alice.rooms[&room], &left).await;
    bob.sync(&w, room).await.unwrap();
    assert_eq!(bob.rooms[&room].spine().name, "Left");
    // WHEN the server serves, as the version after it, one that honestly extends the right
    let mut on_right = right.clone();
    on_right.version += 1;
    on_right.prev = right_hash;
    on_right.name = "Right, again".into();
    plant_state(&w, &alice.me, &alice.rooms[&room], &on_right).await;
    // THEN Bob refuses it and keeps the branch he is on
    let refused = bob.sync(&w, room).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Verification(why) if why.contains("does not extend")),
        "{refused}"
    );
    assert_eq!(bob.rooms[&room].spine().name, "Left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_page_that_promises_more_ends_a_sync_rather_than_looping() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (lying, asked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (lie, count) = (lying.clone(), asked.clone());
    // GIVEN a server that, once told to, answers every read of a room's versions with an
    // empty page and a cursor for more
    let w = world_behind(Clock::system(), move |app| {
        app.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let (lie, count) = (lie.clone(), count.clone());
                async move {
                    if lie.load(Ordering::SeqCst) && request.uri().path().ends_with("/spines") {
                        count.fetch_add(1, Ordering::SeqCst);
                        let page = cinder_proto::rooms::SpinePage {
                            entries: Vec::new(),
                            next: Some(1_000),
                        };
                        return axum::response::IntoResponse::into_response(axum::Json(page));
                    }
                    next.run(request).await
                }
            },
        ))
    })
    .await;
    let (_alice, mut bob, _carol, room, _) = team(&w).await;
    let before = bob.rooms[&room].head_hash().clone();
    lying.store(true, Ordering::SeqCst);
    // WHEN Bob syncs, THEN he asks once, keeps his state and is done
    let synced = tokio::time::timeout(std::time::Duration::from_secs(10), bob.sync(&w, room))
        .await
        .expect("the sync ends");
    assert!(synced.is_ok(), "{synced:?}");
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(bob.rooms[&room].head_hash(), &before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_that_do_not_match_the_signed_state_are_not_installed() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, _) = team(&w).await;
    // GIVEN a channel added in a signed state, its key not yet sent
    let m = alice.rooms.get_mut(&room).unwrap();
    let mut spine = m.spine().clone();
    let random = ChannelId(random_id().unwrap());
    let mut next = m.clone();
    next.channel_keys.insert(
        random,
        [(1, Secret32::random().unwrap())].into_iter().collect(),
    );
    spine.channels.push(ChannelInfo {
        id: random,
        name: "random".into(),
        voice: false,
        burn_secs: 600,
        since_epoch: 1,
        cutoffs: BTreeMap::new(),
        burn_history: Vec::new(),
    });
    *m = w.client.commit(&alice.me, m, next, spine).await.unwrap();
    let keys = alice.rooms[&room].clone();
    // WHEN an admin's envelope carries a key the state does not list for it,
    let mut body = invite_body(&keys, &alice.me, &bob.me);
    body["kind"] = serde_json::json!("rekey");
    body["channel_keys"][random.to_string()] =
        crate::secret::exposing(|| serde_json::to_value(Secret32::random().unwrap())).unwrap();
    let bogus = seal_invite(&alice.me, &bob.me.bundle, &body, None);
    w.client
        .drop_envelope(&alice.me, bob.id(), bogus, None)
        .await
        .unwrap();
    // and another names the right keys but a state hash that is not the signed one
    let mut body = invite_body(&keys, &alice.me, &bob.me);
    body["head_hash"] = serde_json::to_value(cinder_proto::Blob(vec![1; 32])).unwrap();
    let misnamed = seal_invite(&alice.me, &bob.me.bundle, &body, None);
    w.client
        .drop_envelope(&alice.me, bob.id(), misnamed, None)
        .await
        .unwrap();
    // THEN Bob takes neither
    bob.accept(&w).await;
    assert!(!bob.rooms[&room].holds_channel_key(random));
    // and the genuine keys install
    w.client
        .send_keys(&alice.me, &keys, &bob.me.bundle, InviteKind::Rekey)
        .await
        .unwrap();
    assert_eq!(bob.accept(&w).await, vec![room]);
    assert!(bob.rooms[&room].holds_channel_key(random));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_whose_commitment_names_another_key_is_refused() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let m = alice.rooms.get_mut(&room).unwrap();
    let n = w
        .client
        .send_message(&alice.me, m, general, "committed", 600)
        .await
        .unwrap();
    // A well-formed message for the next number, whose commitment is swapped for another
    // key's: were the commitment not checked, it would open, which is what lets a crafted
    // ciphertext open to different texts under two keys.
    let now = Timestamp::now();
    let m = alice.rooms.get_mut(&room).unwrap();
    let post = seal_message(&alice.me, m, general, n + 1, "swapped", now, now.plus(600)).unwrap();
    let mut forged = post.ciphertext.0.clone();
    forged[8..40].copy_from_slice(&[0x5a; 32]);
    plant_shard(
        &w,
        room,
        general,
        Shard {
            ciphertext: cinder_proto::Blob(forged),
            ..shard_from(post, n + 1)
        },
    )
    .await;
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.refused, vec![(n + 1, Refusal::Unreadable)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_cannot_move_the_clients_clock_by_more_than_the_bound() {
    // GIVEN a server that claims it is a day earlier
    let (clock, _time) = Clock::manual(Timestamp(Timestamp::now().0 - 86_400));
    let w = world_with(clock).await;
    let alice = Identity::generate(Timestamp::now()).unwrap();
    w.client.publish(&alice.bundle).await.unwrap();
    // THEN the client will not date its requests (or messages) a day back to please it
    let refused = w
        .client
        .create_room(&alice, "alice", "Team", &[("general".into(), false, 3600)])
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(cinder_proto::ErrorCode::StaleRequest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_sent_at_a_version_the_member_has_moved_past_still_install() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, _) = team(&w).await;
    // GIVEN Alice adds two channels (each sends its key), and Bob reads the room (moving
    // his pin past the first) before he looks at his inbox
    let mut added = Vec::new();
    for name in ["random", "news"] {
        let m = alice.rooms.get_mut(&room).unwrap();
        added.push(
            w.client
                .add_channel(&alice.me, m, (name, false, 600), &mut alice.pins)
                .await
                .unwrap(),
        );
    }
    bob.sync(&w, room).await.unwrap();
    // THEN both keys install, checked against the versions they were sent at
    assert_eq!(bob.accept(&w).await, vec![room]);
    for c in added {
        assert!(bob.rooms[&room].holds_channel_key(c));
    }
    assert!(
        w.client
            .inbox(&bob.me, None, None)
            .await
            .unwrap()
            .envelopes
            .is_empty(),
        "used envelopes are deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_earlier_versions_that_does_not_move_on_ends_the_walk_back() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    type Seen = Arc<Mutex<BTreeMap<u64, cinder_proto::rooms::SpineEntry>>>;
    let (lying, asked, seen) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
        Seen::default(),
    );
    let (lie, count, kept) = (lying.clone(), asked.clone(), seen.clone());
    // GIVEN a server that keeps every version it serves and, once told to, answers a read
    // of the versions after an earlier N with version N alone and a cursor for more
    let w = world_behind(Clock::system(), move |app| {
        app.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let (lie, count, kept) = (lie.clone(), count.clone(), kept.clone());
                async move {
                    use axum::response::IntoResponse;
                    if !request.uri().path().ends_with("/spines") {
                        return next.run(request).await;
                    }
                    let after: u64 = request
                        .uri()
                        .query()
                        .and_then(|q| q.strip_prefix("after="))
                        .and_then(|n| n.parse().ok())
                        .unwrap();
                    let newest = kept.lock().unwrap().keys().max().copied();
                    if lie.load(Ordering::SeqCst) && newest.is_some_and(|n| after < n) {
                        count.fetch_add(1, Ordering::SeqCst);
                        let page = cinder_proto::rooms::SpinePage {
                            entries: kept
                                .lock()
                                .unwrap()
                                .get(&after)
                                .cloned()
                                .into_iter()
                                .collect(),
                            next: Some(after + 1),
                        };
                        return axum::Json(page).into_response();
                    }
                    let (parts, body) = next.run(request).await.into_parts();
                    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
                    if let Ok(page) =
                        serde_json::from_slice::<cinder_proto::rooms::SpinePage>(&bytes)
                    {
                        let mut kept = kept.lock().unwrap();
                        for e in page.entries {
                            kept.insert(e.version, e);
                        }
                    }
                    axum::response::Response::from_parts(parts, bytes.into())
                }
            },
        ))
    })
    .await;
    // and keys Bob is sent at a version he moves past before he looks at his inbox
    let (mut alice, mut bob, _carol, room, _) = team(&w).await;
    let m = alice.rooms.get_mut(&room).unwrap();
    let random = w
        .client
        .add_channel(&alice.me, m, ("random", false, 600), &mut alice.pins)
        .await
        .unwrap();
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .rename_room(&alice.me, m, "Team, renamed", &mut alice.pins)
        .await
        .unwrap();
    bob.sync(&w, room).await.unwrap();
    assert!(seen.lock().unwrap().len() >= 3);
    // WHEN the server lies as Bob walks back from his pin to check those keys
    lying.store(true, Ordering::SeqCst);
    let accepted = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        w.client.take_keys(&bob.me, &mut bob.rooms, &mut bob.pins),
    )
    .await
    .expect("taking keys ends");
    // THEN he asks once, installs nothing he could not check, and keeps his state
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert!(!bob.rooms[&room].holds_channel_key(random));
    assert_eq!(bob.rooms[&room].spine().name, "Team, renamed");
    assert!(accepted.is_ok(), "{accepted:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_old_messages_that_promises_more_neither_moves_a_reader_back_nor_on() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    let lying = Arc::new(AtomicBool::new(false));
    let first: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
    let (lie, kept) = (lying.clone(), first.clone());
    // GIVEN a server that keeps the first page of messages it serves and, once told to,
    // answers every read of the channel with it, saying more follow
    let w = world_behind(Clock::system(), move |app| {
        app.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let (lie, kept) = (lie.clone(), kept.clone());
                async move {
                    use axum::response::IntoResponse;
                    let is_page = request.method() == axum::http::Method::GET
                        && request.uri().path().starts_with("/messages/")
                        && request
                            .uri()
                            .query()
                            .is_some_and(|q| q.starts_with("after="));
                    if !is_page {
                        return next.run(request).await;
                    }
                    if lie.load(Ordering::SeqCst) {
                        let mut page = kept.lock().unwrap().clone().unwrap();
                        page["next"] = serde_json::json!(1_000);
                        return axum::Json(page).into_response();
                    }
                    let (parts, body) = next.run(request).await.into_parts();
                    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
                    let page: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    kept.lock().unwrap().get_or_insert(page.clone());
                    (parts, axum::Json(page)).into_response()
                }
            },
        ))
    })
    .await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    for text in ["one", "two"] {
        let m = alice.rooms.get_mut(&room).unwrap();
        w.client
            .send_message(&alice.me, m, general, text, 600)
            .await
            .unwrap();
    }
    let page = bob.read(&w, room, general).await;
    assert_eq!((page.messages.len(), page.last), (2, Some(2)));
    // WHEN Bob reads on after message 2
    lying.store(true, Ordering::SeqCst);
    let m = bob.rooms[&room].clone();
    let page = w.client.read(&m, general, 2, &mut bob.pins).await.unwrap();
    // THEN the old messages are refused, and the page neither moves his cursor (back to
    // them) nor says to read on, so a reader that follows `last` and `more` stops
    assert_eq!(
        page.refused,
        vec![(1, Refusal::OutOfOrder), (2, Refusal::OutOfOrder)]
    );
    assert_eq!((page.last, page.more), (None, false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbox_page_served_again_and_again_ends_the_listing() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    let (lying, asked) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let first: Arc<Mutex<Option<serde_json::Value>>> = Arc::default();
    let (lie, count, kept) = (lying.clone(), asked.clone(), first.clone());
    // GIVEN a server that, once told to, answers every read of an inbox with the first page
    // it served, saying more follow after its first envelope
    let w = world_behind(Clock::system(), move |app| {
        app.layer(axum::middleware::from_fn(
            move |request: axum::extract::Request, next: axum::middleware::Next| {
                let (lie, count, kept) = (lie.clone(), count.clone(), kept.clone());
                async move {
                    use axum::response::IntoResponse;
                    if !lie.load(Ordering::SeqCst)
                        || request.method() != axum::http::Method::GET
                        || !request.uri().path().starts_with("/inbox/")
                    {
                        return next.run(request).await;
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    if let Some(page) = kept.lock().unwrap().clone() {
                        return axum::Json(page).into_response();
                    }
                    let (parts, body) = next.run(request).await.into_parts();
                    let bytes = axum::body::to_bytes(body, 1 << 24).await.unwrap();
                    let mut page: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
                    if let Some(id) = page["envelopes"][0].get("id").cloned() {
                        page["next"] = id;
                        *kept.lock().unwrap() = Some(page.clone());
                    }
                    (parts, axum::Json(page)).into_response()
                }
            },
        ))
    })
    .await;
    let (mut alice, mut bob, _carol, room, _) = team(&w).await;
    lying.store(true, Ordering::SeqCst);
    // and an envelope for Bob: the key of a new channel
    let m = alice.rooms.get_mut(&room).unwrap();
    let random = w
        .client
        .add_channel(&alice.me, m, ("random", false, 600), &mut alice.pins)
        .await
        .unwrap();
    // WHEN Bob takes his keys, THEN he reads the page twice, installs its key and is done
    let taken = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        w.client.take_keys(&bob.me, &mut bob.rooms, &mut bob.pins),
    )
    .await
    .expect("taking keys ends");
    assert_eq!(taken.unwrap(), vec![room]);
    assert_eq!(asked.load(Ordering::SeqCst), 2);
    assert!(bob.rooms[&room].holds_channel_key(random));
}

// Media: attachments between members, and a server that lies about them.

/// Writes `size` bytes of a recognisable pattern to a file under the world's folder.
fn some_file(w: &World, name: &str, size: usize) -> std::path::PathBuf {
    let path = w.data.join(name);
    let bytes: Vec<u8> = (0..size).map(|i| (i * 7 % 253) as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    path
}

/// The stored object of a message's first attachment, on the dev server's disk.
fn object_file(
    w: &World,
    room: RoomId,
    channel: ChannelId,
    number: u64,
    media: cinder_proto::MediaId,
) -> std::path::PathBuf {
    let key = cinder_proto::media::ObjectKey::Attachment {
        room,
        channel,
        number,
        media,
    };
    w.data.join("media").join(key.to_string())
}

async fn download_bytes(
    w: &World,
    u: &mut User,
    room: RoomId,
    channel: ChannelId,
    number: u64,
) -> Result<Vec<u8>, ClientError> {
    let m = u.rooms[&room].clone();
    let message = w.client.message(&m, channel, number, &mut u.pins).await?;
    let mut out = Vec::new();
    let written = w
        .client
        .download(
            &m,
            channel,
            number,
            &message.attachments()[0],
            &mut out,
            None,
        )
        .await?;
    assert_eq!(written, out.len() as u64, "a download counts what it wrote");
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_goes_from_one_member_to_another_and_burns_with_its_message() {
    let (clock, time) = Clock::skewed();
    let w = world_with(clock).await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let path = some_file(&w, "report.pdf", 3 * crate::media::SEGMENT + 1234);
    let m = alice.rooms.get_mut(&room).unwrap();
    let files = [crate::media::FileToSend::new(&path)];
    let n = w
        .client
        .send_files(&alice.me, m, general, ("the report", &files), 600, None)
        .await
        .unwrap();
    // Bob sees the message with its attachment, and gets the very bytes.
    let page = bob.read(&w, room, general).await;
    let r = &page.messages[0];
    assert_eq!(
        (r.text().unwrap_or_default(), r.attachments().len()),
        ("the report", 1)
    );
    assert_eq!(r.attachments()[0].name, "report.pdf");
    assert_eq!(
        r.attachments()[0].size,
        3 * crate::media::SEGMENT as u64 + 1234
    );
    let got = download_bytes(&w, &mut bob, room, general, n)
        .await
        .unwrap();
    assert_eq!(got, std::fs::read(&path).unwrap());
    // The server holds only ciphertext: not one plaintext segment appears in its file.
    let stored = object_file(&w, room, general, n, r.attachments()[0].media_id);
    let cipher = std::fs::read(&stored).unwrap();
    assert_eq!(
        cipher.len() as u64,
        crate::media::sealed_len(got.len() as u64)
    );
    assert!(!cipher.windows(64).any(|win| win == &got[..64]));

    // WHEN the message burns, no URL is issued and the file is deleted
    time.advance(601);
    let refused = download_bytes(&w, &mut bob, room, general, n)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(cinder_proto::ErrorCode::NotFound),
        "{refused}"
    );
    let swept = cinder_dev::media::sweep(&w.store, &w.objects, Timestamp(Timestamp::now().0 + 601))
        .await
        .unwrap();
    assert_eq!(swept, 1);
    assert!(!stored.exists(), "the burnt message's file is gone");
}

/// The server keeps message `number` past its burn time: its own row's `burn_at` (what its
/// reads, download URLs and sweeps go by) moved to `until`; the message itself, with the
/// burn time its sender sealed and signed, stays as it was.
fn prolong_row(w: &World, room: RoomId, channel: ChannelId, number: u64, until: Timestamp) {
    let db = rusqlite::Connection::open(w.data.join(cinder_dev::DB_FILE)).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(5)).unwrap();
    let changed = db
        .execute(
            "UPDATE shards SET burn_at = ?3 WHERE channel = ?1 AND number = ?2",
            rusqlite::params![
                ChannelRef { room, channel }.to_string(),
                i64::try_from(number).unwrap(),
                i64::try_from(until.0).unwrap(),
            ],
        )
        .unwrap();
    assert_eq!(changed, 1);
}

/// Defence: an attachment carries the burn time of the message it was read from, and
/// `Client::download` fetches nothing once that has passed by the clock readers burn by
/// (`not_burnt`, before asking for a URL and again after), whatever the server serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_keeps_a_burnt_attachment_does_not_get_it_opened() {
    let (clock, time) = Clock::skewed();
    let w = world_with(clock).await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let path = some_file(&w, "plans.pdf", crate::media::SEGMENT + 99);
    let files = [crate::media::FileToSend::new(&path)];
    let m = alice.rooms.get_mut(&room).unwrap();
    let n = w
        .client
        .send_files(&alice.me, m, general, ("the plans", &files), 60, None)
        .await
        .unwrap();
    // GIVEN Bob read the message while it lived, and kept it (as an app keeps what it shows)
    let kept = bob.read(&w, room, general).await.messages.remove(0);
    let attachment = kept.attachments()[0].clone();
    let m = bob.rooms[&room].clone();
    let mut out = Vec::new();
    w.client
        .download(&m, general, n, &attachment, &mut out, None)
        .await
        .unwrap();
    assert_eq!(out, std::fs::read(&path).unwrap());

    // WHEN ten minutes pass, and the server keeps the message's row and its object alive
    prolong_row(&w, room, general, n, Timestamp::now().plus(86_400));
    time.advance(600);
    // (it does: another client still gets a URL, and the whole ciphertext through it)
    let spy = Client::new(&w.url);
    let grant = spy
        .download_grant(&m, general, n, attachment.media_id)
        .await
        .unwrap();
    let served = reqwest::get(&grant.url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(
        served.len() as u64,
        crate::media::sealed_len(attachment.size)
    );

    // THEN Bob's client fetches nothing for the message it kept: asking for the URL taught
    // it the time, and the attachment's message has burnt by it
    let mut out = Vec::new();
    let refused = w
        .client
        .download(&m, general, n, &attachment, &mut out, None)
        .await
        .unwrap_err();
    assert!(
        matches!(&refused, ClientError::Verification(why) if why.contains("burnt")),
        "{refused}"
    );
    assert!(out.is_empty());
    // AND reading again shows nothing: the message itself is refused as burnt
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.messages, vec![]);
    assert_eq!(page.refused, vec![(n, Refusal::Burnt)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_message_deletes_its_files() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let path = some_file(&w, "a.bin", 1000);
    let files = [crate::media::FileToSend::new(&path)];
    let m = alice.rooms.get_mut(&room).unwrap();
    let n = w
        .client
        .send_files(&alice.me, m, general, ("", &files), 600, None)
        .await
        .unwrap();
    let media = bob.read(&w, room, general).await.messages[0].attachments()[0].media_id;
    w.client
        .delete_message(&alice.me, &alice.rooms[&room], general, n)
        .await
        .unwrap();
    let refused = download_bytes(&w, &mut bob, room, general, n)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(cinder_proto::ErrorCode::NotFound));
    cinder_dev::media::sweep(&w.store, &w.objects, Timestamp::now())
        .await
        .unwrap();
    assert!(!object_file(&w, room, general, n, media).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cannot_swap_truncate_or_reorder_an_attachment() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let size = 3 * crate::media::SEGMENT + 10;
    let mut numbers = Vec::new();
    for name in ["one.bin", "two.bin"] {
        let path = some_file(&w, name, size);
        let files = [crate::media::FileToSend::new(&path)];
        let m = alice.rooms.get_mut(&room).unwrap();
        numbers.push(
            w.client
                .send_files(&alice.me, m, general, (name, &files), 600, None)
                .await
                .unwrap(),
        );
    }
    let page = bob.read(&w, room, general).await;
    let files: Vec<_> = page
        .messages
        .iter()
        .map(|r| object_file(&w, room, general, r.number, r.attachments()[0].media_id))
        .collect();
    let (one, two) = (
        std::fs::read(&files[0]).unwrap(),
        std::fs::read(&files[1]).unwrap(),
    );
    let seg = crate::media::SEGMENT + 16;
    let mut reordered = one.clone();
    reordered[..seg].copy_from_slice(&one[seg..2 * seg]);
    reordered[seg..2 * seg].copy_from_slice(&one[..seg]);
    let mut flipped = one.clone();
    flipped[seg + 5] ^= 0x80;
    for (what, bytes) in [
        ("another file's ciphertext", two.clone()),
        ("truncated", one[..2 * seg].to_vec()),
        ("reordered", reordered),
        ("flipped", flipped),
    ] {
        std::fs::write(&files[0], &bytes).unwrap();
        let refused = download_bytes(&w, &mut bob, room, general, numbers[0]).await;
        assert!(
            matches!(refused, Err(ClientError::Verification(_))),
            "{what}: {refused:?}"
        );
    }
    std::fs::write(&files[0], &one).unwrap();
    assert_eq!(
        download_bytes(&w, &mut bob, room, general, numbers[0])
            .await
            .unwrap()
            .len(),
        size
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_media_urls_for_strangers_or_removed_members() {
    let w = world().await;
    let (mut alice, mut bob, carol, room, general) = team(&w).await;
    let path = some_file(&w, "a.bin", 100);
    let files = [crate::media::FileToSend::new(&path)];
    let m = alice.rooms.get_mut(&room).unwrap();
    let n = w
        .client
        .send_files(&alice.me, m, general, ("", &files), 600, None)
        .await
        .unwrap();
    let carol_keys = carol.rooms[&room].clone();
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .kick(&alice.me, m, carol.id(), &mut alice.pins)
        .await
        .unwrap();
    let message = {
        bob.accept(&w).await;
        let m = bob.rooms[&room].clone();
        w.client
            .message(&m, general, n, &mut bob.pins)
            .await
            .unwrap()
    };
    // Carol, removed, still has the old channel key and the message's attachment: no URL.
    let mut out = Vec::new();
    let refused = w
        .client
        .download(
            &carol_keys,
            general,
            n,
            &message.attachments()[0],
            &mut out,
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(cinder_proto::ErrorCode::Unauthenticated)
    );
    // Nor may she upload into the room.
    let mut stale = carol_keys.clone();
    let refused = w
        .client
        .send_files(&carol.me, &mut stale, general, ("", &files), 60, None)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(cinder_proto::ErrorCode::Unauthenticated)
    );
    // Bob, who stays, downloads it.
    assert_eq!(
        download_bytes(&w, &mut bob, room, general, n)
            .await
            .unwrap()
            .len(),
        100
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_upload_urls_take_exactly_their_size_until_they_expire() {
    let (clock, time) = Clock::skewed();
    let w = world_with(clock).await;
    let (alice, _bob, _carol, room, general) = team(&w).await;
    let m = alice.rooms[&room].clone();
    let number = w.client.reserve_for(&m, general, 60).await.unwrap().number;
    // Past the bound: no URL at all.
    let too_big = w
        .client
        .upload_grant(
            &m,
            general,
            number,
            cinder_proto::media::limits::DEFAULT_MAX_MEDIA_BYTES + 1,
        )
        .await
        .unwrap_err();
    assert_eq!(too_big.code(), Some(cinder_proto::ErrorCode::LimitExceeded));
    let grant = w
        .client
        .upload_grant(&m, general, number, 100)
        .await
        .unwrap();
    assert_eq!(grant.headers["content-length"], "100");
    let http = reqwest::Client::new();
    let put = |body: Vec<u8>, url: String| {
        let http = http.clone();
        async move {
            http.put(url)
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // Another length, a doctored size or signature, another object: refused.
    assert_eq!(put(vec![0; 101], grant.url.clone()).await, 422);
    assert_eq!(put(vec![0; 99], grant.url.clone()).await, 422);
    let doctored = grant.url.replace("size=100", "size=101");
    assert_eq!(put(vec![0; 101], doctored).await, 403);
    let other = grant.url.replace(
        &grant.media_id.to_string(),
        &cinder_proto::MediaId([7; 16]).to_string(),
    );
    assert_eq!(put(vec![0; 100], other).await, 403);
    // The exact size works, until the URL expires.
    assert_eq!(put(vec![0; 100], grant.url.clone()).await, 200);
    time.advance(cinder_proto::media::limits::URL_TTL_SECS + 1);
    assert_eq!(put(vec![0; 100], grant.url.clone()).await, 403);
}

// Avatars: sealed per room and epoch, pointed at by the signed state.

fn picture(tag: u8) -> Vec<u8> {
    (0..40_000u32).map(|i| (i as u8) ^ tag).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn avatars_show_to_members_and_are_resealed_when_someone_is_removed() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, _) = team(&w).await;
    // An admin's avatar goes straight into the signed state.
    let m = alice.rooms.get_mut(&room).unwrap();
    let shown = w
        .client
        .set_avatar(&alice.me, m, &picture(1), &mut alice.pins)
        .await
        .unwrap();
    assert!(shown);
    // A member's goes to the admins, whose client signs it in.
    let m = bob.rooms.get_mut(&room).unwrap();
    let shown = w
        .client
        .set_avatar(&bob.me, m, &picture(2), &mut bob.pins)
        .await
        .unwrap();
    assert!(!shown, "a member asks the admins");
    alice.accept(&w).await;
    let m = alice.rooms.get_mut(&room).unwrap();
    assert!(m.has_avatar_requests());
    let applied = w
        .client
        .apply_avatar_requests(&alice.me, m, &mut alice.pins)
        .await
        .unwrap();
    assert_eq!(applied, 1);
    // Every member sees both.
    carol.sync(&w, room).await.unwrap();
    let c = carol.rooms[&room].clone();
    assert_eq!(
        w.client.avatar(&c, alice.id()).await.unwrap(),
        Some(picture(1))
    );
    assert_eq!(
        w.client.avatar(&c, bob.id()).await.unwrap(),
        Some(picture(2))
    );
    assert_eq!(w.client.avatar(&c, carol.id()).await.unwrap(), None);

    // WHEN Carol is removed, the avatars are sealed anew for the new epoch
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .kick(&alice.me, m, carol.id(), &mut alice.pins)
        .await
        .unwrap();
    bob.accept(&w).await;
    let spine = bob.sync(&w, room).await.unwrap();
    assert_eq!(spine.epoch, 2);
    assert!(
        spine
            .members
            .iter()
            .all(|x| x.avatar.as_ref().is_none_or(|a| a.epoch == 2))
    );
    let b = bob.rooms[&room].clone();
    assert_eq!(
        w.client.avatar(&b, alice.id()).await.unwrap(),
        Some(picture(1))
    );
    assert_eq!(
        w.client.avatar(&b, bob.id()).await.unwrap(),
        Some(picture(2))
    );
    // and Carol, with the old keys, gets no URL for the new copies (nor could she open one)
    let new_copy = b
        .spine()
        .member(alice.id())
        .unwrap()
        .avatar
        .clone()
        .unwrap();
    let refused = w
        .client
        .call_capability::<(), cinder_proto::media::DownloadGrant>(
            &c.member_key().unwrap(),
            cinder_proto::Signer::Member(room),
            reqwest::Method::GET,
            &format!("/media/{room}/avatars/{}", new_copy.media_id),
            None,
        )
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(cinder_proto::ErrorCode::Unauthenticated)
    );
    let mut stale = c.clone();
    stale.head = b.head.clone();
    assert!(matches!(
        w.client.avatar(&stale, alice.id()).await,
        Err(ClientError::Verification(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swapped_avatar_or_a_strangers_request_is_refused() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, _) = team(&w).await;
    for (who, tag) in [(&mut alice, 1u8)] {
        let m = who.rooms.get_mut(&room).unwrap();
        w.client
            .set_avatar(&who.me, m, &picture(tag), &mut who.pins)
            .await
            .unwrap();
    }
    // A server that swaps the object for other bytes of the same size is caught.
    bob.sync(&w, room).await.unwrap();
    let b = bob.rooms[&room].clone();
    let avatar = b
        .spine()
        .member(alice.id())
        .unwrap()
        .avatar
        .clone()
        .unwrap();
    let key = cinder_proto::media::ObjectKey::Avatar {
        room,
        media: avatar.media_id,
    };
    let path = w.data.join("media").join(key.to_string());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    let refused = w.client.avatar(&b, alice.id()).await.unwrap_err();
    assert!(matches!(refused, ClientError::Verification(_)), "{refused}");

    // Mallory, no member but holding leaked room keys, asks the admin to show an avatar;
    // Bob, a member, asks with keys that are not the room's. Neither is taken.
    let mallory = User::new(&w).await;
    let leaked = bob.rooms[&room].clone();
    w.client
        .send_request(
            &mallory.me,
            &leaked,
            &alice.me.bundle,
            InviteKind::Avatar,
            Some(avatar.clone()),
        )
        .await
        .unwrap();
    let mut bogus = bob.rooms[&room].clone();
    bogus.master_keys = [(1, Secret32::random().unwrap())].into_iter().collect();
    w.client
        .send_request(
            &bob.me,
            &bogus,
            &alice.me.bundle,
            InviteKind::Avatar,
            Some(avatar.clone()),
        )
        .await
        .unwrap();
    alice.accept(&w).await;
    assert!(!alice.rooms[&room].has_avatar_requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_pointing_at_an_avatar_of_an_older_epoch_is_refused() {
    let w = world().await;
    let (mut alice, mut bob, carol, room, _) = team(&w).await;
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .set_avatar(&alice.me, m, &picture(1), &mut alice.pins)
        .await
        .unwrap();
    let old = alice.rooms[&room]
        .spine()
        .member(alice.id())
        .unwrap()
        .avatar
        .clone()
        .unwrap();
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .kick(&alice.me, m, carol.id(), &mut alice.pins)
        .await
        .unwrap();
    bob.accept(&w).await;
    let before = bob.rooms[&room].clone();
    // GIVEN an admin-signed version of the new epoch that points back at the old copy,
    // which the removed member can still open
    let mut spine = next_state(&alice.rooms[&room]);
    for x in &mut spine.members {
        if x.user_id == alice.id() {
            x.avatar = Some(old.clone());
        }
    }
    plant_state(&w, &alice.me, &alice.rooms[&room], &spine).await;
    // THEN readers refuse it
    let refused = bob.sync(&w, room).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Verification(why) if why.contains("another key epoch")),
        "{refused}"
    );
    assert_eq!(bob.rooms[&room].head_hash(), before.head_hash());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_cannot_answer_for_one_message_with_another() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    for text in ["first", "second"] {
        let m = alice.rooms.get_mut(&room).unwrap();
        w.client
            .send_message(&alice.me, m, general, text, 600)
            .await
            .unwrap();
    }
    // GIVEN the server's row for message 2 holds message 1, untouched
    let db = rusqlite::Connection::open(w.data.join(cinder_dev::DB_FILE)).unwrap();
    let channel = format!("{room}/{general}");
    let first: String = db
        .query_row(
            "SELECT shard FROM shards WHERE channel = ?1 AND number = 1",
            [&channel],
            |r| r.get(0),
        )
        .unwrap();
    db.execute(
        "UPDATE shards SET shard = ?1 WHERE channel = ?2 AND number = 2",
        [&first, &channel],
    )
    .unwrap();
    // THEN a reader does not show message 1 twice
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.messages.len(), 1);
    assert_eq!(page.refused, vec![(1, Refusal::OutOfOrder)]);
    // and asking for message 2 is refused, not answered with message 1
    let m = bob.rooms[&room].clone();
    let refused = w
        .client
        .message(&m, general, 2, &mut bob.pins)
        .await
        .unwrap_err();
    assert!(matches!(refused, ClientError::Verification(_)), "{refused}");
    assert_eq!(
        w.client
            .message(&m, general, 1, &mut bob.pins)
            .await
            .unwrap()
            .content,
        Content::text("first")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_signature_among_good_messages_is_refused_alone() {
    let w = world().await;
    let (mut alice, mut bob, carol, room, general) = team(&w).await;
    // GIVEN a page of Alice's messages, one of them written by Carol (a member, holding the
    // channel key) claiming to be Alice: the page's signatures are verified in one batch,
    // which fails
    let impostor = Identity {
        bundle: alice.me.bundle.clone(),
        seeds: carol.me.seeds.clone(),
    };
    let mut forged = 0;
    for i in 1..=10 {
        if i == 6 {
            let mut keys = carol.rooms[&room].clone();
            forged = w
                .client
                .send_message(&impostor, &mut keys, general, "I am alice", 600)
                .await
                .unwrap();
        } else {
            let m = alice.rooms.get_mut(&room).unwrap();
            w.client
                .send_message(&alice.me, m, general, &format!("message {i}"), 600)
                .await
                .unwrap();
        }
    }
    // THEN exactly the forged one is refused, and the nine others are shown
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.refused, vec![(forged, Refusal::BadSignature)]);
    let texts: Vec<_> = page
        .messages
        .iter()
        .map(|r| r.text().unwrap_or_default())
        .collect();
    let expected: Vec<_> = (1..=10)
        .filter(|i| *i != 6)
        .map(|i| format!("message {i}"))
        .collect();
    assert_eq!(texts, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_of_good_messages_from_several_senders_and_keys_is_shown_whole() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, general) = team(&w).await;
    // GIVEN messages from three members, Alice's under two versions of her keys
    let mut sent = Vec::new();
    for round in 0..4 {
        if round == 2 {
            alice.me = alice.me.rotated(Timestamp::now()).unwrap();
            w.client.rotate(&alice.me.bundle).await.unwrap();
        }
        for who in [&mut alice, &mut bob, &mut carol] {
            let text = format!("{round} from {}", who.id());
            let m = who.rooms.get_mut(&room).unwrap();
            w.client
                .send_message(&who.me, m, general, &text, 600)
                .await
                .unwrap();
            sent.push(text);
        }
    }
    // THEN one batch verifies them all, and every one is shown
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.refused, vec![]);
    let texts: Vec<_> = page
        .messages
        .iter()
        .map(|r| r.text().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(texts, sent);
    // and reading one of them alone makes the same checks
    let m = bob.rooms[&room].clone();
    let first = page.messages[0].number;
    let one = w.client.message(&m, general, first, &mut bob.pins).await;
    assert_eq!(one.unwrap(), page.messages[0]);
}

/// A server that answers every post with `number_taken` (a fresh hold each time) gets at
/// most three requests per message, never a retry storm, and the sender's count does not
/// move: the next message it really sends follows on from its last one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_always_answers_number_taken_gets_three_requests_and_no_count() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let w = world().await;
    let (mut alice, _bob, _carol, room, general) = team(&w).await;
    // GIVEN a server that holds number after number and never stores anything
    let asked = Arc::new(AtomicU64::new(0));
    let counter = asked.clone();
    let liar = axum::Router::new().fallback(move || {
        let n = counter.fetch_add(1, Ordering::SeqCst) + 100;
        async move {
            let body = cinder_proto::ErrorBody {
                code: cinder_proto::ErrorCode::NumberTaken,
                message: "taken".into(),
                field: None,
                reserved: Some(cinder_proto::rooms::Reserved {
                    number: n,
                    hold: cinder_proto::Blob(vec![1; 16]),
                    expires_at: Timestamp::now().plus(3600),
                }),
            };
            (axum::http::StatusCode::CONFLICT, axum::Json(body))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, liar).await.unwrap() });
    let m = alice.rooms.get_mut(&room).unwrap();
    let sent_before = m.sent.get(&general).cloned();
    // WHEN Alice sends through it
    let refused = Client::new(&url)
        .send_message(&alice.me, m, general, "hello?", 600)
        .await
        .unwrap_err();
    // THEN she gives up after three requests, with the server's error
    assert_eq!(refused.code(), Some(cinder_proto::ErrorCode::NumberTaken));
    assert_eq!(asked.load(Ordering::SeqCst), 3);
    // and her count is as before, so her next real message leaves no gap in her chain
    assert_eq!(m.sent.get(&general).cloned(), sent_before);
    let n = w
        .client
        .send_message(&alice.me, m, general, "hello", 600)
        .await
        .unwrap();
    assert_eq!(m.sent[&general].seq, sent_before.map_or(0, |s| s.seq) + 1);
    assert_eq!(m.sent[&general].number, n);
}

mod accounts;
mod calls;
mod leaving;
mod live;
mod successor;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_edit_someone_elses_message() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, general) = team(&w).await;
    let first = w
        .client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "meet at noon",
            600,
        )
        .await
        .unwrap();
    // GIVEN Bob, a member, posts an edit of Alice's message (signed by him: it verifies)
    let forged = w
        .client
        .edit(
            &bob.me,
            bob.rooms.get_mut(&room).unwrap(),
            general,
            first,
            "meet at midnight",
            600,
        )
        .await
        .unwrap();
    // THEN Carol refuses it, and shows Alice's words, not marked edited
    let page = carol.read(&w, room, general).await;
    assert_eq!(page.refused, vec![]);
    let shown = thread(&page.messages);
    assert_eq!(shown.refused, vec![(forged, Refusal::ForgedEdit)]);
    let text = |t: &Thread| match &t.get(first).unwrap().view {
        thread::View::Text { text, edited, .. } => (text.clone(), *edited),
        other => panic!("{other:?}"),
    };
    assert_eq!(text(&shown), ("meet at noon".into(), None));
    // AND Alice's own edit shows in place, marked edited
    let edit = w
        .client
        .edit(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            first,
            "meet at one",
            600,
        )
        .await
        .unwrap();
    let shown = thread(&carol.read(&w, room, general).await.messages);
    assert_eq!(text(&shown), ("meet at one".into(), Some(edit)));
    assert_eq!(shown.refused, vec![(forged, Refusal::ForgedEdit)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_reactions_and_unknown_kinds_show_and_a_tampered_unknown_kind_is_refused() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, general) = team(&w).await;
    let lunch = w
        .client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "lunch?",
            600,
        )
        .await
        .unwrap();
    let bob_m = bob.rooms.get_mut(&room).unwrap();
    let reply = w
        .client
        .reply(&bob.me, bob_m, general, lunch, "yes", 600)
        .await
        .unwrap();
    for (remove, emoji) in [(false, "👍"), (false, "🍜"), (true, "🍜")] {
        w.client
            .react(&bob.me, bob_m, general, lunch, emoji, remove, 600)
            .await
            .unwrap();
    }
    w.client
        .react(
            &carol.me,
            carol.rooms.get_mut(&room).unwrap(),
            general,
            lunch,
            "👍",
            false,
            600,
        )
        .await
        .unwrap();
    // GIVEN Alice's newer client posts a kind this one does not know
    let now = Timestamp::now();
    let poll = r#"{"kind":"poll","question":"where?","options":["noodles","soup"]}"#;
    let m = alice.rooms.get_mut(&room).unwrap();
    let n = w.client.seen(room, general) + 1;
    let post = messages::seal_raw(
        &alice.me,
        m,
        (general, n),
        (
            &serde_json::value::RawValue::from_string(poll.into()).unwrap(),
            Vec::new(),
        ),
        (now, now.plus(600)),
    )
    .unwrap();
    plant_shard(&w, room, general, shard_from(post, n)).await;

    // THEN a reader shows the reply, the reactions and a placeholder, all verified
    let page = carol.read(&w, room, general).await;
    assert_eq!(page.refused, vec![]);
    let shown = thread(&page.messages);
    let lunch_shown = shown.get(lunch).unwrap();
    assert_eq!(lunch_shown.reactions.len(), 1);
    assert_eq!(lunch_shown.reactions[0].emoji, "👍");
    let who: Vec<_> = lunch_shown.reactions[0]
        .by
        .iter()
        .map(|(u, _)| *u)
        .collect();
    assert_eq!(who, vec![bob.id(), carol.id()]);
    match &shown.get(reply).unwrap().view {
        thread::View::Text { text, reply_to, .. } => {
            assert_eq!(text, "yes");
            assert_eq!(
                *reply_to,
                Some(thread::ReplyTo {
                    number: lunch,
                    shown: true
                })
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        shown.get(n).unwrap().view,
        thread::View::Unknown {
            kind: "poll".into()
        }
    );

    // WHEN Carol, with the server, re-seals Alice's poll with another option, keeping her
    // signature
    let ch = ChannelRef {
        room,
        channel: general,
    };
    let mut stored = w
        .store
        .shard(&ch, n, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    messages::reseal(
        &carol.rooms[&room],
        general,
        &mut stored,
        &poll.replace("soup", "stew"),
    );
    plant_shard(&w, room, general, stored).await;
    // THEN readers refuse it: the signature covers the bytes whatever their kind
    let page = bob.read(&w, room, general).await;
    assert_eq!(page.refused, vec![(n, Refusal::BadSignature)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_deletes_a_message_sent_before_a_key_rotation() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let n = w
        .client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "before",
            600,
        )
        .await
        .unwrap();
    // GIVEN Alice rotates her directory keys
    let rotated = alice.me.rotated(Timestamp::now()).unwrap();
    w.client.rotate(&rotated.bundle).await.unwrap();
    alice.me = rotated;
    // THEN she can still delete the message she sent before
    w.client
        .delete_message(&alice.me, &alice.rooms[&room], general, n)
        .await
        .unwrap();
    assert_eq!(bob.read(&w, room, general).await.messages, vec![]);
}

/// A layer for [`world_behind`]: every `POST /rooms` gets a `503` answer, after `create`
/// decides what the server does with it (pass it on, so the room is stored, or drop it), and
/// every answer to `GET /rooms/{room}` goes through `read_back` first.
fn lost_create_answer(
    app: axum::Router,
    forward_create: bool,
    read_back: impl Fn(Option<Room>, &cinder_proto::rooms::CreateRoom) -> Option<Room>
    + Clone
    + Send
    + Sync
    + 'static,
) -> axum::Router {
    use axum::response::IntoResponse;

    let created: Arc<std::sync::Mutex<Option<cinder_proto::rooms::CreateRoom>>> = Arc::default();
    app.layer(axum::middleware::from_fn(
        move |request: axum::extract::Request, next: axum::middleware::Next| {
            let (created, read_back) = (created.clone(), read_back.clone());
            async move {
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let unavailable = || {
                    cinder_server::Error::Store(cinder_server::store::StoreError::Unavailable(
                        "the answer was lost".into(),
                    ))
                    .into_response()
                };
                if method == axum::http::Method::POST && path == "/rooms" {
                    let (parts, body) = request.into_parts();
                    let bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
                    *created.lock().unwrap() = serde_json::from_slice(&bytes).ok();
                    if forward_create {
                        let stored = next
                            .run(axum::extract::Request::from_parts(parts, bytes.into()))
                            .await;
                        assert!(stored.status().is_success(), "{}", stored.status());
                    }
                    return unavailable();
                }
                let create = created.lock().unwrap().clone();
                match create {
                    Some(create)
                        if method == axum::http::Method::GET
                            && path == format!("/rooms/{}", create.room_id) =>
                    {
                        let answer = next.run(request).await;
                        let bytes = axum::body::to_bytes(answer.into_body(), 1 << 20)
                            .await
                            .unwrap();
                        match read_back(serde_json::from_slice(&bytes).ok(), &create) {
                            Some(room) => axum::Json(room).into_response(),
                            None => unavailable(),
                        }
                    }
                    _ => next.run(request).await,
                }
            }
        },
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_loses_a_creates_answer_cannot_hand_back_another_room() {
    // GIVEN a server that stores a new room, answers its create with a 503, and answers the
    // creator's read-back with that room changed: each field in turn
    let other = VerifyKey::from(ed25519_dalek::SigningKey::from_bytes(&[9; 32]).verifying_key());
    let edits: Vec<fn(&mut Room, VerifyKey)> = vec![
        |r, k| r.admin_key = k,
        |r, k| r.member_key = k,
        |r, k| {
            let first = *r.channels.keys().next().unwrap();
            r.channels.insert(first, k);
        },
        |r, _| r.spine.0[0] ^= 1,
        |r, _| r.version = 2,
        |r, _| r.room_id = RoomId([7; 16]),
    ];
    for (n, edit) in edits.into_iter().enumerate() {
        let w = world_behind(Clock::system(), move |app| {
            lost_create_answer(app, true, move |stored, _| {
                let mut room = stored.expect("the room was stored");
                edit(&mut room, other);
                Some(room)
            })
        })
        .await;
        let ann = User::new(&w).await;

        // WHEN Ann creates a room
        let created = w
            .client
            .create_room(&ann.me, "ann", "Team", &[("general".into(), false, 3600)])
            .await;

        // THEN she does not take the room the server describes for hers: the create fails
        // with the error it got
        let err = created.err().unwrap_or_else(|| panic!("edit {n}: adopted"));
        assert_eq!(err.code(), Some(ErrorCode::Unavailable), "edit {n}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_claims_a_create_it_dropped_costs_a_failed_request_not_a_wrong_state() {
    // GIVEN a server that drops a create, answers it with a 503, and on the read-back claims
    // to hold exactly the room sent (it saw the request, so it can)
    let w = world_behind(Clock::system(), |app| {
        lost_create_answer(app, false, |stored, create| {
            assert!(stored.is_none(), "nothing was stored");
            Some(Room {
                room_id: create.room_id,
                version: 1,
                spine: create.spine.clone(),
                admin_key: create.admin_key,
                member_key: create.member_key,
                channels: create.channels.clone(),
            })
        })
    })
    .await;
    let mut ann = User::new(&w).await;

    // WHEN Ann creates a room, and then posts in it
    let (m, spine) = w
        .client
        .create_room(&ann.me, "ann", "Team", &[("general".into(), false, 3600)])
        .await
        .unwrap();
    let (room, general) = (m.room, spine.channels[0].id);
    ann.rooms.insert(room, m);
    let sent = w
        .client
        .send_message(
            &ann.me,
            ann.rooms.get_mut(&room).unwrap(),
            general,
            "hello",
            600,
        )
        .await;

    // THEN the lie costs her that request, which fails as any request to a room the server
    // does not hold (no capability key to check it against); the state she holds is the
    // one she made, and the server holds no room at all
    let err = sent.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthenticated), "{err}");
    assert_eq!(ann.rooms[&room].head.spine, spine);
    assert!(w.store.room(&room).await.unwrap().is_none());
}

/// A verification key of the key pair with this seed.
fn seeded_key(seed: u8) -> cinder_proto::VerifyKey {
    ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
        .verifying_key()
        .into()
}

/// A first version as `creator` makes it: one member, an admin, one channel, epoch 1.
fn genesis_of(room: RoomId, creator: UserId, member_key: cinder_proto::VerifyKey) -> Spine {
    let channel = ChannelId([3; 16]);
    Spine {
        room,
        version: 1,
        prev: cinder_proto::Blob(vec![0; 32]),
        epoch: 1,
        name: "Team".into(),
        members: vec![SpineMember {
            user_id: creator,
            name: "alice".into(),
            status: String::new(),
            admin: true,
            avatar: None,
        }],
        former: Vec::new(),
        channels: vec![ChannelInfo {
            id: channel,
            name: "general".into(),
            voice: false,
            burn_secs: 600,
            since_epoch: 1,
            cutoffs: BTreeMap::new(),
            burn_history: Vec::new(),
        }],
        admin_key: seeded_key(4),
        member_key,
        channel_keys: BTreeMap::from([(channel, seeded_key(6))]),
    }
}

#[test]
fn a_first_version_is_a_room_its_signer_created_and_nothing_else() {
    let creator = UserId([2; 16]);
    let genesis = genesis_of(RoomId([1; 16]), creator, seeded_key(5));
    assert!(check_genesis(&genesis, creator).is_ok());
    let with = |f: &dyn Fn(&mut Spine)| {
        let mut s = genesis.clone();
        f(&mut s);
        s
    };
    let other = UserId([7; 16]);
    let refused = [
        // a later version,
        with(&|s| s.version = 2),
        // one that names a version before it,
        with(&|s| s.prev = cinder_proto::Blob(vec![9; 32])),
        // a later key epoch,
        with(&|s| s.epoch = 2),
        // someone already removed,
        with(&|s| {
            s.former.push(FormerMember {
                user_id: other,
                name: "mallory".into(),
                last_epoch: 1,
            })
        }),
        // a second member,
        with(&|s| {
            s.members.push(SpineMember {
                user_id: other,
                name: "mallory".into(),
                status: String::new(),
                admin: false,
                avatar: None,
            })
        }),
        // a creator who is not an admin,
        with(&|s| s.members[0].admin = false),
        // a channel from a later epoch,
        with(&|s| s.channels[0].since_epoch = 2),
        // or with a cut-off or a burn history it cannot have yet.
        with(&|s| {
            s.channels[0].cutoffs.insert(1, 10);
        }),
        with(&|s| {
            s.channels[0].burn_history.push(BurnChange {
                up_to: 10,
                burn_secs: 3600,
            })
        }),
    ];
    for (i, s) in refused.iter().enumerate() {
        assert!(
            matches!(check_genesis(s, creator), Err(ClientError::Verification(_))),
            "case {i} must be refused"
        );
    }
    // Signed by anyone but its only member, it is not theirs.
    assert!(check_genesis(&genesis, other).is_err());
}

#[test]
fn a_stored_version_opens_only_as_the_room_and_version_it_was_sealed_for() {
    let room = RoomId([1; 16]);
    let other_room = RoomId([9; 16]);
    let master = Secret32::from_bytes([8; 32]);
    let member = member_capability(&master, room).verifying_key().into();
    let mut state = genesis_of(room, UserId([2; 16]), member);
    state.version = 5;
    // The state sealed under the room's key, with the associated data of `(aad_room,
    // aad_version)`, stored as `version`.
    let stored = |s: &Spine, (aad_room, aad_version): (RoomId, u64), version: u64| {
        let signed = SignedSpine {
            state: cinder_proto::Blob(serde_json::to_vec(s).unwrap()),
            signer: UserId([2; 16]),
            key_version: 1,
            signature: cinder_proto::Signature([0; 64]),
        };
        let sealed = seal(
            &spine_key(&master, room),
            &serde_json::to_vec(&signed).unwrap(),
            &spine_aad(aad_room, aad_version),
        )
        .unwrap();
        cinder_proto::rooms::SpineEntry {
            version,
            spine: sealed,
        }
    };
    let opened = open_entry(room, [&master], &stored(&state, (room, 5), 5)).unwrap();
    assert_eq!(opened.spine, state);
    assert!(opened.master == master);
    // Sealed for another version or room, though the state inside says this one's
    assert!(open_entry(room, [&master], &stored(&state, (room, 4), 5)).is_none());
    assert!(open_entry(room, [&master], &stored(&state, (other_room, 5), 5)).is_none());
    // Sealed for this version but naming another room, another version, or a member key
    // the master key does not derive
    let mut elsewhere = state.clone();
    elsewhere.room = other_room;
    assert!(open_entry(room, [&master], &stored(&elsewhere, (room, 5), 5)).is_none());
    let mut later = state.clone();
    later.version = 6;
    assert!(open_entry(room, [&master], &stored(&later, (room, 5), 5)).is_none());
    let mut rekeyed = state.clone();
    rekeyed.member_key = seeded_key(5);
    assert!(open_entry(room, [&master], &stored(&rekeyed, (room, 5), 5)).is_none());
    // And another master key does not open it at all.
    let wrong = Secret32::from_bytes([7; 32]);
    assert!(open_entry(room, [&wrong], &stored(&state, (room, 5), 5)).is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_in_an_admins_name_needs_that_admins_signature() {
    let w = world().await;
    let (alice, mut bob, carol, room, _) = team(&w).await;
    let before = bob.rooms[&room].clone();

    // GIVEN Carol, a member, seals a next version naming Alice (an admin) as its signer,
    // signed with her own key
    let carol_m = carol.rooms[&room].clone();
    let mut spine = next_state(&carol_m);
    spine.name = "Carol's now".into();
    let state = serde_json::to_vec(&spine).unwrap();
    let signed = SignedSpine {
        state: cinder_proto::Blob(state.clone()),
        signer: alice.id(),
        key_version: alice.me.bundle.version,
        signature: cinder_proto::Signature(
            ed25519_dalek::Signer::sign(&carol.me.signing_key(), &[SIGN_DOMAIN, &state].concat())
                .to_bytes(),
        ),
    };
    let (_, master) = carol_m.master().unwrap();
    let sealed = seal(
        &spine_key(master, room),
        &serde_json::to_vec(&signed).unwrap(),
        &spine_aad(room, spine.version),
    )
    .unwrap();
    plant_sealed(&w, room, sealed).await;

    // THEN Bob refuses it and keeps what he verified
    let refused = bob.sync(&w, room).await.unwrap_err();
    assert!(
        matches!(&refused, ClientError::Verification(why) if why.contains("bad signature")),
        "{refused}"
    );
    assert_eq!(bob.rooms[&room].head_hash(), before.head_hash());
    assert_eq!(bob.rooms[&room].spine().name, "Team");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invitation_is_from_an_admin_to_a_member_of_the_version_it_names() {
    let w = world().await;
    let (mut alice, _bob, carol, room, _) = team(&w).await;
    let mut dave = User::new(&w).await;
    // Alice adds Dave to the state; the version before does not list him
    let before = alice.rooms[&room].clone();
    let keys = add_to_state(&w, &mut alice, room, &dave, "dave").await;
    // GIVEN Carol, a member but no admin, sends Dave the keys at that version
    let from_carol = seal_invite(
        &carol.me,
        &dave.me.bundle,
        &invite_body(&keys, &carol.me, &dave.me),
        None,
    );
    w.client
        .drop_envelope(&carol.me, dave.id(), from_carol, None)
        .await
        .unwrap();
    // THEN Dave joins nothing
    assert_eq!(dave.accept(&w).await, Vec::<RoomId>::new());
    // AND nor with Alice's keys at the version before he was added
    let too_early = seal_invite(
        &alice.me,
        &dave.me.bundle,
        &invite_body(&before, &alice.me, &dave.me),
        None,
    );
    w.client
        .drop_envelope(&alice.me, dave.id(), too_early, None)
        .await
        .unwrap();
    assert_eq!(dave.accept(&w).await, Vec::<RoomId>::new());
    assert!(dave.rooms.is_empty());
    // while Alice's at the version that lists him works
    w.client
        .send_keys(&alice.me, &keys, &dave.me.bundle, InviteKind::Join)
        .await
        .unwrap();
    assert_eq!(dave.accept(&w).await, vec![room]);
}

#[test]
fn merging_two_copies_keeps_every_key_and_never_goes_back() {
    use crate::rooms::messages::SentMark;
    let room = RoomId([1; 16]);
    let master = Secret32::from_bytes([8; 32]);
    let (admin, old_admin) = (
        Secret32::from_bytes([10; 32]),
        Secret32::from_bytes([11; 32]),
    );
    let member = member_capability(&master, room).verifying_key().into();
    let mut v1 = genesis_of(room, UserId([2; 16]), member);
    v1.admin_key = admin_capability(&old_admin).verifying_key().into();
    // Version 2 replaced the admin key.
    let mut v2 = v1.clone();
    v2.version = 2;
    v2.admin_key = admin_capability(&admin).verifying_key().into();
    let head = |s: &Spine, tag: u8| Head {
        spine: s.clone(),
        hash: cinder_proto::Blob(vec![tag; 32]),
    };
    let (general, random, news) = (v1.channels[0].id, ChannelId([4; 16]), ChannelId([5; 16]));
    let mark = |seq, tag| SentMark {
        seq,
        hash: cinder_proto::Blob(vec![tag; 32]),
        number: seq,
    };
    let key = |n| Secret32::from_bytes([n; 32]);
    // GIVEN a device behind, at version 1 with its admin key, and one ahead at version 2
    // with the new one; each holds keys and has sent messages the other does not know of
    let mut behind = Membership::joined(room, head(&v1, 1), master.clone());
    behind.admin_key = Some(old_admin.clone());
    behind.channel_keys = BTreeMap::from([
        (general, BTreeMap::from([(1, key(20))])),
        (random, BTreeMap::from([(1, key(21))])),
    ]);
    behind.sent = BTreeMap::from([(general, mark(5, 1)), (random, mark(2, 1))]);
    let mut ahead = Membership::joined(room, head(&v2, 2), master.clone());
    ahead.admin_key = Some(admin.clone());
    ahead.master_keys.insert(2, key(30));
    ahead.channel_keys = BTreeMap::from([
        (general, BTreeMap::from([(1, key(22)), (2, key(23))])),
        (news, BTreeMap::from([(2, key(24))])),
    ]);
    ahead.sent = BTreeMap::from([
        (general, mark(4, 2)),
        (random, mark(3, 2)),
        (news, mark(1, 2)),
    ]);
    let keys_of = |m: &Membership| {
        let channels: Vec<_> = m
            .channel_keys
            .iter()
            .flat_map(|(c, ks)| ks.iter().map(move |(e, k)| (*c, *e, *k.expose())))
            .collect();
        let masters: Vec<_> = m
            .master_keys
            .iter()
            .map(|(e, k)| (*e, *k.expose()))
            .collect();
        (masters, channels)
    };
    // WHEN the one behind takes in the one ahead, and the one ahead the one behind
    let mut merged_behind = behind.clone();
    merged_behind.merge(ahead.clone());
    let mut merged_ahead = ahead.clone();
    merged_ahead.merge(behind.clone());
    for m in [&merged_behind, &merged_ahead] {
        // THEN both hold the newer head and its admin key (the old one is dropped),
        assert_eq!(m.head_hash(), &cinder_proto::Blob(vec![2; 32]));
        assert!(m.admin_key == Some(admin.clone()));
        // every key either held (a key of an epoch held already is kept),
        assert_eq!(
            keys_of(m).0,
            vec![(1, *master.expose()), (2, *key(30).expose())]
        );
        // and each channel's newer sent mark.
        assert_eq!(m.sent[&general], mark(5, 1));
        assert_eq!(m.sent[&random], mark(3, 2));
        assert_eq!(m.sent[&news], mark(1, 2));
    }
    assert_eq!(
        keys_of(&merged_behind).1,
        vec![
            (general, 1, *key(20).expose()),
            (general, 2, *key(23).expose()),
            (random, 1, *key(21).expose()),
            (news, 2, *key(24).expose()),
        ]
    );
    assert_eq!(keys_of(&merged_ahead).1[0], (general, 1, *key(22).expose()));
    // A copy at the same version, or with the same count sent, replaces nothing.
    let mut twin = Membership::joined(room, head(&v2, 9), master.clone());
    twin.admin_key = Some(admin.clone());
    twin.sent = BTreeMap::from([(general, mark(5, 9))]);
    let mut kept = merged_behind.clone();
    kept.merge(twin);
    assert_eq!(kept.head_hash(), &cinder_proto::Blob(vec![2; 32]));
    assert_eq!(kept.sent[&general], mark(5, 1));
    // Taking in a copy ahead without an admin key keeps the one held if it is the room's.
    let mut member_only = Membership::joined(room, head(&v2, 2), master.clone());
    member_only.admin_key = None;
    let mut with_key = Membership::joined(room, head(&v1, 1), master.clone());
    with_key.admin_key = Some(admin.clone());
    with_key.merge(member_only);
    assert!(with_key.admin_key == Some(admin));
}

#[test]
fn only_the_rooms_current_admin_key_is_installed() {
    let room = RoomId([1; 16]);
    let master = Secret32::from_bytes([8; 32]);
    let current = Secret32::from_bytes([10; 32]);
    let stale = Secret32::from_bytes([11; 32]);
    let member = member_capability(&master, room).verifying_key().into();
    let mut spine = genesis_of(room, UserId([2; 16]), member);
    spine.admin_key = admin_capability(&current).verifying_key().into();
    let head = Head {
        spine: spine.clone(),
        hash: cinder_proto::Blob(vec![1; 32]),
    };
    let mut m = Membership::joined(room, head, master.clone());
    let no_channels = BTreeMap::new();
    // An admin key that is not the state's is not taken, and nothing is new
    assert!(!m.install(&spine, &master, &no_channels, Some(&stale)));
    assert!(m.admin_key.is_none());
    // The state's own is, once
    assert!(m.install(&spine, &master, &no_channels, Some(&current)));
    assert!(m.admin_key == Some(current.clone()));
    assert!(!m.install(&spine, &master, &no_channels, Some(&current)));
    // and a stale one handed over later does not replace it.
    assert!(!m.install(&spine, &master, &no_channels, Some(&stale)));
    assert!(m.admin_key == Some(current));
}
