//! The `approvals:` section: who approves, how long an approval waits, same-uid approvals.

use serde_json::{Value, json};

use super::{Loader, PolicyError, parse_duration, principal_text};
use crate::model::{Approvals, ApproverKey};
use crate::yaml::{Kind, Node};

impl Loader<'_> {
    pub(super) fn approvals(&self, node: &Node) -> Result<(Approvals, Value), PolicyError> {
        let entries = self.map(node, "`approvals`")?;
        self.check_keys(entries, APPROVAL_KEYS, "approvals")?;
        let mut approvals = Approvals::default();
        for (key, value) in entries {
            match key.name.as_str() {
                "approvers" => {
                    for item in self.seq(value, "`approvers`")? {
                        if matches!(item.kind, Kind::Map(_)) {
                            let key = self.approver_key(item)?;
                            if approvals.keys.iter().any(|k| k.name == key.name) {
                                return Err(
                                    self.err(item.pos, format!("approver `{}` is listed twice", key.name))
                                );
                            }
                            // One key is one person: two names for it would let one signer count
                            // as two approvers.
                            if let Some(other) = approvals.keys.iter().find(|k| {
                                (k.ed25519.is_some() && k.ed25519 == key.ed25519)
                                    || matches!(
                                        (&k.passkey, &key.passkey),
                                        (Some(a), Some(b)) if a.point == b.point || a.credential_id == b.credential_id
                                    )
                            }) {
                                return Err(self.err(
                                    item.pos,
                                    format!(
                                        "approver `{}` has the same key as `{}`: each approver needs a key of their own",
                                        key.name, other.name
                                    ),
                                ));
                            }
                            approvals.keys.push(key);
                        } else {
                            approvals.approvers.push(self.principal(item, "approver")?);
                        }
                    }
                }
                "passkey_origins" => {
                    for item in self.seq(value, "`passkey_origins`")? {
                        let o = self.string(item, "a passkey origin")?;
                        let ok = (o.starts_with("https://") || o.starts_with("http://localhost"))
                            && !o.ends_with('/')
                            && o.len() <= 256
                            && o.split_once("://").is_some_and(|(_, rest)| {
                                !rest.is_empty() && !rest.contains(['/', '?', '#', '@'])
                            });
                        if !ok {
                            return Err(self.err(
                                item.pos,
                                format!("passkey origin `{o}` must look like `https://faramesh.example.com` (or `http://localhost:PORT`), with no path"),
                            ));
                        }
                        approvals.passkey_origins.push(o);
                    }
                }
                "expire_after" => {
                    let text = match &value.kind {
                        Kind::Int(i) => format!("{i}s"),
                        _ => self.string(value, "`expire_after`")?,
                    };
                    approvals.expire_after_seconds = parse_duration(&text).ok_or_else(|| {
                        self.err(
                            value.pos,
                            format!("`expire_after` `{text}` must look like `15m` (s, m, h, d)"),
                        )
                    })?;
                }
                "allow_same_uid" => approvals.allow_same_uid = self.flag(value, "`allow_same_uid`")?,
                _ => {}
            }
        }
        let approvers: Vec<String> = approvals.approvers.iter().map(principal_text).collect();
        let mut norm = json!({"approvers": approvers, "expire_after": approvals.expire_after_seconds});
        // Only when set, so policies without keys keep their hash.
        if !approvals.keys.is_empty()
            && let Value::Object(m) = &mut norm
        {
            let keys: Vec<Value> =
                approvals.keys.iter().map(|k| json!({"name": k.name, "ssh_key": k.text})).collect();
            m.insert("keys".into(), Value::Array(keys));
        }
        // Only when set, so policies without it keep their hash.
        if approvals.allow_same_uid
            && let Value::Object(m) = &mut norm
        {
            m.insert("allow_same_uid".into(), Value::Bool(true));
        }
        if !approvals.passkey_origins.is_empty()
            && let Value::Object(m) = &mut norm
        {
            m.insert("passkey_origins".into(), json!(approvals.passkey_origins));
        }
        Ok((approvals, norm))
    }
}

const APPROVAL_KEYS: &[&str] = &["approvers", "expire_after", "allow_same_uid", "passkey_origins"];

impl Loader<'_> {
    /// `{name, ssh_key}`: an approver who signs (an Ed25519 SSH public key, as in
    /// `~/.ssh/id_ed25519.pub`).
    fn approver_key(&self, item: &Node) -> Result<ApproverKey, PolicyError> {
        let entries = self.map(item, "an approver")?;
        self.check_keys(entries, &["name", "ssh_key", "passkey"], "approver")?;
        let get = |k: &str| entries.iter().find(|(key, _)| key.name == k).map(|(_, v)| v);
        let name = match get("name") {
            Some(v) => self.string(v, "`name`")?,
            None => return Err(self.err(item.pos, "an approver with a key needs a `name`")),
        };
        if name.is_empty()
            || name.len() > 64
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || "._@-".contains(c))
        {
            return Err(self
                .err(item.pos, format!("approver name `{name}` must be 1 to 64 letters, digits or `._@-`")));
        }
        if let (Some(_), Some(v)) = (get("ssh_key"), get("passkey")) {
            return Err(
                self.err(v.pos, format!("approver `{name}` has an `ssh_key` and a `passkey`: give one"))
            );
        }
        if let Some(v) = get("passkey") {
            return self.passkey(&name, v);
        }
        let Some(v) = get("ssh_key") else {
            return Err(self.err(item.pos, format!("approver `{name}` needs an `ssh_key` or a `passkey`")));
        };
        let text = self.string(v, "`ssh_key`")?;
        let ed25519 = crate::sshsig::parse_ssh_ed25519(&text).ok_or_else(|| {
            self.err(
                v.pos,
                format!(
                    "`ssh_key` of `{name}` is not an Ed25519 SSH public key (`ssh-ed25519 AAAA…`, as in \
                     ~/.ssh/id_ed25519.pub)"
                ),
            )
        })?;
        let mut words = text.split_whitespace();
        let text = format!("{} {}", words.next().unwrap_or_default(), words.next().unwrap_or_default());
        Ok(ApproverKey { name, ed25519: Some(ed25519), passkey: None, text })
    }

    /// `passkey: {id, public_key}`: a WebAuthn credential's id (base64url) and its public key
    /// (SubjectPublicKeyInfo DER, base64, as the dashboard's "Register a passkey" writes it), an
    /// ES256 (P-256) key.
    fn passkey(&self, name: &str, v: &Node) -> Result<ApproverKey, PolicyError> {
        let entries = self.map(v, "`passkey`")?;
        self.check_keys(entries, &["id", "public_key"], "passkey")?;
        let get = |k: &str| entries.iter().find(|(key, _)| key.name == k).map(|(_, v)| v);
        let (Some(id), Some(key)) = (get("id"), get("public_key")) else {
            return Err(self.err(v.pos, format!("the `passkey` of `{name}` needs `id` and `public_key`")));
        };
        let id_text = self.string(id, "`id`")?;
        let credential_id = crate::sshsig::base64url_decode(&id_text)
            .filter(|b| !b.is_empty() && b.len() <= 1024)
            .ok_or_else(|| self.err(id.pos, "`id` must be the credential id in base64url"))?;
        let key_text = self.string(key, "`public_key`")?;
        let point = crate::sshsig::base64_decode(key_text.trim())
            .and_then(|der| crate::sshsig::p256_spki_point(&der))
            .ok_or_else(|| {
                self.err(
                    key.pos,
                    "`public_key` must be a P-256 public key (SubjectPublicKeyInfo DER, base64)",
                )
            })?;
        Ok(ApproverKey {
            name: name.to_owned(),
            ed25519: None,
            text: format!("passkey {id_text} {}", key_text.trim()),
            passkey: Some(crate::model::Passkey { credential_id, point }),
        })
    }
}
