//! What witnesses say about the log, read offline: C2SP `tlog-policy` files (which witnesses
//! count, and how many must have cosigned a checkpoint), and `tlog-proof` receipts (one
//! entry, its inclusion proof and the cosigned checkpoint it is proved against).

use std::collections::HashSet;

use super::entry;
use super::keys::{
    Checkpoint, CheckpointError, Cosignature, PublicKey, WitnessKey, base64_decode, base64_encode,
};
use super::merkle::{self, Hash};

/// Most logs, witnesses and groups a policy may name (C2SP asks for at least 32 of each).
const MAX_ITEMS: usize = 256;

/// A policy line that cannot be read: its line number and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct PolicyError {
    /// 1-based line number (0: the file as a whole).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// A witness a policy names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Witness {
    /// Its name in the policy (groups refer to it by this).
    pub name: String,
    /// Its cosignature key (the key's own name is the name on its signature lines).
    pub key: WitnessKey,
    /// Its submission prefix (`POST <url>/add-checkpoint`), if given.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Member {
    None,
    Witness(usize),
    Group(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Group {
    name: String,
    threshold: usize,
    members: Vec<Member>,
}

/// A C2SP `tlog-policy`: known logs, known witnesses, groups and the quorum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessPolicy {
    /// The logs it accepts, with their URLs.
    pub logs: Vec<(PublicKey, Option<String>)>,
    /// The witnesses it knows.
    pub witnesses: Vec<Witness>,
    groups: Vec<Group>,
    quorum: Member,
}

impl WitnessPolicy {
    /// Parses a policy file: `log <vkey> [<url>]`, `witness <name> <vkey> [<url>]`,
    /// `group <name> all|any|<k> <member>…`, `quorum <name>` (exactly once; `none` for no
    /// cosignatures), blank lines and `#` comments. Names refer only to earlier lines.
    pub fn parse(text: &str) -> Result<WitnessPolicy, PolicyError> {
        let mut logs: Vec<(PublicKey, Option<String>)> = Vec::new();
        let mut witnesses: Vec<Witness> = Vec::new();
        let mut groups: Vec<Group> = Vec::new();
        let mut quorum = None;
        let mut keys_seen: HashSet<[u8; 32]> = HashSet::new();
        let mut log_keys_seen: HashSet<String> = HashSet::new();
        for (n, raw) in text.split('\n').enumerate() {
            let line = n + 1;
            let err = |message: String| PolicyError { line, message };
            if let Some(b) = raw.bytes().find(|&b| b < 0x20 && b != b'\t' || b == 0x7f) {
                return Err(err(format!("control character 0x{b:02x} (only tab and newline are allowed)")));
            }
            let words: Vec<&str> = raw.split([' ', '\t']).filter(|w| !w.is_empty()).collect();
            let Some((&keyword, args)) = words.split_first() else { continue };
            if keyword.starts_with('#') {
                continue;
            }
            let lookup = |name: &str| -> Option<Member> {
                if name == "none" {
                    return Some(Member::None);
                }
                witnesses
                    .iter()
                    .position(|w| w.name == name)
                    .map(Member::Witness)
                    .or_else(|| groups.iter().position(|g| g.name == name).map(Member::Group))
            };
            let defined = |name: &str| name == "none" || lookup(name).is_some();
            match keyword {
                "log" => {
                    let (Some(vkey), url, []) =
                        (args.first(), args.get(1), args.get(2..).unwrap_or_default())
                    else {
                        return Err(err("`log` takes a verifier key and an optional URL".into()));
                    };
                    let key = PublicKey::from_text(vkey).map_err(|e| err(format!("`log`: {e}")))?;
                    let raw_key = vkey.rsplit('+').next().unwrap_or_default().to_owned();
                    if !log_keys_seen.insert(raw_key) {
                        return Err(err("the same log key is listed twice".into()));
                    }
                    logs.push((key, url.map(|u| (*u).to_owned())));
                }
                "witness" => {
                    let (Some(name), Some(vkey), url, []) =
                        (args.first(), args.get(1), args.get(2), args.get(3..).unwrap_or_default())
                    else {
                        return Err(err("`witness` takes a name, a verifier key and an optional URL".into()));
                    };
                    if defined(name) {
                        return Err(err(format!("the name `{name}` is already defined")));
                    }
                    let key =
                        WitnessKey::from_text(vkey).map_err(|e| err(format!("witness `{name}`: {e}")))?;
                    if !keys_seen.insert(key.key_bytes()) {
                        return Err(err(format!("witness `{name}`: the same key is listed twice")));
                    }
                    witnesses.push(Witness {
                        name: (*name).to_owned(),
                        key,
                        url: url.map(|u| (*u).to_owned()),
                    });
                }
                "group" => {
                    let (Some(name), Some(k), members) =
                        (args.first(), args.get(1), args.get(2..).unwrap_or_default())
                    else {
                        return Err(err("`group` takes a name, all|any|<k> and at least one member".into()));
                    };
                    if defined(name) {
                        return Err(err(format!("the name `{name}` is already defined")));
                    }
                    if members.is_empty() {
                        return Err(err(format!("group `{name}` has no members")));
                    }
                    let mut resolved = Vec::new();
                    for m in members {
                        match lookup(m) {
                            None => {
                                return Err(err(format!(
                                    "group `{name}`: `{m}` is not defined on an earlier line"
                                )));
                            }
                            Some(Member::None) => {
                                return Err(err(format!("group `{name}`: `none` cannot be a member")));
                            }
                            Some(found) if resolved.contains(&found) => {
                                return Err(err(format!("group `{name}`: `{m}` is listed twice")));
                            }
                            Some(found) => resolved.push(found),
                        }
                    }
                    let threshold = match *k {
                        "all" => resolved.len(),
                        "any" => 1,
                        digits => match digits.parse::<usize>() {
                            Ok(t) if t >= 1 && t <= resolved.len() && !digits.starts_with('0') => t,
                            _ => {
                                return Err(err(format!(
                                    "group `{name}`: the threshold `{digits}` must be all, any or a number from 1 to {}",
                                    resolved.len()
                                )));
                            }
                        },
                    };
                    groups.push(Group { name: (*name).to_owned(), threshold, members: resolved });
                }
                "quorum" => {
                    let [name] = args else { return Err(err("`quorum` takes one name".into())) };
                    if quorum.is_some() {
                        return Err(err("a second `quorum` line".into()));
                    }
                    quorum =
                        Some(lookup(name).ok_or_else(|| {
                            err(format!("quorum `{name}` is not defined on an earlier line"))
                        })?);
                }
                other => return Err(err(format!("unknown keyword `{other}` (log, witness, group, quorum)"))),
            }
            if logs.len() > MAX_ITEMS || witnesses.len() > MAX_ITEMS || groups.len() > MAX_ITEMS {
                return Err(err(format!("more than {MAX_ITEMS} logs, witnesses or groups")));
            }
        }
        let quorum =
            quorum.ok_or(PolicyError { line: 0, message: "the policy has no `quorum` line".into() })?;
        Ok(WitnessPolicy { logs, witnesses, groups, quorum })
    }

    /// Whether the witnesses at these indices (of [`WitnessPolicy::witnesses`]) make the quorum.
    pub fn quorum_met(&self, cosigned: &HashSet<usize>) -> bool {
        self.member_met(&self.quorum, cosigned, 0)
    }

    fn member_met(&self, m: &Member, cosigned: &HashSet<usize>, depth: usize) -> bool {
        match m {
            Member::None => true,
            Member::Witness(i) => cosigned.contains(i),
            Member::Group(g) => self.groups.get(*g).is_some_and(|g| {
                depth < MAX_ITEMS
                    && g.members.iter().filter(|m| self.member_met(m, cosigned, depth + 1)).count()
                        >= g.threshold
            }),
        }
    }

    /// The quorum line's name (`none` when no cosignature is needed).
    pub fn quorum_name(&self) -> &str {
        match &self.quorum {
            Member::None => "none",
            Member::Witness(i) => self.witnesses.get(*i).map_or("", |w| w.name.as_str()),
            Member::Group(g) => self.groups.get(*g).map_or("", |g| g.name.as_str()),
        }
    }

    /// The valid cosignatures a signed note carries from this policy's witnesses, with the
    /// index of each witness. A line by a known witness that does not verify is an error.
    pub fn cosignatures(&self, note: &str) -> Result<Vec<(usize, Cosignature)>, CheckpointError> {
        let mut out = Vec::new();
        for (i, w) in self.witnesses.iter().enumerate() {
            if let Some(c) = w.key.verify_note(note)? {
                out.push((i, c));
            }
        }
        Ok(out)
    }

    /// Checks `note` against the policy: it is signed by `log` (which the policy must list when
    /// it lists logs) and cosigned by a quorum. Returns the checkpoint and the cosignatures.
    pub fn check(&self, note: &str, log: &PublicKey) -> Result<(Checkpoint, Vec<Cosignature>), Unproven> {
        if !self.logs.is_empty() && !self.logs.iter().any(|(k, _)| k.named(log.name()) == *log) {
            return Err("the policy lists other logs, not this key".into());
        }
        let cp = log.verify_checkpoint(note).map_err(|e| e.to_string())?;
        if cp.legacy {
            return Err(
                "the checkpoint is in the older format (no Merkle root): witnesses never cosign those".into(),
            );
        }
        let found = self.cosignatures(note).map_err(|e| format!("a cosignature: {e}"))?;
        let who: HashSet<usize> = found.iter().map(|(i, _)| *i).collect();
        if !self.quorum_met(&who) {
            let names: Vec<&str> = found.iter().map(|(_, c)| c.name.as_str()).collect();
            return unproven(format!(
                "the checkpoint at size {} is cosigned by {} of the policy's witnesses ({}), not by the quorum `{}`",
                cp.size,
                names.len(),
                if names.is_empty() { "none".to_owned() } else { names.join(", ") },
                self.quorum_name()
            ));
        }
        Ok((cp, found.into_iter().map(|(_, c)| c).collect()))
    }
}

/// The first line of a `tlog-proof` receipt.
pub const PROOF_HEADER: &str = "c2sp.org/tlog-proof@v1";

/// A C2SP `tlog-proof`: the record (as the `extra` data), its index (`seq - 1`), its inclusion
/// proof and the checkpoint (with any cosignatures) it is proved against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The stored record (canonical JSON).
    pub record: Vec<u8>,
    /// The leaf index: the entry's `seq - 1`.
    pub index: u64,
    /// The inclusion proof, from the leaf's sibling up.
    pub proof: Vec<Hash>,
    /// The signed note, cosignatures included.
    pub checkpoint: String,
}

impl Receipt {
    /// The receipt's text.
    pub fn to_text(&self) -> String {
        let mut out =
            format!("{PROOF_HEADER}\nextra {}\nindex {}\n", base64_encode(&self.record), self.index);
        for h in &self.proof {
            out.push_str(&base64_encode(h));
            out.push('\n');
        }
        out.push('\n');
        out.push_str(&self.checkpoint);
        out
    }

    /// Reads a receipt, naming the line at fault.
    pub fn parse(text: &str) -> Result<Receipt, PolicyError> {
        let err = |line: usize, message: &str| PolicyError { line, message: message.to_owned() };
        let (head, checkpoint) =
            text.split_once("\n\n").ok_or_else(|| err(0, "no empty line before the checkpoint"))?;
        let mut lines = head.split('\n').enumerate().map(|(i, l)| (i + 1, l));
        if lines.next().map(|(_, l)| l) != Some(PROOF_HEADER) {
            return Err(err(1, "the first line must be `c2sp.org/tlog-proof@v1`"));
        }
        let (mut n, mut line) = lines.next().ok_or_else(|| err(2, "no `index` line"))?;
        let record = match line.strip_prefix("extra ") {
            Some(b64) => {
                let r = base64_decode(b64).ok_or_else(|| err(n, "the `extra` data is not base64"))?;
                (n, line) = lines.next().ok_or_else(|| err(n + 1, "no `index` line"))?;
                r
            }
            None => return Err(err(n, "no `extra` line: a Faramesh receipt carries the record there")),
        };
        let index = line
            .strip_prefix("index ")
            .filter(|d| d == &"0" || !d.starts_with('0'))
            .and_then(|d| d.parse::<u64>().ok())
            .ok_or_else(|| err(n, "expected `index <n>`"))?;
        let mut proof = Vec::new();
        for (n, line) in lines {
            let h = base64_decode(line)
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .ok_or_else(|| err(n, "a proof line must be 32 bytes of base64"))?;
            proof.push(h);
            if proof.len() > 64 {
                return Err(err(n, "more than 64 proof lines"));
            }
        }
        Ok(Receipt { record, index, proof, checkpoint: checkpoint.to_owned() })
    }
}

/// What a receipt proves, once checked.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Proven {
    /// The entry's seq.
    pub seq: u64,
    /// The record (canonical JSON).
    pub record: serde_json::Value,
    /// The log's origin.
    pub origin: String,
    /// The checkpoint's size.
    pub size: u64,
    /// The witnesses whose cosignatures verified (name and time).
    pub witnesses: Vec<(String, u64)>,
}

/// Why a checkpoint or a receipt does not prove what it claims, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unproven(String);

impl From<String> for Unproven {
    fn from(why: String) -> Unproven {
        Unproven(why)
    }
}

impl From<&str> for Unproven {
    fn from(why: &str) -> Unproven {
        Unproven(why.to_owned())
    }
}

fn unproven<T>(why: impl Into<Unproven>) -> Result<T, Unproven> {
    Err(why.into())
}

/// Checks a receipt with only the log's key (and a witness policy): the checkpoint is signed
/// by the key, the record is intact (its `entry_hash` recomputes) and at `seq = index + 1`, the
/// proof takes its leaf to the checkpoint's root, and with a policy a quorum cosigned it.
pub fn verify_receipt(
    receipt: &Receipt,
    log: &PublicKey,
    policy: Option<&WitnessPolicy>,
) -> Result<Proven, Unproven> {
    let (cp, cosigs) = match policy {
        Some(p) => p.check(&receipt.checkpoint, log)?,
        None => {
            let cp = log.verify_checkpoint(&receipt.checkpoint).map_err(|e| e.to_string())?;
            if cp.legacy {
                return Err("the checkpoint is in the older format (no Merkle root)".into());
            }
            (cp, Vec::new())
        }
    };
    let opened = entry::open(&receipt.record).map_err(|e| format!("the record: {e}"))?;
    if opened.seq != receipt.index + 1 {
        return unproven(format!(
            "the record is entry {}, the proof is for index {}",
            opened.seq, receipt.index
        ));
    }
    let leaf = merkle::leaf_hash(&opened.entry_hash);
    if !merkle::verify_inclusion(&leaf, receipt.index, cp.size, &receipt.proof, &cp.root) {
        return unproven(format!(
            "the inclusion proof does not take entry {} to the root of the checkpoint at size {}",
            opened.seq, cp.size
        ));
    }
    Ok(Proven {
        seq: opened.seq,
        record: serde_json::Value::Object(opened.value),
        origin: cp.origin,
        size: cp.size,
        witnesses: cosigs.into_iter().map(|c| (c.name, c.timestamp)).collect(),
    })
}

/// Adds cosignature lines to a signed note (after its signatures, once each).
pub fn with_cosignatures(note: &str, lines: &[String]) -> String {
    let mut out = note.to_owned();
    if !out.ends_with('\n') {
        out.push('\n');
    }
    for l in lines {
        if !out.lines().any(|existing| existing == l) {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::keys::{LogKey, cosign};

    fn vkey(seed: u8, name: &str) -> String {
        cosign(&[seed; 32], name, 1, "x\n1\nAA==\n").1
    }

    #[test]
    fn policies_parse_and_quorums_count_groups() {
        let text = format!(
            "# witnesses\nwitness X1 {}\nwitness X2 {}\n\twitness Y1 {} http://127.0.0.1:1\ngroup X 2 X1 X2\ngroup XY all X Y1\nquorum XY\n",
            vkey(1, "x1.example/w"),
            vkey(2, "x2.example/w"),
            vkey(3, "y1.example/w")
        );
        let p = WitnessPolicy::parse(&text).unwrap();
        assert_eq!(p.witnesses.len(), 3);
        assert_eq!(p.witnesses[2].url.as_deref(), Some("http://127.0.0.1:1"));
        assert!(p.quorum_met(&[0, 1, 2].into()));
        assert!(!p.quorum_met(&[0, 2].into()));
        assert!(!p.quorum_met(&[0, 1].into()));
        assert!(WitnessPolicy::parse("quorum none\n").unwrap().quorum_met(&HashSet::new()));
    }

    #[test]
    fn bad_policies_name_the_line() {
        let w = vkey(1, "w.example");
        for (text, line, needle) in [
            ("witness A k\nquorum A\n".to_owned(), 1, "witness `A`"),
            (format!("witness A {w}\nwitness A {}\nquorum A\n", vkey(2, "v")), 2, "already defined"),
            (format!("witness A {w}\nwitness B {w}\nquorum A\n"), 2, "same key"),
            (format!("witness A {w}\ngroup G 2 A\nquorum G\n"), 2, "threshold"),
            (format!("witness A {w}\ngroup G any B\nquorum G\n"), 2, "`B` is not defined"),
            (format!("witness A {w}\ngroup G any A A\nquorum G\n"), 2, "listed twice"),
            (format!("witness A {w}\nquorum A\nquorum A\n"), 3, "second"),
            (format!("witness A {w}\n"), 0, "no `quorum`"),
            ("frobnicate\nquorum none\n".to_owned(), 1, "unknown keyword"),
            ("quorum none\x0c\n".to_owned(), 1, "control character"),
        ] {
            let e = WitnessPolicy::parse(&text).unwrap_err();
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.message.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn receipts_round_trip_and_verify_only_when_intact() {
        let key = LogKey::from_seed(&[4u8; 32]).named("faramesh/t");
        let mut prev = entry::GENESIS;
        let mut leaves = Vec::new();
        let mut records = Vec::new();
        for seq in 1..=5u64 {
            let body = serde_json::json!({"seq": seq, "ts": "2026-01-01T00:00:00.000Z", "kind": "decision"});
            let sealed = entry::seal(&prev, body.as_object().unwrap().clone()).unwrap();
            prev = sealed.entry_hash;
            leaves.push(merkle::leaf_hash(&prev));
            records.push(sealed.record);
        }
        let root = merkle::root(&mut merkle::Leaves(&leaves), 5).unwrap();
        let note =
            key.sign_checkpoint(&Checkpoint { origin: "faramesh/t".into(), size: 5, root, legacy: false });
        let body = note.split_once("\n\n").unwrap().0.to_owned() + "\n";
        let (line, wkey) = cosign(&[9u8; 32], "w.example/1", 1_800_000_000, &body);
        let note = with_cosignatures(&note, &[line]);
        let receipt = Receipt {
            record: records[2].clone().into_bytes(),
            index: 2,
            proof: merkle::inclusion_proof(&mut merkle::Leaves(&leaves), 2, 5).unwrap(),
            checkpoint: note,
        };
        let text = receipt.to_text();
        assert_eq!(Receipt::parse(&text).unwrap(), receipt);
        let policy = WitnessPolicy::parse(&format!("witness W {wkey}\nquorum W\n")).unwrap();
        let proven = verify_receipt(&receipt, &key.public(), Some(&policy)).unwrap();
        assert_eq!((proven.seq, proven.size, proven.witnesses.len()), (3, 5, 1));

        let other =
            WitnessPolicy::parse(&format!("witness W {}\nquorum W\n", vkey(8, "w.example/2"))).unwrap();
        assert!(
            verify_receipt(&receipt, &key.public(), Some(&other))
                .unwrap_err()
                .to_string()
                .contains("not by the quorum")
        );
        let moved = Receipt { index: 3, ..receipt.clone() };
        assert!(verify_receipt(&moved, &key.public(), None).is_err());
        let edited =
            Receipt { record: records[2].replace("decision", "approval").into_bytes(), ..receipt.clone() };
        assert!(verify_receipt(&edited, &key.public(), None).is_err());
        let swapped = Receipt { record: records[3].clone().into_bytes(), index: 3, ..receipt };
        assert!(
            verify_receipt(&swapped, &key.public(), None)
                .unwrap_err()
                .to_string()
                .contains("inclusion proof")
        );
    }
}
