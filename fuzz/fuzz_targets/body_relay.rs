//! The calls function's relay announcement, parsed as the function parses it, and the
//! checks around it: the relay id, the announcement's MAC, its URLs.
#![no_main]

use cinder_fuzz::body;
use cinder_proto::calls::{RelayAnnouncement, relay_id_valid, relay_mac, relay_mac_valid};
use libfuzzer_sys::fuzz_target;

const SECRET: &[u8] = b"fuzz relay secret";

fuzz_target!(|data: &[u8]| {
    if let Some(a) = body::<RelayAnnouncement>(data) {
        let _ = a.urls_valid();
    }
    // `<relay id>\n<mac>\n<body>`: the function checks the id, then the MAC over the body.
    let mut parts = data.splitn(3, |&b| b == b'\n');
    if let (Some(id), Some(mac), Some(rest)) = (parts.next(), parts.next(), parts.next()) {
        let (Ok(id), Ok(mac)) = (std::str::from_utf8(id), std::str::from_utf8(mac)) else {
            return;
        };
        let _ = relay_id_valid(id);
        let _ = relay_mac_valid(SECRET, id, rest, mac);
        assert!(relay_mac_valid(
            SECRET,
            id,
            rest,
            &relay_mac(SECRET, id, rest)
        ));
        body::<RelayAnnouncement>(rest);
    }
});
