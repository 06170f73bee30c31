//! Calls against a lying server. Signals are channel messages, so the server (with a member
//! or a leaked key) can neither forge one nor swap the DTLS fingerprint inside one; which
//! TURN relay the server names is not checked (see docs/SECURITY.md, "Calls").

use super::*;
use crate::call::{CallSession, CallSignal};

fn offer(
    session: CallSession,
    to: &User,
    to_session: CallSession,
    fingerprint: &str,
) -> CallSignal {
    CallSignal::Offer {
        session,
        to: to.id(),
        to_session,
        sdp: format!("v=0\r\na=fingerprint:sha-256 {fingerprint}\r\na=setup:actpass\r\n"),
    }
}

/// Defence: a call signal reaches the call engine only through a read, with every check a
/// message gets. The sender's signature covers the signal's SDP and so its DTLS fingerprint:
/// a member working with the server cannot swap in a fingerprint of their own in another
/// member's name (`BadSignature`), so a relay of the server's choosing cannot sit in the
/// middle of the DTLS handshake. And a stranger holding a leaked channel key is no member
/// (`NotAMember`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_signal_with_a_swapped_fingerprint_or_from_a_stranger_is_refused() {
    let w = world().await;
    let (mut alice, mut bob, mut carol, room, _general) = team(&w).await;
    let m = alice.rooms.get_mut(&room).unwrap();
    let voice = w
        .client
        .add_channel(&alice.me, m, ("voice", true, 600), &mut alice.pins)
        .await
        .unwrap();
    bob.accept(&w).await;
    carol.accept(&w).await;
    bob.sync(&w, room).await.unwrap();
    carol.sync(&w, room).await.unwrap();
    let (alices, bobs) = (
        CallSession::random().unwrap(),
        CallSession::random().unwrap(),
    );

    // GIVEN Alice offers Bob a connection, with her DTLS fingerprint
    let m = alice.rooms.get_mut(&room).unwrap();
    let genuine = offer(alices, &bob, bobs, "AA:AA:AA");
    w.client
        .send_signal(&alice.me, m, voice, &genuine)
        .await
        .unwrap();
    // WHEN Carol, with the server, posts the same offer in Alice's name with her own
    // fingerprint (what a relay in the middle would need)
    let impostor = Identity {
        bundle: alice.me.bundle.clone(),
        seeds: carol.me.seeds.clone(),
    };
    let mut keys = carol.rooms[&room].clone();
    w.client
        .send_signal(
            &impostor,
            &mut keys,
            voice,
            &offer(alices, &bob, bobs, "EE:EE:EE"),
        )
        .await
        .unwrap();
    // AND Mallory, in no room, posts an offer of her own with a copy of Bob's keys
    let mallory = User::new(&w).await;
    let mut leaked = bob.rooms[&room].clone();
    w.client
        .send_signal(
            &mallory.me,
            &mut leaked,
            voice,
            &offer(CallSession::random().unwrap(), &bob, bobs, "EE:EE:EE"),
        )
        .await
        .unwrap();

    // THEN Bob's client hands on Alice's offer alone, with her fingerprint
    let page = bob.read(&w, room, voice).await;
    let signals: Vec<_> = page
        .messages
        .iter()
        .map(|r| (r.number, r.sender, r.signal().cloned()))
        .collect();
    assert_eq!(signals, vec![(1, alice.id(), Some(genuine))]);
    assert_eq!(
        page.refused,
        vec![(2, Refusal::BadSignature), (3, Refusal::NotAMember)]
    );
}
