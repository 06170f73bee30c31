//! Whole-product scenarios, run through the reference client against any deployment: the
//! in-process test server on either store, or the shipped Lambda binaries behind the API
//! Gateway stand-in.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;

use cinder_client::Client;
use cinder_client::account::{LoggedIn, UserProfile};
use cinder_client::rooms::thread::View;
use cinder_client::rooms::{Membership, Refusal, Spine, Thread, thread};
use cinder_proto::accounts::KsfParams;
use cinder_proto::{ErrorCode, KeyBundle, RoomId, UserId};

/// Moves the server's time forward by some seconds (a manual clock, or real sleep).
pub type PassTime = Box<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// One user's device: session, memberships and pins.
pub struct Device {
    pub me: LoggedIn,
    pub rooms: BTreeMap<RoomId, Membership>,
    pub pins: BTreeMap<UserId, KeyBundle>,
}

pub async fn register(client: &Client, name: &str) -> Device {
    let profile = UserProfile {
        name: name.into(),
        ..Default::default()
    };
    let me = client
        .register(
            &name.parse().unwrap(),
            b"a long password",
            profile,
            KsfParams::FLOOR,
        )
        .await
        .unwrap();
    Device {
        me,
        rooms: BTreeMap::new(),
        pins: BTreeMap::new(),
    }
}

impl Device {
    fn id(&self) -> UserId {
        self.me.contents.identity.user_id()
    }

    async fn accept(&mut self, client: &Client) -> Vec<RoomId> {
        client
            .accept_invites(&self.me.contents.identity, &mut self.rooms, &mut self.pins)
            .await
            .unwrap()
    }

    async fn spine(&mut self, client: &Client, room: RoomId) -> Spine {
        client
            .room(self.rooms.get_mut(&room).unwrap(), &mut self.pins)
            .await
            .unwrap()
    }

    /// The channel as a reader shows it: every page read and verified, then folded (edits
    /// applied, replies and reactions in place).
    async fn thread(
        &mut self,
        client: &Client,
        room: RoomId,
        channel: cinder_proto::ChannelId,
    ) -> Thread {
        self.spine(client, room).await;
        let m = self.rooms[&room].clone();
        let (mut all, mut after) = (Vec::new(), 0);
        loop {
            let page = client
                .read(&m, channel, after, &mut self.pins)
                .await
                .unwrap();
            assert_eq!(page.refused, vec![], "every message opened and verified");
            all.extend(page.messages);
            match page.last {
                Some(last) if page.more => after = last,
                _ => return thread(&all),
            }
        }
    }

    async fn texts(
        &mut self,
        client: &Client,
        room: RoomId,
        channel: cinder_proto::ChannelId,
    ) -> Vec<(Option<String>, String)> {
        self.spine(client, room).await;
        let m = self.rooms[&room].clone();
        let page = client.read(&m, channel, 0, &mut self.pins).await.unwrap();
        assert_eq!(page.refused, vec![], "every message opened and verified");
        page.messages
            .into_iter()
            .map(|r| {
                let text = r.text().unwrap_or_default().to_owned();
                (r.sender_name, text)
            })
            .collect()
    }
}

/// The short burn time of the scenario's burning message: long enough that a slow machine
/// reads it before it burns, where time passes for real (the Lambda binaries' clock).
const BURN_SECS: u64 = 20;

/// Three users, a room with a text and a voice channel, invitations, chat, a message that
/// burns, a removal with key rotation, a sender deleting a message, several admins, a reply,
/// reactions, an edit and a forged one, a renamed channel, and a member who leaves.
pub async fn three_users(client: &Client, label: &str, pass_time: &PassTime) {
    let mut alice = register(client, "alice").await;
    let mut bob = register(client, "bob").await;
    let mut carol = register(client, "carol").await;

    // GIVEN alice's room with a text channel and a voice channel
    let channels = [
        ("general".to_owned(), false, 3600),
        ("call".to_owned(), true, 600),
    ];
    let (m, spine) = client
        .create_room(&alice.me.contents.identity, "alice", "Team", &channels)
        .await
        .unwrap();
    let room = m.room;
    let (general, call) = (spine.channels[0].id, spine.channels[1].id);
    assert!(spine.channels[1].voice);
    alice.rooms.insert(room, m);
    // Her enclave keeps the room's keys across devices.
    alice.me.contents.memberships = alice.rooms.clone();
    client.save_enclave(&mut alice.me).await.unwrap();

    // WHEN she invites bob and carol, who accept
    for (who, name) in [(bob.id(), "bob"), (carol.id(), "carol")] {
        let keys = client.verified_keys(who, None).await.unwrap();
        client
            .invite(
                &alice.me.contents.identity,
                alice.rooms.get_mut(&room).unwrap(),
                &keys,
                name,
                &mut alice.pins,
            )
            .await
            .unwrap();
    }
    assert_eq!(bob.accept(client).await, vec![room]);
    assert_eq!(carol.accept(client).await, vec![room]);
    let members: Vec<_> = bob
        .spine(client, room)
        .await
        .members
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(members, ["alice", "bob", "carol"]);

    // THEN they chat, and everyone sees who said what
    client
        .send_message(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "hello team",
            3600,
        )
        .await
        .unwrap();
    client
        .send_message(
            &bob.me.contents.identity,
            bob.rooms.get_mut(&room).unwrap(),
            general,
            "hi alice",
            3600,
        )
        .await
        .unwrap();
    let expected = vec![
        (Some("alice".into()), "hello team".into()),
        (Some("bob".into()), "hi alice".into()),
    ];
    assert_eq!(
        carol.texts(client, room, general).await,
        expected,
        "{label}"
    );
    client
        .send_message(
            &carol.me.contents.identity,
            carol.rooms.get_mut(&room).unwrap(),
            call,
            "joining the call",
            600,
        )
        .await
        .unwrap();
    assert_eq!(alice.texts(client, room, call).await.len(), 1);

    // A message with a short burn time is served before it and never after.
    client
        .send_message(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "this burns",
            BURN_SECS,
        )
        .await
        .unwrap();
    assert_eq!(bob.texts(client, room, general).await.len(), 3);
    pass_time(BURN_SECS + 1).await;
    assert_eq!(
        bob.texts(client, room, general).await,
        expected,
        "{label}: burnt message served"
    );

    // WHEN alice removes carol
    let carol_keys = carol.rooms[&room].clone();
    client
        .kick(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            carol.id(),
            &mut alice.pins,
        )
        .await
        .unwrap();
    assert_eq!(
        bob.accept(client).await,
        vec![room],
        "bob gets the new keys"
    );
    client
        .send_message(
            &bob.me.contents.identity,
            bob.rooms.get_mut(&room).unwrap(),
            general,
            "after carol left",
            3600,
        )
        .await
        .unwrap();

    // THEN bob reads old and new messages; carol can neither read nor post
    let after = bob.texts(client, room, general).await;
    assert_eq!(after.last().unwrap().1, "after carol left");
    assert_eq!(after.len(), 3);
    let denied = client
        .read(&carol_keys, general, 0, &mut carol.pins)
        .await
        .err()
        .unwrap();
    assert_eq!(denied.code(), Some(ErrorCode::Unauthenticated), "{label}");
    let mut stale = carol_keys.clone();
    let spine_denied = client
        .room(&mut stale, &mut carol.pins)
        .await
        .err()
        .unwrap();
    assert_eq!(spine_denied.code(), Some(ErrorCode::Unauthenticated));
    let post = client
        .send_message(
            &carol.me.contents.identity,
            &mut carol_keys.clone(),
            general,
            "let me in",
            60,
        )
        .await
        .err()
        .unwrap();
    assert_eq!(post.code(), Some(ErrorCode::Unauthenticated));
    assert_eq!(
        carol.accept(client).await,
        Vec::<RoomId>::new(),
        "no keys were sent to carol"
    );

    // A sender deletes their own message; nobody else can.
    let n = client
        .send_message(
            &bob.me.contents.identity,
            bob.rooms.get_mut(&room).unwrap(),
            general,
            "oops",
            3600,
        )
        .await
        .unwrap();
    let not_mine = client
        .delete_message(&alice.me.contents.identity, &alice.rooms[&room], general, n)
        .await
        .err()
        .unwrap();
    assert_eq!(not_mine.code(), Some(ErrorCode::Forbidden));
    client
        .delete_message(&bob.me.contents.identity, &bob.rooms[&room], general, n)
        .await
        .unwrap();
    assert_eq!(bob.texts(client, room, general).await.len(), 3);

    // Several admins: alice makes bob an admin, who can then change the room himself.
    client
        .grant_admin(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            bob.id(),
            &mut alice.pins,
        )
        .await
        .unwrap();
    assert_eq!(
        bob.accept(client).await,
        vec![room],
        "{label}: bob gets the admin key"
    );
    assert!(bob.rooms[&room].holds_admin_key());
    let random = client
        .add_channel(
            &bob.me.contents.identity,
            bob.rooms.get_mut(&room).unwrap(),
            ("random", false, 600),
            &mut bob.pins,
        )
        .await
        .unwrap();
    let seen = alice.spine(client, room).await;
    assert!(
        seen.channel(random).is_some(),
        "{label}: alice verifies bob's change"
    );
    assert!(seen.is_admin(bob.id()));

    // WHEN alice revokes bob, the admin key is replaced and bob's no longer works.
    client
        .revoke_admin(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            bob.id(),
            &mut alice.pins,
        )
        .await
        .unwrap();
    assert!(!bob.spine(client, room).await.is_admin(bob.id()));
    let refused = client
        .add_channel(
            &bob.me.contents.identity,
            bob.rooms.get_mut(&room).unwrap(),
            ("mine", false, 600),
            &mut bob.pins,
        )
        .await
        .err()
        .unwrap();
    assert!(
        matches!(refused, cinder_client::ClientError::Input(_)),
        "{label}: {refused}"
    );

    // Replies, reactions and edits: alice asks, bob answers and reacts, so does alice, and
    // she edits her question. Bob claims to edit it too: the server stores it (it cannot
    // tell), and every reader refuses it.
    let question = client
        .send_message(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "lunch?",
            3600,
        )
        .await
        .unwrap();
    let answer = client
        .reply(
            &bob.me.contents.identity,
            bob.rooms.get_mut(&room).unwrap(),
            general,
            question,
            "yes, the noodle place",
            3600,
        )
        .await
        .unwrap();
    for who in [&mut bob, &mut alice] {
        client
            .react(
                &who.me.contents.identity,
                who.rooms.get_mut(&room).unwrap(),
                general,
                question,
                "👍",
                false,
                3600,
            )
            .await
            .unwrap();
    }
    let edit = client
        .edit(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            question,
            "lunch at noon?",
            3600,
        )
        .await
        .unwrap();
    let forged = client
        .edit(
            &bob.me.contents.identity,
            bob.rooms.get_mut(&room).unwrap(),
            general,
            question,
            "lunch is cancelled",
            3600,
        )
        .await
        .unwrap();
    for reader in [&mut alice, &mut bob] {
        let shown = reader.thread(client, room, general).await;
        let q = shown
            .messages
            .iter()
            .find(|s| s.number == question)
            .expect("the question is shown");
        let View::Text { text, edited, .. } = &q.view else {
            panic!("{label}: the question is not a text: {:?}", q.view);
        };
        assert_eq!(
            (text.as_str(), *edited),
            ("lunch at noon?", Some(edit)),
            "{label}: the author's edit shows, marked"
        );
        let reacted: Vec<_> = q
            .reactions
            .iter()
            .map(|r| (r.emoji.as_str(), r.by.len()))
            .collect();
        assert_eq!(reacted, vec![("👍", 2)], "{label}");
        let a = shown
            .messages
            .iter()
            .find(|s| s.number == answer)
            .expect("the answer is shown");
        let View::Text { reply_to, .. } = &a.view else {
            panic!("{label}: the answer is not a text");
        };
        assert_eq!(
            reply_to.map(|r| (r.number, r.shown)),
            Some((question, true))
        );
        assert_eq!(
            shown.refused,
            vec![(forged, Refusal::ForgedEdit)],
            "{label}: bob's edit of alice's message is refused"
        );
    }

    // Alice renames the channel; every member's client shows the new name, verified.
    client
        .rename_channel(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "lobby",
            &mut alice.pins,
        )
        .await
        .unwrap();
    let seen = bob.spine(client, room).await;
    assert_eq!(
        seen.channel(general).map(|c| c.name.as_str()),
        Some("lobby"),
        "{label}: bob sees the new name"
    );

    // WHEN bob leaves, alice's client applies his request on its next room action (a
    // removal with new keys)
    let bob_keys = bob.rooms[&room].clone();
    client
        .leave(
            &bob.me.contents.identity,
            &mut bob.rooms,
            room,
            &mut bob.pins,
        )
        .await
        .unwrap();
    assert!(
        !bob.rooms.contains_key(&room),
        "bob's client forgets the room"
    );
    alice.accept(client).await;
    let after_leave = alice.spine(client, room).await;
    assert!(after_leave.member(bob.id()).is_none(), "{label}");
    assert!(after_leave.former.iter().any(|f| f.user_id == bob.id()));
    client
        .send_message(
            &alice.me.contents.identity,
            alice.rooms.get_mut(&room).unwrap(),
            general,
            "after bob left",
            3600,
        )
        .await
        .unwrap();

    // THEN what bob held no longer reads anything: the server refuses his capability
    let denied = client
        .read(&bob_keys, general, 0, &mut bob.pins)
        .await
        .err()
        .unwrap();
    assert_eq!(denied.code(), Some(ErrorCode::Unauthenticated), "{label}");
    let last = alice.thread(client, room, general).await;
    assert!(
        last.messages
            .iter()
            .any(|s| matches!(&s.view, View::Text { text, .. } if text == "after bob left")),
        "{label}: alice reads on"
    );
}
