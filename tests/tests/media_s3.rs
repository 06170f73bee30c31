//! The S3 object store on moto: bytes really travel through the presigned URLs (plain HTTP,
//! as a client sends them), deletes really delete, in batches. moto does not check
//! signatures, so that an upload URL is bound to its length is shown from the URL itself:
//! `content-length` is among the signed headers, and the grant tells the client its value.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use cinder_proto::media::{ObjectKey, limits};
use cinder_proto::{ChannelId, MediaId, RoomId, Timestamp};
use cinder_server::store::{MediaUrls, ObjectStore, Presigned};

fn attachment(number: u64, media: u8) -> ObjectKey {
    ObjectKey::Attachment {
        room: RoomId([1; 16]),
        channel: ChannelId([2; 16]),
        number,
        media: MediaId([media; 16]),
    }
}

/// The URL's `X-Amz-SignedHeaders`, split.
fn signed_headers(url: &str) -> Vec<String> {
    let query = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
    query
        .split('&')
        .find_map(|p| p.strip_prefix("X-Amz-SignedHeaders="))
        .expect("a presigned URL names its signed headers")
        .split("%3B")
        .map(str::to_owned)
        .collect()
}

/// PUTs `bytes` as the grant says: to its URL with exactly its headers.
async fn upload(http: &reqwest::Client, grant: &Presigned, bytes: &[u8]) -> reqwest::StatusCode {
    let mut put = http.put(&grant.url).body(bytes.to_vec());
    for (name, value) in &grant.headers {
        put = put.header(name, value);
    }
    put.send().await.unwrap().status()
}

async fn download(http: &reqwest::Client, grant: &Presigned) -> (reqwest::StatusCode, Vec<u8>) {
    let answer = http.get(&grant.url).send().await.unwrap();
    (answer.status(), answer.bytes().await.unwrap().to_vec())
}

#[tokio::test]
async fn bytes_go_up_and_down_through_presigned_urls_and_deletes_remove_them() {
    let (_, tables) = cinder_tests::moto::fresh_rooms_store().await;
    let objects = cinder_tests::moto::media_objects(&tables);
    let http = reqwest::Client::new();
    let now = Timestamp::now();
    let bytes: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let key = attachment(7, 3);
    let other = ObjectKey::Avatar {
        room: RoomId([1; 16]),
        media: MediaId([4; 16]),
    };

    let up = objects
        .upload_url(&key, bytes.len() as u64, now, limits::URL_TTL_SECS)
        .await
        .unwrap();
    assert!(
        signed_headers(&up.url).contains(&"content-length".to_owned()),
        "{}",
        up.url
    );
    assert_eq!(
        up.headers.get("content-length"),
        Some(&bytes.len().to_string()),
        "the client is told the exact length it must send"
    );
    assert!(up.url.contains(&format!("/{}/{key}?", objects.bucket())));
    assert!(
        up.url
            .contains(&format!("X-Amz-Expires={}", limits::URL_TTL_SECS))
    );
    assert!(upload(&http, &up, &bytes).await.is_success());

    let avatar = b"an avatar's ciphertext";
    let up = objects
        .upload_url(&other, avatar.len() as u64, now, limits::URL_TTL_SECS)
        .await
        .unwrap();
    assert!(upload(&http, &up, avatar).await.is_success());

    let down = objects
        .download_url(&key, now, limits::URL_TTL_SECS)
        .await
        .unwrap();
    assert!(down.headers.is_empty(), "a download needs no headers");
    assert_eq!(
        download(&http, &down).await,
        (reqwest::StatusCode::OK, bytes)
    );

    // Absent keys are not an error.
    objects.delete(&[key, attachment(8, 9)]).await.unwrap();
    assert_eq!(
        download(&http, &down).await.0,
        reqwest::StatusCode::NOT_FOUND
    );
    objects.delete(&[]).await.unwrap();
    let avatar_down = objects
        .download_url(&other, now, limits::URL_TTL_SECS)
        .await
        .unwrap();
    assert_eq!(
        download(&http, &avatar_down).await,
        (reqwest::StatusCode::OK, avatar.to_vec()),
        "only the named objects go"
    );
}

/// More keys than one `DeleteObjects` call takes: every batch is sent.
#[tokio::test]
async fn deletes_go_in_batches_of_a_thousand() {
    let (_, tables) = cinder_tests::moto::fresh_rooms_store().await;
    let objects = cinder_tests::moto::media_objects(&tables);
    let http = reqwest::Client::new();
    let now = Timestamp::now();
    let keys: Vec<ObjectKey> = (1..=2001).map(|n| attachment(n, 5)).collect();
    let (first, last) = (keys[0], keys[2000]);
    let mut downloads = Vec::new();
    for key in [first, last] {
        let up = objects
            .upload_url(&key, 4, now, limits::URL_TTL_SECS)
            .await
            .unwrap();
        assert!(upload(&http, &up, b"1234").await.is_success());
        downloads.push(
            objects
                .download_url(&key, now, limits::URL_TTL_SECS)
                .await
                .unwrap(),
        );
    }
    objects.delete(&keys).await.unwrap();
    for down in &downloads {
        assert_eq!(
            download(&http, down).await.0,
            reqwest::StatusCode::NOT_FOUND
        );
    }
}
