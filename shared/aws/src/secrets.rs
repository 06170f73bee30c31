//! The one long-term secret a function needs (the enclave's master secret, the calls
//! function's TURN secret), read from its environment at start.
//!
//! In AWS the secret lives in Secrets Manager, and the template hands its value to the
//! function's configuration with a CloudFormation dynamic reference; Lambda keeps the
//! variable encrypted at rest under the stack's own KMS key, which only the two functions'
//! roles may decrypt with, and decrypts it before the process starts. So a cold start
//! reads it from memory instead of making a Secrets Manager round trip (docs/DEPLOY.md,
//! "Secrets"; docs/PERFORMANCE.md, "Cold start"). The value is never logged: it prints as
//! `SecretValue(..)` and is wiped when dropped.

use zeroize::Zeroizing;

use crate::ConfigError;

/// A secret read from the environment: printed as `SecretValue(..)`, wiped on drop.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue(..)")
    }
}

impl SecretValue {
    /// Reads the variable `name`: missing, not Unicode or empty is an error that names the
    /// variable, never the value.
    pub fn from_env(name: &'static str) -> Result<Self, ConfigError> {
        match std::env::var(name) {
            Err(std::env::VarError::NotPresent) => Err(ConfigError::Missing(name)),
            Err(std::env::VarError::NotUnicode(_)) => Err(ConfigError::Invalid(name)),
            Ok(value) if value.is_empty() => Err(ConfigError::Invalid(name)),
            Ok(value) => Ok(Self(Zeroizing::new(value.into_bytes()))),
        }
    }

    /// The secret's bytes (its UTF-8 string, as Secrets Manager holds it).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let secret = SecretValue(Zeroizing::new(b"hunter2 hunter2".to_vec()));
        assert_eq!(format!("{secret:?}"), "SecretValue(..)");
        assert_eq!(secret.bytes(), b"hunter2 hunter2");
    }
}
