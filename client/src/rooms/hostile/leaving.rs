//! Leaving a room and managing it, against a lying server: leave requests in someone
//! else's name or replayed, a leaver who kept its keys, and burn-time history rewritten.

use super::*;
use crate::rooms::state::check_successor;
use crate::rooms::{BurnChange, open_message};

/// The envelopes in `user`'s inbox, sealed bytes and sender, as the server holds them.
async fn inbox_of(w: &World, user: &User) -> Vec<(Vec<u8>, UserId)> {
    let page = w.client.inbox(&user.me, None, None).await.unwrap();
    page.envelopes
        .into_iter()
        .map(|e| (e.sealed.0, e.sender))
        .collect()
}

impl User {
    async fn take(&mut self, w: &World) -> Vec<RoomId> {
        w.client
            .take_keys(&self.me, &mut self.rooms, &mut self.pins)
            .await
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaver_cannot_read_what_is_posted_after_an_admin_rotates() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, general) = team(&w).await;
    // GIVEN Bob leaves, but (dishonestly) keeps a copy of his keys
    let kept = bob.rooms[&room].clone();
    w.client
        .leave(&bob.me, &mut bob.rooms, room, &mut bob.pins)
        .await
        .unwrap();
    assert!(
        !bob.rooms.contains_key(&room),
        "the leaver forgets the room"
    );
    // Until an admin rotates, the kept keys still read (the window SECURITY.md states).
    w.client
        .read(&kept, general, 0, &mut bob.pins)
        .await
        .unwrap();

    // WHEN Alice's client next reads its inbox, it removes him with new keys
    assert_eq!(alice.take(&w).await, vec![room]);
    let spine = alice.sync(&w, room).await.unwrap();
    assert!(spine.member(bob.id()).is_none());
    assert_eq!(spine.epoch, 2);
    assert!(
        spine
            .former
            .iter()
            .any(|f| f.user_id == bob.id() && f.last_epoch == 1)
    );
    assert!(inbox_of(&w, &alice).await.is_empty(), "the request is used");
    carol.take(&w).await;
    assert_eq!(carol.rooms[&room].spine().epoch, 2);
    let n = w
        .client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "after",
            600,
        )
        .await
        .unwrap();

    // THEN the server refuses the kept keys' capability
    let refused = w
        .client
        .read(&kept, general, 0, &mut bob.pins)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(cinder_proto::ErrorCode::Unauthenticated),
        "{refused}"
    );
    // and, handed the message by the server anyway, the kept keys do not open it
    let ch = ChannelRef {
        room,
        channel: general,
    };
    let shard = w
        .store
        .shard(&ch, n, Timestamp::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        open_message(&kept, general, &shard).unwrap_err(),
        Refusal::Unreadable
    );
    // while Carol, who stays, reads it
    let page = carol.read(&w, room, general).await;
    assert!(page.messages.iter().any(|r| r.text() == Some("after")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_leaving_rotates_at_once_and_the_last_admin_cannot_leave() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, general) = team(&w).await;
    // The last admin is refused: the room would have nobody to sign its state.
    let refused = w
        .client
        .leave(&alice.me, &mut alice.rooms, room, &mut alice.pins)
        .await
        .unwrap_err();
    assert!(matches!(refused, ClientError::Input(_)), "{refused}");
    assert!(alice.rooms.contains_key(&room));
    w.client
        .grant_admin(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            bob.id(),
            &mut alice.pins,
        )
        .await
        .unwrap();
    bob.accept(&w).await;
    let kept = alice.rooms[&room].clone();
    // WHEN Alice, now one of two admins, leaves
    w.client
        .leave(&alice.me, &mut alice.rooms, room, &mut alice.pins)
        .await
        .unwrap();
    // THEN the room is re-keyed at once: the state shows it, the admin key is new and Bob
    // and Carol take the new keys from Alice's envelopes
    bob.take(&w).await;
    carol.take(&w).await;
    let spine = carol.sync(&w, room).await.unwrap();
    assert!(spine.member(alice.id()).is_none());
    assert_eq!(spine.epoch, 2);
    assert_ne!(spine.admin_key, kept.spine().admin_key);
    assert!(bob.rooms[&room].holds_admin_key());
    w.client
        .send_message(
            &carol.me,
            carol.rooms.get_mut(&room).unwrap(),
            general,
            "after",
            600,
        )
        .await
        .unwrap();
    assert!(
        w.client
            .read(&kept, general, 0, &mut alice.pins)
            .await
            .is_err()
    );
    let page = bob.read(&w, room, general).await;
    assert!(page.messages.iter().any(|r| r.text() == Some("after")));
    assert_eq!(page.refused, vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leave_request_in_someone_elses_name_is_refused() {
    let w = world().await;
    let (mut alice, bob, carol, room, _) = team(&w).await;
    let before = alice.rooms[&room].clone();
    let keys = carol.rooms[&room].clone();
    // GIVEN Carol writes a leave request naming Bob as its sender,
    let mut body = invite_body(&keys, &bob.me, &alice.me);
    body["kind"] = serde_json::json!("leave");
    // dropped as herself,
    let as_carol = seal_invite(&carol.me, &alice.me.bundle, &body, None);
    w.client
        .drop_envelope(&carol.me, alice.id(), as_carol, None)
        .await
        .unwrap();
    // and the server files one under Bob's name, signed by Carol
    let as_bob = seal_invite(&bob.me, &alice.me.bundle, &body, Some(&carol.me));
    w.client
        .drop_envelope(&bob.me, alice.id(), as_bob, None)
        .await
        .unwrap();
    // THEN Alice's client removes nobody, and deletes both
    assert_eq!(alice.take(&w).await, Vec::<RoomId>::new());
    let spine = alice.sync(&w, room).await.unwrap();
    assert_eq!(spine.version, before.spine().version);
    assert!(spine.member(bob.id()).is_some());
    assert!(
        inbox_of(&w, &alice).await.is_empty(),
        "forgeries are deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_leave_request_does_not_remove_a_member_again_or_elsewhere() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, _) = team(&w).await;
    // Bob is in a second room of Alice's too.
    let (m2, _) = w
        .client
        .create_room(&alice.me, "alice", "Other", &[("x".into(), false, 600)])
        .await
        .unwrap();
    let other = m2.room;
    alice.rooms.insert(other, m2);
    alice.invite(&w, other, &bob, "bob").await;
    assert_eq!(bob.accept(&w).await, vec![other]);
    // GIVEN Bob leaves the first room, and the server keeps a copy of his request
    w.client
        .leave(&bob.me, &mut bob.rooms, room, &mut bob.pins)
        .await
        .unwrap();
    let captured = inbox_of(&w, &alice).await;
    assert_eq!(captured.len(), 1);
    assert_eq!(alice.take(&w).await, vec![room]);
    let other_version = alice.rooms[&other].spine().version;
    assert!(alice.rooms[&room].spine().member(bob.id()).is_none());
    // and Alice invites him back
    alice.invite(&w, room, &bob, "bob").await;
    assert_eq!(bob.accept(&w).await, vec![room]);
    // WHEN the server delivers the old request again
    let (sealed, sender) = captured.into_iter().next().unwrap();
    assert_eq!(sender, bob.id());
    w.client
        .drop_envelope(&bob.me, alice.id(), sealed, None)
        .await
        .unwrap();
    alice.take(&w).await;
    // THEN Bob stays in both rooms, and the replay is gone
    let spine = alice.sync(&w, room).await.unwrap();
    assert!(spine.member(bob.id()).is_some(), "the replay is stale");
    let spine = alice.sync(&w, other).await.unwrap();
    assert_eq!(spine.version, other_version);
    assert!(spine.member(bob.id()).is_some());
    assert!(inbox_of(&w, &alice).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burn_time_change_applies_only_after_its_cutoff() {
    let w = world().await;
    let (mut alice, mut bob, _carol, room, general) = team(&w).await;
    let early = w
        .client
        .send_message(
            &alice.me,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "long-lived",
            3600,
        )
        .await
        .unwrap();
    // WHEN Alice shortens the burn time to 60 s
    let m = alice.rooms.get_mut(&room).unwrap();
    w.client
        .set_burn(&alice.me, m, general, 60, &mut alice.pins)
        .await
        .unwrap();
    let info = alice.rooms[&room].spine().channel(general).unwrap().clone();
    assert_eq!(info.burn_secs, 60);
    let cutoff = info.burn_history[0].up_to;
    assert!(cutoff >= early);
    assert_eq!(info.burn_secs_for(early), 3600);
    assert_eq!(info.burn_secs_for(cutoff + 1), 60);
    // a sender is held to the new time
    let m = alice.rooms.get_mut(&room).unwrap();
    assert!(
        w.client
            .send_message(&alice.me, m, general, "too long", 3600)
            .await
            .is_err()
    );
    // and the server plants one after the cut-off asking for the old, longer time
    let now = Timestamp::now();
    let long = seal_message(
        &alice.me,
        alice.rooms.get_mut(&room).unwrap(),
        general,
        cutoff + 3,
        "stretched",
        now,
        now.plus(3600),
    );
    plant_shard(&w, room, general, shard_from(long.unwrap(), cutoff + 3)).await;
    // THEN Bob still shows the message from before the change, and refuses the other
    bob.sync(&w, room).await.unwrap();
    let page = bob.read(&w, room, general).await;
    let texts: Vec<_> = page
        .messages
        .iter()
        .map(|r| r.text().unwrap_or_default())
        .collect();
    assert_eq!(texts, vec!["long-lived"]);
    assert_eq!(page.refused, vec![(cutoff + 3, Refusal::BadTimes)]);
}

#[test]
fn the_burn_history_cannot_be_rewritten() {
    let mut prev = Spine {
        room: RoomId([1; 16]),
        version: 4,
        prev: cinder_proto::Blob(vec![0; 32]),
        epoch: 1,
        name: "Team".into(),
        members: vec![SpineMember {
            user_id: UserId([2; 16]),
            name: "alice".into(),
            status: String::new(),
            admin: true,
            avatar: None,
        }],
        former: Vec::new(),
        channels: vec![ChannelInfo {
            id: ChannelId([3; 16]),
            name: "general".into(),
            voice: false,
            burn_secs: 600,
            since_epoch: 1,
            cutoffs: BTreeMap::new(),
            burn_history: vec![BurnChange {
                up_to: 10,
                burn_secs: 3600,
            }],
        }],
        admin_key: ed25519_dalek::SigningKey::from_bytes(&[4; 32])
            .verifying_key()
            .into(),
        member_key: ed25519_dalek::SigningKey::from_bytes(&[5; 32])
            .verifying_key()
            .into(),
        channel_keys: BTreeMap::new(),
    };
    prev.channel_keys.insert(
        ChannelId([3; 16]),
        ed25519_dalek::SigningKey::from_bytes(&[6; 32])
            .verifying_key()
            .into(),
    );
    let hash = cinder_proto::Blob(vec![9; 32]);
    let next_with = |f: &dyn Fn(&mut ChannelInfo)| {
        let mut next = prev.clone();
        next.version = 5;
        next.prev = hash.clone();
        f(&mut next.channels[0]);
        next
    };
    let check = |next: &Spine| check_successor(&prev, &hash, next);
    // A change recorded as the rules say: the old time, up to a cut-off no lower.
    assert!(
        check(&next_with(&|c| {
            c.burn_history.push(BurnChange {
                up_to: 20,
                burn_secs: 600,
            });
            c.burn_secs = 60;
        }))
        .is_ok()
    );
    let refused = [
        // the burn time changed with no record of the old one,
        next_with(&|c| c.burn_secs = 60),
        // an earlier entry lengthened,
        next_with(&|c| c.burn_history[0].burn_secs = 36_000),
        // the history dropped,
        next_with(&|c| c.burn_history.clear()),
        // a record of a burn time the channel never had,
        next_with(&|c| {
            c.burn_history.push(BurnChange {
                up_to: 20,
                burn_secs: 36_000,
            });
            c.burn_secs = 60;
        }),
        // a cut-off before the last one,
        next_with(&|c| {
            c.burn_history.push(BurnChange {
                up_to: 5,
                burn_secs: 600,
            });
            c.burn_secs = 60;
        }),
        // or a record added while the time stays the same.
        next_with(&|c| {
            c.burn_history.push(BurnChange {
                up_to: 20,
                burn_secs: 600,
            })
        }),
    ];
    for (i, next) in refused.iter().enumerate() {
        assert!(check(next).is_err(), "case {i} must be refused");
    }
}
