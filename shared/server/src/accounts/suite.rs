//! The server's OPAQUE cipher suite.
//!
//! Identical to the client's (`cinder_client::account::ClientSuite`) in everything that
//! shapes a message: Ristretto255 for the OPRF and the key exchange, triple-DH, SHA-512.
//! Only the key-stretching function differs: Argon2id runs on the client alone, so the
//! server names the identity function and never compiles argon2. The integration tests
//! run one against the other.

use opaque_ke::CipherSuite;
use opaque_ke::key_exchange::tripledh::TripleDh;
use opaque_ke::ksf::Identity;

/// Cinder's OPAQUE suite, server side.
pub struct ServerSuite;

impl CipherSuite for ServerSuite {
    type OprfCs = opaque_ke::Ristretto255;
    type KeGroup = opaque_ke::Ristretto255;
    type KeyExchange = TripleDh;
    type Ksf = Identity;
}

/// The OPAQUE context string both sides bind into every login.
pub const CONTEXT: &[u8] = b"cinder/opaque/v1";
