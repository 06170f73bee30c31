//! The AWS store: Cinder's storage traits on DynamoDB, as the Lambda functions run them.
//!
//! # Layout
//! - [`sdk_config`]: the AWS SDK configuration every function builds its clients from.
//! - [`Config`]: the table names, read once from the environment.
//! - [`DynamoStore`]: one client, every record store; items mapped with `serde_dynamo`.
//! - `accounts` (feature `accounts`): the enclave function's stores and master secret.
//! - [`rooms`]: the spine, shards and media functions' stores.
//! - `media` (feature `media`): the media and burn functions' object store on S3.
//! - `burn` (feature `burn`): which objects a change to the shards table dooms, and the
//!   burn function's handling of a stream batch.
//! - `calls` (feature `calls`): where the TURN relays are (the relays table).
//! - `secrets` (feature `secrets`): a function's long-term secret, read from its environment.
//! - [`limits`]: rate-limit buckets, shared by every function that limits an action.
//! - [`schema`]: each table's key schema, TTL attribute and stream, the same as
//!   `template.yaml`'s, for test harnesses and local tooling that create tables.
//!
//! DynamoDB's TTL deletes expired items lazily (typically within two days), so every read
//! here filters on `expires_at` against the caller's `now`, and conditional writes treat an
//! expired item as absent.

#[cfg(feature = "accounts")]
pub mod accounts;
#[cfg(feature = "burn")]
pub mod burn;
#[cfg(feature = "calls")]
pub mod calls;
pub mod limits;
#[cfg(feature = "live")]
pub mod live;
#[cfg(feature = "media")]
pub mod media;
pub mod rooms;
pub mod schema;
#[cfg(feature = "secrets")]
pub mod secrets;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use aws_smithy_http_client::HttpClientError;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::rustls_provider::CryptoMode;
use aws_smithy_http_client::tls::{Provider, TlsContext, TrustStore};
use aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use cinder_proto::{Envelope, EnvelopeId, KeyBundle, Timestamp, UserId};
use cinder_server::store::{InboxStore, KeyStore, NonceStore, StoreError};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

/// How many lookups of a batch run at once.
const LOOKUP_CONCURRENCY: usize = 16;

/// Why configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A required variable is unset or not Unicode.
    #[error("environment variable {0} must be set")]
    Missing(&'static str),
    /// A variable is set but unusable.
    #[error("environment variable {0} is not valid")]
    Invalid(&'static str),
}

/// Table names, one per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tables {
    /// Key bundles: partition `user_id`, sort `version`.
    pub keys: String,
    /// Invite inboxes: partition `owner`, sort `id`, TTL `expires_at`.
    pub inbox: String,
    /// Spent request nonces: partition `id`, TTL `expires_at`.
    pub nonces: String,
    /// Rate-limit buckets: partition `id`, TTL `expires_at`.
    pub rate_limits: String,
}

impl Tables {
    /// Names with a common prefix, as the test harness and local tools use.
    pub fn prefixed(prefix: &str) -> Self {
        Self {
            keys: format!("{prefix}keys"),
            inbox: format!("{prefix}inbox"),
            nonces: format!("{prefix}nonces"),
            rate_limits: format!("{prefix}rate-limits"),
        }
    }
}

/// The AWS store's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where each record lives.
    pub tables: Tables,
}

impl Config {
    /// Reads `KEYS_TABLE`, `INBOX_TABLE`, `NONCES_TABLE` and `RATE_LIMITS_TABLE`. Endpoint, region and
    /// credentials come from the AWS SDK's own variables (`AWS_ENDPOINT_URL`, …).
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ConfigError::Missing(name));
        Ok(Self {
            tables: Tables {
                keys: var("KEYS_TABLE")?,
                inbox: var("INBOX_TABLE")?,
                nonces: var("NONCES_TABLE")?,
                rate_limits: var("RATE_LIMITS_TABLE")?,
            },
        })
    }
}

/// Every Cinder record store on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
    limits: limits::DynamoLimits,
}

impl DynamoStore {
    /// A store over an existing client.
    pub fn new(client: Client, tables: Tables) -> Self {
        let limits = limits::DynamoLimits::new(client.clone(), tables.rate_limits.clone());
        Self {
            client,
            tables,
            limits,
        }
    }

    /// A store configured the way a Lambda is: [`sdk_config`], from the environment.
    pub async fn from_env(config: Config) -> Result<Self, HttpClientError> {
        Ok(Self::new(Client::new(&sdk_config().await?), config.tables))
    }
}

/// The roots of Amazon Trust Services, the CA of every AWS endpoint: Amazon Root CA 1 to 4
/// and Starfield Services Root G2, the set it recommends for a custom trust store.
const AMAZON_TRUST_SERVICES: &[u8] = include_bytes!("amazon-trust-services.pem");

/// The AWS SDK configuration a function builds its clients from, once per instance.
///
/// Retries, timeouts, the endpoint (`AWS_ENDPOINT_URL`) and the rest come from the
/// environment and profile as `aws_config::load_defaults` reads them; two things differ,
/// each because a cold start paid for what a Lambda function never uses:
///
/// - the region is `AWS_REGION` (or `AWS_DEFAULT_REGION`), and the credentials are
///   `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and `AWS_SESSION_TOKEN`: where Lambda puts
///   the execution role's, and where the default chains find them first. The chains would
///   first build their other sources (profile, SSO, web identity with its own STS client,
///   the container endpoint, IMDS), none of which a Lambda uses;
/// - every client shares one HTTPS client, which trusts only Amazon Trust Services' five
///   roots (`amazon-trust-services.pem`, compiled in), the CA of every AWS endpoint. The
///   default client reads the platform's whole certificate store from disk (the bundle and
///   every file in each certificate directory) when the first client is built, and parses
///   all of it again for every client and connection setting, for roots no AWS endpoint
///   uses and that could otherwise vouch for one.
pub async fn sdk_config() -> Result<aws_config::SdkConfig, HttpClientError> {
    use aws_config::environment::{
        EnvironmentVariableCredentialsProvider, EnvironmentVariableRegionProvider,
    };
    Ok(aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(EnvironmentVariableRegionProvider::new())
        .credentials_provider(EnvironmentVariableCredentialsProvider::new())
        .http_client(https_client()?)
        .load()
        .await)
}

/// The SDK's default HTTPS client (rustls on aws-lc, proxies from the environment) with
/// [`AMAZON_TRUST_SERVICES`] as its only roots, and without its throwaway connector.
fn https_client() -> Result<SharedHttpClient, HttpClientError> {
    let context = TlsContext::builder()
        .with_trust_store(TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES))
        .build()?;
    Ok(SharedHttpClient::new(NoThrowawayConnector(
        smithy_https_client(context),
    )))
}

/// What `aws-smithy-runtime` builds as its default HTTPS client, with `context`'s roots.
fn smithy_https_client(context: TlsContext) -> SharedHttpClient {
    aws_smithy_http_client::Builder::new().build_with_connector_fn(move |settings, components| {
        let mut connector = aws_smithy_http_client::Connector::builder()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .tls_context(context.clone());
        connector.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            connector.set_sleep_impl(components.sleep_impl());
        }
        connector.set_proxy_config(Some(ProxyConfig::from_env()));
        connector.build()
    })
}

/// The SDK's HTTPS client builds a whole connector (TLS configuration, roots and all) each
/// time an SDK client is made, and drops it: that loads the platform's certificate store
/// while the function starts rather than at its first request. With the roots compiled in
/// there is nothing to load early, so this skips that connector; the connectors requests
/// use are built and cached by the inner client, as before.
#[derive(Debug)]
struct NoThrowawayConnector(SharedHttpClient);

impl HttpClient for NoThrowawayConnector {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        self.0.http_connector(settings, components)
    }

    fn connector_metadata(&self) -> Option<ConnectorMetadata> {
        self.0.connector_metadata()
    }
}

/// Error codes AWS answers when it is throttling or briefly failing (DynamoDB's, then S3's):
/// the SDK's standard retry mode retries these itself, with exponential backoff and jitter,
/// so one that reaches the store has outlasted every attempt.
const TRANSIENT_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "ServiceUnavailable",
    "SlowDown",
    "InternalError",
    "RequestTimeout",
];

/// Maps a failed call to [`StoreError::Unavailable`] if it was throttling, a transient
/// service error, a timeout or a connection that failed (the caller may try again later),
/// and to [`StoreError::Backend`] otherwise.
pub(crate) fn backend<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let transient = match &err {
        SdkError::TimeoutError(_) => true,
        SdkError::DispatchFailure(failure) => failure.is_timeout() || failure.is_io(),
        SdkError::ServiceError(_) => err.code().is_some_and(|c| TRANSIENT_CODES.contains(&c)),
        _ => false,
    };
    let text = DisplayErrorContext(err).to_string();
    if transient {
        StoreError::Unavailable(text)
    } else {
        StoreError::Backend(text)
    }
}

/// Maps a failed conditional write to [`StoreError::Conflict`], anything else to a backend error.
pub(crate) fn conditional<E, R>(err: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    match err.as_service_error().and_then(ProvideErrorMetadata::code) {
        Some("ConditionalCheckFailedException") => StoreError::Conflict,
        _ => backend(err),
    }
}

/// Maps a cancelled transaction to [`StoreError::Conflict`] when it lost a conditional
/// write: a condition failed, or a concurrent transaction on one of its items won the race,
/// which is the same lost write to the caller (it re-reads and retries). Throttling is
/// [`StoreError::Unavailable`]; anything else, validation included, is a backend error.
pub(crate) fn transaction<R>(err: SdkError<TransactWriteItemsError, R>) -> StoreError
where
    R: std::fmt::Debug + Send + Sync + 'static,
{
    if let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) =
        err.as_service_error()
    {
        let reasons: Vec<&str> = cancelled
            .cancellation_reasons()
            .iter()
            .filter_map(|r| r.code())
            .filter(|code| *code != "None")
            .collect();
        if !reasons.is_empty()
            && reasons
                .iter()
                .all(|code| matches!(*code, "ConditionalCheckFailed" | "TransactionConflict"))
        {
            return StoreError::Conflict;
        }
        // Cancelled because an item's partition was throttled: nothing was written, and
        // the same transaction may go through later.
        if reasons
            .iter()
            .any(|code| matches!(*code, "ThrottlingError" | "ProvisionedThroughputExceeded"))
        {
            return StoreError::Unavailable(DisplayErrorContext(err).to_string());
        }
    }
    backend(err)
}

pub(crate) fn to_item<T: Serialize>(
    value: &T,
) -> Result<std::collections::HashMap<String, AttributeValue>, StoreError> {
    serde_dynamo::to_item(value).map_err(|e| StoreError::Backend(e.to_string()))
}

pub(crate) fn from_item<T: for<'de> Deserialize<'de>>(
    item: std::collections::HashMap<String, AttributeValue>,
) -> Result<T, StoreError> {
    serde_dynamo::from_item(item).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn s(value: impl ToString) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

pub(crate) fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

#[async_trait]
impl cinder_server::store::RateLimitStore for DynamoStore {
    async fn take(
        &self,
        key: &str,
        rate: cinder_server::limits::Rate,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        self.limits.take(key, rate, now_ms).await
    }
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn insert(&self, bundle: &KeyBundle) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.keys)
            .set_item(Some(to_item(bundle)?))
            .condition_expression("attribute_not_exists(user_id)")
            .send()
            .await
            .map_err(conditional)?;
        Ok(())
    }

    async fn current(&self, user: &UserId) -> Result<Option<KeyBundle>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.keys)
            .key_condition_expression("user_id = :u")
            .expression_attribute_values(":u", s(user))
            .scan_index_forward(false)
            .limit(1)
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .next()
            .map(from_item)
            .transpose()
    }

    async fn current_many(&self, users: &[UserId]) -> Result<Vec<KeyBundle>, StoreError> {
        let found: Vec<Option<KeyBundle>> = futures::stream::iter(users.iter().copied())
            .map(|u| async move { self.current(&u).await })
            .buffer_unordered(LOOKUP_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(found.into_iter().flatten().collect())
    }

    async fn chain(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<KeyBundle>, StoreError> {
        let out = self
            .client
            .query()
            .table_name(&self.tables.keys)
            .key_condition_expression("user_id = :u AND version > :v")
            .expression_attribute_values(":u", s(user))
            .expression_attribute_values(":v", n(after))
            .scan_index_forward(true)
            .limit(i32::try_from(limit).unwrap_or(i32::MAX))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        out.items
            .unwrap_or_default()
            .into_iter()
            .map(from_item)
            .collect()
    }
}

#[async_trait]
impl NonceStore for DynamoStore {
    async fn remember(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        remember_nonce(&self.client, &self.tables.nonces, key, expires_at, now).await
    }
}

/// The replay check as one conditional put; shared by every store that spends nonces.
pub(crate) async fn remember_nonce(
    client: &Client,
    table: &str,
    key: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let put = client
        .put_item()
        .table_name(table)
        .item("id", s(key))
        .item("expires_at", n(expires_at.0))
        // TTL may not have deleted an expired nonce yet; such a row no longer counts.
        .condition_expression("attribute_not_exists(id) OR expires_at <= :now")
        .expression_attribute_values(":now", n(now.0))
        .send()
        .await;
    match put.map_err(conditional) {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e),
    }
}

impl DynamoStore {
    /// Deletes an envelope [`InboxStore::put`] stored and will not keep.
    async fn take_back(&self, owner: &UserId, envelope: &Envelope) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tables.inbox)
            .key("owner", s(owner))
            .key("id", s(envelope.id))
            .send()
            .await
            .map_err(backend)?;
        Ok(())
    }
}

/// An inbox item: the envelope plus its partition key.
#[derive(Serialize, Deserialize)]
struct InboxItem {
    owner: UserId,
    #[serde(flatten)]
    envelope: Envelope,
}

#[async_trait]
impl InboxStore for DynamoStore {
    /// Puts the envelope, then counts the inbox (a consistent read) and takes the envelope
    /// back out if that count is over `max`. No lock, and never more than `max`: of the
    /// envelopes that stay, the one put last was counted with all the others in place, so
    /// they number at most `max`. Concurrent drops past the cap may all be turned away
    /// (each counting the others before they left), which a retry settles; none is lost
    /// once accepted. If the count fails, the envelope is taken back out before the error
    /// is returned, so a failed drop leaves nothing behind (unless that delete fails too).
    async fn put(
        &self,
        owner: &UserId,
        envelope: &Envelope,
        max: usize,
    ) -> Result<bool, StoreError> {
        let item = InboxItem {
            owner: *owner,
            envelope: envelope.clone(),
        };
        self.client
            .put_item()
            .table_name(&self.tables.inbox)
            .set_item(Some(to_item(&item)?))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(conditional)?;
        let over = match self.count(owner, envelope.created_at).await {
            Ok(count) => count > max,
            Err(e) => {
                if let Err(undo) = self.take_back(owner, envelope).await {
                    tracing::error!(cause = ?undo, "a failed drop's envelope stays in the inbox");
                }
                return Err(e);
            }
        };
        if !over {
            return Ok(true);
        }
        self.take_back(owner, envelope).await?;
        Ok(false)
    }

    async fn list(
        &self,
        owner: &UserId,
        after: Option<EnvelopeId>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Envelope>, StoreError> {
        let mut out = Vec::with_capacity(limit);
        let mut start = None;
        // A filtered Query page can come back short, so keep reading until the page is full
        // or the partition is exhausted.
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.tables.inbox)
                .expression_attribute_values(":o", s(owner))
                .filter_expression("expires_at > :now")
                .expression_attribute_values(":now", n(now.0))
                .limit(i32::try_from(limit - out.len()).unwrap_or(i32::MAX))
                .consistent_read(true)
                .set_exclusive_start_key(start.take());
            query = match after {
                Some(after) => query
                    .key_condition_expression("#o = :o AND id > :after")
                    .expression_attribute_values(":after", s(after)),
                None => query.key_condition_expression("#o = :o"),
            };
            let page = query
                .expression_attribute_names("#o", "owner")
                .send()
                .await
                .map_err(backend)?;
            for item in page.items.unwrap_or_default() {
                out.push(from_item::<InboxItem>(item)?.envelope);
            }
            start = page.last_evaluated_key;
            if out.len() >= limit || start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn count(&self, owner: &UserId, now: Timestamp) -> Result<usize, StoreError> {
        let mut total = 0usize;
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.tables.inbox)
                .key_condition_expression("#o = :o")
                .filter_expression("expires_at > :now")
                .expression_attribute_names("#o", "owner")
                .expression_attribute_values(":o", s(owner))
                .expression_attribute_values(":now", n(now.0))
                .select(Select::Count)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(backend)?;
            total += usize::try_from(page.count).unwrap_or(0);
            start = page.last_evaluated_key;
            if start.is_none() {
                return Ok(total);
            }
        }
    }

    async fn delete(
        &self,
        owner: &UserId,
        id: &EnvelopeId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.tables.inbox)
            .key("owner", s(owner))
            .key("id", s(id))
            .condition_expression("expires_at > :now")
            .expression_attribute_values(":now", n(now.0))
            .send()
            .await;
        match deleted.map_err(conditional) {
            Ok(_) => Ok(true),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::{ConfigBag, RuntimeComponentsBuilder};

    #[tokio::test]
    async fn the_sdk_trusts_the_five_amazon_roots_and_they_parse() {
        let pem = std::str::from_utf8(AMAZON_TRUST_SERVICES).unwrap();
        assert_eq!(pem.matches("-----BEGIN CERTIFICATE-----").count(), 5);
        // The SDK's own check builds a connector, which parses every root (panicking on
        // one that does not): the check the functions' clients now skip.
        let context = TlsContext::builder()
            .with_trust_store(TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES))
            .build()
            .unwrap();
        smithy_https_client(context)
            .validate_base_client_config(&RuntimeComponentsBuilder::new("test"), &ConfigBag::base())
            .unwrap();
    }
}
