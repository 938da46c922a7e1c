//! Secret keys at rest: a 0600 file, sealed with ChaCha20-Poly1305 under an Argon2id key
//! when a passphrase is given.
//!
//! The file is JSON so that a person can see what it is; the secrets inside are hex, or a
//! ciphertext when sealed. A wrong passphrase fails the AEAD tag check and is reported as
//! such, never as garbage keys.

use std::io::Write;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::domain::identity::{parse_hex, random32, Secrets};

/// File name of the key file inside the data dir.
pub const KEYFILE_NAME: &str = "identity.key";

/// Errors reading or writing the key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyfileError {
    /// The key file is sealed and no passphrase was given.
    #[error("the identity in {0} is encrypted: set LAMA_PASSPHRASE to its passphrase")]
    PassphraseRequired(PathBuf),
    /// The passphrase does not open the sealed key file.
    #[error("wrong passphrase for {0}: LAMA_PASSPHRASE does not open this identity; set it to the passphrase used when the identity was created")]
    WrongPassphrase(PathBuf),
    /// The key file exists but cannot be parsed.
    #[error("the key file {path} is damaged ({why}); restore it from a backup, or move the data dir away to start a new identity")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file system refused a read or write.
    #[error("cannot access key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

#[derive(Serialize, Deserialize)]
struct PlainSecrets {
    person: String,
    instance: String,
    transport: String,
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "format")]
enum KeyfileJson {
    /// Unsealed secrets; the file mode is the only protection.
    #[serde(rename = "lama-keys-plain-v1")]
    Plain { name: String, secrets: PlainSecrets },
    /// Sealed secrets.
    #[serde(rename = "lama-keys-sealed-v1")]
    Sealed {
        name: String,
        /// Argon2id salt, hex.
        salt: String,
        /// ChaCha20-Poly1305 nonce, hex (12 bytes).
        nonce: String,
        /// Ciphertext of the 96 secret bytes (person, instance, transport) plus tag, hex.
        ciphertext: String,
    },
}

/// What a key file holds: the Person name and the secrets.
#[derive(Debug)]
pub struct KeyfileContents {
    /// The Person name the identity was created with.
    pub name: String,
    /// The secrets.
    pub secrets: Secrets,
}

fn derive_key(passphrase: &str, salt: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    argon2::Argon2::default()
        .hash_password_into(passphrase.as_bytes(), salt, &mut out)
        .expect("invariant: 32-byte output and 16-byte salt are within Argon2 limits");
    out
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> KeyfileError + '_ {
    move |source| KeyfileError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Write the key file atomically (temp file, fsync, rename) with mode 0600.
pub fn write(
    dir: &Path,
    name: &str,
    secrets: &Secrets,
    passphrase: Option<&str>,
) -> Result<(), KeyfileError> {
    let path = dir.join(KEYFILE_NAME);
    let json = match passphrase {
        None => KeyfileJson::Plain {
            name: name.into(),
            secrets: PlainSecrets {
                person: crate::domain::hex::encode(secrets.person),
                instance: crate::domain::hex::encode(secrets.instance),
                transport: crate::domain::hex::encode(secrets.transport),
            },
        },
        Some(pass) => {
            let salt = &random32()[..16];
            let nonce = &random32()[..12];
            let mut key = derive_key(pass, salt);
            let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
            key.zeroize();
            let mut plain = Vec::with_capacity(96);
            plain.extend_from_slice(&secrets.person);
            plain.extend_from_slice(&secrets.instance);
            plain.extend_from_slice(&secrets.transport);
            let ct = cipher
                .encrypt(Nonce::from_slice(nonce), plain.as_slice())
                .expect("invariant: encryption of a short buffer cannot fail");
            plain.zeroize();
            KeyfileJson::Sealed {
                name: name.into(),
                salt: crate::domain::hex::encode(salt),
                nonce: crate::domain::hex::encode(nonce),
                ciphertext: crate::domain::hex::encode(ct),
            }
        }
    };
    let bytes = serde_json::to_vec_pretty(&json).expect("invariant: strings serialise");
    let tmp = dir.join(format!("{KEYFILE_NAME}.tmp"));
    {
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut f = opts.open(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    Ok(())
}

/// Read the key file, or `None` when there is none yet.
pub fn read(dir: &Path, passphrase: Option<&str>) -> Result<Option<KeyfileContents>, KeyfileError> {
    let path = dir.join(KEYFILE_NAME);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let corrupt = |why: String| KeyfileError::Corrupt {
        path: path.clone(),
        why,
    };
    let json: KeyfileJson = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
    let hex32 =
        |s: &str, f: &'static str| parse_hex::<32>(s, f).map_err(|e| corrupt(e.to_string()));
    match json {
        KeyfileJson::Plain { name, secrets } => Ok(Some(KeyfileContents {
            name,
            secrets: Secrets {
                person: hex32(&secrets.person, "person")?,
                instance: hex32(&secrets.instance, "instance")?,
                transport: hex32(&secrets.transport, "transport")?,
            },
        })),
        KeyfileJson::Sealed {
            name,
            salt,
            nonce,
            ciphertext,
        } => {
            let pass = passphrase.ok_or_else(|| KeyfileError::PassphraseRequired(path.clone()))?;
            let salt = parse_hex::<16>(&salt, "salt").map_err(|e| corrupt(e.to_string()))?;
            let nonce = parse_hex::<12>(&nonce, "nonce").map_err(|e| corrupt(e.to_string()))?;
            let ct = crate::domain::hex::decode(&ciphertext).map_err(|e| corrupt(e.to_string()))?;
            let mut key = derive_key(pass, &salt);
            let cipher = ChaCha20Poly1305::new(Key::from_slice(&key));
            key.zeroize();
            let mut plain = cipher
                .decrypt(Nonce::from_slice(&nonce), ct.as_slice())
                .map_err(|_| KeyfileError::WrongPassphrase(path.clone()))?;
            if plain.len() != 96 {
                plain.zeroize();
                return Err(corrupt("sealed secrets have the wrong length".into()));
            }
            let mut s = Secrets {
                person: [0; 32],
                instance: [0; 32],
                transport: [0; 32],
            };
            s.person.copy_from_slice(&plain[..32]);
            s.instance.copy_from_slice(&plain[32..64]);
            s.transport.copy_from_slice(&plain[64..]);
            plain.zeroize();
            Ok(Some(KeyfileContents { name, secrets: s }))
        }
    }
}
