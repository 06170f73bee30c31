//! The live socket's client frames (subscribe, unsubscribe), parsed as the live function
//! parses them; each proof's place and request signature must be derivable.
#![no_main]

use cinder_fuzz::body;
use cinder_proto::live::ClientFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(ClientFrame::Subscribe { channels }) = body::<ClientFrame>(data) {
        for proof in &channels {
            let _ = proof.place();
            let _ = proof.as_request();
        }
    }
});
