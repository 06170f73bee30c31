//! The local profile: this device's identity and the keys it has pinned, in one JSON file
//! written atomically with mode 0600. It never holds a password.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use cinder_proto::{Blob, KeyBundle, UserId};
use serde::{Deserialize, Serialize};

use crate::account::LoggedIn;
use crate::{ClientError, Identity};

/// What one device knows.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Profile {
    /// This device's user, once published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    /// The newest verified bundle of every user this device has looked up. A later answer
    /// must chain from it; anything else is refused.
    #[serde(default)]
    pub pins: BTreeMap<UserId, KeyBundle>,
    /// The open account session, if logged in. Holds the enclave key, never the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<LoggedIn>,
    /// Per login (and server), what this device has seen: the newest enclave version and
    /// the server's OPAQUE key, so a rollback or a swapped server is noticed.
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountMemory>,
}

/// What a device remembers about an account across logins.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AccountMemory {
    /// The newest enclave version seen.
    pub enclave_version: u64,
    /// The server's OPAQUE public key.
    pub server_key: Option<Blob>,
}

impl Profile {
    /// The default location: `$CINDER_HOME/profile.json`, else
    /// `$XDG_CONFIG_HOME/cinder/profile.json`, else `~/.config/cinder/profile.json`.
    pub fn default_path(
        cinder_home: Option<PathBuf>,
        xdg: Option<PathBuf>,
        home: Option<PathBuf>,
    ) -> PathBuf {
        cinder_home
            .or_else(|| xdg.map(|x| x.join("cinder")))
            .or_else(|| home.map(|h| h.join(".config").join("cinder")))
            .unwrap_or_else(|| PathBuf::from(".cinder"))
            .join("profile.json")
    }

    /// Reads the profile at `path`; a missing file is an empty profile.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes).map_err(|e| fail(path, "is not a valid profile", e))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(fail(path, "cannot be read", e)),
        }
    }

    /// Writes the profile to `path` atomically (temporary file, then rename), readable and
    /// writable by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| fail(path, "cannot be created", e))?;
        let json = crate::secret::exposing(|| serde_json::to_vec_pretty(self))
            .map_err(|e| fail(path, "cannot be encoded", e))?;
        let tmp = path.with_extension("json.tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let write = || -> std::io::Result<()> {
            let mut file = options.open(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| fail(path, "cannot be written", e))
    }

    /// This profile's identity (the logged-in account's, else a stand-alone one), or the
    /// error that says to make one.
    pub fn identity(&self) -> Result<&Identity, ClientError> {
        self.session
            .as_ref()
            .map(|s| &s.contents.identity)
            .or(self.identity.as_ref())
            .ok_or(ClientError::NoIdentity)
    }

    /// The key under which [`Profile::accounts`] remembers a login on a server.
    pub fn account_key(server: &str, login: &cinder_proto::accounts::Login) -> String {
        format!("{login}@{server}")
    }

    /// Records a session: caches it and remembers its enclave version and server key. Pins
    /// travel both ways: this device takes the newer pins the account's other devices put in
    /// the enclave, and the enclave gets this device's, for the next save.
    pub fn remember(&mut self, server: &str, mut session: LoggedIn) {
        merge_pins(&mut self.pins, &session.contents.pins);
        merge_pins(&mut session.contents.pins, &self.pins);
        let memory = self
            .accounts
            .entry(Self::account_key(server, &session.login))
            .or_default();
        memory.enclave_version = memory.enclave_version.max(session.contents.version);
        memory.server_key = Some(session.server_key.clone());
        self.pins.insert(
            session.contents.identity.user_id(),
            session.contents.identity.bundle.clone(),
        );
        self.session = Some(session);
    }
}

/// Adds `from`'s pins to `into`, keeping the newer version of each (every pin was verified
/// along its user's signed chain by the device that made it).
pub fn merge_pins(into: &mut BTreeMap<UserId, KeyBundle>, from: &BTreeMap<UserId, KeyBundle>) {
    for (user, bundle) in from {
        match into.get(user) {
            Some(mine) if mine.version >= bundle.version => {}
            _ => {
                into.insert(*user, bundle.clone());
            }
        }
    }
}

fn fail<E>(path: &Path, reason: &str, cause: E) -> ClientError
where
    E: std::error::Error + Send + Sync + 'static,
{
    ClientError::Profile {
        path: path.display().to_string(),
        reason: format!("{reason}: {cause}"),
        cause: Some(Box::new(cause)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_profile_is_private_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("profile.json");
        let profile = Profile {
            identity: Some(Identity::generate(cinder_proto::Timestamp(5)).unwrap()),
            ..Profile::default()
        };
        profile.save(&path).unwrap();

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = Profile::load(&path).unwrap();
        let (a, b) = (back.identity.unwrap(), profile.identity.unwrap());
        assert_eq!(a.bundle, b.bundle);
        assert_eq!(a.seeds.sign, b.seeds.sign);
    }

    #[test]
    fn missing_profile_is_empty_and_garbage_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            Profile::load(&dir.path().join("none.json"))
                .unwrap()
                .identity
                .is_none()
        );
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, b"{not json").unwrap();
        assert!(matches!(
            Profile::load(&bad),
            Err(ClientError::Profile { .. })
        ));
    }
}
