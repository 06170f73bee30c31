//! The enclave function's request bodies: OPAQUE registration and login, the enclave,
//! password changes.
#![no_main]

use cinder_fuzz::body;
use cinder_proto::accounts::{
    LoginFinish, LoginStart, PasswordFinish, PasswordStart, PutEnclave, RegisterFinish,
    RegisterStart,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    body::<RegisterStart>(data);
    body::<RegisterFinish>(data);
    body::<LoginStart>(data);
    body::<LoginFinish>(data);
    body::<PutEnclave>(data);
    body::<PasswordStart>(data);
    body::<PasswordFinish>(data);
});
