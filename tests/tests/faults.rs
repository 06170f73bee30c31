//! Faults injected into the store behind the real routers, over real HTTP
//! (`cinder_tests::faults`): what a failure answers, and what the client does with it.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use cinder_client::{Client, Identity};
use cinder_proto::{ErrorCode, Timestamp};
use cinder_tests::faults::{Fault, Faults};
use cinder_tests::router::send;
use cinder_tests::server::{TestServer, start_faulty};

const MASTER: &[u8] = b"faults test master secret, thirty-two bytes or more";

async fn server() -> (TestServer, Arc<Faults>) {
    let faults = Faults::new();
    (start_faulty(MASTER, faults.clone()).await, faults)
}

async fn published(client: &Client) -> Identity {
    let me = Identity::generate(Timestamp::now()).unwrap();
    client.publish(&me.bundle).await.unwrap();
    me
}

#[tokio::test]
async fn a_failing_store_answers_503_with_retry_after_or_500_and_never_its_cause() {
    let (s, faults) = server().await;
    let me = published(&s.client()).await;
    let path = format!("/keys/{}", me.user_id());

    faults.fail_nth("keys.current", 1, Fault::Unavailable);
    let busy = send(&s.app, "GET", &path, &[], Vec::new()).await;
    assert_eq!(busy.status, 503, "{:?}", busy.json);
    assert_eq!(busy.code(), "unavailable");
    assert_eq!(busy.headers["retry-after"], "1");
    let message = busy.json["message"].as_str().unwrap();
    assert!(!message.contains("injected"), "{message}");

    faults.fail_nth("keys.current", 1, Fault::Backend);
    let failed = send(&s.app, "GET", &path, &[], Vec::new()).await;
    assert_eq!(failed.status, 500, "{:?}", failed.json);
    assert_eq!(failed.code(), "internal");
    assert!(!failed.headers.contains_key("retry-after"));
    assert_eq!(
        failed.json["message"],
        "the server failed to handle this request"
    );

    let fine = send(&s.app, "GET", &path, &[], Vec::new()).await;
    assert_eq!(fine.status, 200, "{:?}", fine.json);
}

#[tokio::test]
async fn the_client_reads_through_a_503_and_returns_a_writes() {
    let (s, faults) = server().await;
    let client = s.client();
    let me = published(&client).await;
    let to = published(&client).await;

    let before = faults.calls("keys.current");
    faults.fail_nth("keys.current", 1, Fault::Unavailable);
    let bundle = client.key(me.user_id()).await.unwrap();
    assert_eq!(bundle.user_id, me.user_id());
    assert_eq!(
        faults.calls("keys.current") - before,
        2,
        "one 503, one retry"
    );

    // A drop that failed before it was stored: the 503 reaches the caller, and nothing
    // waits in the inbox.
    faults.fail_nth("inbox.put", 1, Fault::Unavailable);
    let err = client
        .drop_envelope(&me, to.user_id(), vec![1; 32], None)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unavailable), "{err}");
    assert!(
        client
            .inbox(&to, None, None)
            .await
            .unwrap()
            .envelopes
            .is_empty()
    );
}
