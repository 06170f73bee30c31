//! The live socket's rules on both stores (rooms on SQLite with subscriptions in memory, as
//! the dev server runs them; rooms and subscriptions on DynamoDB, as the live function
//! does): only a proved, fresh, unreplayed capability subscribes; notices reach every
//! subscriber of a channel and nobody else; a re-key drops the old capability's
//! subscriptions.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use cinder_proto::live::{ClientFrame, Place, Proof, ServerFrame};
use cinder_proto::rooms::Room;
use cinder_proto::{Blob, ChannelId, ErrorCode, RoomId, Timestamp, VerifyKey};
use cinder_server::live::{LiveState, MemoryLive, deliveries, handle_frame, posted};
use cinder_server::store::{ChannelRef, LiveStore, NonceStore, RoomStore};
use cinder_server::{Auth, Clock};
use cinder_tests::fixtures::random_nonce;
use ed25519_dalek::SigningKey;

const T0: Timestamp = Timestamp(1_800_000_000);

struct World {
    name: &'static str,
    state: LiveState,
    rooms: Arc<dyn RoomStore>,
}

async fn worlds() -> Vec<World> {
    let (clock, _time) = Clock::manual(T0);
    let sqlite = Arc::new(cinder_sqlite::SqliteStore::in_memory().unwrap());
    let (dynamo, _) = cinder_tests::moto::fresh_rooms_store().await;
    let (dynamo_live, _) = cinder_tests::moto::fresh_live_store().await;
    let world = |name,
                 rooms: Arc<dyn RoomStore>,
                 nonces: Arc<dyn NonceStore>,
                 live: Arc<dyn LiveStore>| World {
        name,
        state: LiveState {
            auth: Auth::for_rooms(rooms.clone(), nonces, clock.clone()),
            live,
        },
        rooms,
    };
    vec![
        world(
            "sqlite",
            sqlite.clone(),
            sqlite,
            Arc::new(MemoryLive::default()),
        ),
        world("dynamodb", dynamo.clone(), dynamo, dynamo_live),
    ]
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn verify_key(k: &SigningKey) -> VerifyKey {
    VerifyKey::from(k.verifying_key())
}

const ROOM: RoomId = RoomId([0x51; 16]);
const A: ChannelId = ChannelId([0xa; 16]);
const B: ChannelId = ChannelId([0xb; 16]);

fn room(version: u64, channels: &[(ChannelId, &SigningKey)]) -> Room {
    Room {
        room_id: ROOM,
        version,
        spine: Blob(vec![1; 8]),
        admin_key: verify_key(&key(1)),
        member_key: verify_key(&key(2)),
        channels: channels
            .iter()
            .map(|(c, k)| (*c, verify_key(k)))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn place(channel: ChannelId) -> Place {
    Place {
        room: ROOM,
        channel,
    }
}

fn subscribe(proofs: Vec<Proof>) -> Vec<u8> {
    serde_json::to_vec(&ClientFrame::Subscribe { channels: proofs }).unwrap()
}

fn proof(k: &SigningKey, channel: ChannelId, at: Timestamp) -> Proof {
    Proof::sign(k, place(channel), at, random_nonce())
}

fn subscribed(channel: ChannelId) -> ServerFrame {
    ServerFrame::Subscribed {
        room: ROOM,
        channel,
    }
}

fn refused(channel: ChannelId, code: ErrorCode) -> ServerFrame {
    ServerFrame::Refused {
        room: ROOM,
        channel,
        code,
    }
}

async fn told(w: &World, channel: ChannelId, number: u64) -> Vec<String> {
    let c = ChannelRef {
        room: ROOM,
        channel,
    };
    let mut out: Vec<String> = deliveries(
        w.state.live.as_ref(),
        w.rooms.as_ref(),
        &[(c, posted(c, number))],
        T0,
    )
    .await
    .unwrap()
    .into_iter()
    .map(|(connection, frame)| {
        assert_eq!(frame, posted(c, number));
        connection
    })
    .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "current_thread")]
async fn only_a_fresh_unreplayed_proof_of_the_channel_subscribes() {
    let (ka, kb) = (key(10), key(11));
    for w in worlds().await {
        w.rooms
            .create_room(&room(1, &[(A, &ka), (B, &kb)]))
            .await
            .unwrap();
        let good = proof(&ka, A, T0);
        let answer = handle_frame(&w.state, "conn-1", &subscribe(vec![good.clone()]), T0).await;
        assert_eq!(answer, vec![subscribed(A)], "{}", w.name);
        // The same proof again: its nonce is spent.
        let again = handle_frame(&w.state, "conn-2", &subscribe(vec![good]), T0).await;
        assert_eq!(
            again,
            vec![refused(A, ErrorCode::ReplayedRequest)],
            "{}",
            w.name
        );
        // Channel B's key for channel A, a proof for A relabelled B, a stranger's key, a
        // proof from outside the window: each refused on its own, the good one in the same
        // frame accepted.
        let mut relabelled = proof(&ka, A, T0);
        relabelled.channel = B;
        let frame = subscribe(vec![
            proof(&kb, A, T0),
            relabelled,
            proof(&key(99), A, T0),
            proof(&ka, A, Timestamp(T0.0 - 121)),
            proof(&kb, B, T0),
        ]);
        let answer = handle_frame(&w.state, "conn-3", &frame, T0).await;
        assert_eq!(
            answer,
            vec![
                refused(A, ErrorCode::Unauthenticated),
                refused(B, ErrorCode::Unauthenticated),
                refused(A, ErrorCode::Unauthenticated),
                refused(A, ErrorCode::StaleRequest),
                subscribed(B),
            ],
            "{}",
            w.name
        );
        // A room that does not exist.
        let mut elsewhere = Proof::sign(
            &ka,
            Place {
                room: RoomId([0x77; 16]),
                channel: A,
            },
            T0,
            random_nonce(),
        );
        elsewhere.room = RoomId([0x77; 16]);
        let answer = handle_frame(&w.state, "conn-3", &subscribe(vec![elsewhere]), T0).await;
        assert!(
            matches!(
                answer[..],
                [ServerFrame::Refused {
                    code: ErrorCode::Unauthenticated,
                    ..
                }]
            ),
            "{}: {answer:?}",
            w.name
        );
        // Notices: channel A reaches conn-1 only; channel B conn-3 only.
        assert_eq!(told(&w, A, 7).await, ["conn-1"], "{}", w.name);
        assert_eq!(told(&w, B, 8).await, ["conn-3"], "{}", w.name);
        // Unsubscribing stops them.
        let off = serde_json::to_vec(&ClientFrame::Unsubscribe {
            channels: vec![place(A)],
        })
        .unwrap();
        assert_eq!(handle_frame(&w.state, "conn-1", &off, T0).await, vec![]);
        assert_eq!(told(&w, A, 9).await, Vec::<String>::new(), "{}", w.name);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn frames_that_are_not_frames_get_an_error_and_change_nothing() {
    for w in worlds().await {
        let ka = key(10);
        w.rooms.create_room(&room(1, &[(A, &ka)])).await.unwrap();
        let code = |answer: Vec<ServerFrame>| match &answer[..] {
            [ServerFrame::Error { code, .. }] => *code,
            other => panic!("{}: {other:?}", w.name),
        };
        assert_eq!(
            code(handle_frame(&w.state, "conn-1", b"{not json", T0).await),
            ErrorCode::MalformedJson
        );
        assert_eq!(
            code(handle_frame(&w.state, "conn-1", br#"{"action":"shout"}"#, T0).await),
            ErrorCode::InvalidBody
        );
        let many: Vec<Proof> = (0..65).map(|_| proof(&ka, A, T0)).collect();
        assert_eq!(
            code(handle_frame(&w.state, "conn-1", &subscribe(many), T0).await),
            ErrorCode::LimitExceeded
        );
        let huge = vec![b' '; 40 * 1024];
        assert_eq!(
            code(handle_frame(&w.state, "conn-1", &huge, T0).await),
            ErrorCode::BodyTooLarge
        );
        assert_eq!(
            code(handle_frame(&w.state, "bad id!", &subscribe(vec![proof(&ka, A, T0)]), T0).await),
            ErrorCode::InvalidParameter
        );
        assert_eq!(told(&w, A, 1).await, Vec::<String>::new(), "{}", w.name);
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_rekey_drops_the_old_capabilitys_subscriptions() {
    for w in worlds().await {
        let (old, new) = (key(10), key(12));
        w.rooms.create_room(&room(1, &[(A, &old)])).await.unwrap();
        for conn in ["removed-member", "staying-member"] {
            let answer =
                handle_frame(&w.state, conn, &subscribe(vec![proof(&old, A, T0)]), T0).await;
            assert_eq!(answer, vec![subscribed(A)]);
        }
        // The admin removes a member: channel A gets a new capability key.
        w.rooms.update_room(&room(2, &[(A, &new)])).await.unwrap();
        assert_eq!(told(&w, A, 5).await, Vec::<String>::new(), "{}", w.name);
        // and the old subscriptions are gone for good, not just skipped
        let c = ChannelRef {
            room: ROOM,
            channel: A,
        };
        assert_eq!(w.state.live.subscribers(&c, T0).await.unwrap(), vec![]);
        // The removed member cannot come back with the old key; the one who stayed took the
        // new key and does.
        let back = handle_frame(
            &w.state,
            "removed-member",
            &subscribe(vec![proof(&old, A, T0)]),
            T0,
        )
        .await;
        assert_eq!(
            back,
            vec![refused(A, ErrorCode::Unauthenticated)],
            "{}",
            w.name
        );
        let back = handle_frame(
            &w.state,
            "staying-member",
            &subscribe(vec![proof(&new, A, T0)]),
            T0,
        )
        .await;
        assert_eq!(back, vec![subscribed(A)]);
        assert_eq!(told(&w, A, 6).await, ["staying-member"], "{}", w.name);
    }
}
