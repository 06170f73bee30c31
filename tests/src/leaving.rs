//! Leaving rooms and managing them through the client, against any deployment: a leaver
//! shut out by the rotation, two admins changing a room at once, channel renames,
//! deletions and burn-time changes seen by every member.

use cinder_client::rooms::Spine;
use cinder_client::{Client, ClientError};
use cinder_proto::{ChannelId, ErrorCode, RoomId};

use crate::scenarios::{Device, register};

fn id(d: &Device) -> cinder_proto::UserId {
    d.me.contents.identity.user_id()
}

async fn spine(client: &Client, d: &mut Device, room: RoomId) -> Spine {
    client
        .room(d.rooms.get_mut(&room).unwrap(), &mut d.pins)
        .await
        .unwrap()
}

async fn accept(client: &Client, d: &mut Device) -> Vec<RoomId> {
    client
        .accept_invites(&d.me.contents.identity, &mut d.rooms, &mut d.pins)
        .await
        .unwrap()
}

async fn take(client: &Client, d: &mut Device) -> Vec<RoomId> {
    client
        .take_keys(&d.me.contents.identity, &mut d.rooms, &mut d.pins)
        .await
        .unwrap()
}

async fn invite(client: &Client, from: &mut Device, room: RoomId, to: &Device, name: &str) {
    let me = from.me.contents.identity.clone();
    let m = from.rooms.get_mut(&room).unwrap();
    client
        .invite(
            &me,
            m,
            &to.me.contents.identity.bundle,
            name,
            &mut from.pins,
        )
        .await
        .unwrap();
}

async fn post(
    client: &Client,
    d: &mut Device,
    room: RoomId,
    channel: ChannelId,
    text: &str,
    burn: u64,
) -> Result<u64, ClientError> {
    let me = d.me.contents.identity.clone();
    client
        .send_message(&me, d.rooms.get_mut(&room).unwrap(), channel, text, burn)
        .await
}

async fn texts(client: &Client, d: &mut Device, room: RoomId, channel: ChannelId) -> Vec<String> {
    spine(client, d, room).await;
    let m = d.rooms[&room].clone();
    let page = client.read(&m, channel, 0, &mut d.pins).await.unwrap();
    assert_eq!(page.refused, vec![], "every message opened and verified");
    page.messages
        .iter()
        .map(|r| r.text().unwrap_or_default().to_owned())
        .collect()
}

/// Alice's room with one channel; Bob and Carol accepted.
async fn team(client: &Client, tag: &str) -> (Device, Device, Device, RoomId, ChannelId) {
    let mut alice = register(client, &format!("{tag}-alice")).await;
    let mut bob = register(client, &format!("{tag}-bob")).await;
    let mut carol = register(client, &format!("{tag}-carol")).await;
    let (m, s) = client
        .create_room(
            &alice.me.contents.identity,
            "alice",
            "Team",
            &[("general".into(), false, 3600)],
        )
        .await
        .unwrap();
    let (room, general) = (m.room, s.channels[0].id);
    alice.rooms.insert(room, m);
    invite(client, &mut alice, room, &bob, "bob").await;
    invite(client, &mut alice, room, &carol, "carol").await;
    assert_eq!(accept(client, &mut bob).await, vec![room]);
    assert_eq!(accept(client, &mut carol).await, vec![room]);
    (alice, bob, carol, room, general)
}

/// A member leaves; an admin's next inbox read re-keys; what the leaver kept no longer
/// reads. Then an admin leaves, re-keying at once.
pub async fn leaving(client: &Client, label: &str) {
    let (mut alice, mut bob, mut carol, room, general) = team(client, "leave").await;
    let kept = bob.rooms[&room].clone();
    let bob_me = bob.me.contents.identity.clone();
    client
        .leave(&bob_me, &mut bob.rooms, room, &mut bob.pins)
        .await
        .unwrap();
    assert!(
        !bob.rooms.contains_key(&room),
        "{label}: the leaver forgets the room"
    );
    assert_eq!(take(client, &mut alice).await, vec![room], "{label}");
    let s = spine(client, &mut alice, room).await;
    assert!(s.member(id(&bob)).is_none(), "{label}: removed");
    assert_eq!(s.epoch, 2, "{label}: re-keyed");
    take(client, &mut carol).await;
    post(client, &mut alice, room, general, "after bob", 600)
        .await
        .unwrap();
    let refused = client
        .read(&kept, general, 0, &mut bob.pins)
        .await
        .unwrap_err();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::Unauthenticated),
        "{label}: the server refuses the leaver's old capability: {refused}"
    );
    assert_eq!(
        texts(client, &mut carol, room, general).await,
        vec!["after bob"],
        "{label}"
    );

    // An admin leaving re-keys at once; the last admin may not leave.
    let alice_me = alice.me.contents.identity.clone();
    let last = client
        .leave(&alice_me, &mut alice.rooms, room, &mut alice.pins)
        .await
        .unwrap_err();
    assert!(matches!(last, ClientError::Input(_)), "{label}: {last}");
    let m = alice.rooms.get_mut(&room).unwrap();
    client
        .grant_admin(&alice_me, m, id(&carol), &mut alice.pins)
        .await
        .unwrap();
    take(client, &mut carol).await;
    let kept = alice.rooms[&room].clone();
    client
        .leave(&alice_me, &mut alice.rooms, room, &mut alice.pins)
        .await
        .unwrap();
    take(client, &mut carol).await;
    let s = spine(client, &mut carol, room).await;
    assert!(s.member(id(&alice)).is_none(), "{label}");
    assert_eq!(s.epoch, 3, "{label}");
    assert!(carol.rooms[&room].holds_admin_key(), "{label}");
    post(client, &mut carol, room, general, "after alice", 600)
        .await
        .unwrap();
    assert!(
        client
            .read(&kept, general, 0, &mut alice.pins)
            .await
            .is_err(),
        "{label}: the leaving admin's keys are dead"
    );
}

/// Two admins change the room at once, `rounds` times: each change is applied, or its
/// admin got the 409; neither silently overwrites the other.
pub async fn concurrent_admins(client: &Client, label: &str, rounds: usize) {
    let (mut alice, mut bob, mut carol, room, general) = team(client, "concurrent").await;
    let alice_me = alice.me.contents.identity.clone();
    let bob_me = bob.me.contents.identity.clone();
    let m = alice.rooms.get_mut(&room).unwrap();
    client
        .grant_admin(&alice_me, m, id(&bob), &mut alice.pins)
        .await
        .unwrap();
    accept(client, &mut bob).await;
    assert!(bob.rooms[&room].holds_admin_key());
    let (mut both, mut conflicts) = (0, 0);
    for round in 0..rounds {
        let name = format!("Team {round}");
        let channel = format!("c{round}");
        let general_name = format!("general-{round}");
        let (a, b) = {
            let am = alice.rooms.get_mut(&room).unwrap();
            let bm = bob.rooms.get_mut(&room).unwrap();
            let (ap, bp) = (&mut alice.pins, &mut bob.pins);
            let rename = client.rename_room(&alice_me, am, &name, ap);
            let add = async {
                if round % 2 == 0 {
                    client
                        .add_channel(&bob_me, bm, (&channel, false, 600), bp)
                        .await
                        .map(drop)
                } else {
                    client
                        .rename_channel(&bob_me, bm, general, &general_name, bp)
                        .await
                }
            };
            tokio::join!(rename, add)
        };
        for r in [&a, &b] {
            if let Err(e) = r {
                assert_eq!(
                    e.code(),
                    Some(ErrorCode::VersionConflict),
                    "{label}: only a 409 may stop a change: {e}"
                );
                conflicts += 1;
            }
        }
        if a.is_ok() && b.is_ok() {
            both += 1;
        }
        let s = spine(client, &mut carol, room).await;
        if a.is_ok() {
            assert_eq!(s.name, name, "{label}: round {round}: the rename stands");
        }
        if b.is_ok() {
            let listed = if round % 2 == 0 {
                s.channels.iter().any(|c| c.name == channel)
            } else {
                s.channel(general).unwrap().name == general_name
            };
            assert!(listed, "{label}: round {round}: the channel change stands");
        }
    }
    assert!(
        both > 0,
        "{label}: with retries both changes apply ({conflicts} conflicts)"
    );
}

/// Renaming, deleting and re-timing channels shows for every member; a burn-time change
/// leaves older messages valid.
pub async fn channels(client: &Client, label: &str) {
    let (mut alice, mut bob, _carol, room, general) = team(client, "channels").await;
    let me = alice.me.contents.identity.clone();
    post(client, &mut alice, room, general, "long-lived", 3600)
        .await
        .unwrap();
    let m = alice.rooms.get_mut(&room).unwrap();
    let extra = client
        .add_channel(&me, m, ("extra", false, 600), &mut alice.pins)
        .await
        .unwrap();
    client
        .rename_room(&me, m, "Renamed", &mut alice.pins)
        .await
        .unwrap();
    client
        .rename_channel(&me, m, general, "lobby", &mut alice.pins)
        .await
        .unwrap();
    client
        .set_burn(&me, m, general, 60, &mut alice.pins)
        .await
        .unwrap();
    take(client, &mut bob).await;
    let s = spine(client, &mut bob, room).await;
    assert_eq!(s.name, "Renamed", "{label}");
    assert_eq!(s.channel(general).unwrap().name, "lobby", "{label}");
    assert_eq!(s.channel(general).unwrap().burn_secs, 60, "{label}");
    assert!(s.channel(extra).is_some(), "{label}");
    // The message posted under the longer time still verifies; new ones take the new one.
    assert_eq!(
        texts(client, &mut bob, room, general).await,
        vec!["long-lived"],
        "{label}"
    );
    assert!(
        post(client, &mut bob, room, general, "too long", 3600)
            .await
            .is_err()
    );
    post(client, &mut bob, room, general, "short", 60)
        .await
        .unwrap();
    assert_eq!(
        texts(client, &mut alice, room, general).await,
        vec!["long-lived", "short"],
        "{label}"
    );
    // Deleted: gone from the state for everyone, and the server takes nothing for it.
    post(client, &mut bob, room, extra, "soon gone", 600)
        .await
        .unwrap();
    let m = alice.rooms.get_mut(&room).unwrap();
    client
        .delete_channel(&me, m, extra, &mut alice.pins)
        .await
        .unwrap();
    let s = spine(client, &mut bob, room).await;
    assert!(s.channel(extra).is_none(), "{label}");
    let m = bob.rooms[&room].clone();
    assert!(
        client.read(&m, extra, 0, &mut bob.pins).await.is_err(),
        "{label}"
    );
}
