//! Policy test cases: `cases: [{name, call, expect: {effect, reason_code?, rule_id?,
//! risk_level?}}]`, the shape shared by `tests/corpus/*.yaml`, `faramesh policy test` and the
//! example policies' cases files. A corpus file adds `policy:` (the policy text) beside `cases`.

use faramesh_proto::{CallRequest, Decision, Effect, ReasonCode, RiskLevel};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use super::yaml;

/// One case: a call and what the policy must answer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// A name for reports (default `case <n>`).
    #[serde(default)]
    pub name: Option<String>,
    /// The call, as on the wire, read by the daemon's own call reader (so a case says what a
    /// request to the daemon would: an unknown key is DENY `INVALID_REQUEST` here too).
    #[serde(deserialize_with = "case_call")]
    pub call: CaseCall,
    /// The expected outcome.
    pub expect: Expect,
}

/// What a case expects; absent fields are not checked.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// PERMIT, DENY or DEFER.
    pub effect: Effect,
    /// The reason code.
    #[serde(default)]
    pub reason_code: Option<ReasonCode>,
    /// The deciding rule's id.
    #[serde(default)]
    pub rule_id: Option<String>,
    /// The risk level.
    #[serde(default)]
    pub risk_level: Option<RiskLevel>,
}

/// A cases file, with the policy text when it is a corpus file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaseFile {
    /// The policy under test (corpus files only).
    #[serde(default)]
    pub policy: Option<String>,
    /// A description of what the file covers.
    #[serde(default)]
    pub description: Option<String>,
    /// The cases.
    pub cases: Vec<Case>,
}

/// Why a cases file cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    /// Not YAML.
    #[error("{line}:{col}: {message}")]
    Yaml {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What is wrong.
        message: String,
    },
    /// YAML, but not a cases file (unknown key, wrong type).
    #[error("{0}")]
    Shape(#[source] serde_json::Error),
}

/// Parses a cases file.
pub fn parse_cases(text: &str) -> Result<CaseFile, CasesError> {
    let root = yaml::parse(text).map_err(|e| CasesError::Yaml {
        line: e.pos.line,
        col: e.pos.col,
        message: e.message,
    })?;
    let mut file: CaseFile = serde_json::from_value(yaml::to_json(&root)).map_err(CasesError::Shape)?;
    for (n, case) in file.cases.iter_mut().enumerate() {
        if case.name.is_none() {
            case.name = Some(format!("case {}", n + 1));
        }
    }
    Ok(file)
}

impl Case {
    /// The case's name.
    pub fn label(&self) -> &str {
        self.name.as_deref().unwrap_or("case")
    }
}

impl Expect {
    /// `Ok` when the decision is what was expected, else what differs.
    pub fn check(&self, d: &Decision) -> Result<(), Mismatch> {
        let mut wrong = Vec::new();
        if self.effect != d.effect {
            wrong.push(format!("effect {} (got {})", self.effect.as_str(), d.effect.as_str()));
        }
        if let Some(code) = self.reason_code
            && code != d.reason_code
        {
            {
                wrong.push(format!("reason_code {} (got {})", code.as_str(), d.reason_code.as_str()));
            }
        }
        if let Some(rule_id) = &self.rule_id
            && Some(rule_id) != d.rule_id.as_ref()
        {
            {
                wrong.push(format!("rule_id {rule_id} (got {})", d.rule_id.as_deref().unwrap_or("none")));
            }
        }
        if let Some(risk) = self.risk_level
            && risk != d.risk_level
        {
            {
                wrong.push(format!("risk_level {} (got {})", risk.as_str(), d.risk_level.as_str()));
            }
        }
        if wrong.is_empty() { Ok(()) } else { Err(Mismatch { wrong, reason: d.reason.clone() }) }
    }
}

/// A decision that is not what a case expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {}; reason: {reason}", .wrong.join(", "))]
pub struct Mismatch {
    /// Each expected field that differs, with what was decided: `effect DENY (got PERMIT)`.
    pub wrong: Vec<String>,
    /// The decision's reason.
    pub reason: String,
}

/// A case's call: as written (to send to a daemon) and as read.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseCall {
    /// The JSON as written in the case.
    pub json: Value,
    /// The request the daemon reads from it.
    pub request: CallRequest,
}

fn case_call<'de, D: Deserializer<'de>>(d: D) -> Result<CaseCall, D::Error> {
    let json = Value::deserialize(d)?;
    let request = CallRequest::from_value(&json).map_err(serde::de::Error::custom)?;
    Ok(CaseCall { json, request })
}
