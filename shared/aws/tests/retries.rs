//! The SDK's retries, as the functions configure them ([`cinder_aws::sdk_config`]), against
//! DynamoDB answers canned by `aws-smithy-mocks`: throttling is retried with backoff and
//! jitter and then goes through; throttling that outlasts every attempt, and a transaction
//! cancelled for throttling, reach the router as [`StoreError::Unavailable`] (a `503`);
//! a lost condition is never retried.
//!
//! The responses are real DynamoDB error bodies (`__type` and `message`, as the service
//! sends them), so the SDK's own deserialiser and retry classifier decide, not the test.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use aws_sdk_dynamodb::config::retry::RetryMode;
use aws_sdk_dynamodb::config::{Credentials, Region};
use aws_sdk_dynamodb::operation::put_item::PutItemOutput;
use aws_sdk_dynamodb::operation::query::QueryOutput;
use aws_smithy_mocks::{MockResponseInterceptor, Rule, RuleMode, create_mock_http_client, mock};
use cinder_aws::rooms::{DynamoRooms, RoomTables};
use cinder_aws::{DynamoStore, Tables};
use cinder_proto::rooms::Room;
use cinder_proto::{Blob, RoomId, Timestamp, UserId, VerifyKey};
use cinder_server::store::{KeyStore, NonceStore, RoomStore, StoreError};

type Client = aws_sdk_dynamodb::Client;

/// What DynamoDB answers when a partition is over its throughput.
const THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded."}"#;

/// What DynamoDB answers when the account's request rate is over its limit.
const THROTTLING: &str = r#"{"__type":"com.amazon.coral.availability#ThrottlingException","message":"Rate of requests exceeds the allowed throughput."}"#;

/// A lost condition.
const CONDITION_FAILED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException","message":"The conditional request failed"}"#;

/// A transaction cancelled because one of its items was throttled.
const TRANSACTION_THROTTLED: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#TransactionCanceledException","message":"Transaction cancelled, please refer cancellation reasons for specific reasons [None, ThrottlingError]","CancellationReasons":[{"Code":"None"},{"Code":"ThrottlingError","Message":"Throughput exceeds the current capacity for one or more global secondary indexes."}]}"#;

/// A client built exactly as the functions build theirs, from [`cinder_aws::sdk_config`],
/// with only the region, credentials and HTTP client replaced (the mock answers every
/// attempt; nothing leaves the process).
async fn client(rules: &[&Rule]) -> Client {
    let mut interceptor = MockResponseInterceptor::new().rule_mode(RuleMode::MatchAny);
    for rule in rules {
        interceptor = interceptor.with_rule(rule);
    }
    let shared = cinder_aws::sdk_config().await.unwrap();
    let conf = aws_sdk_dynamodb::config::Builder::from(&shared)
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDTEST", "secret", None, None, "test"))
        .http_client(create_mock_http_client())
        .interceptor(interceptor)
        .build();
    Client::from_conf(conf)
}

fn store(client: Client) -> DynamoStore {
    DynamoStore::new(client, Tables::prefixed("t-"))
}

#[tokio::test]
async fn the_functions_use_the_standard_retry_mode_with_jittered_backoff() {
    let shared = cinder_aws::sdk_config().await.unwrap();
    let retry = shared.retry_config().expect("a retry configuration");
    assert_eq!(retry.mode(), RetryMode::Standard);
    assert_eq!(retry.max_attempts(), 3);
    assert!(
        !retry.use_static_exponential_base(),
        "backoff must be jittered"
    );
}

#[tokio::test]
async fn a_throttled_read_is_retried_and_then_answers() {
    let query = mock!(Client::query)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .times(2)
        .output(|| QueryOutput::builder().count(0).build())
        .build();
    let store = store(client(&[&query]).await);
    let user = UserId([7; 16]);
    assert!(store.current(&user).await.unwrap().is_none());
    assert_eq!(
        query.num_calls(),
        3,
        "two throttled attempts, then the answer"
    );
}

#[tokio::test]
async fn a_read_throttled_past_every_attempt_is_unavailable() {
    let query = mock!(Client::query)
        .sequence()
        .http_status(400, Some(THROTTLING.into()))
        .repeatedly()
        .build();
    let store = store(client(&[&query]).await);
    let read = store.current(&UserId([7; 16])).await;
    assert!(matches!(read, Err(StoreError::Unavailable(_))), "{read:?}");
    assert_eq!(query.num_calls(), 3, "the standard mode's three attempts");
}

#[tokio::test]
async fn a_throttled_conditional_write_is_retried_and_then_goes_through() {
    let put = mock!(Client::put_item)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .output(|| PutItemOutput::builder().build())
        .build();
    let store = store(client(&[&put]).await);
    let fresh = store
        .remember("n1", Timestamp(200), Timestamp(100))
        .await
        .unwrap();
    assert!(fresh, "the nonce was stored on the second attempt");
    assert_eq!(put.num_calls(), 2);
}

#[tokio::test]
async fn a_conditional_write_throttled_past_every_attempt_is_unavailable() {
    let put = mock!(Client::put_item)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .repeatedly()
        .build();
    let store = store(client(&[&put]).await);
    let write = store.remember("n1", Timestamp(200), Timestamp(100)).await;
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "{write:?}"
    );
    assert_eq!(put.num_calls(), 3);
}

#[tokio::test]
async fn a_lost_condition_is_not_retried_and_stays_a_conflict() {
    let put = mock!(Client::put_item)
        .sequence()
        .http_status(400, Some(CONDITION_FAILED.into()))
        .repeatedly()
        .build();
    let store = store(client(&[&put]).await);
    let fresh = store
        .remember("n1", Timestamp(200), Timestamp(100))
        .await
        .unwrap();
    assert!(!fresh, "a replay, not an outage");
    assert_eq!(put.num_calls(), 1);
}

#[tokio::test]
async fn a_transaction_cancelled_for_throttling_is_unavailable_not_a_conflict() {
    let transact = mock!(Client::transact_write_items)
        .sequence()
        .http_status(400, Some(TRANSACTION_THROTTLED.into()))
        .repeatedly()
        .build();
    let rooms = DynamoRooms::new(client(&[&transact]).await, RoomTables::prefixed("t-"));
    let mut base = [0x66; 32];
    base[0] = 0x58; // the Ed25519 base point, a valid key
    let key = VerifyKey::from_bytes(&base).unwrap();
    let room = Room {
        room_id: RoomId([1; 16]),
        version: 2,
        spine: Blob(vec![2; 32]),
        admin_key: key,
        member_key: key,
        channels: Default::default(),
    };
    let write = rooms.update_room(&room).await;
    // A conflict would send the client to re-read and re-apply its change; this one
    // lost to no writer, and must be told to come back instead.
    assert!(
        matches!(write, Err(StoreError::Unavailable(_))),
        "{write:?}"
    );
}

/// The inbox's drop is three calls (put, count, and a delete if over the cap): a count that
/// fails after the put must not leave the envelope behind while the sender is told the drop
/// failed (it would send again, and the recipient get it twice).
#[tokio::test]
async fn a_drop_whose_count_fails_takes_its_envelope_back_out() {
    use aws_sdk_dynamodb::operation::delete_item::DeleteItemOutput;
    use cinder_proto::{Envelope, EnvelopeId};
    use cinder_server::store::InboxStore;

    let put = mock!(Client::put_item).then_output(|| PutItemOutput::builder().build());
    let count = mock!(Client::query)
        .sequence()
        .http_status(400, Some(THROTTLED.into()))
        .repeatedly()
        .build();
    let delete = mock!(Client::delete_item)
        .match_requests(|req| {
            req.key()
                .and_then(|k| k.get("id"))
                .and_then(|id| id.as_s().ok())
                .is_some_and(|id| id == &EnvelopeId::new(100_000, [9; 8]).to_string())
        })
        .then_output(|| DeleteItemOutput::builder().build());
    let store = store(client(&[&put, &count, &delete]).await);
    let envelope = Envelope {
        id: EnvelopeId::new(100_000, [9; 8]),
        sender: UserId([1; 16]),
        created_at: Timestamp(100),
        expires_at: Timestamp(200),
        sealed: Blob(vec![1; 8]),
    };
    let dropped = store.put(&UserId([2; 16]), &envelope, 256).await;
    assert!(
        matches!(dropped, Err(StoreError::Unavailable(_))),
        "{dropped:?}"
    );
    assert_eq!(put.num_calls(), 1);
    assert_eq!(count.num_calls(), 3);
    assert_eq!(delete.num_calls(), 1, "the envelope was taken back out");
}
