//! The rules every room state must keep against the version before it (`check_successor`),
//! one broken at a time: what a lying server, or an admin's client gone wrong, could hand a
//! member as the next state. Each refusal is checked by its reason, so a rule that stops
//! checking cannot hide behind another that refuses the same state for something else.

use super::*;
use crate::rooms::avatars::AvatarRef;
use crate::rooms::state::{FormerMember, check_successor};
use cinder_proto::{Blob, MediaId};

fn key(n: u8) -> VerifyKey {
    ed25519_dalek::SigningKey::from_bytes(&[n; 32])
        .verifying_key()
        .into()
}

fn member(n: u8, name: &str, admin: bool) -> SpineMember {
    SpineMember {
        user_id: UserId([n; 16]),
        name: name.into(),
        status: String::new(),
        admin,
        avatar: None,
    }
}

fn channel(n: u8, since_epoch: u64, cutoffs: &[(u64, u64)]) -> ChannelInfo {
    ChannelInfo {
        id: ChannelId([n; 16]),
        name: format!("channel {n}"),
        voice: n.is_multiple_of(2),
        burn_secs: 600,
        since_epoch,
        cutoffs: cutoffs.iter().copied().collect(),
        burn_history: Vec::new(),
    }
}

fn avatar(epoch: u64) -> AvatarRef {
    AvatarRef {
        media_id: MediaId([7; 16]),
        size: 10,
        sha256: Blob(vec![7; 32]),
        epoch,
    }
}

const BOB: UserId = UserId([2; 16]);
const CAROL: UserId = UserId([3; 16]);
const GENERAL: ChannelId = ChannelId([11; 16]);
const VOICE: ChannelId = ChannelId([12; 16]);
const HASH: [u8; 32] = [9; 32];

/// Version 4 of a room in its second key epoch: Alice and Carol admins, Bob a member, Dave
/// removed in the first epoch; a channel from the first epoch and one from the second.
fn prev() -> Spine {
    let mut alice = member(1, "alice", true);
    alice.avatar = Some(avatar(2));
    Spine {
        room: RoomId([5; 16]),
        version: 4,
        prev: Blob(vec![8; 32]),
        epoch: 2,
        name: "Team".into(),
        members: vec![alice, member(2, "bob", false), member(3, "carol", true)],
        former: vec![FormerMember {
            user_id: UserId([4; 16]),
            name: "dave".into(),
            last_epoch: 1,
        }],
        channels: vec![channel(11, 1, &[(1, 7)]), channel(12, 2, &[])],
        admin_key: key(20),
        member_key: key(21),
        channel_keys: [(GENERAL, key(22)), (VOICE, key(23))].into_iter().collect(),
    }
}

/// The next version with the same keys, changed by `f`.
fn same(f: impl FnOnce(&mut Spine)) -> Spine {
    let mut next = prev();
    next.version = 5;
    next.prev = Blob(HASH.to_vec());
    next.name = "Team, renamed".into();
    f(&mut next);
    next
}

/// The next version in a new key epoch (new member and channel keys, each channel's
/// cut-off for epoch 2, avatars re-sealed), changed by `f`.
fn rekeyed(f: impl FnOnce(&mut Spine)) -> Spine {
    same(|n| {
        n.epoch = 3;
        n.member_key = key(31);
        n.channel_keys = [(GENERAL, key(32)), (VOICE, key(33))].into_iter().collect();
        n.channels[0].cutoffs.insert(2, 40);
        n.channels[1].cutoffs.insert(2, 0);
        n.members[0].avatar = Some(avatar(3));
        f(n)
    })
}

/// `who` removed in a new epoch, and recorded as a former member of epoch 2.
fn remove(n: &mut Spine, who: UserId) {
    let gone = n.member(who).unwrap().name.clone();
    n.members.retain(|m| m.user_id != who);
    n.former.push(FormerMember {
        user_id: who,
        name: gone,
        last_epoch: 2,
    });
}

#[test]
fn a_state_that_keeps_every_rule_is_accepted() {
    let check = |next: &Spine| check_successor(&prev(), &Blob(HASH.to_vec()), next);
    let accepted = [
        ("a rename", same(|_| {})),
        ("keys rotated with nobody removed", rekeyed(|_| {})),
        ("Bob removed", rekeyed(|n| remove(n, BOB))),
        (
            "Carol, an admin, removed with a new admin key",
            rekeyed(|n| {
                remove(n, CAROL);
                n.admin_key = key(34);
            }),
        ),
        (
            "Carol's admin revoked with a new admin key",
            same(|n| {
                n.members[2].admin = false;
                n.admin_key = key(34);
            }),
        ),
        ("Bob made an admin", same(|n| n.members[1].admin = true)),
        (
            "a channel added",
            same(|n| {
                n.channels.push(channel(13, 2, &[]));
                n.channel_keys.insert(ChannelId([13; 16]), key(35));
            }),
        ),
        (
            "a channel added with new keys",
            rekeyed(|n| {
                n.channels.push(channel(13, 3, &[]));
                n.channel_keys.insert(ChannelId([13; 16]), key(35));
            }),
        ),
        (
            "a channel deleted",
            same(|n| {
                n.channels.remove(1);
                n.channel_keys.remove(&VOICE);
            }),
        ),
        (
            "Alice's avatar dropped",
            same(|n| n.members[0].avatar = None),
        ),
    ];
    for (what, next) in accepted {
        assert_eq!(check(&next).map_err(|e| e.to_string()), Ok(()), "{what}");
    }
}

#[test]
fn each_rule_of_the_next_state_refuses_on_its_own() {
    let check = |next: &Spine| check_successor(&prev(), &Blob(HASH.to_vec()), next);
    let refused: Vec<(&str, Spine, &str)> = vec![
        // The chain: the same room, the next version, naming the one before.
        (
            "another room",
            same(|n| n.room = RoomId([6; 16])),
            "does not extend",
        ),
        (
            "the same version",
            same(|n| n.version = 4),
            "does not extend",
        ),
        (
            "a version skipped",
            same(|n| n.version = 6),
            "does not extend",
        ),
        (
            "another previous hash",
            same(|n| n.prev = Blob(vec![7; 32])),
            "does not extend",
        ),
        // The key epoch: the same or the next.
        (
            "an epoch skipped",
            rekeyed(|n| n.epoch = 4),
            "the key epoch jumped",
        ),
        (
            "an epoch gone back",
            same(|n| n.epoch = 1),
            "the key epoch jumped",
        ),
        // A removal: in a new epoch, recorded as a former member of the old one.
        (
            "Bob removed under the same keys",
            same(|n| {
                remove(n, BOB);
            }),
            "removed without new keys",
        ),
        (
            "Dave's record dropped",
            rekeyed(|n| n.former.clear()),
            "former members was rewritten",
        ),
        (
            "Dave's record moved to a later epoch",
            same(|n| n.former[0].last_epoch = 2),
            "former members was rewritten",
        ),
        (
            "Bob removed without a record",
            rekeyed(|n| n.members.retain(|m| m.user_id != BOB)),
            "not recorded as former members",
        ),
        (
            "Bob recorded as holding the new epoch's keys",
            rekeyed(|n| {
                remove(n, BOB);
                n.former[1].last_epoch = 3;
            }),
            "not recorded as former members",
        ),
        (
            "Bob removed and Carol recorded",
            rekeyed(|n| {
                remove(n, BOB);
                n.former[1].user_id = CAROL;
            }),
            "not recorded as former members",
        ),
        (
            "a member recorded as removed",
            rekeyed(|n| {
                n.former.push(FormerMember {
                    user_id: BOB,
                    name: "bob".into(),
                    last_epoch: 2,
                })
            }),
            "not recorded as former members",
        ),
        // The admin capability: replaced when an admin goes; some admin stays.
        (
            "Carol's admin revoked under the same admin key",
            same(|n| n.members[2].admin = false),
            "admin key was kept",
        ),
        (
            "Carol, an admin, removed under the same admin key",
            rekeyed(|n| remove(n, CAROL)),
            "admin key was kept",
        ),
        (
            "every admin revoked",
            same(|n| {
                n.members[0].admin = false;
                n.members[2].admin = false;
                n.admin_key = key(34);
            }),
            "a room without admins",
        ),
        // The member key: new exactly when the epoch is.
        (
            "a new epoch under the old member key",
            rekeyed(|n| n.member_key = key(21)),
            "member key does not match",
        ),
        (
            "a new member key in the same epoch",
            same(|n| n.member_key = key(31)),
            "member key does not match",
        ),
        // Channels: a new one starts clean in the current epoch,
        (
            "a channel added as if from an earlier epoch",
            same(|n| {
                n.channels.push(channel(13, 1, &[]));
                n.channel_keys.insert(ChannelId([13; 16]), key(35));
            }),
            "breaks the key rules",
        ),
        (
            "a channel added with cut-offs",
            same(|n| {
                n.channels.push(channel(13, 2, &[(1, 3)]));
                n.channel_keys.insert(ChannelId([13; 16]), key(35));
            }),
            "breaks the key rules",
        ),
        (
            "a channel added with a burn history",
            same(|n| {
                let mut c = channel(13, 2, &[]);
                c.burn_history.push(BurnChange {
                    up_to: 3,
                    burn_secs: 60,
                });
                n.channels.push(c);
                n.channel_keys.insert(ChannelId([13; 16]), key(35));
            }),
            "breaks the key rules",
        ),
        (
            "a channel added without a key, in place of a key for no channel",
            same(|n| {
                n.channels.push(channel(13, 2, &[]));
                n.channel_keys.insert(ChannelId([14; 16]), key(35));
            }),
            "breaks the key rules",
        ),
        // keeps its key and history within an epoch,
        (
            "a channel's key changed in the same epoch",
            same(|n| {
                n.channel_keys.insert(GENERAL, key(32));
            }),
            "breaks the key rules",
        ),
        (
            "a channel's first epoch changed",
            same(|n| n.channels[0].since_epoch = 2),
            "breaks the key rules",
        ),
        (
            "a channel's cut-off changed in the same epoch",
            same(|n| {
                n.channels[0].cutoffs.insert(1, 9);
            }),
            "breaks the key rules",
        ),
        (
            "a channel's burn time changed without a record",
            same(|n| n.channels[0].burn_secs = 60),
            "breaks the key rules",
        ),
        // and in a new epoch gets a new key and exactly one cut-off more, for the old epoch.
        (
            "a channel kept its key in a new epoch",
            rekeyed(|n| {
                n.channel_keys.insert(VOICE, key(23));
            }),
            "breaks the key rules",
        ),
        (
            "a channel's first epoch changed with new keys",
            rekeyed(|n| n.channels[1].since_epoch = 3),
            "breaks the key rules",
        ),
        (
            "no cut-off for the old epoch",
            rekeyed(|n| {
                n.channels[0].cutoffs.remove(&2);
            }),
            "breaks the key rules",
        ),
        (
            "the cut-off for another epoch",
            rekeyed(|n| {
                n.channels[0].cutoffs.remove(&2);
                n.channels[0].cutoffs.insert(3, 40);
            }),
            "breaks the key rules",
        ),
        (
            "an earlier cut-off rewritten",
            rekeyed(|n| {
                n.channels[0].cutoffs.insert(1, 9);
            }),
            "breaks the key rules",
        ),
        (
            "two cut-offs added",
            rekeyed(|n| {
                n.channels[0].cutoffs.insert(3, 41);
            }),
            "breaks the key rules",
        ),
        (
            "a channel's burn time changed without a record, with new keys",
            rekeyed(|n| n.channels[1].burn_secs = 60),
            "breaks the key rules",
        ),
        (
            "a channel without a key",
            same(|n| {
                n.channel_keys.remove(&VOICE);
            }),
            "breaks the key rules",
        ),
        // Avatars are sealed for the current epoch,
        (
            "an avatar left sealed for the old epoch",
            rekeyed(|n| n.members[0].avatar = Some(avatar(2))),
            "an avatar sealed for another key epoch",
        ),
        (
            "an avatar sealed for a later epoch",
            same(|n| n.members[1].avatar = Some(avatar(3))),
            "an avatar sealed for another key epoch",
        ),
        // and there are keys for the listed channels only.
        (
            "a key for a channel not listed",
            same(|n| {
                n.channel_keys.insert(ChannelId([14; 16]), key(35));
            }),
            "capability keys for channels the state does not list",
        ),
    ];
    for (what, next, why) in refused {
        match check(&next) {
            Err(ClientError::Verification(e)) => assert!(e.contains(why), "{what}: {e}"),
            other => panic!("{what}: {other:?}"),
        }
    }
}
