//! The enclave function's stores on DynamoDB, and its master secret from Secrets Manager.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};
use cinder_proto::accounts::{KsfParams, StoredEnclave};
use cinder_proto::{Blob, Timestamp};
use cinder_server::limits::Rate;
use cinder_server::store::{
    AccountRecord, AccountStore, LoginKey, NonceStore, RateLimitStore, SessionEntry, Sessions,
    StoreError,
};
use serde::{Deserialize, Serialize};

use crate::limits::DynamoLimits;
use crate::secrets::SecretValue;
use crate::{ConfigError, backend, conditional, from_item, n, remember_nonce, s, to_item};

/// The enclave function's tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTables {
    /// Accounts: partition `login`.
    pub accounts: String,
    /// Rate-limit counters: partition `id`, TTL `expires_at`.
    pub rate_limits: String,
    /// Spent login states: partition `id`, TTL `expires_at` (shared with the key directory).
    pub nonces: String,
}

impl AccountTables {
    /// Names with a common prefix, as the test harness uses.
    pub fn prefixed(prefix: &str) -> Self {
        Self {
            accounts: format!("{prefix}accounts"),
            rate_limits: format!("{prefix}rate-limits"),
            nonces: format!("{prefix}nonces"),
        }
    }
}

/// The enclave function's configuration.
#[derive(Debug)]
pub struct AccountsConfig {
    /// Where each record lives.
    pub tables: AccountTables,
    /// The master secret the server secrets derive from.
    pub master_secret: SecretValue,
}

impl AccountsConfig {
    /// Reads `ACCOUNTS_TABLE`, `RATE_LIMITS_TABLE`, `NONCES_TABLE` and `MASTER_SECRET`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &'static str| std::env::var(name).map_err(|_| ConfigError::Missing(name));
        Ok(Self {
            tables: AccountTables {
                accounts: var("ACCOUNTS_TABLE")?,
                rate_limits: var("RATE_LIMITS_TABLE")?,
                nonces: var("NONCES_TABLE")?,
            },
            master_secret: SecretValue::from_env("MASTER_SECRET")?,
        })
    }
}

/// Accounts, rate limits and spent login states on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoAccounts {
    client: Client,
    tables: AccountTables,
    limits: DynamoLimits,
}

impl DynamoAccounts {
    /// A store over an existing client.
    pub fn new(client: Client, tables: AccountTables) -> Self {
        let limits = DynamoLimits::new(client.clone(), tables.rate_limits.clone());
        Self {
            client,
            tables,
            limits,
        }
    }
}

/// An account item: the record with the enclave's fields lifted to the top level, so a
/// conditional update can test `version`.
#[derive(Serialize, Deserialize)]
struct AccountItem {
    login: LoginKey,
    registration: Blob,
    ksf: KsfParams,
    ciphertext: Blob,
    version: u64,
    /// The open sessions; absent on an account from before sessions were listed.
    #[serde(default)]
    sessions: Vec<SessionEntry>,
    /// Their version; absent (0) likewise.
    #[serde(default)]
    sver: u64,
}

#[async_trait]
impl AccountStore for DynamoAccounts {
    async fn create(&self, record: &AccountRecord) -> Result<(), StoreError> {
        let item = AccountItem {
            login: record.login,
            registration: record.registration.clone(),
            ksf: record.ksf,
            ciphertext: record.enclave.ciphertext.clone(),
            version: record.enclave.version,
            sessions: record.sessions.open.clone(),
            sver: record.sessions.version,
        };
        self.client
            .put_item()
            .table_name(&self.tables.accounts)
            .set_item(Some(to_item(&item)?))
            .condition_expression("attribute_not_exists(login)")
            .send()
            .await
            .map_err(conditional)?;
        Ok(())
    }

    async fn account(&self, login: &LoginKey) -> Result<Option<AccountRecord>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.tables.accounts)
            .key("login", s(login))
            .consistent_read(true)
            .send()
            .await
            .map_err(backend)?;
        let Some(item) = out.item else {
            return Ok(None);
        };
        let item: AccountItem = from_item(item)?;
        Ok(Some(AccountRecord {
            login: item.login,
            registration: item.registration,
            ksf: item.ksf,
            enclave: StoredEnclave {
                ciphertext: item.ciphertext,
                version: item.version,
            },
            sessions: Sessions {
                version: item.sver,
                open: item.sessions,
            },
        }))
    }

    async fn put_enclave(
        &self,
        login: &LoginKey,
        ciphertext: &Blob,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        self.client
            .update_item()
            .table_name(&self.tables.accounts)
            .key("login", s(login))
            .update_expression("SET ciphertext = :c, version = :next")
            .condition_expression("version = :expected")
            .expression_attribute_values(":c", s(cinder_proto::encoding::encode(&ciphertext.0)))
            .expression_attribute_values(":next", n(expected_version + 1))
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await
            .map_err(conditional)?;
        Ok(expected_version + 1)
    }

    async fn replace_credentials(
        &self,
        login: &LoginKey,
        registration: &Blob,
        ksf: KsfParams,
        ciphertext: &Blob,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let ksf = serde_dynamo::to_attribute_value(ksf)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        self.client
            .update_item()
            .table_name(&self.tables.accounts)
            .key("login", s(login))
            // Ends every session too: the list empties and its version moves on, so a
            // login finishing meanwhile loses its write and finds the new record.
            .update_expression(
                "SET registration = :r, ksf = :k, ciphertext = :c, version = :next, \
                 sessions = :none, sver = if_not_exists(sver, :zero) + :one",
            )
            .condition_expression("version = :expected")
            .expression_attribute_values(":none", AttributeValue::L(Vec::new()))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":r", s(cinder_proto::encoding::encode(&registration.0)))
            .expression_attribute_values(":k", ksf)
            .expression_attribute_values(":c", s(cinder_proto::encoding::encode(&ciphertext.0)))
            .expression_attribute_values(":next", n(expected_version + 1))
            .expression_attribute_values(":expected", n(expected_version))
            .send()
            .await
            .map_err(conditional)?;
        Ok(expected_version + 1)
    }

    async fn put_sessions(
        &self,
        login: &LoginKey,
        open: &[SessionEntry],
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let open = serde_dynamo::to_attribute_value(open)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let request = self
            .client
            .update_item()
            .table_name(&self.tables.accounts)
            .key("login", s(login))
            .update_expression("SET sessions = :s, sver = :next")
            .expression_attribute_values(":s", open)
            .expression_attribute_values(":next", n(expected_version + 1));
        // An account from before sessions were listed has no `sver`: version 0.
        let request = if expected_version == 0 {
            request.condition_expression(
                "attribute_exists(login) AND (attribute_not_exists(sver) OR sver = :expected)",
            )
        } else {
            request.condition_expression("sver = :expected")
        }
        .expression_attribute_values(":expected", n(expected_version));
        request.send().await.map_err(conditional)?;
        Ok(expected_version + 1)
    }

    async fn delete_account(&self, login: &LoginKey) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.accounts)
            .key("login", s(login))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(backend)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

#[async_trait]
impl RateLimitStore for DynamoAccounts {
    async fn take(&self, key: &str, rate: Rate, now_ms: u64) -> Result<Option<u64>, StoreError> {
        self.limits.take(key, rate, now_ms).await
    }
}

#[async_trait]
impl NonceStore for DynamoAccounts {
    async fn remember(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        remember_nonce(&self.client, &self.tables.nonces, key, expires_at, now).await
    }
}
