//! Opening channel messages (`open_message`, `open_page` and its signature check, then
//! the thread view), with the fixed keys of a room `me` is in: raw shards as the server
//! sends them; arbitrary bytes sealed under the channel key (the message body's parser);
//! and arbitrary content sealed and signed by `me` as a client sends it.
#![no_main]

use cinder_client::directory::SignerKey;
use cinder_client::fuzzing;
use cinder_client::rooms::messages::open_page;
use cinder_client::rooms::{Content, Membership, open_message, seal_content, thread};
use cinder_fuzz::room::{self, CHANNEL, ROOM};
use cinder_proto::Timestamp;
use cinder_proto::rooms::Shard;
use libfuzzer_sys::fuzz_target;

const NOW: Timestamp = Timestamp(1_000_000);

/// Every reader of a page: one by one, as a page, signatures, the thread.
fn read(m: &Membership, shards: &[Shard], after: u64) {
    let me = room::me();
    for shard in shards {
        let _ = open_message(m, CHANNEL, shard).map(|o| o.verify(&me.bundle.sign_key));
    }
    let opened = open_page(m, CHANNEL, after, shards, NOW);
    let _ = opened.signers();
    let page = opened.verify(|user, version| {
        (user == me.user_id() && version == 1).then_some(SignerKey {
            key: me.bundle.sign_key,
            superseded_at: None,
        })
    });
    let t = thread(&page.messages);
    let _ = format!("{t:?}");
}

fn header(rest: &[u8]) -> Option<(u64, Timestamp, u64, &[u8])> {
    let (number, rest) = rest.split_first_chunk::<8>()?;
    let (burn, rest) = rest.split_first_chunk::<8>()?;
    let (&epoch, rest) = rest.split_first()?;
    Some((
        u64::from_be_bytes(*number),
        Timestamp(u64::from_be_bytes(*burn)),
        u64::from(epoch % 3),
        rest,
    ))
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut m = room::membership();
    match mode % 3 {
        0 => {
            // Shards as the server sends them (a page, JSON; the seeds hold genuine ones).
            if let Ok(shards) = serde_json::from_slice::<Vec<Shard>>(rest) {
                read(&m, &shards, 0);
            }
        }
        1 => {
            // Any bytes sealed under the channel key, for a number and burn time.
            let Some((number, burn_at, epoch, body)) = header(rest) else {
                return;
            };
            let shard = fuzzing::seal_message_bytes(
                (ROOM, CHANNEL, epoch),
                &room::channel_key(),
                (number, burn_at),
                body,
            )
            .expect("seals");
            read(&m, &[shard.clone()], 0);
            read(&m, &[shard.clone(), shard], number.saturating_sub(1));
        }
        _ => {
            // Any content `me` could send, sealed and signed as the client does.
            let Some((number, burn_at, _, body)) = header(rest) else {
                return;
            };
            let Ok(content) = serde_json::from_slice::<Content>(body) else {
                return;
            };
            let me = room::me();
            let sent_at = Timestamp(NOW.0 - 10);
            let Ok(post) =
                seal_content(&me, &mut m, (CHANNEL, number), &content, (sent_at, burn_at))
            else {
                return;
            };
            let shard = Shard {
                number,
                ciphertext: post.ciphertext,
                burn_at,
                posted_at: sent_at,
                delete_hash: post.delete_hash,
                media: post.media,
            };
            let opened = open_message(&m, CHANNEL, &shard).expect("a genuine message opens");
            assert!(
                opened.verify(&me.bundle.sign_key),
                "a genuine signature failed"
            );
            read(&m, &[shard], number.saturating_sub(1));
        }
    }
});
