//! The comparison behind `faramesh verify-export`: a destination's copy, entry by entry, with
//! the host's chain.

use serde_json::Value;

use crate::log::entry;

/// How a destination's copy compares with the host's log (`faramesh verify-export`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Comparison {
    /// The range checked (`first..=through`).
    pub first: u64,
    /// The last entry checked.
    pub through: u64,
    /// Entries of the range present and equal to the host's.
    pub present: u64,
    /// Extra copies of entries (harmless: at least once).
    pub duplicates: u64,
    /// Ranges of the host's entries the copy lacks, `[from, to]`.
    pub missing: Vec<(u64, u64)>,
    /// Entries whose copy is not what the chain commits to, with why.
    pub altered: Vec<(u64, String)>,
    /// What is wrong beside the entries (PostgreSQL's host row).
    pub problems: Vec<String>,
}

impl Comparison {
    /// Nothing missing, nothing altered, nothing else wrong.
    pub fn ok(&self) -> bool {
        self.missing.is_empty() && self.altered.is_empty() && self.problems.is_empty()
    }

    /// The first entry to send again (the lowest missing or altered one; the last entry
    /// checked when only the host row is wrong: any batch writes it again).
    pub fn resend_from(&self) -> Option<u64> {
        let entries = self.missing.iter().map(|m| m.0).chain(self.altered.iter().map(|a| a.0)).min();
        entries.or_else(|| (!self.problems.is_empty() && self.through >= self.first).then_some(self.through))
    }
}

/// Compares a destination's copy (`(seq, record)`, any order, duplicates allowed) with the
/// host's entries `first..=through` (`host`: seq → the `entry_hash` the host's chain holds). A
/// copy is altered when its record is not canonical, its `entry_hash` is not the hash of its
/// contents, its `prev_hash` does not link to the previous entry, or its hash is not the
/// host's; duplicates must all be intact. An entry in `flagged` is altered for the reason
/// given there (PostgreSQL: a column that is not what its record says).
pub fn compare(
    copies: &[(u64, String)],
    flagged: &std::collections::BTreeMap<u64, String>,
    host: &std::collections::BTreeMap<u64, String>,
    first: u64,
    through: u64,
) -> Comparison {
    use std::collections::BTreeMap;
    let mut cmp = Comparison { first, through, ..Comparison::default() };
    let mut seen: BTreeMap<u64, Result<entry::Opened, String>> = BTreeMap::new();
    let mut altered: BTreeMap<u64, String> = BTreeMap::new();
    for (seq, record) in copies {
        if *seq < first || *seq > through {
            continue;
        }
        let opened = entry::open(record.as_bytes()).map_err(|e| e.to_string()).and_then(|o| {
            if o.seq == *seq { Ok(o) } else { Err(format!("the record holds entry {}", o.seq)) }
        });
        match seen.get(seq) {
            None => {
                seen.insert(*seq, opened);
            }
            Some(prev) => {
                cmp.duplicates += 1;
                let same = matches!((prev, &opened), (Ok(a), Ok(b)) if a.entry_hash == b.entry_hash);
                if !same {
                    let why = opened.err().unwrap_or_else(|| "two different copies".into());
                    altered.entry(*seq).or_insert(why);
                }
            }
        }
    }
    let mut gap: Option<(u64, u64)> = None;
    for seq in first..=through {
        let Some(copy) = seen.get(&seq) else {
            if host.contains_key(&seq) || seq > host.keys().next_back().copied().unwrap_or(0) {
                gap = Some(gap.map_or((seq, seq), |(a, _)| (a, seq)));
            }
            continue;
        };
        if let Some(g) = gap.take() {
            cmp.missing.push(g);
        }
        match copy {
            Err(why) => {
                altered.entry(seq).or_insert_with(|| why.clone());
            }
            Ok(o) => {
                let hash = entry::hex(&o.entry_hash);
                if host.get(&seq).is_some_and(|h| *h != hash) {
                    altered.entry(seq).or_insert_with(|| "differs from the host's entry".into());
                } else if let Some(Ok(prev)) = seen.get(&(seq.wrapping_sub(1))).filter(|_| seq > first)
                    && prev.entry_hash != o.prev_hash
                {
                    altered.entry(seq).or_insert_with(|| "does not link to the entry before it".into());
                } else if let Some(why) = flagged.get(&seq) {
                    altered.entry(seq).or_insert_with(|| why.clone());
                } else if !altered.contains_key(&seq) {
                    cmp.present += 1;
                }
            }
        }
    }
    if let Some(g) = gap {
        cmp.missing.push(g);
    }
    cmp.altered = altered.into_iter().collect();
    cmp
}

/// A line of an OTLP file that is not JSON.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: not JSON: {source}")]
pub struct NotOtlp {
    /// The line, from 1.
    pub line: usize,
    /// What the JSON parser said.
    #[source]
    pub source: serde_json::Error,
}

/// The records an OpenTelemetry Collector's file exporter wrote (OTLP/JSON, one export request
/// per line) for the log `log_id`: `(seq, record)` from each log record's `faramesh.seq` and body.
pub fn otlp_file_records(text: &str, log_id: &str) -> Result<Vec<(u64, String)>, NotOtlp> {
    let mut out = Vec::new();
    let attr = |attrs: &Value, key: &str| -> Option<Value> {
        attrs.as_array()?.iter().find(|a| a["key"] == key).map(|a| a["value"].clone())
    };
    let int = |v: &Value| {
        v["intValue"].as_str().and_then(|s| s.parse::<u64>().ok()).or_else(|| v["intValue"].as_u64())
    };
    for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let req: Value = serde_json::from_str(line).map_err(|source| NotOtlp { line: n + 1, source })?;
        for rl in req["resourceLogs"].as_array().into_iter().flatten() {
            let id = attr(&rl["resource"]["attributes"], "faramesh.log_id");
            if id.as_ref().and_then(|v| v["stringValue"].as_str()) != Some(log_id) {
                continue;
            }
            for sl in rl["scopeLogs"].as_array().into_iter().flatten() {
                for r in sl["logRecords"].as_array().into_iter().flatten() {
                    let Some(seq) = attr(&r["attributes"], "faramesh.seq").as_ref().and_then(int) else {
                        continue;
                    };
                    let body = r["body"]["stringValue"].as_str().unwrap_or_default().to_owned();
                    out.push((seq, body));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_copy_is_compared_entry_by_entry_with_the_chain() {
        use std::collections::BTreeMap;
        let mut prev = entry::GENESIS;
        let mut records = Vec::new();
        let mut host = std::collections::BTreeMap::new();
        for seq in 1..=10u64 {
            let mut body = serde_json::Map::new();
            body.insert("seq".into(), json!(seq));
            body.insert("kind".into(), json!("daemon_start"));
            let sealed = entry::seal(&prev, body).unwrap();
            prev = sealed.entry_hash;
            host.insert(seq, entry::hex(&sealed.entry_hash));
            records.push((seq, sealed.record));
        }
        let mut copy = records.clone();
        copy.push(records[3].clone()); // a duplicate: harmless
        let c = compare(&copy, &BTreeMap::new(), &host, 1, 10);
        assert!(c.ok(), "{c:?}");
        assert_eq!((c.present, c.duplicates), (10, 1));
        // Two gone, one edited.
        let mut copy: Vec<_> = records.iter().filter(|(s, _)| *s != 4 && *s != 5).cloned().collect();
        copy[6].1 = copy[6].1.replace("daemon_start", "daemon_stop");
        let c = compare(&copy, &BTreeMap::new(), &host, 1, 10);
        assert_eq!(c.missing, vec![(4, 5)]);
        assert_eq!(c.altered.iter().map(|a| a.0).collect::<Vec<_>>(), vec![9]);
        assert!(c.altered[0].1.contains("entry_hash does not match"), "{:?}", c.altered);
        assert_eq!(c.resend_from(), Some(4));
        // The tail not there yet.
        let c = compare(&records[..8], &BTreeMap::new(), &host, 1, 10);
        assert_eq!(c.missing, vec![(9, 10)]);
    }
}
