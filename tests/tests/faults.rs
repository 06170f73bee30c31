//! Faults injected into the store behind the real routers, over real HTTP
//! (`cinder_tests::faults`): what a failure answers, what the client does with it, and
//! that a kick stopped part-way (re-sharing, or the state write itself) can be run again
//! and loses no member's access.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cinder_client::{Client, ClientError, Identity};
use cinder_proto::{ChannelId, ErrorCode, RoomId, Timestamp, UserId};
use cinder_tests::faults::{Fault, Faults};
use cinder_tests::router::send;
use cinder_tests::scenarios::{Device, register};
use cinder_tests::server::{TestServer, start_faulty};

const MASTER: &[u8] = b"faults test master secret, thirty-two bytes or more";

async fn server() -> (TestServer, Arc<Faults>) {
    let faults = Faults::new();
    (start_faulty(MASTER, faults.clone()).await, faults)
}

async fn published(client: &Client) -> Identity {
    let me = Identity::generate(Timestamp::now()).unwrap();
    client.publish(&me.bundle).await.unwrap();
    me
}

#[tokio::test]
async fn a_failing_store_answers_503_with_retry_after_or_500_and_never_its_cause() {
    let (s, faults) = server().await;
    let me = published(&s.client()).await;
    let path = format!("/keys/{}", me.user_id());

    faults.fail_nth("keys.current", 1, Fault::Unavailable);
    let busy = send(&s.app, "GET", &path, &[], Vec::new()).await;
    assert_eq!(busy.status, 503, "{:?}", busy.json);
    assert_eq!(busy.code(), "unavailable");
    assert_eq!(busy.headers["retry-after"], "1");
    let message = busy.json["message"].as_str().unwrap();
    assert!(!message.contains("injected"), "{message}");

    faults.fail_nth("keys.current", 1, Fault::Backend);
    let failed = send(&s.app, "GET", &path, &[], Vec::new()).await;
    assert_eq!(failed.status, 500, "{:?}", failed.json);
    assert_eq!(failed.code(), "internal");
    assert!(!failed.headers.contains_key("retry-after"));
    assert_eq!(
        failed.json["message"],
        "the server failed to handle this request"
    );

    let fine = send(&s.app, "GET", &path, &[], Vec::new()).await;
    assert_eq!(fine.status, 200, "{:?}", fine.json);
}

#[tokio::test]
async fn the_client_reads_through_a_503_and_returns_a_writes() {
    let (s, faults) = server().await;
    let client = s.client();
    let me = published(&client).await;
    let to = published(&client).await;

    let before = faults.calls("keys.current");
    faults.fail_nth("keys.current", 1, Fault::Unavailable);
    let bundle = client.key(me.user_id()).await.unwrap();
    assert_eq!(bundle.user_id, me.user_id());
    assert_eq!(
        faults.calls("keys.current") - before,
        2,
        "one 503, one retry"
    );

    // A drop that failed before it was stored: the 503 reaches the caller, and nothing
    // waits in the inbox.
    faults.fail_nth("inbox.put", 1, Fault::Unavailable);
    let err = client
        .drop_envelope(&me, to.user_id(), vec![1; 32], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    assert!(
        client
            .inbox(&to, None, None)
            .await
            .unwrap()
            .envelopes
            .is_empty()
    );
}

fn id(d: &Device) -> UserId {
    d.me.contents.identity.user_id()
}

async fn take(client: &Client, d: &mut Device) -> Vec<RoomId> {
    client
        .take_keys(&d.me.contents.identity, &mut d.rooms, &mut d.pins)
        .await
        .unwrap()
}

async fn kick(
    client: &Client,
    admin: &mut Device,
    room: RoomId,
    user: UserId,
) -> Result<(), ClientError> {
    let me = admin.me.contents.identity.clone();
    client
        .kick(
            &me,
            admin.rooms.get_mut(&room).unwrap(),
            user,
            &mut admin.pins,
        )
        .await
}

async fn post(client: &Client, d: &mut Device, room: RoomId, channel: ChannelId, text: &str) {
    let me = d.me.contents.identity.clone();
    client
        .send_message(&me, d.rooms.get_mut(&room).unwrap(), channel, text, 600)
        .await
        .unwrap();
}

async fn texts(client: &Client, d: &mut Device, room: RoomId, channel: ChannelId) -> Vec<String> {
    client
        .room(d.rooms.get_mut(&room).unwrap(), &mut d.pins)
        .await
        .unwrap();
    let m = d.rooms[&room].clone();
    let page = client.read(&m, channel, 0, &mut d.pins).await.unwrap();
    assert_eq!(page.refused, vec![], "every message opened and verified");
    page.messages
        .iter()
        .map(|r| r.text().unwrap_or_default().to_owned())
        .collect()
}

/// Alice's room with one channel, and Bob, Carol and Dave in it; "before" posted.
async fn team(client: &Client, tag: &str) -> (Vec<Device>, RoomId, ChannelId) {
    let mut devices = Vec::new();
    for name in ["alice", "bob", "carol", "dave"] {
        devices.push(register(client, &format!("{tag}-{name}")).await);
    }
    let alice_me = devices[0].me.contents.identity.clone();
    let (m, s) = client
        .create_room(
            &alice_me,
            "alice",
            "Team",
            &[("general".into(), false, 3600)],
        )
        .await
        .unwrap();
    let (room, general) = (m.room, s.channels[0].id);
    devices[0].rooms.insert(room, m);
    for i in 1..4 {
        let bundle = devices[i].me.contents.identity.bundle.clone();
        let alice = &mut devices[0];
        client
            .invite(
                &alice_me,
                alice.rooms.get_mut(&room).unwrap(),
                &bundle,
                "m",
                &mut alice.pins,
            )
            .await
            .unwrap();
        let d = &mut devices[i];
        let joined = client
            .accept_invites(&d.me.contents.identity, &mut d.rooms, &mut d.pins)
            .await
            .unwrap();
        assert_eq!(joined, vec![room]);
    }
    post(client, &mut devices[0], room, general, "before").await;
    (devices, room, general)
}

/// After Bob's removal: everyone who stays takes the new keys and reads what Alice posts
/// under them, and Bob's copy of the keys no longer reads anything.
async fn everyone_but_bob_reads_the_new_epoch(
    client: &Client,
    devices: &mut [Device],
    room: RoomId,
    general: ChannelId,
    bob_kept: &cinder_client::rooms::Membership,
) {
    let (alice, rest) = devices.split_first_mut().unwrap();
    let s = client
        .room(alice.rooms.get_mut(&room).unwrap(), &mut alice.pins)
        .await
        .unwrap();
    assert_eq!(s.epoch, 2, "one re-key, however many runs");
    assert!(s.member(id(&rest[0])).is_none(), "bob is out");
    assert_eq!(s.members.len(), 3);
    post(client, alice, room, general, "after").await;
    for d in &mut rest[1..] {
        take(client, d).await;
        assert_eq!(
            texts(client, d, room, general).await,
            vec!["before", "after"],
            "{} reads both epochs",
            id(d)
        );
    }
    assert_eq!(
        texts(client, alice, room, general).await,
        vec!["before", "after"]
    );
    let bob = &mut rest[0];
    let refused = client
        .read(bob_kept, general, 0, &mut bob.pins)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::Unauthenticated),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_whose_re_sharing_stops_half_way_is_finished_by_running_it_again() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, general) = team(&client, "reshare").await;
    let bob = id(&devices[1]);
    let bob_kept = devices[1].rooms[&room].clone();

    // The second of the two envelopes (Carol's and Dave's keys) is refused: the state is
    // stored, one member has the new keys, the other does not.
    let puts = faults.calls("inbox.put");
    faults.fail_nth("inbox.put", 2, Fault::Unavailable);
    let err = kick(&client, &mut devices[0], room, bob).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    assert_eq!(faults.calls("inbox.put") - puts, 2);
    let got: Vec<bool> = {
        let mut got = Vec::new();
        for d in &mut devices[2..] {
            got.push(!take(&client, d).await.is_empty());
        }
        got
    };
    assert_eq!(
        got.iter().filter(|g| **g).count(),
        1,
        "one of the two was sent the keys: {got:?}"
    );

    // Running the kick again sends the one envelope still owed, and only it.
    let puts = faults.calls("inbox.put");
    kick(&client, &mut devices[0], room, bob).await.unwrap();
    assert_eq!(
        faults.calls("inbox.put") - puts,
        1,
        "no member is sent the keys twice"
    );
    // And a third run has nothing left to do.
    let puts = faults.calls("inbox.put");
    kick(&client, &mut devices[0], room, bob).await.unwrap();
    assert_eq!(faults.calls("inbox.put"), puts);

    everyone_but_bob_reads_the_new_epoch(&client, &mut devices, room, general, &bob_kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_whose_state_write_lost_its_answer_adopts_the_stored_state_when_run_again() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, general) = team(&client, "lost").await;
    let bob = id(&devices[1]);
    let bob_kept = devices[1].rooms[&room].clone();

    // The new state is stored, but its answer is lost: the admin cannot tell this from a
    // write that never happened.
    faults.fail_nth("rooms.update_room", 1, Fault::UnavailableAfter);
    let err = kick(&client, &mut devices[0], room, bob).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");

    let updates = faults.calls("rooms.update_room");
    kick(&client, &mut devices[0], room, bob).await.unwrap();
    assert_eq!(
        faults.calls("rooms.update_room"),
        updates,
        "the stored state is adopted, not written again"
    );
    everyone_but_bob_reads_the_new_epoch(&client, &mut devices, room, general, &bob_kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kick_whose_state_write_failed_removes_the_member_anew_when_run_again() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, general) = team(&client, "unwritten").await;
    let bob = id(&devices[1]);
    let bob_kept = devices[1].rooms[&room].clone();

    faults.fail_nth("rooms.update_room", 1, Fault::Unavailable);
    let err = kick(&client, &mut devices[0], room, bob).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    {
        let alice = &mut devices[0];
        let s = client
            .room(alice.rooms.get_mut(&room).unwrap(), &mut alice.pins)
            .await
            .unwrap();
        assert!(s.member(bob).is_some(), "nothing was stored");
        assert_eq!(s.epoch, 1);
    }

    kick(&client, &mut devices[0], room, bob).await.unwrap();
    everyone_but_bob_reads_the_new_epoch(&client, &mut devices, room, general, &bob_kept).await;
    // Nothing was sent for the state that was not stored: Bob, removed, is sent nothing.
    let bob_inbox = client
        .inbox(&devices[1].me.contents.identity, None, None)
        .await
        .unwrap();
    assert_eq!(bob_inbox.envelopes.len(), 0);
}

/// Reads the channel as `d`, checking every message and each sender's sequence: no
/// refusals, no breaks. Returns the texts.
async fn texts_in_sequence(
    client: &Client,
    d: &mut Device,
    room: RoomId,
    general: ChannelId,
) -> Vec<String> {
    client
        .room(d.rooms.get_mut(&room).unwrap(), &mut d.pins)
        .await
        .unwrap();
    let m = d.rooms[&room].clone();
    let page = client.read(&m, general, 0, &mut d.pins).await.unwrap();
    assert_eq!(page.refused, vec![]);
    let mut continuity = cinder_client::rooms::Continuity::default();
    let breaks: Vec<_> = page
        .messages
        .iter()
        .filter_map(|r| continuity.observe(r))
        .collect();
    assert_eq!(breaks, vec![], "no sender's sequence looks broken");
    page.messages
        .iter()
        .map(|r| r.text().unwrap_or_default().to_owned())
        .collect()
}

async fn send_text(
    client: &Client,
    d: &mut Device,
    room: RoomId,
    channel: ChannelId,
    text: &str,
) -> Result<u64, ClientError> {
    let me = d.me.contents.identity.clone();
    client
        .send_message(&me, d.rooms.get_mut(&room).unwrap(), channel, text, 600)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_stored_with_its_answer_lost_counts_as_sent_once() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, general) = team(&client, "postlost").await;

    // Proposed as the next number: stored, answer lost. The client finds it stored.
    faults.fail_nth("shards.post_next", 1, Fault::UnavailableAfter);
    send_text(&client, &mut devices[0], room, general, "one")
        .await
        .unwrap();

    // Under a held number (Carol, on her own connection, posted first, so Alice's
    // proposal is taken and the server holds another number for her): the filled hold's
    // answer is lost, and found stored.
    post(&s.client(), &mut devices[2], room, general, "carol").await;
    let fills = faults.calls("shards.fill_hold");
    faults.fail_nth("shards.fill_hold", 1, Fault::UnavailableAfter);
    send_text(&client, &mut devices[0], room, general, "two")
        .await
        .unwrap();
    assert_eq!(
        faults.calls("shards.fill_hold") - fills,
        1,
        "posted under a hold"
    );

    send_text(&client, &mut devices[0], room, general, "three")
        .await
        .unwrap();
    assert_eq!(
        texts_in_sequence(&client, &mut devices[3], room, general).await,
        vec!["before", "one", "carol", "two", "three"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_refused_before_it_was_stored_leaves_no_trace() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, general) = team(&client, "postfail").await;

    faults.fail_nth("shards.post_next", 1, Fault::Unavailable);
    let err = send_text(&client, &mut devices[0], room, general, "lost")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");

    post(&s.client(), &mut devices[2], room, general, "carol").await;
    let fills = faults.calls("shards.fill_hold");
    faults.fail_nth("shards.fill_hold", 1, Fault::Unavailable);
    let err = send_text(&client, &mut devices[0], room, general, "lost too")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    assert_eq!(
        faults.calls("shards.fill_hold") - fills,
        1,
        "refused under a hold"
    );

    send_text(&client, &mut devices[0], room, general, "one")
        .await
        .unwrap();
    assert_eq!(
        texts_in_sequence(&client, &mut devices[3], room, general).await,
        vec!["before", "carol", "one"]
    );
}

/// Alice makes Bob and Carol admins (each takes the admin key).
async fn admins(client: &Client, devices: &mut [Device], room: RoomId) {
    let alice_me = devices[0].me.contents.identity.clone();
    for i in [1, 2] {
        let user = id(&devices[i]);
        let a = &mut devices[0];
        client
            .grant_admin(
                &alice_me,
                a.rooms.get_mut(&room).unwrap(),
                user,
                &mut a.pins,
            )
            .await
            .unwrap();
        take(client, &mut devices[i]).await;
        assert!(devices[i].rooms[&room].holds_admin_key());
    }
}

async fn revoke(
    client: &Client,
    a: &mut Device,
    room: RoomId,
    user: UserId,
) -> Result<(), ClientError> {
    let me = a.me.contents.identity.clone();
    client
        .revoke_admin(&me, a.rooms.get_mut(&room).unwrap(), user, &mut a.pins)
        .await
}

/// After Bob's admin is revoked: Alice and Carol hold the new admin key and can both still
/// change the room; the server refuses Bob's copy of the old one.
async fn the_admins_who_stay_can_change_the_room(
    client: &Client,
    devices: &mut [Device],
    room: RoomId,
    bob_kept: &cinder_client::rooms::Membership,
) {
    let bob = id(&devices[1]);
    for i in [0, 2] {
        take(client, &mut devices[i]).await;
        let d = &mut devices[i];
        let me = d.me.contents.identity.clone();
        let m = d.rooms.get_mut(&room).unwrap();
        let s = client.room(m, &mut d.pins).await.unwrap();
        assert!(!s.is_admin(bob), "bob is no admin");
        assert!(m.holds_admin_key(), "admin {i} holds the new admin key");
        client
            .rename_room(&me, m, &format!("Team {i}"), &mut d.pins)
            .await
            .unwrap();
    }
    let a = &mut devices[0];
    let s = client
        .room(a.rooms.get_mut(&room).unwrap(), &mut a.pins)
        .await
        .unwrap();
    assert_eq!(s.name, "Team 2");
    let refused = client.delete_room(bob_kept).await.unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::Unauthenticated),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_whose_state_write_lost_its_answer_leaves_the_room_with_admins() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, _) = team(&client, "revokelost").await;
    admins(&client, &mut devices, room).await;
    let bob = id(&devices[1]);
    let bob_kept = devices[1].rooms[&room].clone();

    faults.fail_nth("rooms.update_room", 1, Fault::UnavailableAfter);
    let err = revoke(&client, &mut devices[0], room, bob)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    // Run again: the stored state is adopted with its admin key, and Carol is sent it.
    let updates = faults.calls("rooms.update_room");
    revoke(&client, &mut devices[0], room, bob).await.unwrap();
    assert_eq!(
        faults.calls("rooms.update_room"),
        updates,
        "not written twice"
    );
    the_admins_who_stay_can_change_the_room(&client, &mut devices, room, &bob_kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_whose_key_sharing_failed_is_finished_by_running_it_again() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, _) = team(&client, "revokeshare").await;
    admins(&client, &mut devices, room).await;
    let bob = id(&devices[1]);
    let bob_kept = devices[1].rooms[&room].clone();

    faults.fail_nth("inbox.put", 1, Fault::Unavailable);
    let err = revoke(&client, &mut devices[0], room, bob)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    let puts = faults.calls("inbox.put");
    {
        // The state is stored: Alice holds its new admin key, and can change the room
        // (her next change sends Carol the key she is owed first).
        let a = &mut devices[0];
        let me = a.me.contents.identity.clone();
        client
            .rename_room(
                &me,
                a.rooms.get_mut(&room).unwrap(),
                "Meanwhile",
                &mut a.pins,
            )
            .await
            .unwrap();
    }
    // Running the revoke again finds it done and nothing owed.
    revoke(&client, &mut devices[0], room, bob).await.unwrap();
    assert_eq!(faults.calls("inbox.put") - puts, 1, "Carol's key, once");
    the_admins_who_stay_can_change_the_room(&client, &mut devices, room, &bob_kept).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_leaving_whose_re_sharing_stops_is_finished_by_leaving_again() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, general) = team(&client, "adminleave").await;
    admins(&client, &mut devices, room).await;
    let alice_kept = devices[0].rooms[&room].clone();

    // Alice's leave re-keys for Bob, Carol and Dave; the second envelope is refused.
    let alice_me = devices[0].me.contents.identity.clone();
    faults.fail_nth("inbox.put", 2, Fault::Unavailable);
    let err = {
        let a = &mut devices[0];
        client
            .leave(&alice_me, &mut a.rooms, room, &mut a.pins)
            .await
            .unwrap_err()
    };
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    assert!(devices[0].rooms.contains_key(&room), "kept until finished");
    let puts = faults.calls("inbox.put");
    {
        let a = &mut devices[0];
        client
            .leave(&alice_me, &mut a.rooms, room, &mut a.pins)
            .await
            .unwrap();
        assert!(!a.rooms.contains_key(&room));
    }
    assert_eq!(
        faults.calls("inbox.put") - puts,
        2,
        "the two still owed, once each"
    );

    for d in &mut devices[1..] {
        take(&client, d).await;
    }
    post(&client, &mut devices[2], room, general, "after").await;
    for d in &mut devices[1..] {
        assert_eq!(
            texts(&client, d, room, general).await,
            vec!["before", "after"]
        );
    }
    let refused = client
        .read(&alice_kept, general, 0, &mut devices[0].pins)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::Unauthenticated),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_channel_whose_write_lost_its_answer_is_finished_and_usable_by_everyone() {
    let (s, faults) = server().await;
    let client = s.client();
    let (mut devices, room, _) = team(&client, "channellost").await;
    let alice_me = devices[0].me.contents.identity.clone();

    faults.fail_nth("rooms.update_room", 1, Fault::UnavailableAfter);
    let err = {
        let a = &mut devices[0];
        client
            .add_channel(
                &alice_me,
                a.rooms.get_mut(&room).unwrap(),
                ("random", false, 600),
                &mut a.pins,
            )
            .await
            .unwrap_err()
    };
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    let channel = {
        let a = &mut devices[0];
        let m = a.rooms.get_mut(&room).unwrap();
        client
            .finish_changes(&alice_me, m, &mut a.pins)
            .await
            .unwrap();
        let s = client.room(m, &mut a.pins).await.unwrap();
        assert_eq!(s.channels.len(), 2, "stored once");
        s.channels[1].id
    };
    post(&client, &mut devices[0], room, channel, "in random").await;
    for d in &mut devices[1..] {
        take(&client, d).await;
        assert_eq!(texts(&client, d, room, channel).await, vec!["in random"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_stored_with_its_answer_lost_is_created_not_orphaned() {
    let (s, faults) = server().await;
    let client = s.client();
    let mut ann = register(&client, "orphan-ann").await;
    let me = ann.me.contents.identity.clone();
    let channels = [("general".to_owned(), false, 3600)];

    // The room is stored, but its answer is lost: the client reads it back and keeps it.
    faults.fail_nth("rooms.create_room", 1, Fault::UnavailableAfter);
    let (m, spine) = client
        .create_room(&me, "ann", "Kept", &channels)
        .await
        .unwrap();
    assert_eq!(
        faults.calls("rooms.create_room"),
        1,
        "stored once, not again"
    );
    let (room, general) = (m.room, spine.channels[0].id);
    ann.rooms.insert(room, m);
    post(&client, &mut ann, room, general, "mine").await;
    assert_eq!(texts(&client, &mut ann, room, general).await, ["mine"]);

    // A create that failed before anything was stored is reported as the error it got.
    faults.fail_nth("rooms.create_room", 1, Fault::Unavailable);
    let err = client
        .create_room(&me, "ann", "Never", &channels)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
}
