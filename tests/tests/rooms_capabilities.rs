//! Capabilities are for one room, and a channel capability for one channel, on both stores.
//!
//! Every request below carries a signature that verifies: by a real capability of another
//! room (which exists, so its key is found), or of another channel of the same room. Only
//! the routes' own check that the capability is for the room and channel in the path stands
//! between each request and its success, and each request is one that would succeed
//! (a current version, a reserved number, an existing message, the right delete secret)
//! with the right capability.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_proto::encoding::encode;
use cinder_proto::{ChannelId, Signer};
use cinder_server::shards::delete_hash_of;
use cinder_tests::fixtures::Capability;
use cinder_tests::rooms::{Backend, RoomCaps, T0, backends};
use serde_json::{Value, json};

const HORIZON: u64 = 3600;
const SECRET: &[u8] = b"the sender's delete secret";

/// Room A, with channels 0 and 1, and room B, whose only channel has channel 0's id (so a
/// check of the channel id alone would let B's capability into A's channel).
fn rooms() -> (RoomCaps, RoomCaps) {
    let (c0, c1) = (ChannelId([0xc0; 16]), ChannelId([0xc1; 16]));
    (RoomCaps::new(0x0a, &[c0, c1]), RoomCaps::new(0x0b, &[c0]))
}

/// Everyone who holds a verifying capability, but not one for `a`'s room as admin.
fn not_admins<'a>(a: &'a RoomCaps, b: &'a RoomCaps) -> Vec<(&'static str, &'a Capability)> {
    vec![
        ("another room's admin", &b.admin),
        ("another room's member", &b.member),
        ("another room's channel", b.channel(0).1),
        ("this room's channel 0", a.channel(0).1),
        ("this room's channel 1", a.channel(1).1),
    ]
}

/// Everyone who holds a verifying capability, but not the one for `a`'s channel 0.
fn not_channel_0<'a>(a: &'a RoomCaps, b: &'a RoomCaps) -> Vec<(&'static str, &'a Capability)> {
    vec![
        ("another room's admin", &b.admin),
        ("another room's member", &b.member),
        ("another room's channel with the same id", b.channel(0).1),
        ("another channel of this room", a.channel(1).1),
    ]
}

fn assert_forbidden(b: &Backend, what: &str, answer: &cinder_tests::router::Answer) {
    assert_eq!(
        (answer.status.as_u16(), answer.code()),
        (403, "forbidden"),
        "{}: {what}: {:?}",
        b.name,
        answer.json
    );
}

async fn set_up(b: &Backend) -> (RoomCaps, RoomCaps) {
    b.set(T0);
    let (a, other) = rooms();
    assert_eq!(a.create(b, b"room A").await.status, 201, "{}", b.name);
    assert_eq!(other.create(b, b"room B").await.status, 201, "{}", b.name);
    (a, other)
}

#[tokio::test(flavor = "current_thread")]
async fn only_this_rooms_admin_updates_or_deletes_it() {
    for b in backends(HORIZON).await {
        let (a, other) = set_up(&b).await;
        let path = a.path();
        for (who, cap) in not_admins(&a, &other) {
            let update = b
                .call(cap, "PUT", &path, Some(a.update_body(1, b"taken over")))
                .await;
            assert_forbidden(&b, &format!("PUT by {who}"), &update);
            let delete = b.call(cap, "DELETE", &path, None).await;
            assert_forbidden(&b, &format!("DELETE by {who}"), &delete);
        }
        // Room A is as its admin made it.
        let room = b.call(&a.member, "GET", &path, None).await;
        assert_eq!(
            (&room.json["version"], &room.json["spine"]),
            (&json!(1), &json!(encode(b"room A"))),
            "{}",
            b.name
        );
        // Its own admin may do both.
        let update = b
            .call(&a.admin, "PUT", &path, Some(a.update_body(1, b"room A v2")))
            .await;
        assert_eq!(update.status, 200, "{}: {:?}", b.name, update.json);
        assert_eq!(b.call(&a.admin, "DELETE", &path, None).await.status, 204);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn only_this_channels_capability_reaches_its_messages() {
    for b in backends(HORIZON).await {
        let (a, other) = set_up(&b).await;
        let (_, mine) = a.channel(0);
        let messages = a.messages(0);
        let numbers = format!("{messages}/numbers");
        let body = |text: &[u8]| -> Value {
            json!({
                "ciphertext": encode(text),
                "burn_at": T0.0 + 600,
                "delete_hash": delete_hash_of(SECRET),
            })
        };
        // Message 1 posted; number 2 held and free.
        let posted = b
            .call(mine, "PUT", &format!("{messages}/1"), Some(body(b"one")))
            .await;
        assert_eq!(posted.status, 201, "{}: {:?}", b.name, posted.json);
        let reserved = b.call(mine, "POST", &numbers, None).await;
        assert_eq!(reserved.status, 201, "{}: {:?}", b.name, reserved.json);
        let hold = reserved.json["hold"].clone();
        let mut held_body = body(b"intruder");
        held_body["hold"] = hold.clone();

        for (who, cap) in not_channel_0(&a, &other) {
            let refused = [
                ("reserve", b.call(cap, "POST", &numbers, None).await),
                (
                    "post",
                    b.call(
                        cap,
                        "PUT",
                        &format!("{messages}/3"),
                        Some(body(b"intruder")),
                    )
                    .await,
                ),
                (
                    "post with the hold",
                    b.call(
                        cap,
                        "PUT",
                        &format!("{messages}/2"),
                        Some(held_body.clone()),
                    )
                    .await,
                ),
                ("list", b.call(cap, "GET", &messages, None).await),
                (
                    "list after",
                    b.call(cap, "GET", &format!("{messages}?after=0&limit=10"), None)
                        .await,
                ),
                (
                    "get",
                    b.call(cap, "GET", &format!("{messages}/1"), None).await,
                ),
                (
                    "delete with the secret",
                    b.call(
                        cap,
                        "DELETE",
                        &format!("{messages}/1"),
                        Some(json!({"delete_secret": encode(SECRET)})),
                    )
                    .await,
                ),
                (
                    "delete without a secret",
                    b.call(cap, "DELETE", &format!("{messages}/1"), None).await,
                ),
            ];
            for (route, answer) in refused {
                assert_forbidden(&b, &format!("{route} by {who}"), &answer);
            }
        }

        // Nothing moved: the next number is 3, number 2 is still held, message 1 is there.
        let next = b.call(mine, "POST", &numbers, None).await;
        assert_eq!(next.json["number"], json!(3), "{}", b.name);
        let mut two_body = body(b"two");
        two_body["hold"] = hold;
        let two = b
            .call(mine, "PUT", &format!("{messages}/2"), Some(two_body))
            .await;
        assert_eq!(two.status, 201, "{}: {:?}", b.name, two.json);
        let one = b.call(mine, "GET", &format!("{messages}/1"), None).await;
        assert_eq!(
            (one.status.as_u16(), &one.json["ciphertext"]),
            (200, &json!(encode(b"one"))),
            "{}",
            b.name
        );
        // And the other room's channel of the same id saw none of it.
        let theirs = b
            .call(other.channel(0).1, "GET", &other.messages(0), None)
            .await;
        assert_eq!(theirs.json["shards"], json!([]), "{}", b.name);
        // This room's own admin deletes (the one capability besides the channel's).
        assert_eq!(
            b.call(&a.admin, "DELETE", &format!("{messages}/1"), None)
                .await
                .status,
            204
        );
    }
}

/// A capability whose signer names one room or channel but whose key belongs to another
/// is a forgery: it does not verify, so it is `unauthenticated`, not `forbidden`.
#[tokio::test(flavor = "current_thread")]
async fn a_capability_relabelled_for_another_room_does_not_verify() {
    for b in backends(HORIZON).await {
        let (a, other) = set_up(&b).await;
        let relabelled = [
            (
                "B's admin key as A's admin",
                Capability {
                    key: other.admin.key.clone(),
                    signer: Signer::Admin(a.room),
                },
                "DELETE",
                a.path(),
            ),
            (
                "B's channel key as A's channel 0",
                Capability {
                    key: other.channel(0).1.key.clone(),
                    signer: Signer::Channel(a.room, a.channel(0).0),
                },
                "GET",
                a.messages(0),
            ),
            (
                "A's channel 1 key as A's channel 0",
                Capability {
                    key: a.channel(1).1.key.clone(),
                    signer: Signer::Channel(a.room, a.channel(0).0),
                },
                "GET",
                a.messages(0),
            ),
        ];
        for (what, cap, method, path) in relabelled {
            let answer = b.call(&cap, method, &path, None).await;
            assert_eq!(
                (answer.status.as_u16(), answer.code()),
                (401, "unauthenticated"),
                "{}: {what}",
                b.name
            );
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_rooms_admin_reserves_a_cutoff_but_neither_posts_nor_reads() {
    for b in backends(HORIZON).await {
        let (a, _other) = set_up(&b).await;
        let messages = a.messages(0);
        // An admin re-keying the room records each channel's cut-off, key or no key.
        let reserved = b
            .call(&a.admin, "POST", &format!("{messages}/numbers"), None)
            .await;
        assert_eq!(reserved.status, 201, "{}: {:?}", b.name, reserved.json);
        assert_eq!(reserved.json["number"], 1);
        // But the admin capability is not the channel's: no posting, listing or reading.
        let post = json!({"ciphertext": encode(b"x"), "burn_at": T0.0 + 600});
        for (what, answer) in [
            (
                "post",
                b.call(&a.admin, "PUT", &format!("{messages}/1"), Some(post))
                    .await,
            ),
            ("list", b.call(&a.admin, "GET", &messages, None).await),
            (
                "read",
                b.call(&a.admin, "GET", &format!("{messages}/1"), None)
                    .await,
            ),
        ] {
            assert_forbidden(&b, what, &answer);
        }
    }
}
