//! SSH signatures as `ssh-keygen -Y sign` writes them (the SSHSIG format of OpenSSH's
//! `PROTOCOL.sshsig`), Ed25519 keys only: reading the armored signature, the public key, and the
//! bytes that were signed. Checking the signature itself is the caller's (this crate does no
//! cryptography).

/// What an armored SSH signature holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sshsig {
    /// The signer's Ed25519 public key.
    pub public_key: [u8; 32],
    /// The namespace it was made for (`-n`).
    pub namespace: String,
    /// The hash of the message that was signed: `sha512` or `sha256`.
    pub hash_algorithm: String,
    /// The Ed25519 signature over [`signed_data`].
    pub signature: [u8; 64],
}

/// Why an armored signature cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an SSH signature: {0}")]
pub struct NotSshsig(pub &'static str);

/// Reads `-----BEGIN SSH SIGNATURE-----` … `-----END SSH SIGNATURE-----`.
pub fn parse_armored(text: &str) -> Result<Sshsig, NotSshsig> {
    let text = text.trim();
    let body = text
        .strip_prefix("-----BEGIN SSH SIGNATURE-----")
        .and_then(|t| t.strip_suffix("-----END SSH SIGNATURE-----"))
        .ok_or(NotSshsig("no BEGIN/END SSH SIGNATURE lines"))?;
    let b64: String = body.split_whitespace().collect();
    let blob = base64_decode(&b64).ok_or(NotSshsig("the body is not base64"))?;
    let mut r = Reader::new(&blob);
    if r.take(6) != Some(b"SSHSIG") {
        return Err(NotSshsig("no SSHSIG magic"));
    }
    if r.u32() != Some(1) {
        return Err(NotSshsig("not version 1"));
    }
    let public_key = ed25519_blob(r.string().ok_or(NotSshsig("no public key"))?)
        .ok_or(NotSshsig("the key is not an Ed25519 key"))?;
    let text_field = |r: &mut Reader<'_>, what: &'static str| -> Result<String, NotSshsig> {
        let bytes = r.string().ok_or(NotSshsig(what))?;
        String::from_utf8(bytes.to_vec()).map_err(|_| NotSshsig(what))
    };
    let namespace = text_field(&mut r, "no namespace")?;
    let _reserved = r.string().ok_or(NotSshsig("no reserved field"))?;
    let hash_algorithm = text_field(&mut r, "no hash algorithm")?;
    if hash_algorithm != "sha512" && hash_algorithm != "sha256" {
        return Err(NotSshsig("the hash algorithm is neither sha512 nor sha256"));
    }
    let sig = r.string().ok_or(NotSshsig("no signature"))?;
    if !r.is_done() {
        return Err(NotSshsig("bytes after the signature"));
    }
    let mut s = Reader::new(sig);
    if s.string() != Some(b"ssh-ed25519") {
        return Err(NotSshsig("the signature is not an Ed25519 signature"));
    }
    let signature: [u8; 64] =
        s.string().and_then(|b| b.try_into().ok()).ok_or(NotSshsig("the signature is not 64 bytes"))?;
    if !s.is_done() {
        return Err(NotSshsig("bytes after the signature"));
    }
    Ok(Sshsig { public_key, namespace, hash_algorithm, signature })
}

/// The bytes an SSH signature signs: the magic, the namespace, an empty reserved field, the hash
/// algorithm and the hash of the message (`message_hash`, computed with that algorithm).
pub fn signed_data(namespace: &str, hash_algorithm: &str, message_hash: &[u8]) -> Vec<u8> {
    let mut out = b"SSHSIG".to_vec();
    for field in [namespace.as_bytes(), b"", hash_algorithm.as_bytes(), message_hash] {
        out.extend_from_slice(&u32::try_from(field.len()).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(field);
    }
    out
}

/// The 32 bytes of an `ssh-ed25519 <base64> [comment]` public key.
pub fn parse_ssh_ed25519(text: &str) -> Option<[u8; 32]> {
    let mut words = text.split_whitespace();
    if words.next()? != "ssh-ed25519" {
        return None;
    }
    ed25519_blob(&base64_decode(words.next()?)?)
}

fn ed25519_blob(blob: &[u8]) -> Option<[u8; 32]> {
    let mut r = Reader::new(blob);
    if r.string()? != b"ssh-ed25519" {
        return None;
    }
    let key: [u8; 32] = r.string()?.try_into().ok()?;
    r.is_done().then_some(key)
}

/// URL-safe base64 without padding (RFC 4648 §5, as WebAuthn writes ids), strictly.
pub fn base64url_decode(text: &str) -> Option<Vec<u8>> {
    if text.contains(['+', '/', '=']) {
        return None;
    }
    let mut std: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    while !std.len().is_multiple_of(4) {
        std.push('=');
    }
    base64_decode(&std)
}

/// The uncompressed point (`04 || x || y`, 65 bytes) of a P-256 public key given as
/// SubjectPublicKeyInfo DER (what WebAuthn's `getPublicKey()` returns for ES256).
pub fn p256_spki_point(der: &[u8]) -> Option<Vec<u8>> {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING (0 unused bits) 04 … }
    const PREFIX: [u8; 27] = [
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86,
        0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    (der.len() == 91 && der[..27] == PREFIX).then(|| der[26..].to_vec())
}

/// Standard base64 with padding (RFC 4648 §4), strictly.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    let value = |c: u8| -> Option<u32> {
        Some(u32::from(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        }))
    };
    let quads = bytes.len() / 4;
    let mut out = Vec::with_capacity(quads * 3);
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let pad = chunk.iter().rev().take_while(|c| **c == b'=').count();
        if pad > 2 || (pad > 0 && i + 1 != quads) {
            return None;
        }
        let mut n = 0u32;
        for (j, c) in chunk.iter().enumerate() {
            n = (n << 6) | if j >= 4 - pad { 0 } else { value(*c)? };
        }
        let three = n.to_be_bytes();
        out.extend_from_slice(&three[1..4 - pad]);
    }
    Some(out)
}

/// SSH wire format: big-endian `uint32` and length-prefixed `string`s.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { rest: bytes }
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.rest.len() < n {
            return None;
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Some(head)
    }

    fn u32(&mut self) -> Option<u32> {
        self.take(4).and_then(|b| b.try_into().ok()).map(u32::from_be_bytes)
    }

    fn string(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.u32()?).ok()?;
        self.take(n)
    }

    fn is_done(&self) -> bool {
        self.rest.is_empty()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn base64_is_read_strictly() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert!(base64_decode("aGk").is_none());
        assert!(base64_decode("a=Gk").is_none());
        assert!(base64_decode("aG*=").is_none());
    }

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAABAgMEBQYHCAkKCwwNDg8QERITFBUWFxgZGhscHR4f alice@laptop";

    #[test]
    fn approvers_with_keys_are_read_from_the_policy() {
        let text = format!(
            "version: 1\napprovals:\n  approvers: [\"uid:1000\", {{name: alice, ssh_key: \"{KEY}\"}}]\n"
        );
        let p = crate::compile("p.yaml", &text).unwrap();
        let k = &p.approvals.keys[0];
        assert_eq!((k.name.as_str(), k.ed25519.map(|e| e[31])), ("alice", Some(31)));
        assert!(!k.text.contains("laptop"), "the comment is not part of the key");
        for (bad, want) in [
            ("{name: alice, ssh_key: \"ssh-rsa AAAA\"}", "not an Ed25519 SSH public key"),
            ("{name: alice}", "needs an `ssh_key` or a `passkey`"),
            ("{ssh_key: x}", "needs a `name`"),
            ("{name: \"a b\", ssh_key: x}", "must be 1 to 64"),
            ("{name: alice, passkey: x}", "`passkey` must be a mapping"),
        ] {
            let err = crate::compile("p.yaml", &format!("version: 1\napprovals:\n  approvers: [{bad}]\n"))
                .unwrap_err();
            assert!(err.message.contains(want), "{bad}: {}", err.message);
        }
    }

    #[test]
    fn bad_signatures_say_why() {
        assert_eq!(parse_armored("x").unwrap_err().0, "no BEGIN/END SSH SIGNATURE lines");
        let armored = "-----BEGIN SSH SIGNATURE-----\naGVsbG8=\n-----END SSH SIGNATURE-----";
        assert_eq!(parse_armored(armored).unwrap_err().0, "no SSHSIG magic");
        assert!(parse_ssh_ed25519("ssh-rsa AAAA").is_none());
    }
}
