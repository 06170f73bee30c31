//! The shards function's request bodies: posting a message, deleting one (a sender's
//! secret, or no body), and the empty body of the requests that carry none.
#![no_main]

use cinder_fuzz::body;
use cinder_proto::rooms::{DeleteShard, PostShard};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    body::<PostShard>(data);
    body::<Option<DeleteShard>>(data);
    body::<()>(data);
});
