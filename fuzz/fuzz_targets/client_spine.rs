//! Opening a stored room state (`open_entry`: decrypt under the master key, parse the
//! signed wrapper, parse the state, check room, version and member key) and the chain
//! rules of a first and a next state (`check_genesis`, `check_successor`). Raw entries as
//! the server sends them; arbitrary bytes sealed under the room's key (the wrapper's
//! parser); arbitrary states signed and sealed (the state's parser); and a valid state
//! varied field by field, checked as the successor of another.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cinder_client::fuzzing;
use cinder_client::rooms::Spine;
use cinder_fuzz::room::{self, ROOM};
use cinder_proto::rooms::SpineEntry;
use cinder_proto::{Blob, ChannelId, UserId};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
enum Change {
    Version(u64),
    Epoch(u64),
    Prev(bool),
    AddMember(u8, bool),
    DropMember(u8),
    Admin(u8, bool),
    AddFormer(u8, u64),
    AddChannel(u8, u64, u64),
    DropChannel(u8),
    Cutoff(u8, u64, u64),
    BurnChange(u8, u64, u64),
    Burn(u8, u64),
    ChannelKey(u8, u8),
    MemberKey(u8),
    AdminKey(u8),
    Avatar(u8, u64),
}

fn user(seed: u8) -> UserId {
    UserId([seed; 16])
}

fn key_of(seed: u8) -> Value {
    json!(fuzzing::member_key(&fuzzing::secret([seed; 32]), ROOM))
}

fn nth<'a>(v: &'a mut Value, field: &str, i: u8) -> Option<&'a mut Value> {
    let list = v[field].as_array_mut()?;
    let len = list.len();
    (len > 0).then(|| &mut list[i as usize % len])
}

fn apply(s: &mut Value, c: &Change) {
    match c {
        Change::Version(v) => s["version"] = json!(v),
        Change::Epoch(e) => s["epoch"] = json!(e),
        Change::Prev(zero) => s["prev"] = json!(Blob(vec![u8::from(!zero); 32])),
        Change::AddMember(seed, admin) => {
            if let Some(list) = s["members"].as_array_mut() {
                list.push(json!({ "user_id": user(*seed), "name": "m", "admin": admin }));
            }
        }
        Change::DropMember(i) => {
            if let Some(list) = s["members"].as_array_mut().filter(|l| !l.is_empty()) {
                let n = *i as usize % list.len();
                list.remove(n);
            }
        }
        Change::Admin(i, admin) => {
            if let Some(m) = nth(s, "members", *i) {
                m["admin"] = json!(admin);
            }
        }
        Change::AddFormer(seed, epoch) => {
            if let Some(list) = s["former"].as_array_mut() {
                list.push(json!({ "user_id": user(*seed), "name": "f", "last_epoch": epoch }));
            }
        }
        Change::AddChannel(seed, burn, since) => {
            let id = ChannelId([*seed; 16]);
            if let Some(list) = s["channels"].as_array_mut() {
                list.push(json!({ "id": id, "name": "c", "voice": false,
                    "burn_secs": burn, "since_epoch": since }));
            }
            s["channel_keys"][id.to_string()] = key_of(*seed);
        }
        Change::DropChannel(i) => {
            if let Some(list) = s["channels"].as_array_mut().filter(|l| !l.is_empty()) {
                let n = *i as usize % list.len();
                list.remove(n);
            }
        }
        Change::Cutoff(i, epoch, number) => {
            if let Some(c) = nth(s, "channels", *i) {
                if !c["cutoffs"].is_object() {
                    c["cutoffs"] = json!({});
                }
                c["cutoffs"][epoch.to_string()] = json!(number);
            }
        }
        Change::BurnChange(i, up_to, burn) => {
            if let Some(c) = nth(s, "channels", *i) {
                if !c["burn_history"].is_array() {
                    c["burn_history"] = json!([]);
                }
                if let Some(h) = c["burn_history"].as_array_mut() {
                    h.push(json!({ "up_to": up_to, "burn_secs": burn }));
                }
            }
        }
        Change::Burn(i, burn) => {
            if let Some(c) = nth(s, "channels", *i) {
                c["burn_secs"] = json!(burn);
            }
        }
        Change::ChannelKey(i, seed) => {
            let id = nth(s, "channels", *i).map(|c| c["id"].clone());
            if let Some(Value::String(id)) = id {
                s["channel_keys"][id] = key_of(*seed);
            }
        }
        Change::MemberKey(seed) => s["member_key"] = key_of(*seed),
        Change::AdminKey(seed) => s["admin_key"] = key_of(*seed),
        Change::Avatar(i, epoch) => {
            if let Some(m) = nth(s, "members", *i) {
                m["avatar"] = json!({ "media_id": "00".repeat(16), "epoch": epoch,
                    "size": 10, "sha256": Blob(vec![0; 32]) });
            }
        }
    }
}

/// Every use of an opened or built state: chain rules, burn times, membership.
fn check(prev: &Spine, hash: &Blob, next: &Spine) {
    let me = room::me().user_id();
    let _ = fuzzing::check_genesis(prev, me);
    let _ = fuzzing::check_genesis(next, me);
    let _ = fuzzing::check_successor(prev, hash, next);
    let _ = fuzzing::check_successor(next, hash, prev);
    for c in &next.channels {
        for n in [0, 1, u64::MAX] {
            let _ = c.burn_secs_for(n);
        }
        for (_, up_to) in c.cutoffs.iter() {
            let _ = c.burn_secs_for(*up_to);
        }
    }
    let _ = next.is_admin(me);
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let me = room::me();
    let masters = [room::master()];
    let genesis = room::genesis();
    let genesis_hash = Blob(vec![7; 32]);
    match mode % 4 {
        0 => {
            // A stored version as the server sends it (the seeds hold genuine ones).
            if let Ok(entry) = serde_json::from_slice::<SpineEntry>(rest) {
                if let Some((spine, hash, _)) =
                    fuzzing::open_spine_entry(ROOM, &masters, &entry, &me.bundle.sign_key)
                {
                    check(&genesis, &hash, &spine);
                }
            }
        }
        1 => {
            // Any bytes sealed under the room's key: the signed wrapper's parser.
            let Some((version, body)) = rest.split_first_chunk::<8>() else {
                return;
            };
            let version = u64::from_be_bytes(*version);
            let entry = fuzzing::seal_spine_bytes(&masters[0], ROOM, version, body).expect("seals");
            if let Some((spine, hash, _)) =
                fuzzing::open_spine_entry(ROOM, &masters, &entry, &me.bundle.sign_key)
            {
                check(&genesis, &hash, &spine);
            }
        }
        2 => {
            // Any state, signed by `me` and sealed: the state's parser.
            let version = serde_json::from_slice::<Value>(rest)
                .ok()
                .and_then(|v| v["version"].as_u64())
                .unwrap_or(1);
            let signed = fuzzing::sign_spine_bytes(&me, rest).expect("signs");
            let entry =
                fuzzing::seal_spine_bytes(&masters[0], ROOM, version, &signed).expect("seals");
            if let Some((spine, hash, ok)) =
                fuzzing::open_spine_entry(ROOM, &masters, &entry, &me.bundle.sign_key)
            {
                assert!(ok, "a state signed by me did not verify");
                assert_eq!(spine.version, version);
                check(&genesis, &genesis_hash, &spine);
                check(&spine, &hash, &genesis);
            }
        }
        _ => {
            // A valid state varied field by field, as the successor of another variation.
            let mut u = Unstructured::new(rest);
            let (Ok(before), Ok(after)) = (
                Vec::<Change>::arbitrary(&mut u),
                Vec::<Change>::arbitrary(&mut u),
            ) else {
                return;
            };
            let mut prev = room::genesis_json();
            for c in before.iter().take(16) {
                apply(&mut prev, c);
            }
            let Ok(prev_spine) = serde_json::from_value::<Spine>(prev.clone()) else {
                return;
            };
            let mut next = prev;
            next["version"] = json!(prev_spine.version.wrapping_add(1));
            next["prev"] = json!(genesis_hash);
            for c in after.iter().take(16) {
                apply(&mut next, c);
            }
            let Ok(next_spine) = serde_json::from_value::<Spine>(next) else {
                return;
            };
            check(&prev_spine, &genesis_hash, &next_spine);
            // And through sealing, signing and opening, as a stored version.
            let state = serde_json::to_vec(&next_spine).expect("serialises");
            let signed = fuzzing::sign_spine_bytes(&me, &state).expect("signs");
            let entry = fuzzing::seal_spine_bytes(&masters[0], ROOM, next_spine.version, &signed)
                .expect("seals");
            let opened = fuzzing::open_spine_entry(ROOM, &masters, &entry, &me.bundle.sign_key);
            if next_spine.member_key == genesis.member_key && next_spine.room == ROOM {
                let (spine, _, ok) = opened.expect("a genuine state opens");
                assert!(ok);
                assert_eq!(spine, next_spine);
            }
        }
    }
});
