//! Secrets Manager: the one secret a function needs, read once at start (the enclave's
//! master secret, the calls function's TURN secret). Never logged.

/// Why a secret could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager refused or failed.
    #[error("cannot read the secret: {0}")]
    Fetch(String),
    /// The secret has no string value.
    #[error("the secret has no string value")]
    Empty,
}

/// Reads a secret's string value (CloudFormation generates each; see template.yaml).
pub async fn secret_bytes(sdk: &aws_config::SdkConfig, id: &str) -> Result<Vec<u8>, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let out = client
        .get_secret_value()
        .secret_id(id)
        .send()
        .await
        .map_err(|e| {
            SecretError::Fetch(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
        })?;
    out.secret_string
        .map(String::into_bytes)
        .filter(|b| !b.is_empty())
        .ok_or(SecretError::Empty)
}
