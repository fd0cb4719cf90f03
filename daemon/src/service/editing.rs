//! Approval with edits: an approver approves a deferred call with changed arguments. The edited
//! call is decided again by the policy (a DENY refuses the approval); the agent may then resume
//! only with the edited arguments, and the log keeps the proposed call (the DEFER record), the
//! edit with who made it (the approval's entry) and the executed call (the resumed record).

use faramesh_proto::{Call, CallRequest};
use serde_json::{Map, Value};

use super::approvals::{self, Approval, Edit};
use super::{Identity, Service, ServiceError};
use crate::log::entry;

/// The most changes one `set` may make.
pub const MAX_SETS: usize = 64;

/// The most keys in one `set` path.
pub const MAX_PATH_KEYS: usize = 16;

/// The deepest the edited arguments may nest (the log's entries must stay readable by its own
/// verifier, which reads 128 levels; the entry wraps the arguments in a few of its own).
pub const MAX_DEPTH: usize = 100;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// What an approver changes: the whole arguments, or some of them by path.
#[derive(Debug, Clone, PartialEq)]
pub enum EditRequest {
    /// `params`: the arguments, in full.
    Params(Map<String, Value>),
    /// `set`: `{"amount": 50, "to.iban": "…"}`, each key a dot-separated path into the arguments.
    Set(Vec<(String, Value)>),
}

impl EditRequest {
    /// Reads `params` or `set` from an approval's answer (neither: no edit).
    pub fn from_json(p: &Map<String, Value>) -> Result<Option<EditRequest>, ServiceError> {
        match (p.get("params"), p.get("set")) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => Err(ServiceError::invalid(
                "set",
                "give `params` (the whole arguments) or `set` (changes to some), not both",
            )),
            (Some(Value::Object(m)), None) => Ok(Some(EditRequest::Params(m.clone()))),
            (Some(_), None) => Err(ServiceError::invalid("params", "`params` must be a JSON object")),
            (None, Some(Value::Object(m))) => {
                if m.is_empty() {
                    return Err(ServiceError::invalid("set", "`set` names no change"));
                }
                if m.len() > MAX_SETS {
                    return Err(ServiceError::invalid(
                        "set",
                        format!("`set` makes {} changes; at most {MAX_SETS}", m.len()),
                    ));
                }
                for path in m.keys() {
                    if path.split('.').count() > MAX_PATH_KEYS {
                        return Err(ServiceError::invalid(
                            "set",
                            format!("a `set` path has at most {MAX_PATH_KEYS} keys"),
                        ));
                    }
                    if path.split('.').any(str::is_empty) {
                        return Err(ServiceError::invalid(
                            "set",
                            format!("`{path}` is not a path: keys separated by `.`, none empty"),
                        ));
                    }
                }
                Ok(Some(EditRequest::Set(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())))
            }
            (None, Some(_)) => Err(ServiceError::invalid(
                "set",
                "`set` must be a JSON object of paths and values, e.g. {\"amount\": 50}",
            )),
        }
    }

    fn field(&self) -> &'static str {
        match self {
            EditRequest::Params(_) => "params",
            EditRequest::Set(_) => "set",
        }
    }

    /// The edited arguments: `params` as given, or `base` with each path set (objects on the
    /// way are made where missing; a path through a value that is not an object is refused).
    pub fn apply(&self, base: &Value) -> Result<Value, ServiceError> {
        let sets = match self {
            EditRequest::Params(m) => return Ok(Value::Object(m.clone())),
            EditRequest::Set(sets) => sets,
        };
        let mut out = match base {
            Value::Object(_) => base.clone(),
            _ => Value::Object(Map::new()),
        };
        for (path, value) in sets {
            let keys: Vec<&str> = path.split('.').collect();
            let mut at = &mut out;
            for (i, key) in keys.iter().enumerate() {
                let Value::Object(m) = at else {
                    return Err(ServiceError::invalid(
                        "set",
                        format!("`{path}`: `{}` is not an object", keys[..i].join(".")),
                    ));
                };
                if i + 1 == keys.len() {
                    m.insert((*key).to_owned(), value.clone());
                    break;
                }
                at = m.entry((*key).to_owned()).or_insert_with(|| Value::Object(Map::new()));
            }
        }
        Ok(out)
    }
}

/// The path of the first string holding a redaction mark (`[REDACTED`), if any.
fn redacted_at(v: &Value, path: &str) -> Option<String> {
    match v {
        Value::String(s) => s.contains(&entry::REDACTED[..9]).then(|| path.to_owned()),
        Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, x)| redacted_at(x, &format!("{path}[{i}]")))
        }
        Value::Object(m) => m.iter().find_map(|(k, x)| redacted_at(x, &format!("{path}.{k}"))),
        _ => None,
    }
}

impl Service {
    /// Approves the pending approval `id` for the call with `edit` applied to its arguments.
    /// The edited call is decided by the policy as it stands (with the kill switch): a DENY
    /// refuses the approval, recorded as denied with the policy's reason.
    pub(super) async fn approve_with_edit(
        &self,
        id: &str,
        edit: EditRequest,
        reason: Option<String>,
        who: &Identity,
    ) -> Result<Approval, ServiceError> {
        if !self.may_approve(who) {
            // Refused there, before any record is read.
            return self.approval_decide(id, true, reason, who).await;
        }
        let id = self.resolve_approval(id)?;
        let pending = self
            .state
            .approvals
            .get(&id)
            .ok_or_else(|| ServiceError::not_found(format!("no approval `{id}`")))?;
        if pending.status != approvals::Status::Pending {
            return Err(ServiceError::conflict(format!(
                "approval `{id}` is already {}",
                pending.status.as_str()
            )));
        }
        let record = self.find_action_record(&pending.action_id).map_err(|e| {
            ServiceError::internal(format!(
                "the deferred call of approval `{id}` cannot be read: {}",
                e.message
            ))
        })?;
        let params = edit.apply(&record.params)?;
        if depth(&params) > MAX_DEPTH {
            return Err(ServiceError::invalid(
                edit.field(),
                format!("the edited arguments nest deeper than {MAX_DEPTH} levels"),
            ));
        }
        // The log keeps secret-looking values redacted: a call holding one cannot be rebuilt.
        if let Some(at) = redacted_at(&params, "params") {
            return Err(ServiceError::invalid(
                edit.field(),
                format!(
                    "{at} holds a value the log keeps redacted, so the edited call cannot be rebuilt from the \
                     record; give the whole arguments with `params`, every value written out"
                ),
            ));
        }
        if let Some(at) = redacted_at(&record.context, "context") {
            return Err(ServiceError::conflict(format!(
                "{at} of the deferred call holds a value the log keeps redacted, so the call cannot be \
                 rebuilt with edits; approve or deny it as it is"
            )));
        }
        let mut call = Call::new(&record.agent_id, &record.tool, &record.operation);
        call.params = params;
        call.context =
            if record.context.is_object() { record.context.clone() } else { Value::Object(Map::new()) };
        call.session_id = record.session_id.clone();
        call.request_id = record.request_id.clone();
        call.tags = record.tags.clone();
        let loaded = self.state.policy.load_full();
        let req = CallRequest { call, approval_id: None, unknown_keys: Vec::new() };
        let mut decision = self.policy_decision(&loaded.policy, &req);
        if let Some(killed) = self.killed(&req.call, &decision) {
            decision = killed;
        }
        let stored = self.stored_call(&req.call, &decision);
        let logged_params = entry::redact(&stored.params, self.state.log.redact_keys());
        let request_hash = if decision.request_hash.is_empty() {
            req.call.request_hash().map_err(|e| ServiceError::invalid(edit.field(), e.to_string()))?
        } else {
            decision.request_hash.clone()
        };
        let edit = Edit {
            params: req.call.params.clone(),
            redacted_params: logged_params.clone(),
            request_hash,
            by: who.caller(),
            effect: decision.effect,
            reason_code: decision.reason_code,
            rule_id: decision.rule_id.clone(),
            reason: decision.reason.clone(),
        };
        self.decide_approval(&id, true, reason, Some((edit, logged_params)), None, who).await
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn read(v: Value) -> Result<Option<EditRequest>, ServiceError> {
        match v {
            Value::Object(m) => EditRequest::from_json(&m),
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn set_changes_paths_and_keeps_the_rest() {
        let edit = read(json!({"set": {"amount": 50, "to.iban": "DE00", "note": "ok"}})).unwrap().unwrap();
        let out = edit.apply(&json!({"amount": 5000, "to": {"name": "x"}, "currency": "EUR"})).unwrap();
        assert_eq!(
            out,
            json!({"amount": 50, "to": {"name": "x", "iban": "DE00"}, "currency": "EUR", "note": "ok"})
        );
    }

    #[test]
    fn a_path_through_a_value_is_refused_naming_it() {
        let edit = read(json!({"set": {"amount.x": 1}})).unwrap().unwrap();
        let err = edit.apply(&json!({"amount": 5})).unwrap_err();
        assert_eq!(err.field.as_deref(), Some("set"));
        assert!(err.message.contains("`amount` is not an object"), "{}", err.message);
    }

    #[test]
    fn bad_edits_name_their_field() {
        for (v, field) in [
            (json!({"set": {}}), "set"),
            (json!({"set": {"a..b": 1}}), "set"),
            (json!({"set": [1]}), "set"),
            (json!({"params": "x"}), "params"),
            (json!({"params": {}, "set": {"a": 1}}), "set"),
        ] {
            let err = read(v.clone()).unwrap_err();
            assert_eq!(err.field.as_deref(), Some(field), "{v}");
        }
        assert!(read(json!({"reason": "x"})).unwrap().is_none());
    }

    #[test]
    fn redaction_marks_are_found_at_any_depth() {
        assert_eq!(
            redacted_at(&json!({"a": [1, {"b": "[REDACTED]"}]}), "params"),
            Some("params.a[1].b".into())
        );
        assert_eq!(redacted_at(&json!({"k": "[REDACTED:aws_key:0123]"}), "params"), Some("params.k".into()));
        assert_eq!(redacted_at(&json!({"k": "plain"}), "params"), None);
    }
}
