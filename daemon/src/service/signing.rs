//! Approvals signed by the person who approves: a statement naming this host's log, the
//! approval, the deferred call (action id and request hash), the decision, the approver and a
//! validity window, signed with the approver's SSH key (`ssh-keygen -Y sign -n
//! faramesh-approval`, an Ed25519 key, through ssh-agent or a key file). The daemon checks the
//! signature, the key against the policy in force, and every field against the pending call;
//! the approval's entry keeps the statement and the signature, so the log can be re-checked
//! offline. Whoever carries the statement (any socket peer, any token, a database row) adds no
//! authority of its own: the key does.

use ed25519_dalek::{Signature, VerifyingKey};
use serde_json::{Value, json};
use sha2::Digest;

use super::approvals::{self, Approval};
use super::identity::{Role, TokenIdentity};
use super::{Identity, Service, ServiceError};
use crate::log::entry;
use crate::policy::sshsig;

/// The SSH signature namespace of approval statements (`ssh-keygen -Y sign -n`).
pub const NAMESPACE: &str = "faramesh-approval";
/// The first line of a statement.
pub const MAGIC: &str = "faramesh approval v1";
/// The longest a statement may be valid for.
pub const MAX_VALID_MS: u64 = 60 * 60 * 1000;
/// The most refused statements recorded for one approval (more are refused, not recorded).
pub const MAX_RECORDED_REFUSALS: u32 = 16;
/// How far a statement's signing time may be from the daemon's clock.
pub const MAX_SKEW_MS: u64 = 5 * 60 * 1000;

/// What an approver signs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    /// The host's log id (its origin without `faramesh/`).
    pub host: String,
    /// The approval.
    pub approval: String,
    /// The deferred call's action id.
    pub action: String,
    /// The deferred call's request hash.
    pub request: String,
    /// Approve (true) or deny.
    pub approve: bool,
    /// The approver's name, as the policy lists it.
    pub approver: String,
    /// When it was signed (ms since the epoch).
    pub signed_ms: u64,
    /// Until when it may be used.
    pub expires_ms: u64,
}

impl Statement {
    /// The exact text signed: nine lines, each ending in a line feed.
    pub fn text(&self) -> String {
        format!(
            "{MAGIC}\nhost: {}\napproval: {}\naction: {}\nrequest: {}\ndecision: {}\napprover: {}\nsigned: {}\nexpires: {}\n",
            self.host,
            self.approval,
            self.action,
            self.request,
            if self.approve { "approve" } else { "deny" },
            self.approver,
            entry::rfc3339(self.signed_ms),
            entry::rfc3339(self.expires_ms),
        )
    }

    /// Reads a statement, strictly: the lines in order, nothing else, and the text must be
    /// exactly what [`Statement::text`] writes for what it read.
    pub fn parse(text: &str) -> Result<Statement, String> {
        if text.len() > MAX_STATEMENT_BYTES {
            return Err(format!("the statement is over {MAX_STATEMENT_BYTES} bytes"));
        }
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .ok_or("the statement does not end with a line feed")?
            .split('\n')
            .collect();
        let keys = ["host", "approval", "action", "request", "decision", "approver", "signed", "expires"];
        if lines.len() != keys.len() + 1 || lines[0] != MAGIC {
            return Err(format!("the statement is not {} lines starting `{MAGIC}`", keys.len() + 1));
        }
        let mut values = Vec::with_capacity(keys.len());
        for (line, key) in lines[1..].iter().zip(keys) {
            let value = line
                .strip_prefix(key)
                .and_then(|l| l.strip_prefix(": "))
                .ok_or_else(|| format!("line `{key}: …` is missing or out of order"))?;
            values.push(value);
        }
        let time = |v: &str, key: &str| {
            entry::parse_rfc3339(v).ok_or_else(|| format!("`{key}` is not an RFC 3339 time"))
        };
        let s = Statement {
            host: values[0].to_owned(),
            approval: values[1].to_owned(),
            action: values[2].to_owned(),
            request: values[3].to_owned(),
            approve: match values[4] {
                "approve" => true,
                "deny" => false,
                _ => return Err("`decision` must be `approve` or `deny`".into()),
            },
            approver: values[5].to_owned(),
            signed_ms: time(values[6], "signed")?,
            expires_ms: time(values[7], "expires")?,
        };
        // Every field is an id or a name of a known shape: nothing else reaches a message or
        // the log.
        let id = |v: &str| {
            !v.is_empty()
                && v.len() <= 128
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        };
        if !id(&s.host) || !id(&s.approval) || !id(&s.action) {
            return Err("`host`, `approval` and `action` must be ids (letters, digits, `_` or `-`)".into());
        }
        if s.request.len() != 64
            || !s.request.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err("`request` must be 64 lower-case hex characters".into());
        }
        let name_ok = !s.approver.is_empty()
            && s.approver.len() <= 64
            && s.approver.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b));
        if !name_ok {
            return Err("`approver` must be 1 to 64 letters, digits or `._@-`".into());
        }
        if s.text() != text {
            return Err("the statement is not written in its one exact form".into());
        }
        Ok(s)
    }
}

/// The longest statement read.
pub const MAX_STATEMENT_BYTES: usize = 4096;
/// The longest armored signature read.
pub const MAX_SIGNATURE_BYTES: usize = 16 * 1024;

/// Checks an armored SSH signature of `message` in [`NAMESPACE`]: the signer's public key.
pub fn verify_sshsig(armored: &str, message: &[u8]) -> Result<[u8; 32], String> {
    verify_sshsig_in(NAMESPACE, armored, message)
}

/// Checks an armored SSH signature of `message` in `namespace`: the signer's public key.
pub fn verify_sshsig_in(namespace: &str, armored: &str, message: &[u8]) -> Result<[u8; 32], String> {
    if armored.len() > MAX_SIGNATURE_BYTES {
        return Err(format!("the signature is over {MAX_SIGNATURE_BYTES} bytes"));
    }
    let sig = sshsig::parse_armored(armored).map_err(|e| e.to_string())?;
    if sig.namespace != namespace {
        return Err(format!("the signature is not for namespace `{namespace}`"));
    }
    let digest = match sig.hash_algorithm.as_str() {
        "sha512" => sha2::Sha512::digest(message).to_vec(),
        _ => sha2::Sha256::digest(message).to_vec(),
    };
    let data = sshsig::signed_data(namespace, &sig.hash_algorithm, &digest);
    let key = VerifyingKey::from_bytes(&sig.public_key)
        .map_err(|_| "the signer's key is not a valid Ed25519 key")?;
    key.verify_strict(&data, &Signature::from_bytes(&sig.signature))
        .map_err(|_| "the signature does not match the signed text".to_owned())?;
    Ok(sig.public_key)
}

/// Re-checks, offline, the signed statements a log entry keeps (`approval` and
/// `approval_signed` entries; none elsewhere): each parses, is signed by the key recorded beside
/// it, names that approver, this log (`log_id`), the entry's approval, action and request hash,
/// says what the entry recorded, and was used within its validity window. How many it checked.
pub fn recheck(entry: &Value, log_id: &str) -> Result<usize, String> {
    let kind = entry["kind"].as_str().unwrap_or_default();
    if kind != "approval" && kind != "approval_signed" {
        return Ok(0);
    }
    let mut all: Vec<&Value> = Vec::new();
    if entry["signed"].is_object() {
        all.push(&entry["signed"]);
    }
    if let Some(list) = entry["signatures"].as_array() {
        all.extend(list.iter().filter(|s| *s != &entry["signed"]));
    }
    let decision = match (kind, entry["status"].as_str()) {
        ("approval_signed", _) | (_, Some("approved")) => true,
        (_, Some("denied")) => false,
        (_, other) => {
            if all.is_empty() {
                return Ok(0);
            }
            return Err(format!("a signed approval entry has status {}", other.unwrap_or("none")));
        }
    };
    let at = entry["ts"].as_str().and_then(entry::parse_rfc3339);
    let mut keys_seen: Vec<String> = Vec::new();
    for signed in &all {
        let text = signed["statement"].as_str().ok_or("a signed decision without its statement")?;
        let s = Statement::parse(text).map_err(|e| format!("its statement: {e}"))?;
        let key_text = signed["key"].as_str().ok_or("a signed decision without the approver's key")?;
        if signed["passkey"].is_object() {
            // A passkey: the credential and public key recorded, the assertion checked again
            // (its origin as the browser gave it; the relying party bound to it).
            let mut words = key_text.split(' ');
            let (Some("passkey"), Some(id), Some(public), None) =
                (words.next(), words.next(), words.next(), words.next())
            else {
                return Err("a passkey decision without the passkey recorded".into());
            };
            let key = crate::policy::Passkey {
                credential_id: sshsig::base64url_decode(id)
                    .ok_or("the recorded credential id is not base64url")?,
                point: sshsig::base64_decode(public)
                    .and_then(|d| sshsig::p256_spki_point(&d))
                    .ok_or("the recorded passkey is not a P-256 key")?,
            };
            let a = PasskeyAssertion::from_json(&signed["passkey"]).map_err(|e| e.message)?;
            verify_passkey(text, &a, &key, &|_| true)
                .map_err(|e| format!("the passkey statement of `{}`: {e}", s.approver))?;
        } else {
            let armored = signed["signature"].as_str().ok_or("a signed decision without its signature")?;
            let key = verify_sshsig(armored, text.as_bytes())?;
            let recorded =
                sshsig::parse_ssh_ed25519(key_text).ok_or("a signed decision without the approver's key")?;
            if key != recorded {
                return Err(format!(
                    "the statement of `{}` is signed by another key than the one recorded",
                    s.approver
                ));
            }
        }
        if keys_seen.iter().any(|k| k == key_text) {
            return Err("two of its statements are signed by one key".into());
        }
        keys_seen.push(key_text.to_owned());
        if signed["approver"].as_str() != Some(s.approver.as_str()) {
            return Err(format!("the statement names `{}`, the entry another approver", s.approver));
        }
        if s.host != log_id {
            return Err(format!("the statement is for log `{}`, not this one", s.host));
        }
        let same = |field: &str, v: &str| entry[field].as_str() == Some(v);
        if !same("approval_id", &s.approval)
            || !same("action_id", &s.action)
            || !same("request_hash", &s.request)
        {
            return Err("the statement is for another call than the entry's".into());
        }
        if s.approve != decision {
            return Err("the statement decides otherwise than the entry records".into());
        }
        if let Some(at) = at
            && (at > s.expires_ms + MAX_SKEW_MS || at + MAX_SKEW_MS < s.signed_ms)
        {
            return Err(format!(
                "the statement was used outside its validity window (until {})",
                entry::rfc3339(s.expires_ms)
            ));
        }
    }
    Ok(all.len())
}

/// What makes a statement an approver's: an SSH signature (armored SSHSIG) or a passkey's
/// WebAuthn assertion over the statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    /// `ssh-keygen -Y sign -n faramesh-approval`.
    Ssh(String),
    /// A passkey's assertion whose challenge is the statement's SHA-256.
    Passkey(PasskeyAssertion),
}

/// A WebAuthn assertion (`navigator.credentials.get`), each part base64url as the browser gives
/// it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyAssertion {
    /// The credential's id.
    pub credential_id: String,
    /// `authenticatorData`.
    pub authenticator_data: String,
    /// `clientDataJSON`.
    pub client_data_json: String,
    /// The ECDSA signature (ASN.1 DER).
    pub signature: String,
}

impl PasskeyAssertion {
    /// From `{credential_id, authenticator_data, client_data_json, signature}`.
    pub fn from_json(v: &Value) -> Result<PasskeyAssertion, ServiceError> {
        let part = |k: &str| {
            v[k].as_str().filter(|s| !s.is_empty() && s.len() <= 16 * 1024).map(str::to_owned).ok_or_else(
                || ServiceError::invalid("passkey", format!("`passkey.{k}` must be base64url text")),
            )
        };
        Ok(PasskeyAssertion {
            credential_id: part("credential_id")?,
            authenticator_data: part("authenticator_data")?,
            client_data_json: part("client_data_json")?,
            signature: part("signature")?,
        })
    }

    /// As the log keeps it.
    pub fn to_json(&self) -> Value {
        json!({
            "credential_id": self.credential_id,
            "authenticator_data": self.authenticator_data,
            "client_data_json": self.client_data_json,
            "signature": self.signature,
        })
    }
}

/// The challenge a passkey signs for `statement`: its SHA-256, base64url without padding.
pub fn passkey_challenge(statement: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(statement.as_bytes()))
}

/// Checks a passkey's assertion over `statement` (WebAuthn §7.2): the credential is `key`'s,
/// the client data is a `webauthn.get` whose challenge is the statement's hash and whose origin
/// `origin_ok` accepts, the authenticator data is for that origin's host (the relying party)
/// with the user present and verified, and the ES256 signature over the authenticator data and
/// the client data's hash verifies with `key`.
pub fn verify_passkey(
    statement: &str,
    a: &PasskeyAssertion,
    key: &crate::policy::Passkey,
    origin_ok: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    let b64 =
        |s: &str, what: &str| sshsig::base64url_decode(s).ok_or_else(|| format!("`{what}` is not base64url"));
    if b64(&a.credential_id, "credential_id")? != key.credential_id {
        return Err("it is signed by another credential".into());
    }
    let auth = b64(&a.authenticator_data, "authenticator_data")?;
    let client_json = b64(&a.client_data_json, "client_data_json")?;
    let signature = b64(&a.signature, "signature")?;
    let client: Value = serde_json::from_slice(&client_json).map_err(|_| "the client data is not JSON")?;
    if client["type"] != "webauthn.get" {
        return Err("the client data is not an assertion (`webauthn.get`)".into());
    }
    if client["crossOrigin"] == true || client.get("topOrigin").is_some() {
        return Err("it was made inside a frame of another origin".into());
    }
    if client["challenge"].as_str() != Some(passkey_challenge(statement).as_str()) {
        return Err("its challenge is not this statement's hash".into());
    }
    let origin = client["origin"].as_str().unwrap_or_default();
    if !origin_ok(origin) {
        return Err("it comes from an origin this host does not accept (`approvals.passkey_origins`)".into());
    }
    let host = origin.split_once("://").map_or("", |(_, r)| r);
    let rp_id =
        host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
    if auth.len() < 37 || auth[..32] != sha2::Sha256::digest(rp_id.as_bytes())[..] {
        return Err("its authenticator data is not for this relying party".into());
    }
    let flags = auth[32];
    if flags & 0x01 == 0 || flags & 0x04 == 0 {
        return Err("the authenticator did not verify the user (user present and verified flags)".into());
    }
    // An assertion carries no attested credential; extensions only when flagged.
    if flags & 0x40 != 0 || (flags & 0x80 == 0 && auth.len() != 37) {
        return Err("its authenticator data is not an assertion's".into());
    }
    let mut signed = auth.clone();
    signed.extend_from_slice(&sha2::Sha256::digest(&client_json));
    ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_ASN1, &key.point)
        .verify(&signed, &signature)
        .map_err(|_| "the signature does not verify with the passkey's public key".to_owned())
}

impl Service {
    /// This host's log id, as statements name it.
    pub fn host_log_id(&self) -> String {
        self.state.log.origin().trim_start_matches("faramesh/").to_owned()
    }

    /// `approval.statement`: the statement an approver signs to approve or deny `id` (valid for
    /// `valid_ms`, at most an hour).
    pub fn approval_statement(
        &self,
        id: &str,
        approve: bool,
        approver: &str,
        valid_ms: u64,
        who: &Identity,
    ) -> Result<Value, ServiceError> {
        let listed = self.state.policy.load().policy.approvals.keys.iter().any(|k| k.name == approver);
        if !listed {
            return Err(ServiceError::invalid(
                "approver",
                "the policy lists no approver of that name with a key (`approvals.approvers: [{name, ssh_key}]`)",
            ));
        }
        // The full approval id (an unguessable capability, as notifications carry it), or a
        // caller who may read the approval (prefixes and action ids resolve for those only).
        let hidden = || ServiceError::not_found(format!("no approval `{id}`"));
        let full = id.len() == 32 && self.state.approvals.get(id).is_some();
        let id = if full { id.to_owned() } else { self.resolve_approval(id).map_err(|_| hidden())? };
        if !full && !self.state.approvals.get(&id).is_some_and(|a| self.may_see_approval(who, &a)) {
            return Err(hidden());
        }
        let a = self
            .state
            .approvals
            .get(&id)
            .ok_or_else(|| ServiceError::not_found(format!("no approval `{id}`")))?;
        if a.status != approvals::Status::Pending {
            return Err(ServiceError::conflict(format!("approval `{id}` is already {}", a.status.as_str())));
        }
        let now = self.clock.now_ms();
        let s = Statement {
            host: self.host_log_id(),
            approval: a.approval_id.clone(),
            action: a.action_id.clone(),
            request: a.request_hash.clone(),
            approve,
            approver: approver.to_owned(),
            signed_ms: now,
            expires_ms: now + valid_ms.clamp(1000, MAX_VALID_MS),
        };
        // A passkey approver's browser needs the credential to ask for and the challenge to sign.
        let passkey = self.state.policy.load().policy.approvals.keys.iter().find(|k| k.name == approver).and_then(|k| {
            k.passkey.as_ref().map(|p| {
                use base64::Engine as _;
                json!({
                    "credential_id": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&p.credential_id),
                    "challenge": passkey_challenge(&s.text()),
                })
            })
        });
        Ok(
            json!({"statement": s.text(), "namespace": NAMESPACE, "approval_id": a.approval_id, "passkey": passkey}),
        )
    }

    /// Approves or denies `id` as the signed statement says, handed in by `submitter`. A
    /// statement that fails a check is refused and the refusal recorded (`approval_refused`,
    /// at most [`MAX_RECORDED_REFUSALS`] per approval, its error cut to 200 characters).
    pub(super) async fn answer_signed(
        &self,
        id: &str,
        approve: bool,
        statement: &str,
        proof: &Proof,
        submitter: &Identity,
    ) -> Result<Approval, ServiceError> {
        let id = self.resolve_approval(id)?;
        let a = self
            .state
            .approvals
            .get(&id)
            .ok_or_else(|| ServiceError::not_found(format!("no approval `{id}`")))?;
        // The caller that made the call does not hand in its own approval, as it never approves
        // it (its process, its uid unless same-uid approvals are allowed, its token).
        let checked = crate::permit::distinct(a.requested_by.as_ref(), submitter.caller().as_ref(), self.same_uid_ok())
            .map_err(|why| {
                ServiceError::not_authorized(format!(
                    "not authorized: {why} (a signed approval is handed in by someone other than the caller that made the call)"
                ))
            })
            .and_then(|()| self.signed_decider(statement, proof, approve, &a));
        match checked {
            Ok((who, mut signed)) => {
                if let Value::Object(m) = &mut signed {
                    m.insert("handed_in_by".into(), json!(submitter.caller()));
                }
                // The reason is the signer's: only what the statement says is recorded.
                self.decide_approval(&id, approve, None, None, Some(signed), &who).await
            }
            Err(e) => {
                let recorded = {
                    let mut counts =
                        self.state.signed_refusals.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let n = counts.entry(id.clone()).or_default();
                    *n += 1;
                    *n <= MAX_RECORDED_REFUSALS
                };
                if recorded {
                    let error: String = e.message.chars().take(200).collect();
                    let approver = Statement::parse(statement).ok().map(|s| s.approver);
                    let fields = json!({
                        "approval_id": id,
                        "action_id": a.action_id,
                        "error": error,
                        "approver": approver,
                        "by": submitter.caller(),
                    });
                    self.commit(crate::log::dpr::event_entry("approval_refused", fields), None).await?;
                } else {
                    tracing::warn!(approval = %id, "a signed statement was refused (not recorded: too many for this approval)");
                }
                Err(e)
            }
        }
    }

    /// The decider a signed statement speaks for, after every check: the signature, the key in
    /// the policy in force under the statement's approver name, this host, the pending approval
    /// (its id, action and request hash), the decision asked, and the validity window.
    pub(super) fn signed_decider(
        &self,
        statement: &str,
        proof: &Proof,
        approve: bool,
        a: &Approval,
    ) -> Result<(Identity, Value), ServiceError> {
        let refuse =
            |why: String| ServiceError::not_authorized(format!("not authorized: the signed statement {why}"));
        let s = Statement::parse(statement).map_err(|e| ServiceError::invalid("statement", e))?;
        let policy = self.state.policy.load();
        let listed = policy.policy.approvals.keys.iter().find(|k| k.name == s.approver);
        let Some(k) = listed else {
            return Err(refuse(format!(
                "names approver `{}`, whom the policy does not list with a key",
                s.approver
            )));
        };
        match (proof, &k.passkey) {
            (Proof::Ssh(signature), _) => {
                let key = verify_sshsig(signature, statement.as_bytes())
                    .map_err(|e| ServiceError::invalid("signature", e))?;
                if k.ed25519 != Some(key) {
                    return Err(refuse(format!(
                        "is signed by a key the policy does not list for `{}`",
                        s.approver
                    )));
                }
            }
            (Proof::Passkey(assertion), Some(passkey)) => {
                let origins = self.passkey_origins();
                verify_passkey(statement, assertion, passkey, &|o| origins.iter().any(|x| x == o))
                    .map_err(|e| refuse(format!("is not signed by the passkey of `{}`: {e}", s.approver)))?;
            }
            (Proof::Passkey(_), None) => {
                return Err(refuse(format!(
                    "is signed with a passkey, and `{}` signs with an SSH key",
                    s.approver
                )));
            }
        }
        if s.host != self.host_log_id() {
            return Err(refuse(format!("is for host `{}`, not this one", s.host)));
        }
        if s.approval != a.approval_id || s.action != a.action_id || s.request != a.request_hash {
            return Err(refuse("is for another call (approval, action or request hash differ)".into()));
        }
        if s.approve != approve {
            return Err(refuse(format!("says `{}`", if s.approve { "approve" } else { "deny" })));
        }
        let now = self.clock.now_ms();
        if s.signed_ms > now + MAX_SKEW_MS
            || s.expires_ms <= s.signed_ms
            || s.expires_ms - s.signed_ms > MAX_VALID_MS
        {
            return Err(refuse("has a validity window this host does not accept".into()));
        }
        if now > s.expires_ms {
            return Err(refuse(format!("expired at {}", entry::rfc3339(s.expires_ms))));
        }
        let who = Identity::Token(TokenIdentity {
            name: format!("key:{}", s.approver),
            role: Role::Approver,
            agents: None,
            for_peer: None,
        });
        let mut signed = json!({
            "statement": statement,
            "approver": s.approver,
            "key": k.text,
        });
        if let Value::Object(m) = &mut signed {
            match proof {
                Proof::Ssh(signature) => m.insert("signature".into(), json!(signature)),
                Proof::Passkey(p) => m.insert("passkey".into(), p.to_json()),
            };
        }
        Ok((who, signed))
    }

    /// The origins a passkey approval may come from: the policy's `passkey_origins`, else the
    /// listener's own, as `localhost` (an IP address cannot be a WebAuthn relying party).
    pub fn passkey_origins(&self) -> Vec<String> {
        let listed = &self.state.policy.load().policy.approvals.passkey_origins;
        if !listed.is_empty() {
            return listed.clone();
        }
        let Some(http) = self.state.http.as_ref().filter(|h| h.loopback) else { return Vec::new() };
        let (scheme, rest) = http.url.split_once("://").unwrap_or(("http", &http.url));
        let port = rest.trim_end_matches('/').rsplit_once(':').map(|(_, p)| p.to_owned());
        port.map(|p| vec![format!("{scheme}://localhost:{p}")]).unwrap_or_default()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests fail by panicking")]
mod tests {
    use super::*;

    #[test]
    fn a_statement_has_one_exact_form() {
        let s = Statement {
            host: "h1".into(),
            approval: "a".repeat(32),
            action: "b".repeat(16),
            request: "c".repeat(64),
            approve: true,
            approver: "alice".into(),
            signed_ms: 1_765_000_000_000,
            expires_ms: 1_765_000_300_000,
        };
        let text = s.text();
        assert_eq!(Statement::parse(&text).unwrap(), s);
        assert!(Statement::parse(&text.replace("approve\n", "deny \n")).is_err());
        assert!(Statement::parse(&format!("{text}\n")).is_err());
        assert!(Statement::parse(&text.replace("host: h1", "host:h1")).is_err());
        assert!(Statement::parse(text.trim_end()).is_err());
    }

    /// An SSH string: its length (u32, big-endian) and its bytes.
    fn ssh_string(out: &mut Vec<u8>, bytes: &[u8]) {
        out.extend_from_slice(&u32::try_from(bytes.len()).unwrap().to_be_bytes());
        out.extend_from_slice(bytes);
    }

    /// `key`'s public key as a `ssh-ed25519 AAAA…` line, and an armored SSHSIG of `message` in
    /// NAMESPACE, as `ssh-keygen -Y sign` writes them.
    fn ssh_sign(key: &ed25519_dalek::SigningKey, message: &str) -> (String, String) {
        use base64::Engine as _;
        use ed25519_dalek::Signer as _;
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut public = Vec::new();
        ssh_string(&mut public, b"ssh-ed25519");
        ssh_string(&mut public, key.verifying_key().as_bytes());
        let digest = sha2::Sha512::digest(message.as_bytes());
        let signature = key.sign(&sshsig::signed_data(NAMESPACE, "sha512", &digest));
        let mut sig_blob = Vec::new();
        ssh_string(&mut sig_blob, b"ssh-ed25519");
        ssh_string(&mut sig_blob, &signature.to_bytes());
        let mut blob = b"SSHSIG".to_vec();
        blob.extend_from_slice(&1u32.to_be_bytes());
        ssh_string(&mut blob, &public);
        ssh_string(&mut blob, NAMESPACE.as_bytes());
        ssh_string(&mut blob, b"");
        ssh_string(&mut blob, b"sha512");
        ssh_string(&mut blob, &sig_blob);
        let body = b64.encode(&blob);
        let lines: Vec<&str> = body.as_bytes().chunks(70).map(|c| std::str::from_utf8(c).unwrap()).collect();
        (
            format!("ssh-ed25519 {}", b64.encode(&public)),
            format!("-----BEGIN SSH SIGNATURE-----\n{}\n-----END SSH SIGNATURE-----\n", lines.join("\n")),
        )
    }

    #[test]
    fn the_verifier_rechecks_each_signed_statement_against_its_entry() {
        let alice = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
        let mallory = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
        let s = Statement {
            host: "log1".into(),
            approval: "a".repeat(32),
            action: "b".repeat(16),
            request: "c".repeat(64),
            approve: true,
            approver: "alice".into(),
            signed_ms: 1_765_000_000_000,
            expires_ms: 1_765_000_600_000,
        };
        let text = s.text();
        let (key, signature) = ssh_sign(&alice, &text);
        let entry = json!({
            "kind": "approval",
            "seq": 12,
            "ts": entry::rfc3339(1_765_000_060_000),
            "approval_id": s.approval,
            "action_id": s.action,
            "request_hash": s.request,
            "status": "approved",
            "signed": {"statement": text, "signature": signature, "approver": "alice", "key": key},
        });
        assert_eq!(recheck(&entry, "log1"), Ok(1));
        assert_eq!(recheck(&json!({"kind": "decision", "signed": 1}), "log1"), Ok(0));
        let changed = |f: &dyn Fn(&mut Value)| {
            let mut e = entry.clone();
            f(&mut e);
            recheck(&e, "log1")
        };
        assert!(recheck(&entry, "log2").unwrap_err().contains("log `log1`"));
        assert!(changed(&|e| e["status"] = json!("denied")).unwrap_err().contains("decides otherwise"));
        assert!(changed(&|e| e["approval_id"] = json!("d".repeat(32))).unwrap_err().contains("another call"));
        assert!(
            changed(&|e| e["request_hash"] = json!("e".repeat(64))).unwrap_err().contains("another call")
        );
        assert!(
            changed(&|e| e["ts"] = json!(entry::rfc3339(1_765_009_000_000))).unwrap_err().contains("window")
        );
        assert!(changed(&|e| e["signed"]["approver"] = json!("bob")).unwrap_err().contains("names `alice`"));
        let (mallory_key, mallory_sig) = ssh_sign(&mallory, &text);
        assert!(changed(&|e| e["signed"]["key"] = json!(mallory_key)).unwrap_err().contains("another key"));
        assert!(
            changed(&|e| e["signed"]["signature"] = json!(mallory_sig)).unwrap_err().contains("another key")
        );
        let edited = text.replace("decision: approve", "decision: deny");
        assert!(
            changed(&|e| e["signed"]["statement"] = json!(edited)).unwrap_err().contains("does not match")
        );
        // Two approvers: the first signature is checked too.
        let (_, other) = ssh_sign(&mallory, &text);
        let first = json!({"statement": text, "signature": other, "approver": "alice", "key": key});
        assert!(
            changed(&|e| e["signatures"] = json!([first, e["signed"].clone()]))
                .unwrap_err()
                .contains("another key")
        );
    }

    /// A passkey (ring's P-256 key) and an assertion over `statement` from `origin`, with
    /// `flags` in the authenticator data.
    fn passkey_assertion(
        statement: &str,
        origin: &str,
        rp_id: &str,
        flags: u8,
    ) -> (crate::policy::Passkey, PasskeyAssertion) {
        passkey_assertion_with(statement, origin, rp_id, flags, json!({}), &[])
    }

    /// [`passkey_assertion`] with more client data fields and bytes after the authenticator data.
    fn passkey_assertion_with(
        statement: &str,
        origin: &str,
        rp_id: &str,
        flags: u8,
        extra: Value,
        tail: &[u8],
    ) -> (crate::policy::Passkey, PasskeyAssertion) {
        use base64::Engine as _;
        use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair as _};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut client =
            json!({"type": "webauthn.get", "challenge": passkey_challenge(statement), "origin": origin});
        if let (Value::Object(c), Value::Object(e)) = (&mut client, extra) {
            c.extend(e);
        }
        let client = client.to_string();
        let mut auth = sha2::Sha256::digest(rp_id.as_bytes()).to_vec();
        auth.push(flags);
        auth.extend_from_slice(&[0, 0, 0, 7]);
        auth.extend_from_slice(tail);
        let mut signed = auth.clone();
        signed.extend_from_slice(&sha2::Sha256::digest(client.as_bytes()));
        let sig = pair.sign(&rng, &signed).unwrap();
        let key = crate::policy::Passkey {
            credential_id: vec![1, 2, 3],
            point: pair.public_key().as_ref().to_vec(),
        };
        let a = PasskeyAssertion {
            credential_id: b64.encode([1, 2, 3]),
            authenticator_data: b64.encode(&auth),
            client_data_json: b64.encode(client.as_bytes()),
            signature: b64.encode(sig.as_ref()),
        };
        (key, a)
    }

    #[test]
    fn a_passkey_assertion_holds_only_for_its_statement_origin_and_verified_user() {
        let origin = "https://faramesh.example.com";
        let st = "faramesh approval v1\n…";
        let ok = |o: &str| o == origin;
        let (key, a) = passkey_assertion(st, origin, "faramesh.example.com", 0x05);
        assert_eq!(verify_passkey(st, &a, &key, &ok), Ok(()));
        assert!(verify_passkey("another statement", &a, &key, &ok).unwrap_err().contains("challenge"));
        assert!(verify_passkey(st, &a, &key, &|_| false).unwrap_err().contains("origin"));
        let other = crate::policy::Passkey { credential_id: vec![9], ..key.clone() };
        assert!(verify_passkey(st, &a, &other, &ok).unwrap_err().contains("another credential"));
        let (stranger, _) = passkey_assertion(st, origin, "faramesh.example.com", 0x05);
        let wrong_key =
            crate::policy::Passkey { credential_id: key.credential_id.clone(), point: stranger.point };
        assert!(verify_passkey(st, &a, &wrong_key, &ok).unwrap_err().contains("does not verify"));
        // Present but not verified: refused.
        let (key2, a2) = passkey_assertion(st, origin, "faramesh.example.com", 0x01);
        assert!(verify_passkey(st, &a2, &key2, &ok).unwrap_err().contains("verify the user"));
        // Made for another relying party.
        let (key3, a3) = passkey_assertion(st, origin, "evil.example", 0x05);
        assert!(verify_passkey(st, &a3, &key3, &ok).unwrap_err().contains("relying party"));
        // Made for the origin on another port: the relying party is the host, the origin is checked whole.
        let (key4, a4) = passkey_assertion(st, "http://localhost:8000", "localhost", 0x05);
        assert_eq!(verify_passkey(st, &a4, &key4, &|o| o == "http://localhost:8000"), Ok(()));
        assert!(verify_passkey(st, &a4, &key4, &|o| o == "http://localhost:9000").is_err());
        // Made inside another origin's frame, or not shaped like an assertion: refused.
        let rp = "faramesh.example.com";
        for (extra, flags, tail, want) in [
            (json!({"crossOrigin": true}), 0x05, &[][..], "frame"),
            (json!({"topOrigin": "https://evil.example"}), 0x05, &[][..], "frame"),
            (json!({}), 0x45, &[][..], "not an assertion's"),
            (json!({}), 0x05, &[1, 2][..], "not an assertion's"),
        ] {
            let (k, a) = passkey_assertion_with(st, origin, rp, flags, extra, tail);
            assert!(verify_passkey(st, &a, &k, &ok).unwrap_err().contains(want), "{want}");
        }
    }
}
