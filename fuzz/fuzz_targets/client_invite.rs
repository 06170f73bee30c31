//! Opening an invitation from `me`'s inbox (HPKE open, the signed wrapper, the body, who it
//! names, the sender's signature), with fixed keys: raw envelopes as the server sends
//! them; arbitrary bytes HPKE-sealed to `me` (the wrapper's parser); and arbitrary bodies
//! signed by the sender and sealed (the body's parser).
#![no_main]

use cinder_client::fuzzing;
use cinder_fuzz::room;
use cinder_proto::Blob;
use cinder_proto::api::EnvelopePage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let me = room::me();
    let other = room::other();
    let sender_key = other.bundle.sign_key;
    match mode % 4 {
        0 => {
            // An inbox page as the server sends it (the seeds hold genuine envelopes).
            if let Some(page) = cinder_fuzz::json::<EnvelopePage>(rest) {
                for e in &page.envelopes {
                    let _ = fuzzing::open_invite(&me, &e.sealed, e.sender, &sender_key);
                }
            }
        }
        1 => {
            // A sealed envelope's raw bytes.
            let _ = fuzzing::open_invite(&me, &Blob(rest.to_vec()), other.user_id(), &sender_key);
        }
        2 => {
            let sealed = fuzzing::seal_invite_bytes(&me.bundle, rest).expect("seals");
            let _ = fuzzing::open_invite(&me, &sealed, other.user_id(), &sender_key);
        }
        _ => {
            let signed = fuzzing::sign_invite_bytes(&other, rest).expect("signs");
            let sealed = fuzzing::seal_invite_bytes(&me.bundle, &signed).expect("seals");
            let _ = fuzzing::open_invite(&me, &sealed, other.user_id(), &sender_key);
            // Signed by someone else than the sender it names: refused.
            let forged = fuzzing::sign_invite_bytes(&me, rest).expect("signs");
            let sealed = fuzzing::seal_invite_bytes(&me.bundle, &forged).expect("seals");
            assert!(fuzzing::open_invite(&me, &sealed, other.user_id(), &sender_key).is_err());
        }
    }
});
