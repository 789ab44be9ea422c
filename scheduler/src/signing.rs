//! Webhook signatures as the Standard Webhooks specification defines them:
//! `v1,` + base64(HMAC-SHA256(key, "{webhook-id}.{webhook-timestamp}.{body}")), where the key is
//! the base64 part of a `whsec_…` secret. During a rotation one signature per valid secret is
//! sent, space-separated, so receivers holding either secret accept the request.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";
/// 32 random bytes: above the specification's 24-byte minimum, the size of the HMAC's output.
const SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("a signing secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("a signing secret's key must be valid base64")]
    NotBase64,
}

/// A decoded signing key. Deliberately not `Debug`: keys never reach a log.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    pub fn from_secret(secret: &str) -> Result<Self, SecretError> {
        let encoded = secret
            .strip_prefix(PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        BASE64
            .decode(encoded)
            .map(SigningKey)
            .map_err(|_| SecretError::NotBase64)
    }

    /// `v1,<base64 signature>` of one message.
    pub fn sign(&self, msg_id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts keys of any length");
        mac.update(msg_id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

/// The `webhook-signature` header value: one signature per key, space-separated.
pub fn signature_header(keys: &[SigningKey], msg_id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| key.sign(msg_id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new random secret, `whsec_` + base64 of 32 bytes from the OS's CSPRNG.
pub fn generate_secret() -> String {
    let mut key = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut key);
    format!("{PREFIX}{}", BASE64.encode(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector published with the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_test_vector() {
        let key = SigningKey::from_secret("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        assert_eq!(
            key.sign("msg_27UH4WbU6Z5A5EzD8u03UvzRbpk", 1649367553, body),
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw="
        );
    }

    #[test]
    fn one_signature_per_key_during_rotation() {
        let old = SigningKey::from_secret(&generate_secret()).unwrap();
        let new = SigningKey::from_secret(&generate_secret()).unwrap();
        let header = signature_header(&[new.clone(), old.clone()], "id", 1, b"{}");
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(
            parts,
            vec![new.sign("id", 1, b"{}"), old.sign("id", 1, b"{}")]
        );
        assert_ne!(parts[0], parts[1]);
    }

    #[test]
    fn generated_secrets_are_well_formed_and_distinct() {
        let a = generate_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(BASE64.decode(&a[6..]).unwrap().len(), SECRET_BYTES);
        assert_ne!(a, generate_secret());
    }

    #[test]
    fn malformed_secrets_are_refused() {
        assert_eq!(
            SigningKey::from_secret("abc").err(),
            Some(SecretError::MissingPrefix)
        );
        assert_eq!(
            SigningKey::from_secret("whsec_***").err(),
            Some(SecretError::NotBase64)
        );
    }
}
