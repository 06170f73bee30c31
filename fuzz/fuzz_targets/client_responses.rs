//! The client's parsers of server responses and live notices (`serde_json`, as
//! `cinder_client::api` and `::live` read them): every body type a server answers with.
//! Each accepted value must round-trip.
#![no_main]

use cinder_fuzz::json;
use cinder_proto::accounts::{LoginStartResponse, RegisterStartResponse, Session, StoredEnclave};
use cinder_proto::api::{ChainPage, EnvelopePage, ErrorBody, LookupResponse};
use cinder_proto::calls::TurnCredentials;
use cinder_proto::live::ServerFrame;
use cinder_proto::media::{DownloadGrant, UploadGrant};
use cinder_proto::rooms::{Reserved, Room, Shard, ShardPage, SpinePage};
use cinder_proto::{Envelope, KeyBundle};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    json::<ServerFrame>(data);
    json::<ErrorBody>(data);
    json::<KeyBundle>(data);
    json::<LookupResponse>(data);
    json::<ChainPage>(data);
    json::<EnvelopePage>(data);
    json::<Envelope>(data);
    json::<Room>(data);
    json::<SpinePage>(data);
    json::<Shard>(data);
    json::<ShardPage>(data);
    json::<Reserved>(data);
    json::<UploadGrant>(data);
    json::<DownloadGrant>(data);
    json::<TurnCredentials>(data);
    json::<RegisterStartResponse>(data);
    json::<LoginStartResponse>(data);
    json::<Session>(data);
    json::<StoredEnclave>(data);
});
