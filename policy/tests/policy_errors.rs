//! Policy files that must be rejected, with the exact `path:line:column: message` a person sees.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests fail by panicking")]

use faramesh_policy::compile;

fn error_of(text: &str) -> String {
    match compile("p.yaml", text) {
        Ok(_) => panic!("policy unexpectedly compiled:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn misspelled_match_key_gets_a_suggestion() {
    let text = "rules:\n  - match: { tool: stripe, amount_gtt: 5 }\n    allow: true\n";
    assert_eq!(error_of(text), "p.yaml:2:28: unknown match key `amount_gtt`, did you mean `amount_gt`?");
}

#[test]
fn misspelled_top_level_key() {
    assert_eq!(
        error_of("version: 1\nrulez: []\n"),
        "p.yaml:2:1: unknown top-level key `rulez`, did you mean `rules`?"
    );
}

#[test]
fn unknown_rule_key_far_from_any_lists_the_choices() {
    let text = "rules:\n  - match: { tool: x }\n    allow: true\n    colour: red\n";
    assert_eq!(
        error_of(text),
        "p.yaml:4:5: unknown rule key `colour` (expected one of: id, match, allow, deny, require_approval, effect, description, reason, risk, notify, mode, approvals_required)"
    );
}

#[test]
fn approvals_required_is_a_small_count_on_a_rule_that_defers() {
    let defer = |n: &str| {
        format!("rules:\n  - match: {{ tool: x }}\n    require_approval: true\n    approvals_required: {n}\n")
    };
    for bad in ["0", "11", "two", "1.5"] {
        assert_eq!(
            error_of(&defer(bad)),
            "p.yaml:4:25: `approvals_required` must be a whole number from 1 to 10",
            "{bad}"
        );
    }
    let allow = "rules:\n  - match: { tool: x }\n    allow: true\n    approvals_required: 2\n";
    assert_eq!(
        error_of(allow),
        "p.yaml:4:25: `approvals_required` goes with `require_approval: true` (it says how many approvers sign)"
    );
    let p = compile("p.yaml", &defer("2")).unwrap();
    assert_eq!(p.approvals_required(Some("rule-1")), 2);
    assert_eq!(p.approvals_required(Some("rule-9")), 1);
    let one = compile("p.yaml", &defer("1")).unwrap();
    let plain = compile("p.yaml", "rules:\n  - match: { tool: x }\n    require_approval: true\n").unwrap();
    assert_eq!(one.hash, plain.hash, "approvals_required: 1 is the default");
}

#[test]
fn two_effects() {
    let text = "rules:\n  - match: { tool: x }\n    allow: true\n    deny: true\n";
    assert_eq!(error_of(text), "p.yaml:4:5: rule has two effects (`allow` and `deny`): keep exactly one");
}

#[test]
fn no_effect() {
    let text = "rules:\n  - match: { tool: x }\n";
    assert_eq!(
        error_of(text),
        "p.yaml:2:5: rule has no effect: set one of `allow`, `deny` or `require_approval` to true (or `effect`)"
    );
}

#[test]
fn empty_match() {
    let text = "rules:\n  - match: {}\n    deny: true\n";
    assert_eq!(
        error_of(text),
        "p.yaml:2:12: `match` is empty: say what it applies to (use `tool: \"*\"` for every call)"
    );
}

#[test]
fn invalid_regex_is_a_load_error() {
    let text = "rules:\n  - match: { tool: x, pattern: \"(unclosed\" }\n    deny: true\n";
    assert_eq!(error_of(text), "p.yaml:2:32: invalid `pattern` `(unclosed`: unclosed group");
}

#[test]
fn duplicate_keys() {
    let text = "rules:\n  - match: { tool: x }\n    allow: true\n    match: { tool: y }\n";
    assert_eq!(error_of(text), "p.yaml:4:5: duplicate key `match` (first defined at line 2)");
}

#[test]
fn rules_not_a_list() {
    assert_eq!(error_of("rules: { a: 1 }\n"), "p.yaml:1:8: `rules` must be a list, found a mapping");
}

#[test]
fn wrong_type_for_amount() {
    let text = "rules:\n  - match: { tool: x, amount_gt: \"100\" }\n    deny: true\n";
    assert_eq!(error_of(text), "p.yaml:2:34: `amount_gt` must be a number, found a string");
}

#[test]
fn tool_that_is_not_a_name() {
    let text = "rules:\n  - match: { tool: \"sh ell\" }\n    deny: true\n";
    assert_eq!(
        error_of(text),
        "p.yaml:2:20: `tool` `sh ell` is not a name: use letters, digits, `_.:/-`, or a glob with `*`"
    );
}

#[test]
fn duplicate_rule_ids() {
    let text = "rules:\n  - id: a\n    match: { tool: x }\n    deny: true\n  - id: a\n    match: { tool: y }\n    deny: true\n";
    assert_eq!(error_of(text), "p.yaml:5:9: duplicate rule id `a` (first used at line 2)");
}

#[test]
fn bad_version_and_yaml_syntax() {
    assert_eq!(error_of("version: 2\n"), "p.yaml:1:10: unsupported policy `version`: expected 1");
    let err = error_of("rules: [\n");
    assert!(err.starts_with("p.yaml:"), "{err}");
}

#[test]
fn approvals_budget_and_rate_limit_are_validated() {
    let bad_rate = "agents:\n  a:\n    rate_limit: { \"stripe/*\": \"ten per minute\" }\n";
    assert_eq!(
        error_of(bad_rate),
        "p.yaml:3:31: `rate_limit` value `ten per minute` must look like `10/minute` (second, minute, hour, day)"
    );
    let bad_budget = "agents:\n  a:\n    budget: { max_calls: 5, per: fortnight }\n";
    assert_eq!(
        error_of(bad_budget),
        "p.yaml:3:34: unknown `per` `fortnight`: expected `session`, `hour`, `day` or `week`"
    );
    let bad_approver = "approvals:\n  approvers: [\"alice\"]\n";
    assert_eq!(
        error_of(bad_approver),
        "p.yaml:2:15: approver `alice` must be `uid:N`, `gid:N`, `user:NAME` or `group:NAME`"
    );
    let bad_expiry = "approvals:\n  expire_after: soon\n";
    assert_eq!(error_of(bad_expiry), "p.yaml:2:17: `expire_after` `soon` must look like `15m` (s, m, h, d)");
    let bad_gateway = "mcp:\n  gateways: [\"uid:1000\", \"bob\"]\n";
    assert_eq!(
        error_of(bad_gateway),
        "p.yaml:2:26: MCP gateway `bob` must be `uid:N`, `gid:N`, `user:NAME` or `group:NAME`"
    );
    assert!(error_of("mcp:\n  gateway: []\n").contains("unknown"), "keys are checked");
    let gateways = compile("p.yaml", "mcp:\n  gateways: [\"uid:1000\", \"group:agents\"]\n").unwrap();
    assert_eq!(
        gateways.mcp.gateways,
        vec![faramesh_policy::Approver::Uid(1000), faramesh_policy::Approver::Group("agents".into())]
    );
}

#[test]
fn policy_hash_ignores_comments_whitespace_and_key_order() {
    let a =
        compile("a.yaml", "version: 1\nrules:\n  - match: { tool: x, op: y }\n    allow: true\n").unwrap();
    let b = compile(
        "b.yaml",
        "# a comment\nversion: 1\n\nrules:\n  - allow: true   # trailing\n    match:\n      op: y\n      tool: x\n",
    )
    .unwrap();
    assert_eq!(a.hash, b.hash);
    let c = compile("c.yaml", "version: 1\nrules:\n  - match: { tool: x, op: y }\n    deny: true\n").unwrap();
    assert_ne!(a.hash, c.hash);
}

#[test]
fn rule_ref_is_path_and_line() {
    let p = compile("pol.yaml", "version: 1\nrules:\n  - match: { tool: x }\n    allow: true\n\n  - id: second\n    match: { tool: y }\n    deny: true\n").unwrap();
    assert_eq!(p.rules.rules[0].rule_ref, "pol.yaml:3");
    assert_eq!(p.rules.rules[1].rule_ref, "pol.yaml:6");
}

#[test]
fn notification_channels_are_checked_where_they_are_named() {
    let head = "notifications:\n  channels:\n    ops:\n      type: webhook\n      url: https://hooks.example.com/f\n      secret_env: HOOK_SECRET\n";
    assert_eq!(
        error_of(&format!("{head}  on_defer: [opps]\n")),
        "p.yaml:7:14: channel `opps` is not defined in `notifications.channels`"
    );
    assert_eq!(
        error_of(&format!(
            "rules:\n  - match: {{ tool: x }}\n    require_approval: true\n    notify: [pager]\n{head}"
        )),
        "p.yaml:4:14: `notify` names channel `pager`, which `notifications.channels` does not define"
    );
    assert_eq!(
        error_of(
            "notifications:\n  channels:\n    team:\n      type: slack\n      url: https://hooks.slack.com/services/T/B/X\n"
        ),
        "p.yaml:5:7: a Slack webhook URL is a secret: give `url_env` or `url_file`, not `url`"
    );
    assert_eq!(
        error_of(
            "notifications:\n  channels:\n    ops:\n      type: webhook\n      url: https://x.example/h\n"
        ),
        "p.yaml:4:7: webhook channel `ops` needs `secret_env` or `secret_file` (its deliveries are signed)"
    );
    assert_eq!(
        error_of("notifications:\n  channels:\n    ops:\n      type: pager\n"),
        "p.yaml:4:13: channel `type` `pager` must be `webhook`, `slack` or `email`"
    );
    assert_eq!(
        error_of(
            "notifications:\n  channels:\n    mail:\n      type: email\n      smtp: mail.example.com:25\n      tls: none\n      from: f@example.com\n      to: [a@example.com]\n"
        ),
        "p.yaml:6:12: `tls: none` is only for a mail server on a loopback address (the message and any password would cross the network in clear)"
    );
    assert_eq!(
        error_of(
            "notifications:\n  channels:\n    mail:\n      type: email\n      smtp: mail.example.com\n      from: f@example.com\n"
        ),
        "p.yaml:4:7: email channel `mail` needs `to` (a list of addresses)"
    );
    assert_eq!(
        error_of(&format!("{head}      attempts: 0\n")),
        "p.yaml:7:17: `attempts` must be a whole number from 1 to 20, found 0"
    );
    assert_eq!(
        error_of(&format!("{head}      attempts: 2.5\n")),
        "p.yaml:7:17: `attempts` must be a whole number from 1 to 20, found 2.5"
    );
    let tried = compile("p.yaml", &format!("{head}      attempts: 3\n")).unwrap();
    assert_eq!(tried.notifications.channels["ops"].attempts, 3);
    assert_eq!(compile("p.yaml", head).unwrap().notifications.channels["ops"].attempts, 8);
    // A valid one compiles, and rules keep their hash when they name no channel.
    let ok = format!(
        "{head}  on_defer: [ops]\n  remind_every: 10m\nrules:\n  - match: {{ tool: x }}\n    require_approval: true\n    notify: [ops]\n"
    );
    let policy = compile("p.yaml", &ok).unwrap();
    assert_eq!(policy.notifications.on_defer, vec!["ops".to_owned()]);
    assert_eq!(policy.rules.rules[0].notify, vec!["ops".to_owned()]);
    let plain = "rules:\n  - match: { tool: x }\n    require_approval: true\n";
    assert_eq!(compile("p.yaml", plain).unwrap().hash, compile("p.yaml", plain).unwrap().hash);
}

#[test]
fn commands_section_is_validated() {
    assert_eq!(
        error_of("commands:\n  unresolved: allow\n"),
        "p.yaml:2:15: unknown `unresolved` `allow`: expected `defer` or `deny`"
    );
    assert_eq!(
        error_of("commands:\n  unresolvd: deny\n"),
        "p.yaml:2:3: unknown commands key `unresolvd`, did you mean `unresolved`?"
    );
    assert_eq!(error_of("commands: deny\n"), "p.yaml:1:11: `commands` must be a mapping, found a string");
    assert_eq!(
        error_of("commands:\n  unresolved: [deny]\n"),
        "p.yaml:2:15: `unresolved` must be a string, found a list"
    );
}

#[test]
fn commands_section_changes_the_hash_only_when_it_denies() {
    let rules = "rules:\n  - match: { tool: shell }\n    allow: true\n";
    let plain = compile("p.yaml", rules).unwrap();
    let defer = compile("p.yaml", &format!("commands: {{ unresolved: defer }}\n{rules}")).unwrap();
    let deny = compile("p.yaml", &format!("commands: {{ unresolved: deny }}\n{rules}")).unwrap();
    assert_eq!(plain.hash, defer.hash);
    assert_ne!(plain.hash, deny.hash);
    assert_eq!(deny.commands.unresolved, faramesh_policy::Unresolved::Deny);
}

#[test]
fn command_writes_is_validated_and_hashed_only_when_given() {
    let rule = |m: &str| format!("rules:\n  - match: {{ tool: shell, command: {m} }}\n    allow: true\n");
    assert_eq!(
        error_of(&rule("{ program: ls, writes: [\"\"] }")),
        "p.yaml:2:60: `writes` entries must be paths or globs (`/tmp/*`, `*.log`), not empty"
    );
    assert_eq!(
        error_of(&rule("{ program: ls, writs: [\"/tmp/*\"] }")),
        "p.yaml:2:51: unknown command key `writs`, did you mean `writes`?"
    );
    let plain = compile("p.yaml", &rule("{ program: ls }")).unwrap();
    let writes = compile("p.yaml", &rule("{ program: ls, writes: [\"/tmp/*\"] }")).unwrap();
    assert_ne!(plain.hash, writes.hash);
}

#[test]
fn passkey_approvers_need_an_id_and_a_p256_key() {
    let approver = |body: &str| format!("approvals:\n  approvers:\n    - {{ name: bob, {body} }}\n");
    let good = "passkey: { id: \"AQID\", public_key: \"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==\" }";
    let p = compile("p.yaml", &approver(good)).unwrap();
    let k = &p.approvals.keys[0];
    assert_eq!((k.ed25519, k.passkey.as_ref().map(|p| p.credential_id.clone())), (None, Some(vec![1, 2, 3])));
    assert!(
        error_of(&approver("passkey: { id: \"AQID\", public_key: \"AAAA\" }"))
            .contains("must be a P-256 public key")
    );
    assert!(error_of(&approver("passkey: { id: \"a+b/\", public_key: \"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==\" }")).contains("base64url"));
    assert!(error_of(&approver("passkey: { id: \"AQID\" }")).contains("needs `id` and `public_key`"));
    let both = format!("ssh_key: \"ssh-ed25519 AAAA\", {good}");
    assert!(error_of(&approver(&both)).contains("give one"));
    let twice =
        format!("approvals:\n  approvers:\n    - {{ name: bob, {good} }}\n    - {{ name: bob2, {good} }}\n");
    assert!(error_of(&twice).contains("same"), "one passkey is one approver");
}
