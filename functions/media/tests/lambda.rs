//! The shipped `cinder-media` binary (two instances taking turns) behind the API Gateway
//! stand-in, with DynamoDB and S3 on moto; the spine and shards functions run in-process on
//! the same tables. An attachment's whole life: a grant for a reserved number, the bytes
//! PUT straight to S3, the message linking it, a download grant and the bytes back; and
//! every refusal a grant has (unlinked id, another channel's capability, a deleted message).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_proto::encoding::encode;
use cinder_proto::media::{DownloadGrant, UploadGrant};
use cinder_proto::{ChannelId, MediaId, Timestamp};
use cinder_tests::lambda::{Under, rooms_deployment, signed_http};
use cinder_tests::rooms::RoomCaps;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attachments_through_the_media_lambda_on_s3() {
    let (gateway, _functions) =
        rooms_deployment(env!("CARGO_BIN_EXE_cinder-media").as_ref(), Under::Media).await;
    let base = gateway.url.as_str();
    let http = reqwest::Client::new();
    let caps = RoomCaps::new(61, &[ChannelId([62; 16]), ChannelId([63; 16])]);
    let (general, chan) = caps.channel(0);
    let (_, other_chan) = caps.channel(1);
    let body = caps.create_body(b"sealed spine");
    let (status, answer) =
        signed_http(&http, base, &caps.admin, "POST", "/rooms", Some(body)).await;
    assert_eq!(status, 201, "{answer}");

    let messages = caps.messages(0);
    let (status, answer) = signed_http(
        &http,
        base,
        chan,
        "POST",
        &format!("{messages}/numbers"),
        None,
    )
    .await;
    assert_eq!(status, 201, "{answer}");
    let number = answer["number"].as_u64().unwrap();
    let hold = answer["hold"].clone();

    // An upload grant for the reserved number, and the bytes PUT straight to S3 with it.
    let bytes: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let uploads = format!("/media/{}/{general}/{number}", caps.room);
    let size = json!({"size": bytes.len()});
    let (status, answer) =
        signed_http(&http, base, chan, "POST", &uploads, Some(size.clone())).await;
    assert_eq!(status, 201, "{answer}");
    let grant: UploadGrant = serde_json::from_value(answer).unwrap();
    assert_eq!(
        grant.headers.get("content-length"),
        Some(&bytes.len().to_string())
    );
    let mut put = http.put(&grant.url).body(bytes.clone());
    for (name, value) in &grant.headers {
        put = put.header(name, value);
    }
    assert!(put.send().await.unwrap().status().is_success());

    // Another channel's capability gets no grant for this channel's messages.
    let (status, answer) = signed_http(&http, base, other_chan, "POST", &uploads, Some(size)).await;
    assert_eq!((status, &answer["code"]), (403, &json!("forbidden")));

    // The message links the object.
    let post = json!({
        "ciphertext": encode(b"sealed message"),
        "burn_at": Timestamp::now().plus(3600),
        "media": [grant.media_id],
        "hold": hold,
    });
    let message = format!("{messages}/{number}");
    let (status, answer) = signed_http(&http, base, chan, "PUT", &message, Some(post)).await;
    assert_eq!(status, 201, "{answer}");

    // A download grant, and the bytes back from S3.
    let download = format!("{uploads}/{}", grant.media_id);
    let (status, answer) = signed_http(&http, base, chan, "GET", &download, None).await;
    assert_eq!(status, 200, "{answer}");
    let down: DownloadGrant = serde_json::from_value(answer).unwrap();
    let got = http.get(&down.url).send().await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().to_vec(), bytes);

    // An id the message does not link, and another channel's capability: no grant.
    let unlinked = format!("{uploads}/{}", MediaId([9; 16]));
    let (status, answer) = signed_http(&http, base, chan, "GET", &unlinked, None).await;
    assert_eq!((status, &answer["code"]), (404, &json!("not_found")));
    let (status, answer) = signed_http(&http, base, other_chan, "GET", &download, None).await;
    assert_eq!((status, &answer["code"]), (403, &json!("forbidden")));

    // Once the message is deleted, its media has no grant.
    let (status, answer) = signed_http(&http, base, &caps.admin, "DELETE", &message, None).await;
    assert_eq!(status, 204, "{answer}");
    let (status, answer) = signed_http(&http, base, chan, "GET", &download, None).await;
    assert_eq!((status, &answer["code"]), (404, &json!("not_found")));
}

#[test]
fn a_media_function_that_cannot_address_its_bucket_fails_its_start() {
    // GIVEN the media function's configuration on AWS's own endpoints (no endpoint URL), with
    // a bucket name or a region its presigned URLs cannot address, or an unusable endpoint URL
    let base = [
        ("ROOMS_TABLE", "rooms"),
        ("SPINES_TABLE", "spines"),
        ("SHARDS_TABLE", "shards"),
        ("NONCES_TABLE", "nonces"),
        ("RATE_LIMITS_TABLE", "rate-limits"),
        ("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE"),
        (
            "AWS_SECRET_ACCESS_KEY",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        ),
        // No Runtime API: a binary that got past its configuration would fail here instead,
        // with an error about the API, not the setting.
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9"),
    ];
    for (setting, env) in [
        (
            "MEDIA_BUCKET",
            [
                ("MEDIA_BUCKET", "Media.Bucket"),
                ("AWS_REGION", "eu-west-1"),
            ],
        ),
        (
            "AWS_REGION",
            [
                ("MEDIA_BUCKET", "media-bucket"),
                ("AWS_REGION", "us-iso-east-1"),
            ],
        ),
        (
            "AWS_ENDPOINT_URL",
            [
                ("MEDIA_BUCKET", "media/bucket"),
                ("AWS_REGION", "us-east-1"),
            ],
        ),
    ] {
        let mut start = std::process::Command::new(env!("CARGO_BIN_EXE_cinder-media"));
        start.env_clear().envs(base).envs(env);
        if setting == "AWS_ENDPOINT_URL" {
            start.env("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9");
        }

        // WHEN it starts
        let out = start.output().unwrap();

        // THEN it exits before asking for an event, naming the setting
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{setting} started");
        assert!(stderr.contains(setting), "{setting}: {stderr}");
    }

    // An endpoint the SDK is told to ignore is ignored: the bucket is then addressed on AWS,
    // where this name cannot be a host name.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cinder-media"))
        .env_clear()
        .envs(base)
        .envs([
            ("MEDIA_BUCKET", "Media.Bucket"),
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9"),
            ("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true"),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "started");
    assert!(stderr.contains("MEDIA_BUCKET"), "{stderr}");
}
