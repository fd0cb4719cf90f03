//! The log's signing key and signed checkpoints.
//!
//! The key is an ed25519 seed in `<state>/log.key` (32 raw bytes, mode 0600). Checkpoints are
//! C2SP `tlog-checkpoint`s in a C2SP `signed-note`: the origin line, the tree size, the base64
//! Merkle root, a blank line, then `— <origin> <base64(key_id ‖ signature)>` (the key is named
//! after the origin). Logs of format 3 and before signed the hash of the last entry in place of
//! the root, under the key name `faramesh-log`; those checkpoints still verify ([`Checkpoint::legacy`]).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use super::LogError;

/// The key name of checkpoints of format 3 and before (whose third line is the hash of the
/// last entry, not a Merkle root), and of a key not yet bound to a log.
pub const KEY_NAME: &str = "faramesh-log";
/// C2SP signed-note algorithm byte for Ed25519.
const ALG_ED25519: u8 = 0x01;
/// C2SP signed-note algorithm byte for a timestamped Ed25519 cosignature (`cosignature/v1`).
const ALG_COSIGNATURE: u8 = 0x04;

/// A loaded signing key with its derived identifiers.
#[derive(Clone)]
pub struct LogKey {
    signing: SigningKey,
    /// The key name: the log's origin once the log is open ([`LogKey::named`]).
    name: String,
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
    /// The key name of its verifier-key text (the log's origin, or `faramesh-log`).
    name: String,
    /// The C2SP key id under that name.
    pub key_id: [u8; 4],
}

/// The C2SP key id: the first 4 bytes of SHA-256(name ‖ `\n` ‖ algorithm ‖ public key).
fn key_id_with(name: &str, alg: u8, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([alg]);
    h.update(public);
    let digest = h.finalize();
    [digest[0], digest[1], digest[2], digest[3]]
}

fn key_id_of(name: &str, public: &VerifyingKey) -> [u8; 4] {
    key_id_with(name, ALG_ED25519, public.as_bytes())
}

/// Whether `name` can be a signed-note key name: not empty, no `+`, no whitespace.
pub fn valid_key_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
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

    /// A key from its 32-byte seed, named `faramesh-log` until [`LogKey::named`].
    pub fn from_seed(seed: &[u8; 32]) -> LogKey {
        let signing = SigningKey::from_bytes(seed);
        let key_id = key_id_of(KEY_NAME, &signing.verifying_key());
        LogKey { signing, name: KEY_NAME.to_owned(), key_id }
    }

    /// The same key under another name (the log's origin: C2SP checkpoints are signed by a key
    /// named after their origin).
    pub fn named(&self, name: &str) -> LogKey {
        let key_id = key_id_of(name, &self.signing.verifying_key());
        LogKey { signing: self.signing.clone(), name: name.to_owned(), key_id }
    }

    /// The key that redaction tokens of this log are computed with
    /// ([`crate::entry::redaction_token`]): HMAC-SHA256 of a fixed label under the signing seed,
    /// so it is secret as the seed is, and no signature or checkpoint reveals it.
    pub fn redaction_key(&self) -> [u8; 32] {
        use hmac::{KeyInit, Mac};
        let Ok(mut mac) = hmac::Hmac::<Sha256>::new_from_slice(&self.signing.to_bytes()) else {
            // HMAC takes a key of any length; unreachable.
            return [0u8; 32];
        };
        mac.update(b"faramesh-log value redaction v1");
        mac.finalize().into_bytes().into()
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half, under this key's name.
    pub fn public(&self) -> PublicKey {
        let key = self.signing.verifying_key();
        PublicKey { key_id: key_id_of(&self.name, &key), name: self.name.clone(), key }
    }

    /// Signs a checkpoint body and returns the whole note: signed under this key's name (the
    /// origin), or under `faramesh-log` for a [`Checkpoint::legacy`] one.
    pub fn sign_checkpoint(&self, cp: &Checkpoint) -> String {
        let body = cp.body();
        let sig = self.signing.sign(body.as_bytes());
        let (name, key_id) = if cp.legacy {
            (KEY_NAME, key_id_of(KEY_NAME, &self.signing.verifying_key()))
        } else {
            (self.name.as_str(), self.key_id)
        };
        let mut blob = Vec::with_capacity(68);
        blob.extend_from_slice(&key_id);
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {name} {}\n", base64_encode(&blob))
    }
}

impl PublicKey {
    /// The C2SP verifier-key text: `<name>+<key id hex>+<base64(0x01 ‖ public key)>`, the name
    /// being the log's origin (`faramesh/<log id>`).
    pub fn to_text(&self) -> String {
        let mut blob = vec![ALG_ED25519];
        blob.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, faramesh_proto::canonical::to_hex(&self.key_id), base64_encode(&blob))
    }

    /// The key name of the verifier-key text.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same key under another name.
    pub fn named(&self, name: &str) -> PublicKey {
        PublicKey { key: self.key, name: name.to_owned(), key_id: key_id_of(name, &self.key) }
    }

    /// Parses a verifier key (`name+keyid+base64`, Ed25519): the log's (named after its origin)
    /// or one printed by earlier versions (`faramesh-log+…`); both verify both checkpoint forms.
    pub fn from_text(text: &str) -> Result<PublicKey, LogError> {
        let bad = |why: &'static str| LogError::PublicKey { text: text.trim().to_owned(), why };
        let (name, key) = parse_vkey(text.trim(), ALG_ED25519).map_err(bad)?;
        let key_id = key_id_of(&name, &key);
        Ok(PublicKey { key, name, key_id })
    }

    /// Checks a signed note and returns its checkpoint: a C2SP checkpoint signed under its
    /// origin's name, or an older one signed under `faramesh-log` ([`Checkpoint::legacy`]).
    /// A key whose text names neither verifies nothing.
    pub fn verify_checkpoint(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let (body, sigs) = split_note(note)?;
        let mut cp = Checkpoint::parse_body(body)?;
        if self.name != KEY_NAME && self.name != cp.origin {
            return Err(CheckpointError::OtherName { key: self.name.clone(), origin: cp.origin });
        }
        let body_text = format!("{body}\n");
        for (name, legacy) in [(cp.origin.clone(), false), (KEY_NAME.to_owned(), true)] {
            let key_id = key_id_of(&name, &self.key);
            for line in sigs.lines() {
                let Some(blob) = signature_blob(line, &name) else { continue };
                if blob.len() != 68 || blob[..4] != key_id {
                    continue;
                }
                let sig_bytes: [u8; 64] =
                    blob[4..].try_into().map_err(|_| CheckpointError::Malformed("bad signature length"))?;
                let sig = Signature::from_bytes(&sig_bytes);
                cp.legacy = legacy;
                return self
                    .key
                    .verify_strict(body_text.as_bytes(), &sig)
                    .map(|()| cp)
                    .map_err(|_| CheckpointError::BadSignature);
            }
        }
        Err(CheckpointError::NotSignedByKey)
    }
}

/// Splits a signed note into its text (without the final newline) and its signature lines.
fn split_note(note: &str) -> Result<(&str, &str), CheckpointError> {
    note.split_once("\n\n").ok_or(CheckpointError::Malformed("no signature block"))
}

/// The decoded `base64(key id ‖ signature)` of a signature line by `name`.
fn signature_blob(line: &str, name: &str) -> Option<Vec<u8>> {
    let rest = line.strip_prefix("\u{2014} ")?;
    let (n, b64) = rest.split_once(' ')?;
    if n != name {
        return None;
    }
    base64_decode(b64)
}

/// Parses a C2SP verifier key `name+keyid+base64(alg ‖ key)` of algorithm `alg` (Ed25519 key
/// material), checking that the key id is the key's under that name.
pub fn parse_vkey(text: &str, alg: u8) -> Result<(String, VerifyingKey), &'static str> {
    let mut parts = text.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(b64)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected `name+keyid+base64`");
    };
    if !valid_key_name(name) {
        return Err("the key name is empty or holds a space");
    }
    let blob = base64_decode(b64).ok_or("invalid base64")?;
    let (Some(&found), Ok(raw)) = (blob.first(), <[u8; 32]>::try_from(blob.get(1..).unwrap_or(&[]))) else {
        return Err("not an ed25519 key");
    };
    if found != alg {
        return Err(if alg == ALG_COSIGNATURE {
            "not a cosignature/v1 key (its type byte is not 0x04)"
        } else {
            "not an ed25519 note key (its type byte is not 0x01)"
        });
    }
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| "not a valid ed25519 point")?;
    if faramesh_proto::canonical::to_hex(&key_id_with(name, alg, &raw)) != id_hex {
        return Err("key id does not match the key");
    }
    Ok((name.to_owned(), key))
}

/// A witness's public key: a C2SP `cosignature/v1` (timestamped Ed25519) verifier key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessKey {
    /// The witness's name (the key name of its signature lines).
    pub name: String,
    key: VerifyingKey,
    /// The key id under that name (algorithm 0x04).
    pub key_id: [u8; 4],
}

/// A verified cosignature: who, and when it was made (POSIX seconds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cosignature {
    /// The witness's name.
    pub name: String,
    /// The time the witness put in it.
    pub timestamp: u64,
    /// The signature line as received (`— <name> <base64>`), without the newline.
    pub line: String,
}

impl WitnessKey {
    /// Parses `name+keyid+base64(0x04 ‖ key)`.
    pub fn from_text(text: &str) -> Result<WitnessKey, LogError> {
        let bad = |why: &'static str| LogError::PublicKey { text: text.trim().to_owned(), why };
        let (name, key) = parse_vkey(text.trim(), ALG_COSIGNATURE).map_err(bad)?;
        let key_id = key_id_with(&name, ALG_COSIGNATURE, key.as_bytes());
        Ok(WitnessKey { name, key, key_id })
    }

    /// The 32 bytes of the key (two witness lines wrapping one key count once).
    pub fn key_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The verifier-key text.
    pub fn to_text(&self) -> String {
        let mut blob = vec![ALG_COSIGNATURE];
        blob.extend_from_slice(self.key.as_bytes());
        format!("{}+{}+{}", self.name, faramesh_proto::canonical::to_hex(&self.key_id), base64_encode(&blob))
    }

    /// The cosignature by this witness among `lines` (signature lines) over the checkpoint text
    /// `body` (its lines, each ending in a newline): `Ok(None)` when no line is this key's,
    /// an error when one is and does not verify.
    pub fn verify_lines(&self, body: &str, lines: &str) -> Result<Option<Cosignature>, CheckpointError> {
        for line in lines.lines() {
            let Some(blob) = signature_blob(line, &self.name) else { continue };
            if blob.len() != 76 || blob[..4] != self.key_id {
                continue;
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&blob[4..12]);
            let timestamp = u64::from_be_bytes(ts);
            let sig_bytes: [u8; 64] =
                blob[12..].try_into().map_err(|_| CheckpointError::Malformed("bad cosignature length"))?;
            let message = format!("cosignature/v1\ntime {timestamp}\n{body}");
            self.key
                .verify_strict(message.as_bytes(), &Signature::from_bytes(&sig_bytes))
                .map_err(|_| CheckpointError::BadSignature)?;
            return Ok(Some(Cosignature { name: self.name.clone(), timestamp, line: line.to_owned() }));
        }
        Ok(None)
    }

    /// The cosignature by this witness on a signed note (`None` when it carries none).
    pub fn verify_note(&self, note: &str) -> Result<Option<Cosignature>, CheckpointError> {
        let (body, sigs) = split_note(note)?;
        self.verify_lines(&format!("{body}\n"), sigs)
    }
}

/// A witness key made from a seed (tests, and the witness stand-in of the end-to-end tests).
pub fn cosign(seed: &[u8; 32], name: &str, timestamp: u64, body: &str) -> (String, String) {
    let signing = SigningKey::from_bytes(seed);
    let public = signing.verifying_key();
    let key_id = key_id_with(name, ALG_COSIGNATURE, public.as_bytes());
    let sig = signing.sign(format!("cosignature/v1\ntime {timestamp}\n{body}").as_bytes());
    let mut blob = key_id.to_vec();
    blob.extend_from_slice(&timestamp.to_be_bytes());
    blob.extend_from_slice(&sig.to_bytes());
    let mut vkey = vec![ALG_COSIGNATURE];
    vkey.extend_from_slice(public.as_bytes());
    (
        format!("\u{2014} {name} {}", base64_encode(&blob)),
        format!("{name}+{}+{}", faramesh_proto::canonical::to_hex(&key_id), base64_encode(&vkey)),
    )
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
    /// The verifier key is named for another log.
    #[error("the key is named `{key}`, but the checkpoint is of log `{origin}`")]
    OtherName {
        /// The key's name.
        key: String,
        /// The checkpoint's origin.
        origin: String,
    },
}

/// A checkpoint: the log's origin, its size (entries) and the Merkle root of its entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's origin line (`faramesh/<log id>`).
    pub origin: String,
    /// Number of entries (= the last sequence number).
    pub size: u64,
    /// The RFC 6962 root of the tree of the first `size` entry hashes; in a [`legacy`] one, the
    /// `entry_hash` of entry `size` (the genesis value for size 0).
    ///
    /// [`legacy`]: Checkpoint::legacy
    pub root: [u8; 32],
    /// Signed under `faramesh-log` by format 3 and before: `root` is the last entry's hash.
    pub legacy: bool,
}

impl Checkpoint {
    /// The signed text: `origin\nsize\nbase64(root)\n`.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n", self.origin, self.size, base64_encode(&self.root))
    }

    /// Reads the text of a checkpoint note (without checking any signature).
    pub fn parse_note(note: &str) -> Result<Checkpoint, CheckpointError> {
        Checkpoint::parse_body(split_note(note)?.0)
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
        if lines.any(str::is_empty) {
            return Err(CheckpointError::Malformed("an empty extension line"));
        }
        Ok(Checkpoint { origin: origin.to_owned(), size, root: head, legacy: false })
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
        let key = LogKey::from_seed(&[7u8; 32]).named("faramesh/test");
        let cp = Checkpoint { origin: "faramesh/test".into(), size: 42, root: [9u8; 32], legacy: false };
        let note = key.sign_checkpoint(&cp);
        assert!(note.contains("\n\n\u{2014} faramesh/test "), "{note}");
        let public = PublicKey::from_text(&key.public().to_text()).unwrap();
        assert!(key.public().to_text().starts_with("faramesh/test+"));
        assert_eq!(public.verify_checkpoint(&note).unwrap(), cp);
        let forged = note.replace("\n42\n", "\n41\n");
        assert_eq!(public.verify_checkpoint(&forged).unwrap_err(), CheckpointError::BadSignature);
        let other = LogKey::from_seed(&[8u8; 32]).named("faramesh/test").public();
        assert_eq!(other.verify_checkpoint(&note).unwrap_err(), CheckpointError::NotSignedByKey);
        // A key named for another log verifies nothing of this one.
        let elsewhere = LogKey::from_seed(&[7u8; 32]).named("faramesh/other").public();
        assert!(matches!(elsewhere.verify_checkpoint(&note), Err(CheckpointError::OtherName { .. })));
    }

    #[test]
    fn older_checkpoints_and_older_key_texts_still_verify() {
        let key = LogKey::from_seed(&[7u8; 32]);
        let old = Checkpoint { origin: "faramesh/test".into(), size: 3, root: [5u8; 32], legacy: true };
        let note = key.sign_checkpoint(&old);
        assert!(note.contains("\u{2014} faramesh-log "), "{note}");
        for text in [key.public().to_text(), key.named("faramesh/test").public().to_text()] {
            let public = PublicKey::from_text(&text).unwrap();
            assert_eq!(public.verify_checkpoint(&note).unwrap(), old, "{text}");
        }
        // A legacy signature does not pass for a C2SP one: the key ids differ by name.
        let relabelled = note.replace("faramesh-log", "faramesh/test");
        let public = key.named("faramesh/test").public();
        assert_eq!(public.verify_checkpoint(&relabelled).unwrap_err(), CheckpointError::NotSignedByKey);
    }

    #[test]
    fn cosignatures_verify_over_the_checkpoint_text_and_its_time() {
        let body = "faramesh/test\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
        let (line, vkey) = cosign(&[3u8; 32], "witness.example/w1", 1_700_000_000, body);
        let w = WitnessKey::from_text(&vkey).unwrap();
        assert_eq!(w.to_text(), vkey);
        let got = w.verify_lines(body, &line).unwrap().unwrap();
        assert_eq!((got.name.as_str(), got.timestamp), ("witness.example/w1", 1_700_000_000));
        assert_eq!(
            w.verify_lines(&body.replace('5', "6"), &line).unwrap_err(),
            CheckpointError::BadSignature
        );
        assert_eq!(w.verify_lines(body, "\u{2014} someone AAAA").unwrap(), None);
        // A note key is not a witness key and the other way round.
        assert!(WitnessKey::from_text(&LogKey::from_seed(&[1u8; 32]).public().to_text()).is_err());
        assert!(PublicKey::from_text(&vkey).is_err());
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
