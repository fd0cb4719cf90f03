//! Signed policy bundles (`docs/fleet.md#one-policy-signed-on-every-host`): a publisher signs
//! the policy with an SSH key (`faramesh policy publish FILE --sign`, namespace
//! `faramesh-policy`) into a bundle with a serial that only grows, an expiry and the host labels
//! it is for; the fleet database carries it; a daemon started with `--policy-from postgres`
//! fetches the newest bundle for its labels, checks the signature against a key pinned in its
//! own configuration, refuses an older serial or an expired bundle, compiles it, and keeps it on
//! disk as the last good one. Nothing in the database changes a host's policy unless a pinned
//! key signed it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Digest;
use tokio_util::sync::CancellationToken;

use super::Service;
use super::outbound::{BundleSource, FetchedBundle, HostPolicy};
use super::signing::verify_sshsig_in;
use super::state::{PolicyFileError, State};
use crate::log::{dpr, entry};
use crate::policy::{Policy, sshsig};

/// The SSH signature namespace of policy bundles (`ssh-keygen -Y sign -n`).
pub const NAMESPACE: &str = "faramesh-policy";
/// The first line of a bundle.
pub const MAGIC: &str = "faramesh policy bundle v1";
/// The largest policy a bundle may carry.
pub const MAX_POLICY_BYTES: usize = 4 * 1024 * 1024;
/// How often the database is read for a newer bundle when it announces nothing.
pub const POLL: Duration = Duration::from_secs(10);
/// The last good bundle's files in the bundle directory.
pub const BUNDLE_FILE: &str = "bundle.txt";
/// Its signature.
pub const SIGNATURE_FILE: &str = "bundle.sig";

/// A bundle's header and policy, as signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// Grows with every bundle published.
    pub serial: u64,
    /// After this (ms since the epoch) the bundle is stale.
    pub expires_ms: u64,
    /// The host labels it is for (empty: every host).
    pub labels: Vec<String>,
    /// Who published it (a name, for people).
    pub publisher: String,
    /// The policy, verbatim.
    pub policy: String,
}

/// What a host runs, as DPRs, `status` and `faramesh fleet hosts` show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleInfo {
    /// The bundle's serial.
    pub serial: u64,
    /// SHA-256 (hex) of the bundle's text, as signed.
    pub digest: String,
    /// When it expires (RFC 3339).
    pub expires_at: String,
    /// Milliseconds since the epoch of `expires_at`.
    #[serde(skip)]
    pub expires_ms: u64,
    /// Its publisher.
    pub publisher: String,
    /// Its labels (empty: every host).
    pub labels: Vec<String>,
}

fn valid_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 64
        && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.'))
}

/// Reads `a,b` host labels (lower-case letters, digits, `-`, `_`, `.`; at most 64 characters).
pub fn parse_labels(text: &str) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for l in text.split(',').map(str::trim).filter(|l| !l.is_empty()) {
        if !valid_label(l) {
            return Err(format!(
                "label `{l}` must be lower-case letters, digits, `-`, `_` or `.` (at most 64)"
            ));
        }
        if !out.iter().any(|o| o == l) {
            out.push(l.to_owned());
        }
    }
    out.sort();
    Ok(out)
}

impl Bundle {
    /// The exact text signed: the header lines, an empty line, the policy.
    pub fn text(&self) -> String {
        let labels = if self.labels.is_empty() { "*".to_owned() } else { self.labels.join(",") };
        format!(
            "{MAGIC}\nserial: {}\nexpires: {}\nlabels: {labels}\npublisher: {}\npolicy-sha256: {}\npolicy-bytes: {}\n\n{}",
            self.serial,
            entry::rfc3339(self.expires_ms),
            self.publisher,
            hex_sha256(self.policy.as_bytes()),
            self.policy.len(),
            self.policy,
        )
    }

    /// Reads a bundle, strictly: the header in order, the policy's length and hash as stated,
    /// and the text exactly what [`Bundle::text`] writes for what it read.
    pub fn parse(text: &str) -> Result<Bundle, String> {
        let (head, policy) = text.split_once("\n\n").ok_or("no empty line after the header")?;
        let lines: Vec<&str> = head.split('\n').collect();
        let keys = ["serial", "expires", "labels", "publisher", "policy-sha256", "policy-bytes"];
        if lines.len() != keys.len() + 1 || lines[0] != MAGIC {
            return Err(format!("the header is not {} lines starting `{MAGIC}`", keys.len() + 1));
        }
        let mut v = Vec::with_capacity(keys.len());
        for (line, key) in lines[1..].iter().zip(keys) {
            v.push(
                line.strip_prefix(key)
                    .and_then(|l| l.strip_prefix(": "))
                    .ok_or_else(|| format!("line `{key}: …` is missing or out of order"))?,
            );
        }
        let serial: u64 = v[0].parse().map_err(|_| "`serial` is not a whole number")?;
        let expires_ms = entry::parse_rfc3339(v[1]).ok_or("`expires` is not an RFC 3339 time")?;
        let labels = if v[2] == "*" { Vec::new() } else { parse_labels(v[2])? };
        let bytes: usize = v[5].parse().map_err(|_| "`policy-bytes` is not a whole number")?;
        if bytes > MAX_POLICY_BYTES {
            return Err(format!("the policy is over the {MAX_POLICY_BYTES}-byte limit of a bundle"));
        }
        if policy.len() != bytes {
            return Err(format!("the policy is {} bytes where the header says {bytes}", policy.len()));
        }
        let publisher_ok = !v[3].is_empty()
            && v[3].len() <= 64
            && v[3].bytes().all(|c| c.is_ascii_alphanumeric() || b"._@-".contains(&c));
        if !publisher_ok {
            return Err("`publisher` must be 1 to 64 letters, digits or `._@-`".into());
        }
        if hex_sha256(policy.as_bytes()) != v[4] {
            return Err("the policy's SHA-256 is not the one in the header".into());
        }
        let b = Bundle { serial, expires_ms, labels, publisher: v[3].to_owned(), policy: policy.to_owned() };
        if b.text() != text {
            return Err("the bundle is not written in its one exact form".into());
        }
        Ok(b)
    }

    /// Whether it is for a host with `host_labels`: it names none (every host) or one of them.
    pub fn is_for(&self, host_labels: &[String]) -> bool {
        self.labels.is_empty() || self.labels.iter().any(|l| host_labels.contains(l))
    }
}

/// SHA-256, hex.
pub fn hex_sha256(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the publisher keys a host pins: one `ssh-ed25519 AAAA… [comment]` per line (`#`
/// comments and empty lines allowed).
pub fn parse_pinned_keys(text: &str) -> Result<Vec<[u8; 32]>, String> {
    let mut keys = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        keys.push(
            sshsig::parse_ssh_ed25519(line).ok_or_else(|| {
                format!("line {}: not an Ed25519 SSH public key (`ssh-ed25519 AAAA…`)", n + 1)
            })?,
        );
    }
    if keys.is_empty() {
        return Err("no key in it".into());
    }
    Ok(keys)
}

/// A bundle whose signature is by one of `keys`, read and compiled: its policy and what it is.
pub fn verify(text: &str, signature: &str, keys: &[[u8; 32]]) -> Result<(Bundle, BundleInfo), String> {
    let signer = verify_sshsig_in(NAMESPACE, signature, text.as_bytes())?;
    if !keys.contains(&signer) {
        return Err("it is signed by a key this host does not pin (`--policy-key`)".into());
    }
    let b = Bundle::parse(text)?;
    let info = BundleInfo {
        serial: b.serial,
        digest: hex_sha256(text.as_bytes()),
        expires_at: entry::rfc3339(b.expires_ms),
        expires_ms: b.expires_ms,
        publisher: b.publisher.clone(),
        labels: b.labels.clone(),
    };
    Ok((b, info))
}

/// How a host takes its policy from signed bundles.
#[derive(Debug, Clone)]
pub struct BundleConfig {
    /// Where the last good bundle is kept.
    pub dir: PathBuf,
    /// The publisher keys it pins.
    pub keys: Vec<[u8; 32]>,
    /// Its labels.
    pub labels: Vec<String>,
    /// Past expiry with no newer bundle: keep serving (false) or deny every call (true).
    pub deny_when_stale: bool,
    /// Where bundles are fetched from.
    pub source: Arc<dyn BundleSource>,
}

/// The policy before any bundle arrived: no rules, so every call is DENY.
pub const NO_BUNDLE_YET: &str = "version: 1\ndescription: no signed policy bundle has been received yet; every call is denied\nrules: []\n";

/// The bundle this host's log says it applied last: `(serial, digest)`.
pub fn applied(log: &crate::log::Log) -> Option<(u64, String)> {
    let v: Value = serde_json::from_slice(&log.state_get("policy_bundle").ok().flatten()?).ok()?;
    Some((v["serial"].as_u64()?, v["digest"].as_str()?.to_owned()))
}

/// The last good bundle in the bundle directory, checked again: its signature by a pinned key,
/// its labels against this host's, and that it is the very bundle the log says this host applied
/// last (`applied`), so no copy from elsewhere (an older one, or one for other labels) is taken
/// from the disk. `None` when there is none yet.
pub fn load_last_good(
    cfg: &BundleConfig,
    applied: &Option<(u64, String)>,
) -> Result<Option<(Policy, BundleInfo)>, PolicyFileError> {
    let (dir, keys) = (&cfg.dir, &cfg.keys[..]);
    let path = dir.join(BUNDLE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(PolicyFileError::Read { path, source }),
    };
    let sig_path = dir.join(SIGNATURE_FILE);
    let signature = std::fs::read_to_string(&sig_path)
        .map_err(|source| PolicyFileError::Read { path: sig_path.clone(), source })?;
    let refuse = |why: String| PolicyFileError::Read {
        path: path.clone(),
        source: std::io::Error::other(format!("the kept bundle is not used: {why}")),
    };
    let (b, info) =
        verify(&text, &signature, keys).map_err(|why| refuse(format!("it does not verify: {why}")))?;
    if !b.is_for(&cfg.labels) {
        return Err(refuse(format!("it is for labels {}, not this host's", b.labels.join(","))));
    }
    match applied {
        Some((serial, digest)) if *serial != info.serial || *digest != info.digest => {
            return Err(refuse(format!(
                "it is bundle {} ({}), and this host's log says it applied bundle {serial} ({digest})",
                info.serial, info.digest
            )));
        }
        None => return Err(refuse("this host's log records no bundle applied".into())),
        Some(_) => {}
    }
    let policy = crate::policy::compile(&format!("bundle {}", b.serial), &b.policy)?;
    Ok(Some((policy, info)))
}

/// Writes `text` to `path` through a temporary file and a rename.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl State {
    /// Whether every call is denied because the bundle in force expired (`--on-stale deny`).
    pub fn stale_denies(&self, now_ms: u64) -> Option<String> {
        let cfg = self.bundle.as_ref()?;
        let loaded = self.policy.load();
        let info = loaded.bundle.as_ref()?;
        (cfg.deny_when_stale && now_ms > info.expires_ms).then(|| {
            format!(
                "the policy bundle in force (serial {}) expired at {} and no newer one has arrived; this host denies every call until one does (--on-stale deny)",
                info.serial, info.expires_at
            )
        })
    }

    /// `status`'s `policy.bundle`: what runs, whether it is stale, the last refusal.
    pub fn bundle_status(&self) -> Value {
        let Some(cfg) = self.bundle.as_ref() else { return Value::Null };
        let loaded = self.policy.load();
        let now = entry::now_ms();
        let progress = self.bundle_progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        match loaded.bundle.as_ref() {
            None => json!({
                "labels": cfg.labels,
                "serial": null,
                "stale": false,
                "warning": "no signed policy bundle has been received yet: every call is denied",
                "last_fetch": progress.last_fetch,
                "last_error": progress.last_error,
                "refused": progress.refused,
            }),
            Some(info) => {
                let stale = now > info.expires_ms;
                json!({
                    "labels": cfg.labels,
                    "serial": info.serial,
                    "digest": info.digest,
                    "publisher": info.publisher,
                    "expires_at": info.expires_at,
                    "stale": stale,
                    "on_stale": if cfg.deny_when_stale { "deny" } else { "keep" },
                    "warning": stale.then(|| format!(
                        "the policy bundle in force (serial {}) expired at {}; {}",
                        info.serial,
                        info.expires_at,
                        if cfg.deny_when_stale { "every call is denied until a newer one arrives" } else { "it keeps serving (on_stale: keep) until a newer one arrives" }
                    )),
                    "last_fetch": progress.last_fetch,
                    "last_error": progress.last_error,
                    "refused": progress.refused,
                })
            }
        }
    }
}

/// What the bundle fetcher has seen.
#[derive(Debug, Default, Clone)]
pub struct Progress {
    /// When the database last answered.
    pub last_fetch: Option<String>,
    /// Why it did not, last time.
    pub last_error: Option<String>,
    /// The last bundle refused: `{serial, digest, error}`.
    pub refused: Option<Value>,
}

impl Service {
    /// Fetches newer bundles until `stop`: as the database announces them and every [`POLL`].
    pub async fn run_bundles(&self, cfg: BundleConfig, stop: CancellationToken) {
        let log_id = self.host_log_id();
        let host = super::fleet::host_name();
        let mut reported: Option<String> = None;
        loop {
            let current = self.state.policy.load().bundle.as_ref().map(|b| b.serial);
            let floor = self.bundle_floor().max(current.unwrap_or(0));
            // With no bundle in force (none kept, or the kept one was not used), the one the log
            // says was applied last is taken again; otherwise only a newer one.
            let after = if current.is_none() { floor.saturating_sub(1) } else { floor };
            let fetched = tokio::select! {
                () = stop.cancelled() => return,
                r = cfg.source.newest(after, &cfg.labels) => r,
            };
            match fetched {
                Ok(found) => {
                    self.set_progress(|p| {
                        p.last_fetch = Some(entry::rfc3339(entry::now_ms()));
                        p.last_error = None;
                    });
                    if let Some(f) = found {
                        self.apply_bundle(&cfg, &f, floor).await;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read policy bundles from the fleet database (retrying)");
                    self.set_progress(|p| p.last_error = Some(e.to_string()));
                }
            }
            // What this host runs, for `faramesh fleet hosts` (sent when it changes, and after
            // every successful read so `fetched_at` moves).
            let report = {
                let loaded = self.state.policy.load();
                let p = self
                    .state
                    .bundle_progress
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone();
                HostPolicy {
                    log_id: log_id.clone(),
                    host: host.clone(),
                    labels: cfg.labels.clone(),
                    serial: loaded.bundle.as_ref().map(|b| b.serial),
                    digest: loaded.bundle.as_ref().map(|b| b.digest.clone()),
                    expires_at: loaded.bundle.as_ref().map(|b| b.expires_at.clone()),
                    fetched_at: p.last_fetch.clone(),
                    refusal: p.refused.as_ref().map(Value::to_string),
                }
            };
            let key = format!("{report:?}");
            if reported.as_ref() != Some(&key) {
                match cfg.source.report(&report).await {
                    Ok(()) => reported = Some(key),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot report this host's policy to the fleet database")
                    }
                }
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = cfg.source.wait(POLL) => {}
            }
        }
    }

    fn set_progress(&self, f: impl FnOnce(&mut Progress)) {
        let mut p = self.state.bundle_progress.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut p);
    }

    /// The highest serial this host ever applied (its log's `policy_bundle` state row).
    fn bundle_floor(&self) -> u64 {
        self.state
            .log
            .state_get("policy_bundle")
            .ok()
            .flatten()
            .and_then(|v| serde_json::from_slice::<Value>(&v).ok())
            .and_then(|v| v["serial"].as_u64())
            .unwrap_or(0)
    }

    /// Checks a fetched bundle and, when it holds, makes it the policy: written to disk as the
    /// last good one, compiled, recorded (`policy_bundle`). A refusal is recorded once per
    /// bundle (`policy_bundle_refused`).
    async fn apply_bundle(&self, cfg: &BundleConfig, f: &FetchedBundle, floor: u64) {
        let digest = hex_sha256(f.text.as_bytes());
        let checked = verify(&f.text, &f.signature, &cfg.keys).and_then(|(b, info)| {
            let again = b.serial == floor
                && applied(&self.state.log).is_some_and(|(_, d)| d == info.digest)
                && self.state.policy.load().bundle.is_none();
            if b.serial <= floor && !again {
                return Err(format!(
                    "its serial {} is not newer than {floor}, the newest this host applied",
                    b.serial
                ));
            }
            if !b.is_for(&cfg.labels) {
                return Err(format!(
                    "it is for labels {} and this host has {}",
                    b.labels.join(","),
                    cfg.labels.join(",")
                ));
            }
            if entry::now_ms() > b.expires_ms {
                return Err(format!("it expired at {}", info.expires_at));
            }
            let policy = crate::policy::compile(&format!("bundle {}", b.serial), &b.policy)
                .map_err(|e| format!("its policy does not compile: {e}"))?;
            Ok((b, info, policy))
        });
        match checked {
            Ok((_, info, policy)) => {
                let kept = std::fs::create_dir_all(&cfg.dir)
                    .and_then(|()| write_atomically(&cfg.dir.join(SIGNATURE_FILE), &f.signature))
                    .and_then(|()| write_atomically(&cfg.dir.join(BUNDLE_FILE), &f.text));
                if let Err(e) = kept {
                    tracing::error!(error = %e, dir = %cfg.dir.display(), "cannot keep the policy bundle on disk; not applying it");
                    self.set_progress(|p| {
                        p.last_error = Some(format!("cannot keep the bundle on disk: {e}"))
                    });
                    return;
                }
                let hash = policy.hash.clone();
                let rules = policy.n_rules();
                let row = json!({"serial": info.serial, "digest": info.digest}).to_string();
                let body = dpr::event_entry(
                    "policy_bundle",
                    json!({
                        "serial": info.serial,
                        "digest": info.digest,
                        "publisher": info.publisher,
                        "labels": info.labels,
                        "expires_at": info.expires_at,
                        "policy_hash": hash,
                        "rules": rules,
                    }),
                );
                let committed = self
                    .commit(
                        body,
                        Some(Box::new(move |_, _| {
                            vec![("policy_bundle".to_owned(), Some(row.into_bytes()))]
                        })),
                    )
                    .await;
                if let Err(e) = committed {
                    tracing::error!(error = %e.message, "cannot record the policy bundle; not applying it");
                    return;
                }
                tracing::info!(serial = info.serial, digest = %info.digest, policy_hash = %hash, "a signed policy bundle is in force");
                self.state.policy.store(Arc::new(super::state::Loaded {
                    policy,
                    loaded_at: entry::rfc3339(entry::now_ms()),
                    bundle: Some(info),
                }));
                self.state.last_error.store(Arc::new(None));
                self.set_progress(|p| p.refused = None);
            }
            Err(why) => {
                let already = self
                    .state
                    .bundle_progress
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .refused
                    .as_ref()
                    .is_some_and(|r| r["digest"] == digest.as_str());
                if already {
                    return;
                }
                tracing::warn!(error = %why, "a policy bundle was refused");
                let serial = Bundle::parse(&f.text).ok().map(|b| b.serial);
                let error: String = why.chars().take(300).collect();
                let refused = json!({"serial": serial, "digest": digest, "error": error});
                self.set_progress(|p| p.refused = Some(refused.clone()));
                if let Err(e) = self.commit(dpr::event_entry("policy_bundle_refused", refused), None).await {
                    tracing::error!(error = %e.message, "cannot record the refused bundle");
                }
            }
        }
    }
}
