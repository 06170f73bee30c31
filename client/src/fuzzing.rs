//! Entry points for the fuzz targets in `fuzz/` (feature `fuzzing`, off by default, hidden
//! from the docs): the client's decoders of server data that are not public, and sealing
//! helpers that put arbitrary bytes under the right keys, so that a target reaches the
//! parsers behind the authenticated encryption. Nothing here is API, and nothing in the
//! library calls it.

use cinder_proto::accounts::StoredEnclave;
use cinder_proto::rooms::{Shard, SpineEntry};
use cinder_proto::{Blob, ChannelId, KeyBundle, RoomId, Signature, Timestamp, UserId, VerifyKey};
use ed25519_dalek::Signer as _;
use hpke::aead::AesGcm256;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, OpModeS, Serializable};

use crate::ClientError;
use crate::account::EnclaveKey;
use crate::identity::{Identity, Seeds};
use crate::rooms::capabilities::spine_key;
use crate::rooms::{Membership, Secret32, Spine, invites, messages, state};

/// An identity from fixed seeds; its bundle is version 1, made at time 1.
pub fn identity(sign: [u8; 32], hpke: [u8; 32]) -> Identity {
    let seeds = Seeds {
        sign,
        hpke,
        delete: [0; 32],
    };
    let bundle = KeyBundle::genesis(&seeds.signing_key(), seeds.hpke_public(), Timestamp(1));
    Identity { bundle, seeds }
}

/// A 32-byte secret (master, channel or file key) from its bytes.
pub fn secret(bytes: [u8; 32]) -> Secret32 {
    Secret32::from_bytes(bytes)
}

/// An enclave key from its bytes.
pub fn enclave_key(bytes: [u8; 32]) -> Result<EnclaveKey, &'static str> {
    EnclaveKey::try_from(Blob(bytes.to_vec()))
}

/// `plaintext` sealed as the enclave of `version`, for [`EnclaveKey::open`].
pub fn seal_enclave_bytes(
    key: &EnclaveKey,
    version: u64,
    plaintext: &[u8],
) -> Result<StoredEnclave, ClientError> {
    Ok(StoredEnclave {
        ciphertext: key.seal_bytes(version, plaintext)?,
        version,
    })
}

/// A stored room state opened as the client opens it (with whichever of `masters` seals
/// it; it must name the room and version it is stored under): the state, its hash, and
/// whether `signer_key` verifies its signature. `None` if it does not open or parse.
pub fn open_spine_entry(
    room: RoomId,
    masters: &[Secret32],
    entry: &SpineEntry,
    signer_key: &VerifyKey,
) -> Option<(Spine, Blob, bool)> {
    let opened = state::open_entry(room, masters, entry)?;
    let s = &opened.signed;
    let signed = signer_key
        .verify(&[state::SIGN_DOMAIN, &s.state.0].concat(), &s.signature)
        .is_ok();
    Some((opened.spine, opened.hash, signed))
}

/// The chain rule of a first room state, signed by `signer`.
pub fn check_genesis(s: &Spine, signer: UserId) -> Result<(), ClientError> {
    state::check_genesis(s, signer)
}

/// The chain rules of a next room state, whoever signed it.
pub fn check_successor(prev: &Spine, prev_hash: &Blob, next: &Spine) -> Result<(), ClientError> {
    state::check_successor(prev, prev_hash, next)
}

/// `state` (a room state's JSON, or any bytes) signed by `me`, as the JSON a stored room
/// state seals.
pub fn sign_spine_bytes(me: &Identity, state: &[u8]) -> Result<Vec<u8>, ClientError> {
    let signature = Signature(
        me.signing_key()
            .sign(&[state::SIGN_DOMAIN, state].concat())
            .to_bytes(),
    );
    serde_json::to_vec(&state::SignedSpine {
        state: Blob(state.to_vec()),
        signer: me.user_id(),
        key_version: me.bundle.version,
        signature,
    })
    .map_err(|e| ClientError::Internal(e.to_string()))
}

/// `plaintext` sealed as version `version` of `room`'s state under `master`.
pub fn seal_spine_bytes(
    master: &Secret32,
    room: RoomId,
    version: u64,
    plaintext: &[u8],
) -> Result<SpineEntry, ClientError> {
    let spine = crate::rooms::seal(
        &spine_key(master, room),
        plaintext,
        &state::spine_aad(room, version),
    )?;
    Ok(SpineEntry { version, spine })
}

/// A membership of `spine.room` whose verified head is `spine` (with hash `hash`), holding
/// `master` for the state's epoch and the given channel keys (channel, epoch, key).
pub fn membership(
    spine: &Spine,
    hash: &Blob,
    master: &Secret32,
    channel_keys: &[(ChannelId, u64, Secret32)],
) -> Result<Membership, ClientError> {
    let b64 = |s: &Secret32| cinder_proto::encoding::encode(s.expose());
    let mut channels = serde_json::Map::new();
    for (channel, epoch, key) in channel_keys {
        let entry = channels
            .entry(channel.to_string())
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let serde_json::Value::Object(by_epoch) = entry {
            by_epoch.insert(epoch.to_string(), b64(key).into());
        }
    }
    let json = serde_json::json!({
        "room": spine.room,
        "master_keys": { spine.epoch.to_string(): b64(master) },
        "channel_keys": channels,
        "head": { "spine": spine, "hash": hash },
    });
    serde_json::from_value(json).map_err(|e| ClientError::Internal(e.to_string()))
}

/// `plaintext` (a message body's JSON, or any bytes) sealed as message `number` of
/// `channel`, burning at `burn_at`, under the channel's `key` of `epoch`, as served.
pub fn seal_message_bytes(
    (room, channel, epoch): (RoomId, ChannelId, u64),
    key: &Secret32,
    (number, burn_at): (u64, Timestamp),
    plaintext: &[u8],
) -> Result<Shard, ClientError> {
    let aad = messages::shard_aad(room, channel, number, burn_at, epoch);
    let ciphertext = messages::seal_body(key, (room, channel, epoch), plaintext, &aad)?;
    Ok(Shard {
        number,
        ciphertext,
        burn_at,
        posted_at: Timestamp(0),
        delete_hash: None,
        media: Vec::new(),
    })
}

/// `plaintext` HPKE-sealed to `to`'s directory key, as an invitation is.
pub fn seal_invite_bytes(to: &KeyBundle, plaintext: &[u8]) -> Result<Blob, ClientError> {
    let pk = <X25519HkdfSha256 as hpke::Kem>::PublicKey::from_bytes(to.hpke_key.as_bytes())
        .map_err(|_| ClientError::Input("not an X25519 key".into()))?;
    let (encapped, ct) = hpke::single_shot_seal::<AesGcm256, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        invites::INVITE_INFO,
        plaintext,
        &to.user_id.0,
        &mut rand_core_09::UnwrapErr(rand_core_09::OsRng),
    )
    .map_err(|_| ClientError::Internal("HPKE sealing failed".into()))?;
    Ok(Blob([encapped.to_bytes().as_slice(), &ct].concat()))
}

/// `body` (an invitation body's JSON, or any bytes) signed by `me`, as the JSON an
/// invitation seals.
pub fn sign_invite_bytes(me: &Identity, body: &[u8]) -> Result<Vec<u8>, ClientError> {
    let signature = Signature(
        me.signing_key()
            .sign(&[invites::INVITE_DOMAIN, body].concat())
            .to_bytes(),
    );
    serde_json::to_vec(&invites::SignedInvite {
        body: Blob(body.to_vec()),
        signature,
    })
    .map_err(|e| ClientError::Internal(e.to_string()))
}

/// Opens an invitation to `me` from `sender` as the client does, its signature checked
/// with `sender_key`.
pub fn open_invite(
    me: &Identity,
    sealed: &Blob,
    sender: UserId,
    sender_key: &VerifyKey,
) -> Result<(), ClientError> {
    let (_, signed) = invites::unseal_invite(me, sealed, sender)?;
    invites::invite_signed_by(sender_key, &signed)
}

/// The member capability's verification key a state of `room` sealed under `master` must
/// name.
pub fn member_key(master: &Secret32, room: RoomId) -> VerifyKey {
    crate::rooms::capabilities::member_capability(master, room)
        .verifying_key()
        .into()
}

/// The channel capability's verification key for `channel` under its `key`.
pub fn channel_key(key: &Secret32, room: RoomId, channel: ChannelId) -> VerifyKey {
    crate::rooms::capabilities::channel_capability(key, room, channel)
        .verifying_key()
        .into()
}

/// `value` as JSON, secrets included (an enclave's contents, a membership): for the fuzz
/// targets' seed inputs.
pub fn exposing_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ClientError> {
    crate::secret::exposing(|| serde_json::to_vec(value))
        .map_err(|e| ClientError::Internal(e.to_string()))
}
