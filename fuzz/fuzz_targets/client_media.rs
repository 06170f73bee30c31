//! Opening an attachment stream (`media::Opener`: segments of AES-256-GCM, in any
//! chunking, then size and hash), with a fixed file key: arbitrary ciphertext for an
//! arbitrary size, and a genuine stream (from `Sealer`) cut, altered or re-chunked.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cinder_client::fuzzing;
use cinder_client::media::{Attachment, Opener, Sealer, sealed_len};
use cinder_proto::{Blob, MediaId};
use libfuzzer_sys::fuzz_target;

const MEDIA: MediaId = MediaId([0x66; 16]);

#[derive(Arbitrary, Debug)]
struct Spec {
    size: u64,
    chunks: Vec<u16>,
    flip: Option<(u32, u8)>,
    cut: Option<u32>,
    extra: Vec<u8>,
    fill: u8,
}

fn open(a: &Attachment, stream: &[u8], chunks: &[u16]) -> Result<Vec<u8>, ()> {
    let mut o = Opener::new(a);
    let mut out = Vec::new();
    let mut rest = stream;
    let mut sizes = chunks.iter().map(|&c| usize::from(c).max(1)).cycle();
    while !rest.is_empty() {
        let n = if chunks.is_empty() {
            rest.len()
        } else {
            sizes.next().unwrap_or(1)
        };
        let (now, later) = rest.split_at(n.min(rest.len()));
        out.extend(o.feed(now).map_err(|_| ())?);
        rest = later;
    }
    out.extend(o.finish(&a.sha256).map_err(|_| ())?);
    Ok(out)
}

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = Spec::arbitrary(&mut Unstructured::new(data)) else {
        return;
    };
    let key = fuzzing::secret([0x77; 32]);
    let _ = sealed_len(spec.size);
    // Any size, any bytes: refused, never a panic.
    let a: Attachment = serde_json::from_value(serde_json::json!({
        "media_id": MEDIA, "name": "f", "size": spec.size,
        "sha256": Blob(vec![0; 32]), "key": Blob(vec![0x77; 32]),
    }))
    .expect("an attachment");
    assert!(
        open(&a, &spec.extra, &spec.chunks).is_err(),
        "made-up bytes opened"
    );
    // A genuine stream of a small size.
    let size = spec.size % (3 * 64 * 1024 + 7);
    let plain: Vec<u8> = (0..size).map(|i| spec.fill.wrapping_add(i as u8)).collect();
    let mut sealer = Sealer::new(&key, MEDIA, size);
    let mut stream = Vec::new();
    for segment in plain.chunks(64 * 1024) {
        stream.extend(sealer.seal(segment.to_vec()).expect("seals"));
    }
    if plain.is_empty() {
        stream.extend(sealer.seal(Vec::new()).expect("seals"));
    }
    let sha = sealer.finish().expect("hash");
    let a = sealer
        .attachment(fuzzing::secret([0x77; 32]), "f")
        .expect("attachment");
    assert_eq!(a.sha256, sha);
    assert_eq!(stream.len() as u64, sealed_len(size));
    assert_eq!(
        open(&a, &stream, &spec.chunks),
        Ok(plain.clone()),
        "a genuine stream was refused"
    );
    let mut bad = stream.clone();
    let mut altered = false;
    if let Some((at, bit)) = spec.flip {
        let i = at as usize % bad.len();
        bad[i] ^= 1 << (bit % 8);
        altered = true;
    }
    if let Some(cut) = spec.cut {
        bad.truncate(cut as usize % bad.len());
        altered = true;
    }
    if !spec.extra.is_empty() {
        bad.extend_from_slice(&spec.extra);
        altered = true;
    }
    if altered {
        assert!(
            open(&a, &bad, &spec.chunks).is_err(),
            "an altered stream opened"
        );
    }
});
