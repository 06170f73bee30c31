//! Key directory rules. Every function takes parsed input, the stores and `now`; none reads
//! the clock or the environment.

use cinder_proto::api::{ChainPage, DropEnvelope, EnvelopePage, LookupResponse, limits};
use cinder_proto::{Envelope, EnvelopeId, KeyBundle, Signer, Timestamp, UserId};

use crate::limits::Limiter;
use crate::store::{InboxStore, KeyStore, StoreError};
use crate::{Error, Result};

/// Publishes a user's first bundle. The id must derive from the key, so nobody can claim
/// an id that is not theirs, and a second publish of the same id is refused.
#[tracing::instrument(skip_all, fields(user = %bundle.user_id))]
/// Counts against `limits`' bucket for the caller's address (`spend`: the limiter, the
/// address's bucket name, now in ms), once the bundle checks out.
pub async fn publish(
    keys: &dyn KeyStore,
    bundle: KeyBundle,
    spend: (&Limiter, String, u64),
) -> Result<KeyBundle> {
    bundle
        .verify_genesis()
        .map_err(|e| Error::InvalidBundle(e.to_string()))?;
    let (limits, addr, now_ms) = spend;
    limits
        .check("key_publish_per_address", &addr, now_ms)
        .await?;
    match keys.insert(&bundle).await {
        Ok(()) => Ok(bundle),
        Err(StoreError::Conflict) => Err(Error::AlreadyExists("user")),
        Err(e) => Err(e.into()),
    }
}

/// Replaces a user's keys with the next version, which the current key must have signed.
#[tracing::instrument(skip_all, fields(user = %user, version = bundle.version))]
/// Counts against the user's rotation bucket (`spend`: the limiter, now in ms) once the
/// rotation checks out, so nobody but the user spends it.
pub async fn rotate(
    keys: &dyn KeyStore,
    user: UserId,
    bundle: KeyBundle,
    spend: (&Limiter, u64),
) -> Result<KeyBundle> {
    if bundle.user_id != user {
        return Err(Error::InvalidBundle(
            "user_id does not match the path".into(),
        ));
    }
    let current = keys.current(&user).await?.ok_or(Error::UnknownUser)?;
    if bundle.version <= current.version {
        // Someone rotated first: the caller must re-read and sign against the new version.
        return Err(Error::VersionConflict);
    }
    bundle
        .verify_successor(&current)
        .map_err(|e| Error::InvalidRotation(e.to_string()))?;
    spend
        .0
        .check("key_rotate_per_user", &user.to_string(), spend.1)
        .await?;
    match keys.insert(&bundle).await {
        Ok(()) => Ok(bundle),
        Err(StoreError::Conflict) => Err(Error::VersionConflict),
        Err(e) => Err(e.into()),
    }
}

/// A user's current bundle.
pub async fn current(keys: &dyn KeyStore, user: UserId) -> Result<KeyBundle> {
    keys.current(&user).await?.ok_or(Error::UnknownUser)
}

/// Current bundles of many users, in request order, with the unknown ones listed apart.
pub async fn lookup(keys: &dyn KeyStore, mut users: Vec<UserId>) -> Result<LookupResponse> {
    if users.len() > limits::MAX_LOOKUP {
        return Err(Error::limit(
            "user_ids",
            format!("at most {} user ids per lookup", limits::MAX_LOOKUP),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    users.retain(|u| seen.insert(*u));
    let found = keys.current_many(&users).await?;
    let mut bundles = Vec::with_capacity(found.len());
    let mut missing = Vec::new();
    for user in users {
        match found.iter().find(|b| b.user_id == user) {
            Some(b) => bundles.push(b.clone()),
            None => missing.push(user),
        }
    }
    Ok(LookupResponse { bundles, missing })
}

/// Versions after `after`, oldest first, so a client can walk from a pinned version.
pub async fn chain(
    keys: &dyn KeyStore,
    user: UserId,
    after: u64,
    limit: Option<usize>,
) -> Result<ChainPage> {
    let limit = page_limit(limit, limits::MAX_CHAIN_PAGE)?;
    // Versions are stored as signed 64-bit integers (SQLite, DynamoDB numbers), as every
    // other cursor of the API is: anything above is a caller's mistake, not a server fault.
    if after > i64::MAX as u64 {
        return Err(Error::InvalidParameter(format!(
            "after {after} is out of range (at most {})",
            i64::MAX
        )));
    }
    let mut bundles = keys.chain(&user, after, limit + 1).await?;
    if bundles.is_empty() && keys.current(&user).await?.is_none() {
        return Err(Error::UnknownUser);
    }
    let more = bundles.len() > limit;
    bundles.truncate(limit);
    Ok(ChainPage { bundles, more })
}

/// Drops a sealed envelope into a user's inbox. Any directory user may drop; the server
/// records who did.
#[tracing::instrument(skip_all, fields(recipient = %recipient))]
pub async fn drop_envelope(
    keys: &dyn KeyStore,
    inbox: &dyn InboxStore,
    signer: Signer,
    recipient: UserId,
    req: DropEnvelope,
    now: Timestamp,
) -> Result<Envelope> {
    let Signer::User(sender) = signer else {
        return Err(Error::Forbidden);
    };
    if req.sealed.is_empty() || req.sealed.len() > limits::MAX_ENVELOPE_BYTES {
        return Err(Error::limit(
            "sealed",
            format!(
                "an envelope holds 1 to {} bytes",
                limits::MAX_ENVELOPE_BYTES
            ),
        ));
    }
    let ttl = req.ttl.unwrap_or(limits::DEFAULT_ENVELOPE_TTL);
    if ttl == 0 || ttl > limits::MAX_ENVELOPE_TTL {
        return Err(Error::limit(
            "ttl",
            format!("ttl is 1 to {} seconds", limits::MAX_ENVELOPE_TTL),
        ));
    }
    if keys.current(&recipient).await?.is_none() {
        return Err(Error::UnknownUser);
    }
    let mut random = [0u8; 8];
    getrandom::fill(&mut random).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    let envelope = Envelope {
        id: EnvelopeId::new(now.0.saturating_mul(1000), random),
        sender,
        created_at: now,
        expires_at: now.plus(ttl),
        sealed: req.sealed,
    };
    match inbox.put(&recipient, &envelope, limits::MAX_INBOX).await {
        Ok(true) => Ok(envelope),
        Ok(false) => Err(Error::limit(
            "recipient",
            format!("the inbox holds at most {} envelopes", limits::MAX_INBOX),
        )),
        // Sixty-four random bits collided within one second: a bug, not a caller's fault.
        Err(StoreError::Conflict) => Err(Error::Internal("envelope id collision".into())),
        Err(e) => Err(e.into()),
    }
}

/// One page of the signer's own inbox.
pub async fn list_inbox(
    inbox: &dyn InboxStore,
    signer: Signer,
    owner: UserId,
    after: Option<EnvelopeId>,
    limit: Option<usize>,
    now: Timestamp,
) -> Result<EnvelopePage> {
    require_owner(signer, owner)?;
    let limit = page_limit(limit, limits::MAX_INBOX_PAGE)?;
    let envelopes = inbox.list(&owner, after, limit, now).await?;
    let next = (envelopes.len() == limit)
        .then(|| envelopes.last().map(|e| e.id))
        .flatten();
    Ok(EnvelopePage { envelopes, next })
}

/// Deletes one envelope from the signer's own inbox.
pub async fn delete_envelope(
    inbox: &dyn InboxStore,
    signer: Signer,
    owner: UserId,
    id: EnvelopeId,
    now: Timestamp,
) -> Result<()> {
    require_owner(signer, owner)?;
    if inbox.delete(&owner, &id, now).await? {
        Ok(())
    } else {
        Err(Error::NotFound("envelope"))
    }
}

fn require_owner(signer: Signer, owner: UserId) -> Result<()> {
    match signer {
        Signer::User(user) if user == owner => Ok(()),
        _ => Err(Error::Forbidden),
    }
}

fn page_limit(requested: Option<usize>, max: usize) -> Result<usize> {
    match requested {
        None => Ok(max.min(50)),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(Error::limit("limit", format!("limit is 1 to {max}"))),
    }
}
