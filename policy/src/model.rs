//! The compiled policy: rules with their conditions, agent profiles, risk rules, the approval
//! settings, and the index that lets a call visit only the rules that can match it.

use std::collections::HashMap;

use faramesh_proto::{Effect, RiskLevel};
use regex::Regex;
use serde_json::Value;

/// A compiled, validated policy. Build one with [`crate::compile`].
#[derive(Debug)]
pub struct Policy {
    /// The path the policy was read from, as shown in `rule_ref`.
    pub source: String,
    /// SHA-256 (hex) of the normalized policy: comments, whitespace and key order do not change it.
    pub hash: String,
    /// The normalized policy as canonical JSON (what `hash` is computed over).
    pub normalized: String,
    /// The global rules, in policy order.
    pub rules: RuleSet,
    /// Agent profiles by agent id.
    pub agents: HashMap<String, Profile>,
    /// Risk rules, in policy order: the first match sets the call's risk level.
    pub risk_rules: Vec<RiskRule>,
    /// Who may approve and how long a pending approval lives.
    pub approvals: Approvals,
    /// How long the daemon keeps log entries (`retention:`), if the policy says.
    pub retention: Option<Retention>,
    /// Where approvals and notices are announced (`notifications:`).
    pub notifications: Notifications,
    /// The MCP gateway's settings (`mcp:`).
    pub mcp: Mcp,
    /// Whether any rule or risk rule matches on `command:` (then a call whose command cannot
    /// be read strictly is refused).
    pub uses_commands: bool,
    /// The longest `within` of any `after:` condition (ms; 0: none): how long the daemon keeps
    /// what each session did.
    pub longest_after_ms: u64,
    /// The `commands:` section: what a command the reader cannot fully read gets.
    pub commands: Commands,
    /// Every detector a `detect:` condition names (rules, agents' rules, risk rules): what runs
    /// on each call, is reported in the decision's `findings` and redacted from the log.
    pub detectors: crate::detect::DetectSet,
    /// The `results:` section, in policy order.
    pub results: Vec<ResultRule>,
}

/// The `commands:` section.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commands {
    /// The decision for a call whose command is not read in full, where an allow or
    /// require-approval rule would decide (`defer`, the default, or `deny`).
    pub unresolved: Unresolved,
}

/// `commands.unresolved`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Unresolved {
    /// DEFER `COMMAND_UNRESOLVED`: a person decides.
    #[default]
    Defer,
    /// DENY `COMMAND_UNRESOLVED`.
    Deny,
}

/// The `notifications:` section (`docs/notifications.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notifications {
    /// Named channels.
    pub channels: std::collections::BTreeMap<String, Channel>,
    /// Channels every DEFER is announced on (unless its rule names its own with `notify:`).
    pub on_defer: Vec<String>,
    /// Channels a DENY of a call at or above `deny_min_risk` is announced on.
    pub on_deny: Vec<String>,
    /// The lowest risk a DENY notice is sent for (default high).
    pub deny_min_risk: RiskLevel,
    /// Resend a reminder of a pending approval this often (seconds).
    pub remind_every_seconds: Option<u64>,
    /// After this long pending (seconds), also announce it on `escalate_to`.
    pub escalate_after_seconds: Option<u64>,
    /// The channels an escalation goes to.
    pub escalate_to: Vec<String>,
}

impl Default for Notifications {
    fn default() -> Self {
        Notifications {
            channels: std::collections::BTreeMap::new(),
            on_defer: Vec::new(),
            on_deny: Vec::new(),
            deny_min_risk: RiskLevel::High,
            remind_every_seconds: None,
            escalate_after_seconds: None,
            escalate_to: Vec::new(),
        }
    }
}

/// A notification channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    /// What it speaks.
    pub kind: ChannelKind,
    /// Where it posts (webhooks, Slack).
    pub url: Option<SecretRef>,
    /// The Standard Webhooks signing secret (webhooks).
    pub secret: Option<SecretRef>,
    /// The mail server and addresses (email).
    pub email: Option<Email>,
    /// How many times one notification is tried before it is recorded as failed (1..=20).
    pub attempts: u32,
}

/// An email channel's server and addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email {
    /// The SMTP server's host.
    pub host: String,
    /// Its port (default 587).
    pub port: u16,
    /// How the connection is protected.
    pub tls: EmailTls,
    /// The sender.
    pub from: String,
    /// The recipients.
    pub to: Vec<String>,
    /// The SMTP user, if the server wants one.
    pub username: Option<SecretRef>,
    /// Its password.
    pub password: Option<SecretRef>,
}

/// How an email channel protects its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    /// STARTTLS, required (the default).
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// None: only for a server on a loopback address.
    None,
}

/// A channel's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// A JSON POST signed per the Standard Webhooks specification.
    Webhook,
    /// A Slack incoming webhook (Block Kit message).
    Slack,
    /// Email over SMTP.
    Email,
}

/// A value the policy names but does not hold: a literal (non-secret URLs only), an
/// environment variable or a file. The daemon reads it when it needs the value; the policy
/// keeps only the reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    /// Given in the policy (a webhook URL).
    Literal(String),
    /// Read from this environment variable of the daemon.
    Env(String),
    /// Read from this file (trailing whitespace trimmed).
    File(String),
}

/// The `retention:` section: the daemon prunes log entries older than `max_age`, archiving them
/// to `archive_dir` first when it is set (else only entries already exported go).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Seconds an entry is kept.
    pub max_age_seconds: u64,
    /// Where entries are archived before they are pruned.
    pub archive_dir: Option<String>,
}

impl Policy {
    /// How many signed approvers the rule `rule_id` asks for (1 for any other rule).
    pub fn approvals_required(&self, rule_id: Option<&str>) -> u32 {
        let Some(id) = rule_id else { return 1 };
        self.rules
            .rules
            .iter()
            .chain(self.agents.values().flat_map(|p| p.rules.rules.iter()))
            .find(|r| r.id == id)
            .map_or(1, |r| r.approvals_required)
    }

    /// Total number of rules (global and per agent).
    pub fn n_rules(&self) -> usize {
        self.rules.rules.len() + self.agents.values().map(|p| p.rules.rules.len()).sum::<usize>()
    }
}

/// An ordered list of rules and its index.
#[derive(Debug, Default)]
pub struct RuleSet {
    /// The rules in policy order.
    pub rules: Vec<Rule>,
    pub(crate) index: Index,
}

/// One rule: conditions (all must hold) and one effect.
#[derive(Debug)]
pub struct Rule {
    /// The rule's id (`id:` or `rule-<n>`, 1-based; `<agent>/rule-<n>` in a profile).
    pub id: String,
    /// `path:line` where the rule starts.
    pub rule_ref: String,
    /// The conditions in the order they were written.
    pub conds: Vec<Cond>,
    /// What happens when the rule matches.
    pub effect: Effect,
    /// The rule's `description`, used as the decision's reason.
    pub description: Option<String>,
    /// The rule's own `risk:`, overriding the risk rules.
    pub risk: Option<RiskLevel>,
    /// Channels its DEFERs are announced on instead of `notifications.on_defer` (`notify:`).
    pub notify: Vec<String>,
    /// `mode: shadow`: tried on every call and recorded when it would have decided otherwise,
    /// but it never decides.
    pub shadow: bool,
    /// `approvals_required`: how many distinct approvers, each signing with a key the policy
    /// lists, must approve its DEFERs (1: any one approver, signed or not).
    pub approvals_required: u32,
    pub(crate) tool: NamePat,
    pub(crate) op: NamePat,
}

/// A risk rule: conditions and the level they set.
#[derive(Debug)]
pub struct RiskRule {
    /// The risk rule's `name` (or `risk-<n>`).
    pub name: String,
    /// `path:line` where it starts.
    pub rule_ref: String,
    /// The conditions (`when`).
    pub conds: Vec<Cond>,
    /// The level set when it matches.
    pub level: RiskLevel,
}

/// An agent profile.
#[derive(Debug)]
pub struct Profile {
    /// The agent id this profile applies to.
    pub name: String,
    /// The tools the agent may call (exact names or globs); `None` means no allow-list.
    pub tools: Option<Vec<NamePat>>,
    /// `path:line` of the `tools` list.
    pub tools_ref: String,
    /// Rules evaluated before the global rules.
    pub rules: RuleSet,
    /// Rate limits, in policy order.
    pub rate_limits: Vec<RateLimit>,
    /// The call budget.
    pub budget: Option<Budget>,
    /// The only uid allowed to claim this agent id, if pinned.
    pub uid: Option<u32>,
}

/// A rate limit: at most `count` calls per `per_seconds` for calls matching `tool`/`op`.
#[derive(Debug, Clone)]
pub struct RateLimit {
    /// The key as written (`stripe/*`).
    pub key: String,
    /// Tool part of the key.
    pub tool: NamePat,
    /// Operation part of the key.
    pub op: NamePat,
    /// Calls allowed per window.
    pub count: u32,
    /// Window length in seconds.
    pub per_seconds: u64,
    /// Counted on this host, or across the fleet.
    pub scope: LimitScope,
}

/// Where a rate limit or budget is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LimitScope {
    /// On this host (the default).
    #[default]
    Host,
    /// In the fleet database, shared by every host (`scope: fleet`).
    Fleet {
        /// With the database unreachable: count on this host (`on_unavailable: local`) rather
        /// than deny (`deny`, the default).
        local_when_unavailable: bool,
        /// Units taken from the database at a time (`lease`, default 1).
        lease: u32,
    },
}

/// The most units a host leases at a time.
pub const MAX_LEASE: i64 = 10_000;

/// How long a budget period lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    /// One agent session (calls with the same `session_id`).
    Session,
    /// One hour.
    Hour,
    /// One UTC day.
    Day,
    /// Seven days.
    Week,
}

impl Period {
    /// The period's length in seconds (0 for a session, which has no fixed length).
    pub fn seconds(self) -> u64 {
        match self {
            Period::Session => 0,
            Period::Hour => 3_600,
            Period::Day => 86_400,
            Period::Week => 604_800,
        }
    }
}

/// A call budget for one agent.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Calls allowed per period.
    pub max_calls: u64,
    /// The period.
    pub per: Period,
    /// DENY or DEFER once the budget is used up.
    pub on_exceed: Effect,
    /// Counted on this host, or across the fleet.
    pub scope: LimitScope,
}

/// Who may approve (`approvals.approvers`), or report MCP tool listings (`mcp.gateways`): a
/// socket peer by uid, group, user name or group name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approver {
    /// A numeric uid.
    Uid(u32),
    /// A numeric gid.
    Gid(u32),
    /// A user by name.
    User(String),
    /// A group by name.
    Group(String),
}

/// A rule of the `results:` section: what is done with a tool's result before the agent reads it.
#[derive(Debug, Clone)]
pub struct ResultRule {
    /// The rule's id.
    pub id: String,
    /// Where it is written (`file:line`).
    pub rule_ref: String,
    /// Which calls' results it reads.
    pub tool: NamePat,
    /// Which operations.
    pub op: NamePat,
    /// Which agents.
    pub agent: NamePat,
    /// What it looks for.
    pub check: ResultCheck,
    /// What it does when that is found.
    pub effect: ResultEffect,
    /// Why (shown in a refusal).
    pub description: Option<String>,
}

/// What a result rule looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultCheck {
    /// What these detectors find (`detect:`), with the names as written.
    Detect(crate::detect::DetectSet, Vec<String>),
    /// Text aimed at the model (`instructions: true`), as in MCP tool definitions.
    Instructions,
    /// A result larger than this many bytes of JSON (`max_bytes:`).
    MaxBytes(u64),
}

/// What a result rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ResultEffect {
    /// Recorded only.
    Flag,
    /// The values found are replaced before the agent reads the result.
    Redact,
    /// The agent gets a refusal naming the rule instead of the result.
    Deny,
}

impl ResultEffect {
    /// `flag`, `redact` or `deny`.
    pub fn as_str(self) -> &'static str {
        match self {
            ResultEffect::Flag => "flag",
            ResultEffect::Redact => "redact",
            ResultEffect::Deny => "deny",
        }
    }
}

/// The `mcp:` section (`docs/mcp.md#pinned-tools`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mcp {
    /// Who may report MCP servers' tool listings (the users `faramesh mcp` runs as), besides
    /// root, the daemon's own uid and the approvers.
    pub gateways: Vec<Approver>,
    /// What a quarantined MCP tool's calls get (`mcp.quarantine`): DEFER (the default) or DENY.
    /// The policy's alone: whoever reports a listing has no say in it.
    pub quarantine: Effect,
}

impl Default for Mcp {
    fn default() -> Self {
        Mcp { gateways: Vec::new(), quarantine: Effect::Defer }
    }
}

/// The `approvals:` section.
#[derive(Debug, Clone)]
pub struct Approvals {
    /// Who may approve besides root and the daemon's own uid.
    pub approvers: Vec<Approver>,
    /// Seconds until a pending approval expires (default 15 minutes).
    pub expire_after_seconds: u64,
    /// Whether an approver may decide a call made from their own uid (default false: the uid
    /// is the trust boundary between agents and people; root may always).
    pub allow_same_uid: bool,
    /// Approvers who sign their decisions (`{name, ssh_key}`): a signed statement from one of
    /// these keys approves or denies from anywhere.
    pub keys: Vec<ApproverKey>,
    /// Where passkey approvals may come from (`passkey_origins`: the dashboard's origins, e.g.
    /// `https://faramesh.example.com`); empty: the listener's own `localhost` origin.
    pub passkey_origins: Vec<String>,
}

impl Default for Approvals {
    fn default() -> Self {
        Approvals {
            approvers: Vec::new(),
            expire_after_seconds: 900,
            allow_same_uid: false,
            keys: Vec::new(),
            passkey_origins: Vec::new(),
        }
    }
}

/// An approver known by a public key (`approvers: [{name: alice, ssh_key: "ssh-ed25519 …"}]`,
/// or `{name: bob, passkey: {id, public_key}}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverKey {
    /// The approver's name, as signed statements give it.
    pub name: String,
    /// The Ed25519 public key of an SSH key (`None` for a passkey).
    pub ed25519: Option<[u8; 32]>,
    /// A passkey (`None` for an SSH key).
    pub passkey: Option<Passkey>,
    /// The key as written: `ssh-ed25519 AAAA…` without its comment, or `passkey <id> <public key>`.
    pub text: String,
}

/// A WebAuthn credential (a passkey) an approver signs with: ECDSA P-256 (ES256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passkey {
    /// The credential id.
    pub credential_id: Vec<u8>,
    /// The public key as an uncompressed P-256 point (65 bytes, `04 || x || y`).
    pub point: Vec<u8>,
}

/// A tool, operation or agent name pattern: `*`, an exact name, or a glob with `*` and `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NamePat {
    /// Matches anything.
    Any,
    /// Matches one name.
    Exact(String),
    /// `*` matches any run of characters, `?` one character.
    Glob(String),
}

impl NamePat {
    /// Parses `*`, a glob, or an exact name.
    pub fn new(text: &str) -> NamePat {
        if text == "*" {
            NamePat::Any
        } else if text.contains(['*', '?']) {
            NamePat::Glob(text.to_owned())
        } else {
            NamePat::Exact(text.to_owned())
        }
    }

    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            NamePat::Any => true,
            NamePat::Exact(s) => s == name,
            NamePat::Glob(g) => glob_match(g.as_bytes(), name.as_bytes()),
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        match self {
            NamePat::Any => "*",
            NamePat::Exact(s) | NamePat::Glob(s) => s,
        }
    }

    /// Whether `self` matches every name that `narrower` matches (finding shadowed rules). A
    /// glob is compared with another glob as written only: `a*` is not found to cover `ab*`.
    pub fn covers(&self, narrower: &NamePat) -> bool {
        match (self, narrower) {
            (NamePat::Any, _) => true,
            (_, NamePat::Any) => false,
            (NamePat::Exact(a), NamePat::Exact(b)) => a == b,
            (NamePat::Glob(g), NamePat::Exact(b)) => glob_match(g.as_bytes(), b.as_bytes()),
            (NamePat::Glob(a), NamePat::Glob(b)) => a == b,
            (NamePat::Exact(_), NamePat::Glob(_)) => false,
        }
    }
}

/// Glob match with `*` (any run of bytes) and `?` (one byte): one character, since the names
/// a call carries are ASCII identifiers (`faramesh_proto::is_identifier`).
fn glob_match(pat: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pat.len() && (pat[p] == b'?' || pat[p] == name[n]) {
            p += 1;
            n += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// A numeric comparison for the `amount_*` keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `amount_gt`
    Gt,
    /// `amount_lt`
    Lt,
    /// `amount_gte`
    Gte,
    /// `amount_lte`
    Lte,
}

impl Cmp {
    /// The match key.
    pub fn key(self) -> &'static str {
        match self {
            Cmp::Gt => "amount_gt",
            Cmp::Lt => "amount_lt",
            Cmp::Gte => "amount_gte",
            Cmp::Lte => "amount_lte",
        }
    }

    /// The operator symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Cmp::Gt => ">",
            Cmp::Lt => "<",
            Cmp::Gte => ">=",
            Cmp::Lte => "<=",
        }
    }

    /// Whether `value <op> bound` holds.
    pub fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Cmp::Gt => value > bound,
            Cmp::Lt => value < bound,
            Cmp::Gte => value >= bound,
            Cmp::Lte => value <= bound,
        }
    }
}

/// One condition of a `match` (or a risk rule's `when`).
#[derive(Debug, Clone)]
pub enum Cond {
    /// `tool`
    Tool(NamePat),
    /// `op` / `operation`
    Op(NamePat),
    /// `agent_id`
    AgentId(NamePat),
    /// `contains`: substring of the canonical JSON of `params`.
    Contains(String),
    /// `pattern`: regex searched in the canonical JSON of `params`.
    Pattern(Regex),
    /// `amount_gt|lt|gte|lte`
    Amount(Cmp, f64),
    /// `path_contains`
    PathContains(String),
    /// `path_starts_with`
    PathStartsWith(String),
    /// `path_ends_with`
    PathEndsWith(String),
    /// `method`, compared case-insensitively (stored lower-case).
    Method(String),
    /// `branch`
    Branch(String),
    /// `field` + `value`: the value at a dotted path equals `value`.
    Field(Vec<String>, Value),
    /// `command`: the call's command, normalized, matches (see `policy::command`).
    Command(super::command::CommandCond),
    /// `after`: earlier in the same session (or, for a call without one, of the same agent), a
    /// permitted call of this tool and operation, at most `within_ms` ago.
    After(After),
    /// `detect`: a detector of the set finds something in the params (see `policy::detect`);
    /// `names` as written (`secrets`, `pii`, detector names), sorted.
    Detect(crate::detect::DetectSet, Vec<String>),
}

/// An `after:` condition: what must have happened before, and how recently.
#[derive(Debug, Clone, PartialEq)]
pub struct After {
    /// The earlier call's tool.
    pub tool: NamePat,
    /// Its operation (`*` when not given).
    pub op: NamePat,
    /// At most this long ago (ms).
    pub within_ms: u64,
}

/// The longest `within` an `after:` may say: what the daemon remembers is bounded.
pub const MAX_AFTER_WITHIN_MS: u64 = 24 * 3_600_000;

/// A call permitted earlier, as the daemon remembers it for `after:` conditions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earlier {
    /// Its tool.
    pub tool: String,
    /// Its operation.
    pub operation: String,
    /// When it was decided (ms since the epoch).
    pub at_ms: u64,
}

/// What a call's session (or agent) did before, and the time now: what `after:` conditions
/// read. The daemon keeps it; offline tools have none, and `after:` never holds for them.
#[derive(Debug, Clone, Copy)]
pub struct History<'a> {
    /// The time of the call being decided (ms since the epoch).
    pub now_ms: u64,
    /// Earlier permitted calls, any order.
    pub earlier: &'a [Earlier],
}

impl Cond {
    /// The match key this condition was written with.
    pub fn key(&self) -> &'static str {
        match self {
            Cond::Tool(_) => "tool",
            Cond::Op(_) => "op",
            Cond::AgentId(_) => "agent_id",
            Cond::Contains(_) => "contains",
            Cond::Pattern(_) => "pattern",
            Cond::Amount(cmp, _) => cmp.key(),
            Cond::PathContains(_) => "path_contains",
            Cond::PathStartsWith(_) => "path_starts_with",
            Cond::PathEndsWith(_) => "path_ends_with",
            Cond::Method(_) => "method",
            Cond::Branch(_) => "branch",
            Cond::Field(..) => "field",
            Cond::Command(_) => "command",
            Cond::After(_) => "after",
            Cond::Detect(..) => "detect",
        }
    }

    /// Whether this condition holds whenever `narrower` holds (used to find shadowed rules).
    pub fn implied_by(&self, narrower: &Cond) -> bool {
        match (self, narrower) {
            (Cond::Tool(a), Cond::Tool(b))
            | (Cond::Op(a), Cond::Op(b))
            | (Cond::AgentId(a), Cond::AgentId(b)) => a.covers(b),
            (Cond::Contains(a), Cond::Contains(b)) => b.contains(a.as_str()),
            (Cond::Pattern(a), Cond::Pattern(b)) => a.as_str() == b.as_str(),
            (Cond::Amount(ca, a), Cond::Amount(cb, b)) => match (ca, cb) {
                (Cmp::Gt | Cmp::Gte, Cmp::Gt) => b >= a,
                (Cmp::Gt, Cmp::Gte) => b > a,
                (Cmp::Gte, Cmp::Gte) => b >= a,
                (Cmp::Lt | Cmp::Lte, Cmp::Lt) => b <= a,
                (Cmp::Lt, Cmp::Lte) => b < a,
                (Cmp::Lte, Cmp::Lte) => b <= a,
                _ => false,
            },
            (Cond::PathContains(a), Cond::PathContains(b)) => b.contains(a.as_str()),
            (Cond::PathStartsWith(a), Cond::PathStartsWith(b)) => b.starts_with(a.as_str()),
            (Cond::PathEndsWith(a), Cond::PathEndsWith(b)) => b.ends_with(a.as_str()),
            (Cond::Method(a), Cond::Method(b)) | (Cond::Branch(a), Cond::Branch(b)) => a == b,
            (Cond::Field(pa, va), Cond::Field(pb, vb)) => pa == pb && va == vb,
            (Cond::After(a), Cond::After(b)) => {
                a.tool.covers(&b.tool) && a.op.covers(&b.op) && a.within_ms >= b.within_ms
            }
            (Cond::Detect(a, _), Cond::Detect(b, _)) => b.is_subset(*a),
            _ => false,
        }
    }
}

/// Rules indexed by tool and operation. Each list holds rule indexes in ascending order, so a
/// merge of the lists that apply to a call visits candidates in policy order.
#[derive(Debug, Default)]
pub(crate) struct Index {
    /// Exact tool, exact operation.
    pub exact: HashMap<String, HashMap<String, Vec<u32>>>,
    /// Exact tool, any or glob operation.
    pub by_tool: HashMap<String, Vec<u32>>,
    /// Any or glob tool, exact operation.
    pub by_op: HashMap<String, Vec<u32>>,
    /// Any or glob tool and operation.
    pub rest: Vec<u32>,
}

impl Index {
    pub(crate) fn build(rules: &[Rule]) -> Index {
        let mut index = Index::default();
        for (rule_idx, rule) in rules.iter().enumerate() {
            let idx = u32::try_from(rule_idx).unwrap_or(u32::MAX);
            match (&rule.tool, &rule.op) {
                (NamePat::Exact(t), NamePat::Exact(o)) => {
                    index.exact.entry(t.clone()).or_default().entry(o.clone()).or_default().push(idx)
                }
                (NamePat::Exact(t), _) => index.by_tool.entry(t.clone()).or_default().push(idx),
                (_, NamePat::Exact(o)) => index.by_op.entry(o.clone()).or_default().push(idx),
                _ => index.rest.push(idx),
            }
        }
        index
    }

    /// The candidate lists for a call; each is sorted ascending.
    pub(crate) fn candidates<'a>(&'a self, tool: &str, op: &str) -> [&'a [u32]; 4] {
        let exact = self.exact.get(tool).and_then(|ops| ops.get(op)).map_or(&[][..], Vec::as_slice);
        let by_tool = self.by_tool.get(tool).map_or(&[][..], Vec::as_slice);
        let by_op = self.by_op.get(op).map_or(&[][..], Vec::as_slice);
        [exact, by_tool, by_op, &self.rest]
    }
}

/// Visits the union of sorted lists in ascending order until `visit` returns `true`.
pub(crate) fn merge_visit(lists: [&[u32]; 4], mut visit: impl FnMut(u32) -> bool) {
    let mut cursors = [0usize; 4];
    loop {
        let mut best: Option<(usize, u32)> = None;
        for (list_idx, list) in lists.iter().enumerate() {
            if let Some(&v) = list.get(cursors[list_idx])
                && best.is_none_or(|(_, b)| v < b)
            {
                best = Some((list_idx, v));
            }
        }
        let Some((list_idx, v)) = best else { return };
        cursors[list_idx] += 1;
        if visit(v) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{NamePat, merge_visit};

    #[test]
    fn globs_match_names() {
        assert!(NamePat::new("stripe_*").matches("stripe_refund"));
        assert!(!NamePat::new("stripe_*").matches("paypal_refund"));
        assert!(NamePat::new("*_refund").matches("stripe_refund"));
        assert!(NamePat::new("s?ell").matches("shell"));
        assert!(NamePat::new("a*b*c").matches("axxbyyc"));
        assert!(!NamePat::new("a*b*c").matches("axxbyy"));
        assert!(NamePat::new("*").matches(""));
        assert!(NamePat::new("http").matches("http"));
        assert!(!NamePat::new("http").matches("https"));
    }

    #[test]
    fn merge_visits_in_ascending_order() {
        let mut seen = Vec::new();
        merge_visit([&[1, 5], &[2], &[0, 7], &[3]], |v| {
            seen.push(v);
            false
        });
        assert_eq!(seen, vec![0, 1, 2, 3, 5, 7]);
    }
}
