//! The embedded store: Cinder's storage traits on SQLite, one file on disk.
//!
//! # Layout
//! - [`SqliteStore`]: one writing connection behind a mutex, and (on a file) a small pool of
//!   read-only connections beside it, so reads never queue behind writes: WAL lets any
//!   number of readers proceed while the one writer writes. Every call runs on tokio's
//!   blocking pool so the async runtime never waits on disk.
//! - `schema`: the tables, versioned with `PRAGMA user_version`.
//! - trait impls: one block per record store, in the order of `cinder_server::store`.
//!
//! Expired rows are filtered on every read and swept now and then on writes, which is
//! what DynamoDB's lazy TTL deletion forces on the AWS store too.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use cinder_proto::RoomId;
use cinder_proto::accounts::{KsfParams, StoredEnclave};
use cinder_proto::media::ObjectKey;
use cinder_proto::rooms::{Room, Shard, SpineEntry};
use cinder_proto::{Blob, Envelope, EnvelopeId, KeyBundle, Timestamp, UserId};
use cinder_server::limits::{self, Decision, Rate};
use cinder_server::store::{
    AccountRecord, AccountStore, ChannelRef, InboxStore, KeyStore, LoginKey, NonceStore,
    RateLimitStore, RoomStore, SessionEntry, Sessions, ShardStore, StoreError,
};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use tokio::sync::Semaphore;

/// Sweep expired rows once per this many writes.
const SWEEP_EVERY: u64 = 256;

/// Read-only connections [`SqliteStore::open`] keeps beside the writer.
pub const DEFAULT_READERS: usize = 4;

/// How long a connection waits for a lock before giving up with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS key_bundles (
    user_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    bundle  TEXT NOT NULL,
    PRIMARY KEY (user_id, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nonces (
    id         TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inbox (
    owner      TEXT NOT NULL,
    id         TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    envelope   TEXT NOT NULL,
    PRIMARY KEY (owner, id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
    login        TEXT PRIMARY KEY,
    registration BLOB NOT NULL,
    ksf          TEXT NOT NULL,
    enclave      BLOB NOT NULL,
    version      INTEGER NOT NULL,
    -- The open sessions (JSON) and their version (schema 7).
    sessions     TEXT NOT NULL DEFAULT '[]',
    sver         INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
-- Rate limits: each bucket's time in ms (schema 7; the fixed-window counters of
-- `rate_limits` before it are dropped).
DROP TABLE IF EXISTS rate_limits;
CREATE TABLE IF NOT EXISTS rate_buckets (
    id         TEXT PRIMARY KEY,
    tat        INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS rooms (
    room_id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    -- NULL once deleted: the row stays as a tombstone so the id is never reused.
    room    TEXT
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shard_counters (
    channel TEXT PRIMARY KEY,
    next    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS shards (
    channel TEXT NOT NULL,
    number  INTEGER NOT NULL,
    burn_at INTEGER NOT NULL,
    -- NULL once deleted: the number stays taken until the message would have burnt.
    -- NULL too while the number is held: then `hold` is the hold's proof, and `burn_at`
    -- when the hold lapses.
    shard   TEXT,
    hold    BLOB,
    PRIMARY KEY (channel, number)
) WITHOUT ROWID;
-- Every version's sealed spine, written in the same transaction as the room row. A rowid
-- table, unlike the others: its rows hold spines of up to 128 KiB, and SQLite advises
-- against WITHOUT ROWID for rows that large.
CREATE TABLE IF NOT EXISTS room_spines (
    room_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    spine   BLOB NOT NULL,
    PRIMARY KEY (room_id, version)
);
-- The media each message links, until the dev server has deleted the files: due when the
-- message burns, or at once when it is deleted (`due_at` 0).
CREATE TABLE IF NOT EXISTS shard_media (
    channel  TEXT NOT NULL,
    number   INTEGER NOT NULL,
    media_id TEXT NOT NULL,
    due_at   INTEGER NOT NULL,
    PRIMARY KEY (channel, number, media_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS shard_media_due ON shard_media (due_at);
PRAGMA user_version = 7;
";

/// The schema version this build writes; older files are upgraded in place.
const SCHEMA_VERSION: i64 = 7;

/// Why the store could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// SQLite refused the file or the schema.
    #[error("cannot open the SQLite store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The file was written by a newer Cinder.
    #[error("the SQLite store has schema version {0}, newer than this build understands")]
    TooNew(i64),
    /// An older file could not be upgraded: a stored record does not decode.
    #[error("cannot upgrade the SQLite store: {0}")]
    Upgrade(StoreError),
}

/// Cinder's records in one SQLite database.
///
/// Writes (and reads that decide a write) run on one connection, one at a time. Reads run
/// on a pool of read-only connections to the same file, each in its own autocommit
/// transaction: in WAL mode a reader sees every transaction committed before it began, and
/// neither waits for the writer nor holds it up.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    /// `None` in memory (a private in-memory database has one connection) or when opened
    /// with no readers: then reads run on the writer.
    readers: Option<Arc<ReadPool>>,
    writes: AtomicU64,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, with [`DEFAULT_READERS`] read
    /// connections.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        Self::open_with_readers(path, DEFAULT_READERS)
    }

    /// Opens (creating if needed) the database at `path`, with `readers` read-only
    /// connections beside the writer; with 0, reads queue on the writer too.
    pub fn open_with_readers(path: &Path, readers: usize) -> Result<Self, OpenError> {
        let mut store = Self::init(Connection::open(path)?)?;
        // After `init`: the file is in WAL mode and at the current schema by now.
        if readers > 0 {
            store.readers = Some(Arc::new(ReadPool::open(path, readers)?));
        }
        Ok(store)
    }

    /// A private in-memory database, for tests and benchmarks. It has one connection, so
    /// reads and writes take turns on it.
    pub fn in_memory() -> Result<Self, OpenError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Self, OpenError> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(OpenError::TooNew(version));
        }
        // One transaction, so a failed upgrade leaves the file at its old version, to be
        // upgraded again on the next open.
        let tx = conn.transaction()?;
        tx.execute_batch(SCHEMA)?;
        // Schema 6 added held numbers: a shards table from before it lacks the column.
        let has_hold: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('shards') WHERE name = 'hold'",
            [],
            |r| r.get(0),
        )?;
        if !has_hold {
            tx.execute_batch("ALTER TABLE shards ADD COLUMN hold BLOB")?;
        }
        // Schema 7 added sessions to accounts.
        let has_sessions: bool = tx.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('accounts') WHERE name = 'sessions'",
            [],
            |r| r.get(0),
        )?;
        if !has_sessions {
            tx.execute_batch(
                "ALTER TABLE accounts ADD COLUMN sessions TEXT NOT NULL DEFAULT '[]';
                 ALTER TABLE accounts ADD COLUMN sver INTEGER NOT NULL DEFAULT 0;",
            )?;
        }
        if version < 4 {
            log_current_spines(&tx).map_err(OpenError::Upgrade)?;
        }
        tx.commit()?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: None,
            writes: AtomicU64::new(0),
        })
    }

    /// Runs `f` on the writing connection on the blocking pool, after every earlier `run`.
    async fn run<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock cannot leave a transaction half-applied
            // (SQLite rolls it back), so a poisoned lock is safe to keep using.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
    }

    /// Runs `f`, which must only read, on a free read connection on the blocking pool,
    /// waiting (without holding a thread) for one if all are busy. It sees every write that
    /// completed before it was called. Without a read pool, runs `f` on the writer.
    async fn read<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let Some(pool) = &self.readers else {
            return self.run(move |c| f(c)).await;
        };
        let permit = pool
            .free
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| StoreError::Backend(format!("read pool closed: {e}")))?;
        let pool = pool.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            // Dropped before the permit, so a permit never outnumbers idle connections.
            let lent = pool.lend()?;
            f(lent.conn())
        })
        .await
        .map_err(|e| StoreError::Backend(format!("blocking task failed: {e}")))?
    }

    /// Attachments whose message has burnt (by `now`) or been deleted, oldest first: the
    /// dev server deletes their files, then [`SqliteStore::forget_media`]s them. (On AWS the
    /// shards table's stream does this job.)
    pub async fn media_due(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<ObjectKey>, StoreError> {
        let now = to_sql_int(now.0)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT channel, number, media_id FROM shard_media WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![now, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(backend)?;
            rows.map(|row| {
                let (channel, number, media) = row.map_err(backend)?;
                format!("rooms/{}/{number}/{media}", channel.replacen('/', "/channels/", 1))
                    .parse()
                    .map_err(|_| StoreError::Corrupt("shard media row".into()))
            })
            .collect()
        })
        .await
    }

    /// Forgets attachments whose files are gone.
    pub async fn forget_media(&self, keys: &[ObjectKey]) -> Result<(), StoreError> {
        let rows: Vec<(String, i64, String)> = keys
            .iter()
            .filter_map(|k| match k {
                ObjectKey::Attachment {
                    room,
                    channel,
                    number,
                    media,
                } => Some((
                    format!("{room}/{channel}"),
                    i64::try_from(*number).ok()?,
                    media.to_string(),
                )),
                ObjectKey::Avatar { .. } => None,
            })
            .collect();
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            for (channel, number, media) in rows {
                tx.execute(
                    "DELETE FROM shard_media WHERE channel = ?1 AND number = ?2 AND media_id = ?3",
                    params![channel, number, media],
                )
                .map_err(backend)?;
            }
            tx.commit().map_err(backend)
        })
        .await
    }

    /// Whether this write should also sweep expired rows.
    fn sweep_due(&self) -> bool {
        self.writes
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(SWEEP_EVERY)
    }
}

/// Read-only connections to a database file, lent out one closure at a time.
struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// One permit per connection: a read waits here, on the async side, for a free one.
    free: Arc<Semaphore>,
}

impl ReadPool {
    fn open(path: &Path, size: usize) -> Result<Self, rusqlite::Error> {
        let idle = (0..size)
            .map(|_| open_reader(path))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            path: path.to_owned(),
            idle: Mutex::new(idle),
            free: Arc::new(Semaphore::new(size)),
        })
    }

    /// An idle connection (the caller holds a permit, so there is one), or a new one in
    /// place of one given up by [`settle`].
    fn lend(&self) -> Result<Lent<'_>, StoreError> {
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let conn = match idle {
            Some(conn) => conn,
            None => open_reader(&self.path).map_err(backend)?,
        };
        Ok(Lent {
            pool: self,
            conn: Some(conn),
        })
    }
}

/// A read connection on loan: it goes back to the pool when dropped, even by a panic.
struct Lent<'a> {
    pool: &'a ReadPool,
    conn: Option<Connection>,
}

impl Lent<'_> {
    fn conn(&self) -> &Connection {
        // Only `drop` takes it.
        self.conn.as_ref().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && settle(&conn)
        {
            self.pool
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(conn);
        }
    }
}

/// A read-only connection to the file at `path`, which the writer has already opened (so it
/// exists and is in WAL mode).
fn open_reader(path: &Path) -> Result<Connection, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // Read-only already by its flags; this makes a stray write fail as clearly as possible.
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// Ends any read a closure left open on `conn`, so that its next read starts a new
/// transaction and sees every write committed by then: a statement left unreset or a
/// transaction left open would pin the old snapshot. False if it cannot be cleaned, and
/// must be closed instead of reused.
fn settle(conn: &Connection) -> bool {
    if conn.is_busy() {
        // Statements not in the cache were finalised when dropped; these are the rest.
        conn.flush_prepared_statement_cache();
    }
    if !conn.is_autocommit() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    conn.is_autocommit() && !conn.is_busy()
}

/// Schema 4 added the spine log. Rooms from before it have only their current version on
/// record, so that is what their log starts with.
fn log_current_spines(c: &Connection) -> Result<(), StoreError> {
    let rooms: Vec<Room> = {
        let mut stmt = c
            .prepare("SELECT room FROM rooms WHERE room IS NOT NULL")
            .map_err(backend)?;
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(backend)?;
        rows.map(|r| r.map_err(backend).and_then(|t| decode(&t)))
            .collect::<Result<_, _>>()?
    };
    for room in rooms {
        c.execute(
            "INSERT OR IGNORE INTO room_spines (room_id, version, spine) VALUES (?1, ?2, ?3)",
            params![
                room.room_id.to_string(),
                to_sql_int(room.version)?,
                room.spine.0
            ],
        )
        .map_err(backend)?;
    }
    Ok(())
}

/// Deletes a table's expired rows. `table` is one of this file's literal table names.
fn sweep_expired(c: &Connection, table: &str, now: i64) -> Result<(), StoreError> {
    c.execute(
        &format!("DELETE FROM {table} WHERE expires_at <= ?1"),
        params![now],
    )
    .map(drop)
    .map_err(backend)
}

/// SQLite's busy and locked answers (another connection held the lock past the busy
/// timeout) are [`StoreError::Unavailable`]: the call may go through a moment later.
/// Anything else is the backend's.
fn backend(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

/// A uniqueness violation is a lost conditional write; anything else is the backend's.
fn conflict_or_backend(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict
        }
        _ => backend(e),
    }
}

fn to_sql_int(n: u64) -> Result<i64, StoreError> {
    i64::try_from(n).map_err(|_| StoreError::Backend(format!("{n} does not fit SQLite's INTEGER")))
}

fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn encode<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Backend(e.to_string()))
}

#[async_trait]
impl KeyStore for SqliteStore {
    async fn insert(&self, bundle: &KeyBundle) -> Result<(), StoreError> {
        let user = bundle.user_id.to_string();
        let version = to_sql_int(bundle.version)?;
        let json = encode(bundle)?;
        self.run(move |c| {
            c.execute(
                "INSERT INTO key_bundles (user_id, version, bundle) VALUES (?1, ?2, ?3)",
                params![user, version, json],
            )
            .map(drop)
            .map_err(conflict_or_backend)
        })
        .await
    }

    async fn current(&self, user: &UserId) -> Result<Option<KeyBundle>, StoreError> {
        let user = user.to_string();
        self.read(move |c| {
            let row: Option<String> = c
                .query_row(
                    "SELECT bundle FROM key_bundles WHERE user_id = ?1 ORDER BY version DESC LIMIT 1",
                    params![user],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            row.as_deref().map(decode).transpose()
        })
        .await
    }

    async fn current_many(&self, users: &[UserId]) -> Result<Vec<KeyBundle>, StoreError> {
        let users: Vec<String> = users.iter().map(ToString::to_string).collect();
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT bundle FROM key_bundles WHERE user_id = ?1 ORDER BY version DESC LIMIT 1",
                )
                .map_err(backend)?;
            let mut out = Vec::with_capacity(users.len());
            for user in users {
                let row: Option<String> = stmt.query_row(params![user], |r| r.get(0)).optional().map_err(backend)?;
                if let Some(text) = row {
                    out.push(decode(&text)?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn chain(
        &self,
        user: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<KeyBundle>, StoreError> {
        let user = user.to_string();
        let after = to_sql_int(after)?;
        let limit = to_sql_int(limit as u64)?;
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT bundle FROM key_bundles WHERE user_id = ?1 AND version > ?2 ORDER BY version ASC LIMIT ?3",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![user, after, limit], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(|t| decode(&t))).collect()
        })
        .await
    }
}

#[async_trait]
impl NonceStore for SqliteStore {
    async fn remember(
        &self,
        key: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let key = key.to_owned();
        let expires = to_sql_int(expires_at.0)?;
        let now = to_sql_int(now.0)?;
        let sweep = self.sweep_due();
        self.run(move |c| {
            if sweep {
                sweep_expired(c, "nonces", now)?;
            }
            // Insert, or take over a row that has expired but not yet been swept.
            let changed = c
                .execute(
                    "INSERT INTO nonces (id, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at
                     WHERE nonces.expires_at <= ?3",
                    params![key, expires, now],
                )
                .map_err(backend)?;
            Ok(changed == 1)
        })
        .await
    }
}

#[async_trait]
impl InboxStore for SqliteStore {
    async fn put(
        &self,
        owner: &UserId,
        envelope: &Envelope,
        max: usize,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        let id = envelope.id.to_string();
        let expires = to_sql_int(envelope.expires_at.0)?;
        let now = to_sql_int(envelope.created_at.0)?;
        // No cap beyond what SQLite counts to.
        let max = i64::try_from(max).unwrap_or(i64::MAX);
        let json = encode(envelope)?;
        let sweep = self.sweep_due();
        // The count and the insert in one statement on the one writer connection: no other
        // drop can come between them, so the cap holds under any concurrency.
        self.run(move |c| {
            if sweep {
                sweep_expired(c, "inbox", now)?;
            }
            c.execute(
                "INSERT INTO inbox (owner, id, expires_at, envelope)
                 SELECT ?1, ?2, ?3, ?4
                 WHERE (SELECT COUNT(*) FROM inbox WHERE owner = ?1 AND expires_at > ?5) < ?6",
                params![owner, id, expires, json, now, max],
            )
            .map(|inserted| inserted == 1)
            .map_err(conflict_or_backend)
        })
        .await
    }

    async fn list(
        &self,
        owner: &UserId,
        after: Option<EnvelopeId>,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Envelope>, StoreError> {
        let owner = owner.to_string();
        // Ids are fixed-width lowercase hex, so text order is id order; "" precedes all.
        let after = after.map(|a| a.to_string()).unwrap_or_default();
        let limit = to_sql_int(limit as u64)?;
        let now = to_sql_int(now.0)?;
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT envelope FROM inbox WHERE owner = ?1 AND id > ?2 AND expires_at > ?3
                     ORDER BY id ASC LIMIT ?4",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![owner, after, now, limit], |r| r.get::<_, String>(0))
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(|t| decode(&t)))
                .collect()
        })
        .await
    }

    async fn count(&self, owner: &UserId, now: Timestamp) -> Result<usize, StoreError> {
        let owner = owner.to_string();
        let now = to_sql_int(now.0)?;
        self.read(move |c| {
            let n: i64 = c
                .query_row(
                    "SELECT COUNT(*) FROM inbox WHERE owner = ?1 AND expires_at > ?2",
                    params![owner, now],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            usize::try_from(n).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .await
    }

    async fn delete(
        &self,
        owner: &UserId,
        id: &EnvelopeId,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let owner = owner.to_string();
        let id = id.to_string();
        let now = to_sql_int(now.0)?;
        self.run(move |c| {
            let live = c
                .execute(
                    "DELETE FROM inbox WHERE owner = ?1 AND id = ?2 AND expires_at > ?3",
                    params![owner, id, now],
                )
                .map_err(backend)?;
            // An expired row goes too, but does not count as found.
            c.execute(
                "DELETE FROM inbox WHERE owner = ?1 AND id = ?2",
                params![owner, id],
            )
            .map_err(backend)?;
            Ok(live == 1)
        })
        .await
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn create(&self, record: &AccountRecord) -> Result<(), StoreError> {
        let login = record.login.to_string();
        let registration = record.registration.0.clone();
        let ksf = encode(&record.ksf)?;
        let enclave = record.enclave.ciphertext.0.clone();
        let version = to_sql_int(record.enclave.version)?;
        let sessions = encode(&record.sessions.open)?;
        let sver = to_sql_int(record.sessions.version)?;
        self.run(move |c| {
            c.execute(
                "INSERT INTO accounts (login, registration, ksf, enclave, version, sessions, sver)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![login, registration, ksf, enclave, version, sessions, sver],
            )
            .map(drop)
            .map_err(conflict_or_backend)
        })
        .await
    }

    async fn account(&self, login: &LoginKey) -> Result<Option<AccountRecord>, StoreError> {
        let key = *login;
        self.read(move |c| {
            let row = c
                .query_row(
                    "SELECT registration, ksf, enclave, version, sessions, sver FROM accounts WHERE login = ?1",
                    params![key.to_string()],
                    |r| {
                        Ok((
                            r.get::<_, Vec<u8>>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Vec<u8>>(2)?,
                            r.get::<_, i64>(3)?,
                            r.get::<_, String>(4)?,
                            r.get::<_, i64>(5)?,
                        ))
                    },
                )
                .optional()
                .map_err(backend)?;
            let Some((registration, ksf, enclave, version, sessions, sver)) = row else {
                return Ok(None);
            };
            Ok(Some(AccountRecord {
                login: key,
                registration: Blob(registration),
                ksf: decode::<KsfParams>(&ksf)?,
                enclave: StoredEnclave {
                    ciphertext: Blob(enclave),
                    version: u64::try_from(version)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                },
                sessions: Sessions {
                    version: u64::try_from(sver).map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    open: decode::<Vec<SessionEntry>>(&sessions)?,
                },
            }))
        })
        .await
    }

    async fn put_enclave(
        &self,
        login: &LoginKey,
        ciphertext: &Blob,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let login = login.to_string();
        let enclave = ciphertext.0.clone();
        let expected = to_sql_int(expected_version)?;
        self.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE accounts SET enclave = ?1, version = version + 1 WHERE login = ?2 AND version = ?3",
                    params![enclave, login, expected],
                )
                .map_err(backend)?;
            if changed == 1 { Ok(expected_version + 1) } else { Err(StoreError::Conflict) }
        })
        .await
    }

    async fn replace_credentials(
        &self,
        login: &LoginKey,
        registration: &Blob,
        ksf: KsfParams,
        ciphertext: &Blob,
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let login = login.to_string();
        let registration = registration.0.clone();
        let ksf = encode(&ksf)?;
        let enclave = ciphertext.0.clone();
        let expected = to_sql_int(expected_version)?;
        self.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE accounts SET registration = ?1, ksf = ?2, enclave = ?3, version = version + 1,
                         sessions = '[]', sver = sver + 1
                     WHERE login = ?4 AND version = ?5",
                    params![registration, ksf, enclave, login, expected],
                )
                .map_err(backend)?;
            if changed == 1 { Ok(expected_version + 1) } else { Err(StoreError::Conflict) }
        })
        .await
    }

    async fn put_sessions(
        &self,
        login: &LoginKey,
        open: &[SessionEntry],
        expected_version: u64,
    ) -> Result<u64, StoreError> {
        let login = login.to_string();
        let sessions = encode(&open)?;
        let expected = to_sql_int(expected_version)?;
        self.run(move |c| {
            let changed = c
                .execute(
                    "UPDATE accounts SET sessions = ?1, sver = sver + 1 WHERE login = ?2 AND sver = ?3",
                    params![sessions, login, expected],
                )
                .map_err(backend)?;
            if changed == 1 { Ok(expected_version + 1) } else { Err(StoreError::Conflict) }
        })
        .await
    }

    async fn delete_account(&self, login: &LoginKey) -> Result<bool, StoreError> {
        let login = login.to_string();
        self.run(move |c| {
            c.execute("DELETE FROM accounts WHERE login = ?1", params![login])
                .map(|n| n == 1)
                .map_err(backend)
        })
        .await
    }
}

#[async_trait]
impl RateLimitStore for SqliteStore {
    async fn take(&self, key: &str, rate: Rate, now_ms: u64) -> Result<Option<u64>, StoreError> {
        let key = key.to_owned();
        let now = to_sql_int(now_ms / 1000)?;
        let sweep = self.sweep_due();
        // Read and write on the one writing connection, inside one `run`: no other call
        // comes between them.
        self.run(move |c| {
            if sweep {
                sweep_expired(c, "rate_buckets", now)?;
            }
            let tat: Option<i64> = c
                .query_row(
                    "SELECT tat FROM rate_buckets WHERE id = ?1 AND expires_at > ?2",
                    params![key, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            let tat = tat
                .map(|t| u64::try_from(t).map_err(|e| StoreError::Corrupt(e.to_string())))
                .transpose()?;
            match limits::gcra(tat, rate, now_ms) {
                Decision::Wait { ms } => Ok(Some(ms)),
                Decision::Allow { tat } => {
                    c.execute(
                        "INSERT INTO rate_buckets (id, tat, expires_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (id) DO UPDATE SET tat = excluded.tat, expires_at = excluded.expires_at",
                        params![key, to_sql_int(tat)?, to_sql_int(limits::forget_at(tat))?],
                    )
                    .map_err(backend)?;
                    Ok(None)
                }
            }
        })
        .await
    }
}

/// Logs a room version's spine, inside the transaction that writes the room. A version
/// logged already is a conflict: the log is never rewritten.
fn log_spine(c: &Connection, room: &str, version: i64, spine: Vec<u8>) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO room_spines (room_id, version, spine) VALUES (?1, ?2, ?3)",
        params![room, version, spine],
    )
    .map(drop)
    .map_err(conflict_or_backend)
}

#[async_trait]
impl RoomStore for SqliteStore {
    async fn create_room(&self, room: &Room) -> Result<(), StoreError> {
        let id = room.room_id.to_string();
        let version = to_sql_int(room.version)?;
        let json = encode(room)?;
        let spine = room.spine.0.clone();
        self.run(move |c| {
            // Dropping the transaction on any error rolls back both writes.
            let tx = c.transaction().map_err(backend)?;
            tx.execute(
                "INSERT INTO rooms (room_id, version, room) VALUES (?1, ?2, ?3)",
                params![id, version, json],
            )
            .map_err(conflict_or_backend)?;
            log_spine(&tx, &id, version, spine)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn room(&self, id: &RoomId) -> Result<Option<Room>, StoreError> {
        let id = id.to_string();
        self.read(move |c| {
            let row: Option<String> = c
                .query_row(
                    "SELECT room FROM rooms WHERE room_id = ?1 AND room IS NOT NULL",
                    params![id],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            row.as_deref().map(decode).transpose()
        })
        .await
    }

    async fn update_room(&self, room: &Room) -> Result<(), StoreError> {
        let id = room.room_id.to_string();
        let version = to_sql_int(room.version)?;
        let json = encode(room)?;
        let spine = room.spine.0.clone();
        self.run(move |c| {
            // Dropping the transaction on any error rolls back both writes.
            let tx = c.transaction().map_err(backend)?;
            let changed = tx
                .execute(
                    "UPDATE rooms SET version = ?2, room = ?3 WHERE room_id = ?1 AND version = ?2 - 1",
                    params![id, version, json],
                )
                .map_err(backend)?;
            if changed != 1 {
                return Err(StoreError::Conflict);
            }
            log_spine(&tx, &id, version, spine)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn spines(
        &self,
        id: &RoomId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<SpineEntry>, StoreError> {
        let id = id.to_string();
        let after = to_sql_int(after)?;
        let limit = to_sql_int(limit as u64)?;
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT version, spine FROM room_spines WHERE room_id = ?1 AND version > ?2
                     ORDER BY version ASC LIMIT ?3",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![id, after, limit], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(backend)?;
            rows.map(|r| {
                let (version, spine) = r.map_err(backend)?;
                Ok(SpineEntry {
                    version: u64::try_from(version)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    spine: Blob(spine),
                })
            })
            .collect()
        })
        .await
    }

    async fn delete_room(&self, id: &RoomId) -> Result<bool, StoreError> {
        let id = id.to_string();
        self.run(move |c| {
            c.execute(
                "UPDATE rooms SET room = NULL, version = -1 WHERE room_id = ?1 AND room IS NOT NULL",
                params![id],
            )
                .map(|n| n == 1)
                .map_err(backend)
        })
        .await
    }
}

/// A shard as its row: what posting one writes.
struct ShardRow {
    channel: String,
    number: i64,
    burn_at: i64,
    now: i64,
    json: String,
    media: Vec<String>,
}

impl ShardRow {
    fn new(channel: &ChannelRef, shard: &Shard) -> Result<Self, StoreError> {
        Ok(Self {
            channel: channel.to_string(),
            number: to_sql_int(shard.number)?,
            burn_at: to_sql_int(shard.burn_at.0)?,
            now: to_sql_int(shard.posted_at.0)?,
            json: encode(shard)?,
            media: shard.media.iter().map(ToString::to_string).collect(),
        })
    }

    /// Records the media the message links, due for deletion when it burns.
    fn link_media(&self, tx: &rusqlite::Transaction<'_>) -> Result<(), StoreError> {
        for m in &self.media {
            tx.execute(
                "INSERT OR IGNORE INTO shard_media (channel, number, media_id, due_at) VALUES (?1, ?2, ?3, ?4)",
                params![self.channel, self.number, m, self.burn_at],
            )
            .map_err(backend)?;
        }
        Ok(())
    }
}

#[async_trait]
impl ShardStore for SqliteStore {
    async fn reserve(
        &self,
        channel: &ChannelRef,
        hold: &[u8],
        expires_at: Timestamp,
    ) -> Result<u64, StoreError> {
        let channel = channel.to_string();
        let hold = hold.to_vec();
        let expires_at = to_sql_int(expires_at.0)?;
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let next: i64 = tx
                .query_row(
                    "INSERT INTO shard_counters (channel, next) VALUES (?1, 1)
                     ON CONFLICT (channel) DO UPDATE SET next = next + 1
                     RETURNING next",
                    params![channel],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            tx.execute(
                "INSERT INTO shards (channel, number, burn_at, shard, hold) VALUES (?1, ?2, ?3, NULL, ?4)",
                params![channel, next, expires_at, hold],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            u64::try_from(next).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .await
    }

    async fn reserved(&self, channel: &ChannelRef) -> Result<u64, StoreError> {
        let channel = channel.to_string();
        self.read(move |c| {
            let next: Option<i64> = c
                .query_row(
                    "SELECT next FROM shard_counters WHERE channel = ?1",
                    params![channel],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            u64::try_from(next.unwrap_or(0)).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .await
    }

    async fn post_next(&self, channel: &ChannelRef, shard: &Shard) -> Result<(), StoreError> {
        let row = ShardRow::new(channel, shard)?;
        let sweep = self.sweep_due();
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            if sweep {
                // Shards burn on `burn_at`, the column the sweep of other tables calls
                // `expires_at`. Lapsed holds go with them.
                tx.execute("DELETE FROM shards WHERE burn_at <= ?1", params![row.now])
                    .map_err(backend)?;
            }
            let taken: i64 = tx
                .query_row(
                    "SELECT COALESCE((SELECT next FROM shard_counters WHERE channel = ?1), 0)",
                    params![row.channel],
                    |r| r.get(0),
                )
                .map_err(backend)?;
            if taken != row.number - 1 {
                return Err(StoreError::Conflict);
            }
            tx.execute(
                "INSERT INTO shard_counters (channel, next) VALUES (?1, ?2)
                 ON CONFLICT (channel) DO UPDATE SET next = excluded.next",
                params![row.channel, row.number],
            )
            .map_err(backend)?;
            tx.execute(
                "INSERT INTO shards (channel, number, burn_at, shard) VALUES (?1, ?2, ?3, ?4)",
                params![row.channel, row.number, row.burn_at, row.json],
            )
            .map_err(conflict_or_backend)?;
            row.link_media(&tx)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn fill_hold(
        &self,
        channel: &ChannelRef,
        shard: &Shard,
        hold: &[u8],
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let row = ShardRow::new(channel, shard)?;
        let hold = hold.to_vec();
        let now = to_sql_int(now.0)?;
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let filled = tx
                .execute(
                    "UPDATE shards SET shard = ?4, burn_at = ?3, hold = NULL
                     WHERE channel = ?1 AND number = ?2 AND hold = ?5 AND burn_at > ?6",
                    params![row.channel, row.number, row.burn_at, row.json, hold, now],
                )
                .map_err(backend)?;
            if filled != 1 {
                return Err(StoreError::Conflict);
            }
            row.link_media(&tx)?;
            tx.commit().map_err(backend)
        })
        .await
    }

    async fn shards(
        &self,
        channel: &ChannelRef,
        after: u64,
        limit: usize,
        now: Timestamp,
    ) -> Result<Vec<Shard>, StoreError> {
        let channel = channel.to_string();
        let after = to_sql_int(after)?;
        let limit = to_sql_int(limit as u64)?;
        let now = to_sql_int(now.0)?;
        self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT shard FROM shards WHERE channel = ?1 AND number > ?2 AND burn_at > ?3 AND shard IS NOT NULL
                     ORDER BY number ASC LIMIT ?4",
                )
                .map_err(backend)?;
            let rows = stmt
                .query_map(params![channel, after, now, limit], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(backend)?;
            rows.map(|r| r.map_err(backend).and_then(|t| decode(&t)))
                .collect()
        })
        .await
    }

    async fn shard(
        &self,
        channel: &ChannelRef,
        number: u64,
        now: Timestamp,
    ) -> Result<Option<Shard>, StoreError> {
        let channel = channel.to_string();
        let number = to_sql_int(number)?;
        let now = to_sql_int(now.0)?;
        self.read(move |c| {
            let row: Option<String> = c
                .query_row(
                    "SELECT shard FROM shards WHERE channel = ?1 AND number = ?2 AND burn_at > ?3 AND shard IS NOT NULL",
                    params![channel, number, now],
                    |r| r.get(0),
                )
                .optional()
                .map_err(backend)?;
            row.as_deref().map(decode).transpose()
        })
        .await
    }

    async fn delete_shard(&self, channel: &ChannelRef, number: u64) -> Result<bool, StoreError> {
        let channel = channel.to_string();
        let number = to_sql_int(number)?;
        self.run(move |c| {
            let tx = c.transaction().map_err(backend)?;
            let deleted = tx
                .execute(
                    "UPDATE shards SET shard = NULL WHERE channel = ?1 AND number = ?2 AND shard IS NOT NULL",
                    params![channel, number],
                )
                .map_err(backend)?
                == 1;
            // Its media goes with it, at once.
            tx.execute(
                "UPDATE shard_media SET due_at = 0 WHERE channel = ?1 AND number = ?2",
                params![channel, number],
            )
            .map_err(backend)?;
            tx.commit().map_err(backend)?;
            Ok(deleted)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use cinder_proto::VerifyKey;

    use super::*;

    /// The read pool: reads on their own connections, never behind the writer, and never
    /// on a stale snapshot.
    mod read_pool {
        use std::time::Duration;

        use cinder_proto::{ChannelId, EnvelopeId, HpkePublicKey, MediaId, Signature};

        use super::*;

        /// A store on a file in a fresh folder, which lives as long as the `TempDir`.
        fn file_store(readers: usize) -> (tempfile::TempDir, Arc<SqliteStore>) {
            let dir = tempfile::tempdir().unwrap();
            let store =
                SqliteStore::open_with_readers(&dir.path().join("db.sqlite3"), readers).unwrap();
            (dir, Arc::new(store))
        }

        fn key() -> VerifyKey {
            let mut base = [0x66; 32];
            base[0] = 0x58; // the Ed25519 base point, a valid key
            VerifyKey::from_bytes(&base).unwrap()
        }

        fn room(version: u64) -> Room {
            Room {
                room_id: RoomId([1; 16]),
                version,
                spine: Blob(vec![u8::try_from(version % 256).unwrap(); 32]),
                admin_key: key(),
                member_key: key(),
                channels: Default::default(),
            }
        }

        #[tokio::test]
        async fn reads_proceed_while_the_writer_holds_a_write_transaction() {
            let (_dir, store) = file_store(DEFAULT_READERS);
            store.create_room(&room(1)).await.unwrap();

            // The writer begins a transaction, writes version 2, and holds it open until
            // the reads are done (or ten seconds, so a failing test cannot hang).
            let (held_tx, held) = tokio::sync::oneshot::channel();
            let (release, release_rx) = std::sync::mpsc::channel::<()>();
            let (id, json) = (room(1).room_id.to_string(), encode(&room(2)).unwrap());
            let writer = tokio::spawn({
                let store = store.clone();
                async move {
                    store
                        .run(move |c| {
                            c.execute_batch("BEGIN IMMEDIATE").map_err(backend)?;
                            c.execute(
                                "UPDATE rooms SET version = 2, room = ?2 WHERE room_id = ?1",
                                params![id, json],
                            )
                            .map_err(backend)?;
                            let _ = held_tx.send(());
                            let _ = release_rx.recv_timeout(Duration::from_secs(10));
                            c.execute_batch("COMMIT").map_err(backend)
                        })
                        .await
                }
            });
            held.await.unwrap();

            // Twice as many reads as connections, so some wait for a free one: all complete
            // while the transaction is open, and see the last committed version.
            let mut reads = tokio::task::JoinSet::new();
            for _ in 0..2 * DEFAULT_READERS {
                let store = store.clone();
                reads.spawn(async move { store.room(&RoomId([1; 16])).await });
            }
            let versions = tokio::time::timeout(Duration::from_secs(5), reads.join_all())
                .await
                .expect("reads waited for the writer");
            for version in versions {
                assert_eq!(version.unwrap().map(|r| r.version), Some(1));
            }
            assert!(!writer.is_finished(), "the write transaction is still open");

            // Once it commits, the next read sees it.
            release.send(()).unwrap();
            writer.await.unwrap().unwrap();
            assert_eq!(store.room(&RoomId([1; 16])).await.unwrap(), Some(room(2)));
        }

        /// Every read method, on the pool, after each write: read-your-writes across
        /// connections.
        #[tokio::test]
        async fn a_read_sees_every_write_completed_before_it() {
            let (_dir, store) = file_store(DEFAULT_READERS);
            let id = RoomId([1; 16]);

            store.create_room(&room(1)).await.unwrap();
            for version in 2..=40 {
                store.update_room(&room(version)).await.unwrap();
                assert_eq!(store.room(&id).await.unwrap(), Some(room(version)));
                let log = store.spines(&id, version - 1, 10).await.unwrap();
                assert_eq!(log.iter().map(|e| e.version).collect::<Vec<_>>(), [version]);
            }
            store.delete_room(&id).await.unwrap();
            assert_eq!(store.room(&id).await.unwrap(), None);

            let user = UserId([7; 16]);
            let bundle = |version| KeyBundle {
                user_id: user,
                version,
                hpke_key: HpkePublicKey([3; 32]),
                sign_key: key(),
                created_at: Timestamp(1_800_000_000),
                self_sig: Signature([4; 64]),
                prev_sig: None,
            };
            for version in 1..=3 {
                KeyStore::insert(&*store, &bundle(version)).await.unwrap();
                assert_eq!(store.current(&user).await.unwrap(), Some(bundle(version)));
                assert_eq!(
                    store.current_many(&[user]).await.unwrap(),
                    [bundle(version)]
                );
                assert_eq!(
                    store.chain(&user, 0, 10).await.unwrap(),
                    (1..=version).map(bundle).collect::<Vec<_>>()
                );
            }

            let now = Timestamp(1_800_000_000);
            for n in 1..=3u8 {
                let envelope = Envelope {
                    id: EnvelopeId([n; 16]),
                    sender: user,
                    created_at: now,
                    expires_at: now.plus(60),
                    sealed: Blob(vec![n]),
                };
                store.put(&user, &envelope, usize::MAX).await.unwrap();
                assert_eq!(store.count(&user, now).await.unwrap(), usize::from(n));
                let listed = store.list(&user, None, 10, now).await.unwrap();
                assert_eq!(listed.last(), Some(&envelope));
            }

            let login = LoginKey([9; 32]);
            let record = AccountRecord {
                login,
                registration: Blob(vec![1]),
                ksf: KsfParams {
                    m_kib: 65_536,
                    t: 3,
                    p: 4,
                },
                enclave: StoredEnclave {
                    ciphertext: Blob(vec![2]),
                    version: 1,
                },
                sessions: Sessions::default(),
            };
            store.create(&record).await.unwrap();
            assert_eq!(store.account(&login).await.unwrap(), Some(record.clone()));
            store.put_enclave(&login, &Blob(vec![3]), 1).await.unwrap();
            let stored = store.account(&login).await.unwrap().unwrap();
            assert_eq!(
                (stored.enclave.ciphertext, stored.enclave.version),
                (Blob(vec![3]), 2)
            );

            let attachment = ObjectKey::Attachment {
                room: id,
                channel: ChannelId([2; 16]),
                number: 5,
                media: MediaId([3; 16]),
            };
            let channel = format!("{id}/{}", ChannelId([2; 16]));
            store
                .run(move |c| {
                    c.execute(
                        "INSERT INTO shard_media (channel, number, media_id, due_at) VALUES (?1, 5, ?2, 10)",
                        params![channel, MediaId([3; 16]).to_string()],
                    )
                    .map(drop)
                    .map_err(backend)
                })
                .await
                .unwrap();
            assert_eq!(store.media_due(Timestamp(9), 10).await.unwrap(), []);
            assert_eq!(
                store.media_due(Timestamp(10), 10).await.unwrap(),
                [attachment]
            );
            store.forget_media(&[attachment]).await.unwrap();
            assert_eq!(store.media_due(Timestamp(10), 10).await.unwrap(), []);
        }

        /// A closure that leaves a transaction open, or a statement stepped but not reset,
        /// would pin its connection to an old snapshot: the pool ends both (or, failing
        /// that, closes the connection) before lending it again.
        #[tokio::test]
        async fn a_read_left_open_does_not_pin_an_old_snapshot() {
            // One connection, so every read reuses the one before it.
            let (_dir, store) = file_store(1);
            let id = RoomId([1; 16]);
            store.create_room(&room(1)).await.unwrap();

            store
                .read(|c| {
                    c.execute_batch("BEGIN").map_err(backend)?;
                    c.query_row("SELECT COUNT(*) FROM rooms", [], |r| r.get::<_, i64>(0))
                        .map(drop)
                        .map_err(backend)
                })
                .await
                .unwrap();
            store.update_room(&room(2)).await.unwrap();
            assert_eq!(store.room(&id).await.unwrap(), Some(room(2)));

            store
                .read(|c| {
                    let mut stmt = c
                        .prepare_cached("SELECT version FROM rooms")
                        .map_err(backend)?;
                    let mut rows = stmt.query([]).map_err(backend)?;
                    rows.next().map_err(backend)?;
                    // Back to the cache without the reset that dropping `rows` would do.
                    std::mem::forget(rows);
                    Ok(())
                })
                .await
                .unwrap();
            store.update_room(&room(3)).await.unwrap();
            assert_eq!(store.room(&id).await.unwrap(), Some(room(3)));
        }

        /// Another process holding the file's write lock past the busy timeout makes a
        /// write `Unavailable` (a 503), not a `Backend` failure (a 500), and changes nothing.
        #[tokio::test]
        async fn a_write_locked_out_past_the_busy_timeout_is_unavailable() {
            let (dir, store) = file_store(1);
            store.create_room(&room(1)).await.unwrap();
            let other = Connection::open(dir.path().join("db.sqlite3")).unwrap();
            other.execute_batch("BEGIN IMMEDIATE").unwrap();
            let write = store.update_room(&room(2)).await;
            assert!(
                matches!(write, Err(StoreError::Unavailable(_))),
                "{write:?}"
            );
            other.execute_batch("ROLLBACK").unwrap();
            assert_eq!(store.room(&RoomId([1; 16])).await.unwrap(), Some(room(1)));
            store.update_room(&room(2)).await.unwrap();
        }

        #[tokio::test]
        async fn read_connections_cannot_write() {
            let (_dir, store) = file_store(1);
            store.create_room(&room(1)).await.unwrap();
            let write = store
                .read(|c| c.execute("DELETE FROM rooms", []).map_err(backend))
                .await;
            assert!(matches!(write, Err(StoreError::Backend(_))), "{write:?}");
            assert_eq!(store.room(&RoomId([1; 16])).await.unwrap(), Some(room(1)));
        }
    }

    /// A file from before the spine log (schema 3): its live rooms' current spines start the
    /// log, a deleted room adds nothing, and the upgraded store logs new versions as usual.
    #[tokio::test]
    async fn an_older_file_is_upgraded_with_each_live_rooms_current_spine() {
        let mut base = [0x66; 32];
        base[0] = 0x58; // the Ed25519 base point, a valid key
        let key = VerifyKey::from_bytes(&base).unwrap();
        let room = Room {
            room_id: RoomId([1; 16]),
            version: 4,
            spine: Blob(vec![4; 32]),
            admin_key: key,
            member_key: key,
            channels: Default::default(),
        };
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE rooms (room_id TEXT PRIMARY KEY, version INTEGER NOT NULL, room TEXT)
             WITHOUT ROWID;
             PRAGMA user_version = 3;",
        )
        .unwrap();
        conn.execute(
            "INSERT INTO rooms VALUES (?1, 4, ?2), (?3, -1, NULL)",
            params![
                room.room_id.to_string(),
                encode(&room).unwrap(),
                RoomId([2; 16]).to_string()
            ],
        )
        .unwrap();

        let store = SqliteStore::init(conn).unwrap();
        let logged = |version, room: &Room| SpineEntry {
            version,
            spine: room.spine.clone(),
        };
        assert_eq!(
            store.spines(&room.room_id, 0, 10).await.unwrap(),
            vec![logged(4, &room)]
        );
        assert_eq!(store.spines(&RoomId([2; 16]), 0, 10).await.unwrap(), vec![]);
        let next = Room {
            version: 5,
            spine: Blob(vec![5; 32]),
            ..room.clone()
        };
        store.update_room(&next).await.unwrap();
        assert_eq!(
            store.spines(&room.room_id, 0, 10).await.unwrap(),
            vec![logged(4, &room), logged(5, &next)]
        );
    }
}
