//! The `approvals:` section: who approves, how long an approval waits, same-uid approvals.

use serde_json::{Value, json};

use super::{Loader, PolicyError, parse_duration, principal_text};
use crate::model::Approvals;
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
                        approvals.approvers.push(self.principal(item, "approver")?);
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
        // Only when set, so policies without it keep their hash.
        if approvals.allow_same_uid
            && let Value::Object(m) = &mut norm
        {
            m.insert("allow_same_uid".into(), Value::Bool(true));
        }
        Ok((approvals, norm))
    }
}

const APPROVAL_KEYS: &[&str] = &["approvers", "expire_after", "allow_same_uid"];
