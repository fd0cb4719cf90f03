//! The log's signing key and signed checkpoints.
//!
//! The key is an ed25519 seed in `<state>/log.key` (32 raw bytes, mode 0600). Checkpoints are
//! signed notes in the shape of C2SP `tlog-checkpoint`: an origin line, the tree size, the head
//! hash in base64, a blank line, then `— <name> <base64(key_id ‖ signature)>`.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::LogError;

/// The key name used in signature lines and public keys.
pub const KEY_NAME: &str = "faramesh-log";
/// C2SP signed-note algorithm byte for Ed25519.
const ALG_ED25519: u8 = 0x01;

/// A loaded signing key with its derived identifiers.
#[derive(Clone)]
pub struct LogKey {
    signing: SigningKey,
    /// The C2SP key id: the first 4 bytes of SHA-256(name ‖ `\n` ‖ 0x01 ‖ public key).
    pub key_id: [u8; 4],
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogKey").field("public", &self.public().to_text()).finish()
    }
}

/// A public key that verifies checkpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    /// The C2SP key id.
    pub key_id: [u8; 4],
}

fn key_id_of(public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(KEY_NAME.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

impl LogKey {
    /// Loads `path`, or creates it (mode 0600) when missing. Refuses a key file that group or
    /// others can read or write.
    pub fn load_or_create(path: &Path) -> Result<LogKey, LogError> {
        match std::fs::metadata(path) {
            Ok(meta) => {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(LogError::KeyMode { path: path.to_owned(), mode });
                }
                let mut seed = [0u8; 32];
                let mut file = std::fs::File::open(path).map_err(|e| LogError::io("open", path, e))?;
                let n = file.read(&mut seed).map_err(|e| LogError::io("read", path, e))?;
                let mut extra = [0u8; 1];
                if n != 32 || file.read(&mut extra).unwrap_or(0) != 0 {
                    return Err(LogError::KeyNotSeed(path.to_owned()));
                }
                Ok(LogKey::from_seed(&seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut seed = [0u8; 32];
                super::random_bytes(&mut seed)
                    .map_err(|e| LogError::io("read", Path::new(super::RANDOM_SOURCE), e))?;
                let mut file = super::create_private(path).map_err(|e| LogError::io("create", path, e))?;
                file.write_all(&seed)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| LogError::io("write", path, e))?;
                Ok(LogKey::from_seed(&seed))
            }
            Err(e) => Err(LogError::io("stat", path, e)),
        }
    }

    /// A key from its 32-byte seed.
    pub fn from_seed(seed: &[u8; 32]) -> LogKey {
        let signing = SigningKey::from_bytes(seed);
        let key_id = key_id_of(&signing.verifying_key());
        LogKey { signing, key_id }
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        let key = self.signing.verifying_key();
        PublicKey { key_id: key_id_of(&key), key }
    }

    /// Signs a checkpoint body and returns the whole note.
    pub fn sign_checkpoint(&self, cp: &Checkpoint) -> String {
        let body = cp.body();
        let sig = self.signing.sign(body.as_bytes());
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&self.key_id);
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {KEY_NAME} {}\n", base64_encode(&blob))
    }
}

impl PublicKey {
    /// The C2SP verifier-key text: `faramesh-log+<key id hex>+<base64(0x01 ‖ public key)>`.
    pub fn to_text(&self) -> String {
        let mut blob = vec![ALG_ED25519];
        blob.extend_from_slice(self.key.as_bytes());
        format!("{KEY_NAME}+{}+{}", faramesh_proto::canonical::to_hex(&self.key_id), base64_encode(&blob))
    }

    /// Parses the text form written by [`PublicKey::to_text`].
    pub fn from_text(text: &str) -> Result<PublicKey, LogError> {
        let bad = |why: &'static str| LogError::PublicKey { text: text.trim().to_owned(), why };
        let mut parts = text.trim().splitn(3, '+');
        let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad("expected `name+keyid+base64`"));
        };
        if name != KEY_NAME {
            return Err(bad("unknown key name"));
        }
        let blob = base64_decode(b64).ok_or_else(|| bad("invalid base64"))?;
        let (Some(&ALG_ED25519), Ok(raw)) =
            (blob.first(), <[u8; 32]>::try_from(blob.get(1..).unwrap_or(&[])))
        else {
            return Err(bad("not an ed25519 key"));
        };
        let key = VerifyingKey::from_bytes(&raw).map_err(|_| bad("not a valid ed25519 point"))?;
        let key_id = key_id_of(&key);
        if faramesh_proto::canonical::to_hex(&key_id) != id_hex {
            return Err(bad("key id does not match the key"));
        }
        Ok(PublicKey { key, key_id })
    }

    /// Checks a signed note and returns its checkpoint.
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let (body, sigs) = note.split_once("\n\n").ok_or(CheckpointError::Malformed("no signature block"))?;
        let cp = Checkpoint::parse_body(body)?;
        let body_text = format!("{body}\n");
        for line in sigs.lines() {
            let Some(rest) = line.strip_prefix("\u{2014} ") else { continue };
            let Some((name, b64)) = rest.split_once(' ') else { continue };
            if name != KEY_NAME {
                continue;
            }
            let Some(blob) = base64_decode(b64) else { continue };
            if blob.len() != 68 || blob[..4] != self.key_id {
                continue;
            }
            let sig_bytes: [u8; 64] =
                blob[4..].try_into().map_err(|_| CheckpointError::Malformed("bad signature length"))?;
            let sig = Signature::from_bytes(&sig_bytes);
            return self
                .key
                .verify_strict(body_text.as_bytes(), &sig)
                .map(|()| cp)
                .map_err(|_| CheckpointError::BadSignature);
        }
        Err(CheckpointError::NotSignedByKey)
    }
}

/// Why a signed checkpoint note does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// The note does not have the checkpoint's shape.
    #[error("checkpoint is malformed: {0}")]
    Malformed(&'static str),
    /// The note carries a signature by this key that does not verify.
    #[error("checkpoint signature does not verify")]
    BadSignature,
    /// No signature line is by this key.
    #[error("checkpoint has no signature by this key")]
    NotSignedByKey,
}

/// A checkpoint: the log's id, its size (entries) and the hash of entry `size`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (`faramesh/<log id>`).
    pub origin: String,
    /// Number of entries (= the last sequence number).
    pub size: u64,
    /// `entry_hash` of entry `size` (the genesis value for size 0).
    pub head_hash: [u8; 32],
}

impl Checkpoint {
    /// The signed text: `origin\nsize\nbase64(head)\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, base64_encode(&self.head_hash))
    }

    fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
        let mut lines = body.split('\n');
        let origin =
            lines.next().filter(|l| !l.is_empty()).ok_or(CheckpointError::Malformed("no origin line"))?;
        let size = lines
            .next()
            .and_then(|l| l.parse::<u64>().ok())
            .ok_or(CheckpointError::Malformed("the size is not a number"))?;
        let head = lines
            .next()
            .and_then(base64_decode)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or(CheckpointError::Malformed("the head hash is not 32 bytes of base64"))?;
        Ok(Checkpoint { origin: origin.to_owned(), size, head_hash: head })
    }
}

/// Standard padded base64 (RFC 4648).
pub fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard padded base64; `None` when malformed.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for len in 0..40 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            assert_eq!(base64_decode(&base64_encode(&data)).unwrap(), data);
        }
        assert_eq!(base64_encode(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64_encode(b"fo"), "Zm8=");
        assert_eq!(base64_decode("Zm8"), None);
        assert_eq!(base64_decode("Z=8="), None);
    }

    #[test]
    fn checkpoints_sign_and_verify() {
        let key = LogKey::from_seed(&[7u8; 32]);
        let cp = Checkpoint { origin: "faramesh/test".into(), size: 42, head_hash: [9u8; 32] };
        let note = key.sign_checkpoint(&cp);
        let public = PublicKey::from_text(&key.public().to_text()).unwrap();
        assert_eq!(public.verify_checkpoint(&note).unwrap(), cp);
        let forged = note.replace("\n42\n", "\n41\n");
        assert_eq!(public.verify_checkpoint(&forged).unwrap_err(), CheckpointError::BadSignature);
        let other = LogKey::from_seed(&[8u8; 32]).public();
        assert_eq!(other.verify_checkpoint(&note).unwrap_err(), CheckpointError::NotSignedByKey);
    }

    #[test]
    fn key_file_is_created_private_and_refused_when_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let a = LogKey::load_or_create(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        let b = LogKey::load_or_create(&path).unwrap();
        assert_eq!(a.public(), b.public());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = LogKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("mode 644"), "{err}");
    }
}
