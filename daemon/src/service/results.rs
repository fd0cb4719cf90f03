//! A tool's result, read by the policy's `results:` rules before the agent reads it
//! (`result.check`): the verdict (`pass`, `flag`, `redact`, `deny`) is recorded as a `result`
//! entry about the action (the rule, what the detectors found and where, the size; never the
//! result itself), and the agent's client is answered with the result to hand on (redacted
//! where a rule says so) or, for `deny`, none.

use faramesh_proto::Effect;
use serde_json::{Value, json};

use super::{Identity, Service, ServiceError, to_json};
use crate::log::dpr::{self, Caller};
use crate::log::entry;
use crate::policy;

/// The largest result `result.check` reads (bytes of JSON): a larger one is refused before any
/// rule reads it.
pub const MAX_RESULT_BYTES: usize = 8 * 1024 * 1024;

impl Service {
    /// Reads `result`, the result of the permitted action `id`, by the `results:` rules.
    pub async fn result_check(&self, id: &str, result: Value, who: &Identity) -> Result<Value, ServiceError> {
        let view = self.find_action(id, who)?;
        let r = &view.record;
        let allowed = match who {
            Identity::Peer(p) => {
                r.caller.as_ref().and_then(Caller::uid) == Some(p.uid) || self.may_approve(who)
            }
            // find_action checked that the token (or tokenless caller) may read it
            Identity::Token(_) | Identity::Anonymous => true,
            Identity::Unknown => false,
        };
        if !allowed {
            return Err(ServiceError::not_authorized(
                "not authorized: only the agent's uid or an approver may report this action's result",
            ));
        }
        if r.effect != Effect::Permit {
            return Err(ServiceError::conflict(format!(
                "action `{}` was {}: only a permitted call has a result to check",
                r.id,
                r.effect.as_str()
            )));
        }
        let loaded = self.state.policy.load_full();
        let size = serde_json::to_string(&result).map_or(usize::MAX, |s| s.len());
        let verdict = if size > MAX_RESULT_BYTES {
            // Too large to read: refused, as a rule that cannot read it would be.
            policy::results::ResultVerdict {
                verdict: "deny",
                rule_id: None,
                rule_ref: None,
                reason: Some(format!(
                    "the result is {size} bytes, over the {MAX_RESULT_BYTES} the daemon reads"
                )),
                rules: Vec::new(),
                findings: Vec::new(),
                size_bytes: size,
                redact: policy::detect::DetectSet::NONE,
            }
        } else {
            policy::results::check(&loaded.policy, &r.agent_id, &r.tool, &r.operation, &result)
        };
        let fields = json!({
            "action_id": r.id,
            "agent_id": r.agent_id,
            "tool": r.tool,
            "operation": r.operation,
            "verdict": verdict.verdict,
            "rule_id": verdict.rule_id,
            "rule_ref": verdict.rule_ref,
            "reason": verdict.reason,
            "rules": verdict.rules,
            "findings": verdict.findings,
            "size_bytes": verdict.size_bytes,
            "by": who.caller(),
        });
        self.commit(dpr::event_entry("result", fields.clone()), None).await?;
        let shown = match verdict.verdict {
            "deny" => None,
            "redact" => {
                let key = self.state.log.key().redaction_key();
                let token = |d: policy::detect::Detector, v: &str| entry::redaction_token(&key, d.name(), v);
                Some(policy::detect::redact(&result, verdict.redact, &token))
            }
            _ => Some(result),
        };
        let mut out = fields;
        if let Value::Object(m) = &mut out {
            m.remove("by");
            m.insert("result".into(), to_json("the result", &shown)?);
        }
        Ok(out)
    }
}
