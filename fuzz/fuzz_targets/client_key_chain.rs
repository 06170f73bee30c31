//! The client's key directory check (`cinder_client::directory::verify_chain`): a chain of
//! bundles from the server, from a pinned version or from scratch. Either JSON as a server
//! sends it, or a chain built with real signatures from the fuzz bytes and then tampered
//! with: an untouched chain must verify, and nothing may panic.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cinder_client::directory::verify_chain;
use cinder_proto::{HpkePublicKey, KeyBundle, Signature, Timestamp, UserId, VerifyKey};
use ed25519_dalek::SigningKey;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
enum Tamper {
    Version(u64),
    UserId([u8; 16]),
    CreatedAt(u64),
    FlipSelfSig(u8),
    FlipPrevSig(u8),
    DropPrevSig,
    AddPrevSig([u8; 8]),
    SignKey(u8),
    HpkeKey(u8),
}

#[derive(Arbitrary, Debug)]
struct Step {
    seed: u8,
    created_at: u64,
    tamper: Option<Tamper>,
}

#[derive(Arbitrary, Debug)]
struct Chain {
    pinned: u8,
    steps: Vec<Step>,
}

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

fn tamper(b: &mut KeyBundle, t: &Tamper) {
    match t {
        Tamper::Version(v) => b.version = *v,
        Tamper::UserId(id) => b.user_id = UserId(*id),
        Tamper::CreatedAt(t) => b.created_at = Timestamp(*t),
        Tamper::FlipSelfSig(i) => b.self_sig.0[*i as usize % 64] ^= 1,
        Tamper::FlipPrevSig(i) => {
            if let Some(s) = &mut b.prev_sig {
                s.0[*i as usize % 64] ^= 1;
            }
        }
        Tamper::DropPrevSig => b.prev_sig = None,
        Tamper::AddPrevSig(bytes) => {
            let mut s = [0u8; 64];
            s[..8].copy_from_slice(bytes);
            b.prev_sig = Some(Signature(s));
        }
        Tamper::SignKey(seed) => b.sign_key = VerifyKey::from(key(*seed).verifying_key()),
        Tamper::HpkeKey(x) => b.hpke_key = HpkePublicKey([*x; 32]),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        // As the server sends them: a pinned bundle (or none) and a chain page.
        if let Ok((pinned, chain)) =
            serde_json::from_slice::<(Option<KeyBundle>, Vec<KeyBundle>)>(rest)
        {
            let _ = verify_chain(pinned.as_ref(), &chain);
        }
        return;
    }
    let Ok(spec) = Chain::arbitrary(&mut Unstructured::new(rest)) else {
        return;
    };
    let steps = &spec.steps[..spec.steps.len().min(8)];
    let Some(first) = steps.first() else {
        return;
    };
    let mut chain = vec![KeyBundle::genesis(
        &key(first.seed),
        HpkePublicKey([9; 32]),
        Timestamp(first.created_at),
    )];
    let mut current = key(first.seed);
    for step in &steps[1..] {
        let next = key(step.seed);
        let last = chain.last().expect("not empty");
        chain.push(last.successor(
            &current,
            &next,
            HpkePublicKey([8; 32]),
            Timestamp(step.created_at),
        ));
        current = next;
    }
    let untouched = chain.clone();
    let mut tampered = false;
    for (b, step) in chain.iter_mut().zip(steps) {
        if let Some(t) = &step.tamper {
            tamper(b, t);
            tampered = true;
        }
    }
    let pinned = (spec.pinned as usize).min(chain.len() - 1);
    let (before, after) = chain.split_at(pinned);
    let result = verify_chain(before.last(), after);
    if !tampered {
        assert_eq!(
            result.ok().as_ref(),
            untouched.last(),
            "a genuine chain was refused"
        );
    }
});
