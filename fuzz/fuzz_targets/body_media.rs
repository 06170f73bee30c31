//! The media function's request body: an upload request (attachment or avatar).
#![no_main]

use cinder_fuzz::body;
use cinder_proto::media::UploadRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    body::<UploadRequest>(data);
});
