//! The signed-request header parser (`cinder_server::extract::signature_headers`): the
//! four `x-cinder-*` headers into a signer, timestamp, nonce and signature. The input is
//! the four values, one a line; any bytes a header value may hold reach the parser.
#![no_main]

use cinder_proto::RequestSignature;
use cinder_proto::auth::{
    NONCE_HEADER, SIGNATURE_HEADER, SIGNER_HEADER, TIMESTAMP_HEADER, canonical_request,
};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let names = [
        SIGNER_HEADER,
        TIMESTAMP_HEADER,
        NONCE_HEADER,
        SIGNATURE_HEADER,
    ];
    let mut headers = HeaderMap::new();
    for (name, value) in names.iter().zip(data.split(|&b| b == b'\n')) {
        // A header value the HTTP layer would refuse never reaches the parser.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    match cinder_server::extract::signature_headers(&headers) {
        Ok(sig) => {
            // What is accepted is sent back the same way by a client, and signs.
            let mut again = HeaderMap::new();
            for (name, value) in sig.headers() {
                again.insert(name, HeaderValue::from_str(&value).expect("header text"));
            }
            let parsed = cinder_server::extract::signature_headers(&again)
                .expect("a signature's own headers parse");
            assert_eq!(parsed, sig);
            let [s, t, n, g] = sig.headers().map(|(_, v)| v);
            assert_eq!(RequestSignature::parse(&s, &t, &n, &g), Ok(sig.clone()));
            let msg = canonical_request("PUT", "/x", data, &sig.signer, sig.timestamp, &sig.nonce);
            assert!(msg.starts_with("cinder/request/v1\n"));
            let _ = sig.timestamp.plus(121).distance(sig.timestamp);
        }
        Err(e) => {
            let _ = e.status_and_code();
        }
    }
});
