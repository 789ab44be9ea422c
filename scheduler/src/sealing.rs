//! Sealing secrets for storage: XChaCha20-Poly1305 under the operator's keys (`--secrets-key`),
//! bound to the row that holds them. Pure: the database pass over stored secrets is
//! [`crate::secrets_at_rest`].
//!
//! A sealed value reads `enc:v1:<key id>:<base64(nonce ‖ ciphertext)>`. The key id is a
//! fingerprint of the key (not the key), so the key that opens a row is found at once and a row
//! sealed under a key that is not configured is named as such. The nonce is 24 random bytes,
//! which XChaCha20 makes safe to draw at random for any number of rows. The associated data is
//! the row's identity ([`Row`]): a sealed value copied into another tenant's row, or into
//! another setting, does not open. A stored value without the prefix is plaintext (`whsec_…`, or
//! the JWT secret as an install without keys wrote it).

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// The flag that configures the keys, as errors name it.
pub const FLAG: &str = "--secrets-key (HOOKBEAT_SECRETS_KEY)";
const PREFIX: &str = "enc:v1:";
const KEY_BYTES: usize = 32;
const NONCE_BYTES: usize = 24;
/// Hex digits of a key id: 64 bits of SHA-256, enough to tell a handful of keys apart.
const KEY_ID_HEX: usize = 16;

/// Where a secret is stored: sealed under one row's identity, it opens only there.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    /// A row of `signing_secrets`.
    SigningSecret { tenant: &'a str, id: Uuid },
    /// A row of `settings`, by its key.
    Setting { key: &'a str },
}

impl Row<'_> {
    /// The associated data: the table and the row's identity, each part length-prefixed so no
    /// two identities share an encoding.
    fn associated_data(&self) -> Vec<u8> {
        let id;
        let parts: [&[u8]; 3] = match self {
            Row::SigningSecret { tenant, id: row } => {
                id = row.to_string();
                [b"signing_secrets", id.as_bytes(), tenant.as_bytes()]
            }
            Row::Setting { key } => [b"settings", key.as_bytes(), b""],
        };
        let mut data = b"hookbeat sealed v1".to_vec();
        for part in parts {
            data.extend_from_slice(&(part.len() as u32).to_be_bytes());
            data.extend_from_slice(part);
        }
        data
    }
}

/// Why `--secrets-key` was refused. Messages never quote the value: it is a key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeysError {
    #[error("{FLAG} is empty; give one or more base64 32-byte keys, comma-separated")]
    Empty,
    #[error(
        "{FLAG}: key {position} is not valid base64 (make one with `openssl rand -base64 32`)"
    )]
    NotBase64 { position: usize },
    #[error("{FLAG}: key {position} is {length} bytes, not 32 (make one with `openssl rand -base64 32`)")]
    WrongLength { position: usize, length: usize },
    #[error("{FLAG}: key {position} repeats key {first}")]
    Repeated { position: usize, first: usize },
}

/// Why a stored secret did not open.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    #[error("it is encrypted, but no {FLAG} is set")]
    NoKeys,
    #[error("it is encrypted with key {key_id}, which is not among the keys of {FLAG}")]
    UnknownKey { key_id: String },
    #[error("it does not decrypt with key {key_id}: it was altered, or copied from another row")]
    Corrupt { key_id: String },
    #[error("it is not a well-formed encrypted value")]
    Malformed,
}

struct Key {
    id: String,
    cipher: XChaCha20Poly1305,
}

/// The operator's keys: the first seals, every one opens. Does not print its keys.
#[derive(Clone)]
pub struct SecretsKeys(Arc<Vec<Key>>);

impl std::fmt::Debug for SecretsKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SecretsKeys")
            .field(&self.0.iter().map(|k| k.id.as_str()).collect::<Vec<_>>())
            .finish()
    }
}

impl SecretsKeys {
    /// Parses the flag's value: base64 32-byte keys, comma-separated, blanks around each ignored.
    pub fn parse(value: &str) -> Result<Self, KeysError> {
        if value.trim().is_empty() {
            return Err(KeysError::Empty);
        }
        let mut keys: Vec<Key> = Vec::new();
        for (n, text) in value.split(',').map(str::trim).enumerate() {
            let position = n + 1;
            let bytes = BASE64
                .decode(text)
                .map_err(|_| KeysError::NotBase64 { position })?;
            if bytes.len() != KEY_BYTES {
                return Err(KeysError::WrongLength {
                    position,
                    length: bytes.len(),
                });
            }
            let id = key_id(&bytes);
            if let Some(first) = keys.iter().position(|k| k.id == id) {
                return Err(KeysError::Repeated {
                    position,
                    first: first + 1,
                });
            }
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes).expect("the length is checked");
            keys.push(Key { id, cipher });
        }
        Ok(Self(Arc::new(keys)))
    }

    /// The id of the key that seals.
    pub fn current_id(&self) -> &str {
        &self.0[0].id
    }

    fn seal(&self, row: Row<'_>, plaintext: &str) -> String {
        let key = &self.0[0];
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = row.associated_data();
        let ciphertext = key
            .cipher
            .encrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message of a secret's size");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}:{}", key.id, BASE64.encode(sealed))
    }

    fn open(&self, row: Row<'_>, key_id: &str, sealed: &str) -> Result<String, OpenError> {
        let key = self
            .0
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| OpenError::UnknownKey {
                key_id: key_id.to_owned(),
            })?;
        let bytes = BASE64.decode(sealed).map_err(|_| OpenError::Malformed)?;
        if bytes.len() < NONCE_BYTES {
            return Err(OpenError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().expect("split at its length");
        let aad = row.associated_data();
        let corrupt = || OpenError::Corrupt {
            key_id: key_id.to_owned(),
        };
        let plaintext = key
            .cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad,
                },
            )
            .map_err(|_| corrupt())?;
        String::from_utf8(plaintext).map_err(|_| corrupt())
    }
}

fn key_id(key: &[u8]) -> String {
    let digest = Sha256::new()
        .chain_update(b"hookbeat secrets key id\0")
        .chain_update(key)
        .finalize();
    digest
        .iter()
        .take(KEY_ID_HEX / 2)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// How a stored value reads.
#[derive(Debug, PartialEq, Eq)]
enum Stored<'a> {
    Plaintext(&'a str),
    Sealed { key_id: &'a str, sealed: &'a str },
}

impl<'a> Stored<'a> {
    fn of(value: &'a str) -> Self {
        match value
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split_once(':'))
        {
            Some((key_id, sealed)) => Stored::Sealed { key_id, sealed },
            None => Stored::Plaintext(value),
        }
    }
}

/// Seals secrets on their way into the database and opens them on the way out: with keys,
/// under the first; without, stored as they are.
#[derive(Debug, Clone, Default)]
pub struct Sealer(Option<SecretsKeys>);

impl Sealer {
    pub fn new(keys: Option<SecretsKeys>) -> Self {
        Self(keys)
    }

    /// A sealer without keys: secrets are stored in plaintext.
    pub fn plaintext() -> Self {
        Self(None)
    }

    pub fn keys(&self) -> Option<&SecretsKeys> {
        self.0.as_ref()
    }

    /// The value to store for `plaintext` in `row`.
    pub fn seal(&self, row: Row<'_>, plaintext: &str) -> String {
        match &self.0 {
            Some(keys) => keys.seal(row, plaintext),
            None => plaintext.to_owned(),
        }
    }

    /// The secret that `stored` in `row` holds. Plaintext passes through even with keys: a row
    /// written before the keys were configured holds its secret until the start-up pass seals it.
    pub fn open(&self, row: Row<'_>, stored: &str) -> Result<String, OpenError> {
        match (Stored::of(stored), &self.0) {
            (Stored::Plaintext(plaintext), _) => Ok(plaintext.to_owned()),
            (Stored::Sealed { .. }, None) => Err(OpenError::NoKeys),
            (Stored::Sealed { key_id, sealed }, Some(keys)) => keys.open(row, key_id, sealed),
        }
    }

    /// Whether `stored` should be sealed again: it is plaintext, or sealed under a key that is
    /// not the first. Always `false` without keys.
    pub fn needs_sealing(&self, stored: &str) -> bool {
        match (&self.0, Stored::of(stored)) {
            (None, _) => false,
            (Some(_), Stored::Plaintext(_)) => true,
            (Some(keys), Stored::Sealed { key_id, .. }) => key_id != keys.current_id(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> String {
        BASE64.encode([byte; KEY_BYTES])
    }

    fn sealer(value: &str) -> Sealer {
        Sealer::new(Some(SecretsKeys::parse(value).unwrap()))
    }

    const TENANT: &str = "acme";

    fn row(id: Uuid) -> Row<'static> {
        Row::SigningSecret { tenant: TENANT, id }
    }

    #[test]
    fn a_sealed_secret_opens_in_its_row() {
        let sealer = sealer(&key(1));
        let id = Uuid::now_v7();
        let stored = sealer.seal(row(id), "whsec_abc");
        assert!(stored.starts_with("enc:v1:"), "{stored}");
        assert!(!stored.contains("whsec_"));
        assert_eq!(sealer.open(row(id), &stored).unwrap(), "whsec_abc");
        let setting = Row::Setting { key: "jwt_secret" };
        let stored = sealer.seal(setting, "jwt");
        assert_eq!(sealer.open(setting, &stored).unwrap(), "jwt");
    }

    #[test]
    fn each_seal_draws_a_new_nonce() {
        let sealer = sealer(&key(1));
        let id = Uuid::now_v7();
        assert_ne!(sealer.seal(row(id), "same"), sealer.seal(row(id), "same"));
    }

    #[test]
    fn a_value_moved_to_another_row_does_not_open() {
        let sealer = sealer(&key(1));
        let id = Uuid::now_v7();
        let stored = sealer.seal(row(id), "whsec_abc");
        let other_id = Row::SigningSecret {
            tenant: TENANT,
            id: Uuid::now_v7(),
        };
        let other_tenant = Row::SigningSecret {
            tenant: "intruder",
            id,
        };
        let setting = Row::Setting { key: "jwt_secret" };
        for elsewhere in [other_id, other_tenant, setting] {
            assert!(
                matches!(
                    sealer.open(elsewhere, &stored),
                    Err(OpenError::Corrupt { .. })
                ),
                "{elsewhere:?}"
            );
        }
    }

    #[test]
    fn a_tampered_value_does_not_open() {
        let sealer = sealer(&key(1));
        let id = Uuid::now_v7();
        let stored = sealer.seal(row(id), "whsec_abc");
        let (head, body) = stored.rsplit_once(':').unwrap();
        let mut bytes = BASE64.decode(body).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        let tampered = format!("{head}:{}", BASE64.encode(&bytes));
        assert!(matches!(
            sealer.open(row(id), &tampered),
            Err(OpenError::Corrupt { .. })
        ));
        assert_eq!(
            sealer.open(row(id), &format!("{head}:***")),
            Err(OpenError::Malformed)
        );
        assert_eq!(
            sealer.open(row(id), &format!("{head}:AAAA")),
            Err(OpenError::Malformed)
        );
    }

    #[test]
    fn the_wrong_key_or_no_key_does_not_open() {
        let id = Uuid::now_v7();
        let stored = sealer(&key(1)).seal(row(id), "whsec_abc");
        let wrong = sealer(&key(2));
        match wrong.open(row(id), &stored) {
            Err(OpenError::UnknownKey { key_id }) => {
                assert_eq!(key_id, SecretsKeys::parse(&key(1)).unwrap().current_id())
            }
            other => panic!("expected an unknown key, got {other:?}"),
        }
        assert_eq!(
            Sealer::plaintext().open(row(id), &stored),
            Err(OpenError::NoKeys)
        );
    }

    #[test]
    fn every_key_opens_and_the_first_seals() {
        let id = Uuid::now_v7();
        let old = sealer(&key(1)).seal(row(id), "whsec_abc");
        let rotated = sealer(&format!("{}, {}", key(2), key(1)));
        assert_eq!(rotated.open(row(id), &old).unwrap(), "whsec_abc");
        assert!(rotated.needs_sealing(&old), "sealed under the old key");
        let new = rotated.seal(row(id), "whsec_abc");
        assert!(!rotated.needs_sealing(&new));
        assert!(rotated.needs_sealing("whsec_abc"), "plaintext");
        assert!(!Sealer::plaintext().needs_sealing("whsec_abc"));
        assert_eq!(sealer(&key(2)).open(row(id), &new).unwrap(), "whsec_abc");
    }

    #[test]
    fn plaintext_passes_through() {
        let id = Uuid::now_v7();
        assert_eq!(Sealer::plaintext().seal(row(id), "whsec_abc"), "whsec_abc");
        assert_eq!(
            sealer(&key(1)).open(row(id), "whsec_abc").unwrap(),
            "whsec_abc"
        );
    }

    #[test]
    fn the_flag_is_parsed_and_its_errors_name_it_without_the_key() {
        assert_eq!(SecretsKeys::parse("").unwrap_err(), KeysError::Empty);
        assert_eq!(SecretsKeys::parse("  ").unwrap_err(), KeysError::Empty);
        assert_eq!(
            SecretsKeys::parse(&format!("{},not base64!", key(1))).unwrap_err(),
            KeysError::NotBase64 { position: 2 }
        );
        assert_eq!(
            SecretsKeys::parse(&format!("{},", key(1))).unwrap_err(),
            KeysError::WrongLength {
                position: 2,
                length: 0
            }
        );
        let short = BASE64.encode([7u8; 16]);
        let error = SecretsKeys::parse(&short).unwrap_err();
        assert_eq!(
            error,
            KeysError::WrongLength {
                position: 1,
                length: 16
            }
        );
        let message = error.to_string();
        assert!(message.contains("--secrets-key"), "{message}");
        assert!(message.contains("HOOKBEAT_SECRETS_KEY"), "{message}");
        assert!(!message.contains(&short), "{message}");
        assert_eq!(
            SecretsKeys::parse(&format!("{},{}", key(1), key(1))).unwrap_err(),
            KeysError::Repeated {
                position: 2,
                first: 1
            }
        );
        let keys = SecretsKeys::parse(&format!(" {} ,{}", key(1), key(2))).unwrap();
        assert_eq!(keys.current_id().len(), KEY_ID_HEX);
        let printed = format!("{keys:?}");
        assert!(
            !printed.contains(&key(1)) && !printed.contains(&key(2)),
            "{printed}"
        );
        assert!(printed.contains(keys.current_id()));
    }
}
