//! Writes the seed inputs of every fuzz target into `corpus/<target>/` (run from `fuzz/`:
//! `cargo run --example seed_corpus`), so that fuzzing starts from the real shapes of
//! bodies, headers, ids and sealed data. Each file is named after its content's hash, so
//! running it again adds nothing new.

use std::path::Path;

use cinder_client::account::EnclaveContents;
use cinder_client::fuzzing;
use cinder_client::rooms::{Content, seal_content};
use cinder_fuzz::room::{self, CHANNEL, ROOM};
use cinder_proto::accounts::{KsfParams, Login, StoredEnclave};
use cinder_proto::api::{DropEnvelope, EnvelopePage, LookupRequest};
use cinder_proto::auth::RequestSignature;
use cinder_proto::calls::{RelayAnnouncement, relay_mac};
use cinder_proto::live::{ClientFrame, Place, Proof, ServerFrame};
use cinder_proto::rooms::{
    CreateRoom, DeleteShard, PostShard, Room, Shard, ShardPage, SpineEntry, UpdateRoom,
};
use cinder_proto::{
    Blob, ChannelId, Envelope, EnvelopeId, HpkePublicKey, KeyBundle, MediaId, Nonce, RoomId,
    Signer, Timestamp,
};
use ed25519_dalek::SigningKey;
use serde::Serialize;
use serde_json::json;

fn write(target: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).expect("corpus folder");
    // FNV-1a: a stable name per content.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100000001b3);
    }
    std::fs::write(dir.join(format!("seed-{h:016x}")), bytes).expect("write seed");
}

fn j<T: Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("json")
}

fn moded(mode: u8, parts: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![mode];
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn main() {
    let k1 = SigningKey::from_bytes(&[1; 32]);
    let k2 = SigningKey::from_bytes(&[2; 32]);
    let first = KeyBundle::genesis(&k1, HpkePublicKey([9; 32]), Timestamp(1_700_000_000));
    let second = first.successor(&k1, &k2, HpkePublicKey([8; 32]), Timestamp(1_700_000_100));
    let user = first.user_id;
    let blob = Blob(b"sealed bytes".to_vec());
    let vk = first.sign_key;
    let ksf = KsfParams::FLOOR;
    let login: Login = serde_json::from_str("\"alice\"").expect("login");

    // Server request bodies.
    for v in [
        j(&first),
        j(&second),
        j(&LookupRequest {
            user_ids: vec![user, second.user_id],
        }),
        j(&DropEnvelope {
            sealed: blob.clone(),
            ttl: Some(3600),
        }),
        j(&DropEnvelope {
            sealed: blob.clone(),
            ttl: None,
        }),
    ] {
        write("body_keys", &v);
    }
    for v in [
        json!({ "login": login, "request": blob }),
        json!({ "login": login, "upload": blob, "ksf": ksf, "enclave": blob }),
        json!({ "state": blob, "finalization": blob }),
        json!({ "ciphertext": blob, "expected_version": 3 }),
        json!({ "request": blob }),
        json!({ "upload": blob, "ksf": ksf, "enclave": blob, "expected_version": 3 }),
    ] {
        write("body_accounts", &j(&v));
    }
    let channels = [(ChannelId([2; 16]), vk)].into_iter().collect();
    write(
        "body_spine",
        &j(&CreateRoom {
            room_id: ROOM,
            spine: blob.clone(),
            admin_key: vk,
            member_key: vk,
            channels,
        }),
    );
    write(
        "body_spine",
        &j(&UpdateRoom {
            expected_version: 1,
            spine: blob.clone(),
            admin_key: vk,
            member_key: vk,
            channels: Default::default(),
        }),
    );
    write(
        "body_shards",
        &j(&PostShard {
            ciphertext: blob.clone(),
            burn_at: Timestamp(1_700_086_400),
            delete_hash: Some(Blob(vec![3; 32])),
            media: vec![MediaId([4; 16])],
            hold: Some(Blob(vec![5; 16])),
        }),
    );
    write(
        "body_shards",
        &j(&DeleteShard {
            delete_secret: Blob(vec![6; 32]),
        }),
    );
    write("body_shards", b"");
    write("body_media", br#"{"size":1048576}"#);
    let announcement = j(&RelayAnnouncement {
        urls: vec![
            "turn:relay.example:3478".into(),
            "turns:relay.example:5349?transport=tcp".into(),
        ],
        expires_at: Timestamp(1_700_000_600),
    });
    write("body_relay", &announcement);
    let mac = relay_mac(b"fuzz relay secret", "relay-1", &announcement);
    write(
        "body_relay",
        &[
            b"relay-1\n".as_slice(),
            mac.as_bytes(),
            b"\n",
            &announcement,
        ]
        .concat(),
    );
    let place = Place {
        room: ROOM,
        channel: CHANNEL,
    };
    let proof = Proof::sign(&k1, place, Timestamp(1_700_000_000), Nonce([7; 16]));
    write(
        "body_live",
        &j(&ClientFrame::Subscribe {
            channels: vec![proof.clone()],
        }),
    );
    write(
        "body_live",
        &j(&ClientFrame::Unsubscribe {
            channels: vec![place],
        }),
    );

    // Signature headers, one a line, for every kind of signer.
    for signer in [
        Signer::User(user),
        Signer::Member(ROOM),
        Signer::Admin(ROOM),
        Signer::Channel(ROOM, CHANNEL),
    ] {
        let sig = RequestSignature::sign(
            &k1,
            signer,
            "PUT",
            "/x",
            b"{}",
            Timestamp(1_700_000_000),
            Nonce([8; 16]),
        );
        let lines: Vec<String> = sig.headers().into_iter().map(|(_, v)| v).collect();
        write("signature_headers", lines.join("\n").as_bytes());
    }

    // Ids and times, as text and as JSON.
    for s in [
        ROOM.to_string(),
        user.to_string(),
        EnvelopeId::new(1_700_000_000_000, [1; 8]).to_string(),
        "1700000000".into(),
        Signer::Channel(ROOM, CHANNEL).to_string(),
        Signer::User(user).to_string(),
        format!("rooms/{ROOM}/channels/{CHANNEL}/7/{}", MediaId([4; 16])),
        format!("avatars/{ROOM}/{}", MediaId([4; 16])),
        "1700000600:00112233445566778899aabbccddeeff".into(),
    ] {
        write("ids", s.as_bytes());
    }
    write("ids", &j(&RoomId([3; 16])));
    write("ids", &j(&Timestamp(42)));

    // Byte fields.
    for s in [
        vk.to_string(),
        proof.signature.to_string(),
        Nonce([7; 16]).to_string(),
        HpkePublicKey([9; 32]).to_string(),
    ] {
        write("blobs", s.as_bytes());
        write("blobs", &j(&s));
    }
    write("blobs", &j(&blob));

    // The client's key chain: JSON, and built chains.
    write(
        "client_key_chain",
        &moded(
            0,
            &[&j(&(
                None::<KeyBundle>,
                vec![first.clone(), second.clone()],
            ))],
        ),
    );
    write(
        "client_key_chain",
        &moded(0, &[&j(&(Some(first.clone()), vec![second.clone()]))]),
    );
    write(
        "client_key_chain",
        &moded(
            1,
            &[&[
                0, 3, 1, 7, 7, 7, 7, 7, 7, 7, 7, 0, 2, 9, 9, 9, 9, 9, 9, 9, 9, 0, 3, 1, 1, 1, 1, 1,
                1, 1, 1, 0,
            ]],
        ),
    );

    // The enclave: stored (JSON), made up, and real contents sealed.
    let me = room::me();
    let contents: EnclaveContents = serde_json::from_value(json!({
        "version": 4,
        "identity": serde_json::from_slice::<serde_json::Value>(&fuzzing::exposing_json(&me).expect("json")).expect("json"),
        "pins": { first.user_id.to_string(): first },
        "memberships": { ROOM.to_string(): serde_json::from_slice::<serde_json::Value>(&fuzzing::exposing_json(&room::membership()).expect("json")).expect("json") },
    }))
    .expect("enclave contents");
    let contents_json = fuzzing::exposing_json(&contents).expect("json");
    let v4 = 4u64.to_be_bytes();
    write("client_enclave", &moded(2, &[&v4, &contents_json]));
    write("client_enclave", &moded(1, &[&v4, &[0; 40]]));
    write(
        "client_enclave",
        &moded(
            0,
            &[
                &v4,
                &j(&StoredEnclave {
                    ciphertext: blob.clone(),
                    version: 4,
                }),
            ],
        ),
    );

    // Room states.
    let genesis = room::genesis();
    let state = j(&genesis);
    let signed = fuzzing::sign_spine_bytes(&me, &state).expect("signs");
    write("client_spine", &moded(2, &[&state]));
    write("client_spine", &moded(1, &[&1u64.to_be_bytes(), &signed]));
    let entry = fuzzing::seal_spine_bytes(&room::master(), ROOM, 1, &signed).expect("seals");
    write("client_spine", &moded(0, &[&j(&entry)]));
    write(
        "client_spine",
        &moded(
            0,
            &[&j(&SpineEntry {
                version: 2,
                spine: blob.clone(),
            })],
        ),
    );
    write(
        "client_spine",
        &moded(
            3,
            &[&[
                3, 0, 2, 5, 1, 6, 7, 0, 0, 0, 0, 0, 0, 0, 1, 2, 9, 9, 1, 4, 1, 1, 0, 0, 0, 0, 0, 0,
                0, 3,
            ]],
        ),
    );

    // Messages: content `me` sends, message bodies, a served page.
    let header = [
        7u64.to_be_bytes().as_slice(),
        &1_000_500u64.to_be_bytes(),
        &[1],
    ]
    .concat();
    for content in [
        json!({ "kind": "text", "text": "hello" }),
        json!({ "kind": "text", "text": "re", "reply_to": 3 }),
        json!({ "kind": "text", "text": "", "attachments": [{ "media_id": MediaId([4; 16]), "name": "a.txt", "size": 5, "sha256": Blob(vec![1; 32]), "key": Blob(vec![2; 32]) }] }),
        json!({ "kind": "edit", "of": 3, "text": "edited" }),
        json!({ "kind": "reaction", "to": 3, "emoji": "🔥" }),
        json!({ "kind": "reaction", "to": 3, "emoji": "🔥", "remove": true }),
        json!({ "kind": "future", "x": 1 }),
    ] {
        write("client_messages", &moded(2, &[&header, &j(&content)]));
    }
    let body = json!({ "sender": me.user_id(), "key_version": 1, "sent_at": 999_990, "delete_nonce": Nonce([1; 16]),
        "seq": 1, "prev": Blob(vec![0; 32]), "content": { "kind": "text", "text": "hi" }, "signature": proof.signature });
    write("client_messages", &moded(1, &[&header, &j(&body)]));
    let mut m = room::membership();
    let post = seal_content(
        &me,
        &mut m,
        (CHANNEL, 7),
        &Content::text("hello"),
        (Timestamp(999_990), Timestamp(1_000_500)),
    )
    .expect("seals");
    let shard = Shard {
        number: 7,
        ciphertext: post.ciphertext,
        burn_at: Timestamp(1_000_500),
        posted_at: Timestamp(999_990),
        delete_hash: post.delete_hash,
        media: vec![],
    };
    write("client_messages", &moded(0, &[&j(&vec![shard.clone()])]));

    // Invitations.
    let other = room::other();
    let invite = json!({ "kind": "join", "room": ROOM, "recipient": me.user_id(), "from": other.user_id(),
        "head_version": 1, "head_hash": Blob(vec![0; 32]), "master_key": Blob(vec![0x33; 32]),
        "channel_keys": { CHANNEL.to_string(): Blob(vec![0x44; 32]) } });
    write("client_invite", &moded(3, &[&j(&invite)]));
    let signed_invite = fuzzing::sign_invite_bytes(&other, &j(&invite)).expect("signs");
    write("client_invite", &moded(2, &[&signed_invite]));
    let sealed = fuzzing::seal_invite_bytes(&me.bundle, &signed_invite).expect("seals");
    write("client_invite", &moded(1, &[&sealed.0]));
    let envelope = Envelope {
        id: EnvelopeId::new(1, [1; 8]),
        sender: other.user_id(),
        created_at: Timestamp(1),
        expires_at: Timestamp(2),
        sealed,
    };
    write(
        "client_invite",
        &moded(
            0,
            &[&j(&EnvelopePage {
                envelopes: vec![envelope.clone()],
                next: None,
            })],
        ),
    );

    // Media streams: sizes around segment boundaries.
    for (size, chunk) in [(0u64, 0u16), (5, 3), (65_536, 4096), (65_537, 65_535)] {
        let mut v = size.to_le_bytes().to_vec();
        v.extend_from_slice(&[1, 0]);
        v.extend_from_slice(&chunk.to_le_bytes());
        v.extend_from_slice(&[0, 0, 0, 7]);
        write("client_media", &v);
    }

    // Server responses and live notices.
    let room_record = Room {
        room_id: ROOM,
        version: 1,
        spine: blob.clone(),
        admin_key: vk,
        member_key: vk,
        channels: Default::default(),
    };
    for v in [
        j(&room_record),
        j(&ShardPage {
            shards: vec![shard],
            next: Some(7),
        }),
        j(&envelope),
        j(&first),
        j(&ServerFrame::Message {
            room: ROOM,
            channel: CHANNEL,
            number: 7,
        }),
        j(&json!({ "code": "invalid_body", "message": "no", "field": "spine" })),
        j(&json!({ "bundles": [first], "missing": [user] })),
        j(&json!({ "bundles": [second], "more": false })),
        j(&json!({ "number": 8, "hold": Blob(vec![1; 16]), "expires_at": 5 })),
        j(&json!({ "response": blob, "state": blob, "ksf": ksf })),
    ] {
        write("client_responses", &v);
    }
    println!("seeded corpus/");
}
