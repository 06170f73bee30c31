//! The spine function's request bodies: creating a room (which brings its own admin key)
//! and updating one.
#![no_main]

use cinder_fuzz::body;
use cinder_proto::Signer;
use cinder_proto::rooms::{CreateRoom, UpdateRoom};
use cinder_server::extract::BringsKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(create) = body::<CreateRoom>(data) {
        let _ = create.key_for(&Signer::Admin(create.room_id));
    }
    body::<UpdateRoom>(data);
});
