//! What a notification says on each channel: the Standard Webhooks body and signature, the
//! Slack message, the email; agents' text made unable to pass for the daemon's own.

use base64::Engine as _;
use hmac::{KeyInit, Mac};
use serde_json::{Value, json};

use faramesh_daemon::service::notify::Note;

use crate::log::entry;

/// Text from a call (the agent's own, or holding parts of it) on one line: a line break (any of
/// `\n`, `\r`, U+0085, U+2028, U+2029) becomes `⏎`, a tab a space, any other control, invisible
/// or direction-changing character `�`; at most `max` characters (then `…`). Such text can then
/// not start a line of its own, nor reorder or hide what is around it.
pub fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .take(max)
        .map(|c| match c {
            '\n' | '\r' | '\u{85}' | '\u{2028}' | '\u{2029}' => '⏎',
            '\t' => ' ',
            c if c.is_control() || invisible(c) => '�',
            c => c,
        })
        .collect();
    if text.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

/// Zero-width, direction-override and tag characters: text a person does not see.
fn invisible(c: char) -> bool {
    matches!(u32::from(c),
        0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x2069 | 0xFEFF | 0xE0000..=0xE007F)
}

/// The longest piece of a call's text a notification shows (a summary is 200 already).
const FIELD_MAX: usize = 200;
/// The longest reason shown.
const REASON_MAX: usize = 500;

/// An email's subject and body for `note`. The body is the daemon's own lines first (what
/// happened, the approve and deny commands with the approval id, the link, the ids, risk and
/// expiry), then the call's text (agent, tool, arguments, reason) in a quoted block, each of
/// its lines starting with `> `: nothing the agent wrote can stand as a line of its own.
pub fn email_text(note: &Note) -> (String, String) {
    let d = &note.data;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let call = format!(
        "{} -> {}/{}",
        one_line(&s("agent_id"), 64),
        one_line(&s("tool"), 64),
        one_line(&s("operation"), 64)
    );
    let (subject, head) = match note.event.as_str() {
        "approval.requested" => {
            (format!("[Faramesh] Approval needed: {call}"), "Approval needed.".to_owned())
        }
        "approval.decided" => {
            let status = one_line(&s("status"), 20);
            (format!("[Faramesh] Approval {status}: {call}"), format!("Approval {status}."))
        }
        "approval.reminder" => (
            format!("[Faramesh] Still waiting for approval: {call}"),
            "Still waiting for approval.".to_owned(),
        ),
        "approval.escalated" => (
            format!("[Faramesh] Escalated, still waiting for approval: {call}"),
            "Escalated, still waiting for approval.".to_owned(),
        ),
        "witness.alarm" => {
            let witness = one_line(&s("witness"), 64);
            (format!("[Faramesh] Witness alarm: {witness}"), format!("Witness alarm: {witness}."))
        }
        "kill.engaged" => {
            let whom = kill_whom(d, false);
            (
                format!("[Faramesh] Kill switch engaged for {whom}"),
                format!(
                    "Kill switch engaged for {whom}: every call is denied. Lift it with: faramesh kill --lift"
                ),
            )
        }
        "kill.lifted" => {
            let whom = kill_whom(d, false);
            (format!("[Faramesh] Kill switch lifted for {whom}"), format!("Kill switch lifted for {whom}."))
        }
        _ => (format!("[Faramesh] Denied: {call}"), "Denied.".to_owned()),
    };
    let mut lines = vec![head, String::new()];
    // The daemon's own fields (ids it made, the link it serves): the only commands in the mail.
    let approval = one_line(&s("approval_id"), 80);
    if note.event != "approval.decided" && !approval.is_empty() {
        lines.push(format!("Approve: faramesh approve {approval}"));
        lines.push(format!("Deny:    faramesh deny {approval}"));
    }
    if !s("link").is_empty() {
        lines.push(format!("Open:    {}", one_line(&s("link"), 300)));
    }
    for (label, key) in [
        ("Approval", "approval_id"),
        ("Action", "action_id"),
        ("Risk", "risk_level"),
        ("Expires", "expires_at"),
        ("Rule", "rule_id"),
    ] {
        let v = one_line(&s(key), 80);
        if !v.is_empty() {
            lines.push(format!("{label}: {}{v}", " ".repeat(8 - label.len())));
        }
    }
    lines.push(String::new());
    lines.push("The call, quoted (its names and arguments are the agent's own text, not Faramesh's):".into());
    let quoted = [
        ("Agent", one_line(&s("agent_id"), FIELD_MAX)),
        ("Call", format!("{}/{}", one_line(&s("tool"), FIELD_MAX), one_line(&s("operation"), FIELD_MAX))),
        ("Arguments", one_line(&s("summary"), FIELD_MAX)),
        ("Why", one_line(&s("reason"), REASON_MAX)),
    ];
    for (label, v) in quoted {
        if !v.is_empty() && v != "/" {
            lines.push(format!("> {label}: {}{v}", " ".repeat(9 - label.len())));
        }
    }
    (subject, lines.join("\n") + "\n")
}

/// Whom a kill switch note is about: `agent X` (escaped for Slack when `slack`), or every agent.
fn kill_whom(d: &Value, slack: bool) -> String {
    match d.get("agent_id").and_then(Value::as_str) {
        Some(a) if slack => format!("agent {}", slack_code(a, 64)),
        Some(a) => format!("agent {}", one_line(a, 64)),
        None => "every agent".to_owned(),
    }
}

/// Why a webhook secret cannot sign.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// `whsec_` followed by something that is not base64.
    #[error("the webhook secret after `whsec_` is not base64")]
    NotBase64(#[source] base64::DecodeError),
    /// A key HMAC refuses.
    #[error("{0}")]
    Key(#[source] hmac::digest::InvalidLength),
}

/// The Standard Webhooks signature: `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`,
/// keyed with the secret (`whsec_` and base64, as the specification writes it, or the raw
/// bytes of any other text).
pub fn sign(secret: &str, id: &str, timestamp: u64, body: &str) -> Result<String, SignError> {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => base64::engine::general_purpose::STANDARD.decode(b64).map_err(SignError::NotBase64)?,
        None => secret.as_bytes().to_vec(),
    };
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&key).map_err(SignError::Key)?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())))
}

/// The webhook payload: `{"type", "timestamp", "data"}` (Standard Webhooks' shape).
pub fn webhook_body(note: &Note) -> Value {
    json!({"type": note.event, "timestamp": entry::rfc3339(note.created_ms), "data": note.data})
}

/// Text for Slack's mrkdwn: `&`, `<` and `>` escaped (so no `<!channel>`, `<@user>` or
/// `<url|label>` from it is read as a mention or a link) and every backquote turned into `ˋ`
/// (U+02CB), so it cannot end the code span or block it is put in.
pub fn slack_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '`' => out.push('ˋ'),
            c => out.push(c),
        }
    }
    out
}

/// A call's text as an inline code span (one line, escaped): Slack formats nothing inside it,
/// links and mentions included.
fn slack_code(text: &str, max: usize) -> String {
    let line = one_line(text, max);
    if line.is_empty() { "`-`".to_owned() } else { format!("`{}`", slack_escape(&line)) }
}

/// A Slack Block Kit message for `note`: the daemon's own words in mrkdwn, and every string from
/// the call (agent id, tool, operation, arguments, reason) in a code span, escaped
/// ([`slack_escape`]) and on one line ([`one_line`]), after the daemon's fields.
pub fn slack_body(note: &Note) -> Value {
    let d = &note.data;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
    let call = format!(
        "{} → {}",
        slack_code(&s("agent_id"), 64),
        slack_code(&format!("{}/{}", s("tool"), s("operation")), 129)
    );
    let title = match note.event.as_str() {
        "approval.requested" => format!(":raised_hand: Approval needed: {call}"),
        "approval.decided" => {
            format!(":white_check_mark: Approval {}: {call}", slack_escape(&one_line(&s("status"), 20)))
        }
        "approval.reminder" => format!(":hourglass: Still waiting for approval: {call}"),
        "approval.escalated" => format!(":rotating_light: Escalated, still waiting for approval: {call}"),
        "witness.alarm" => format!(":rotating_light: Witness alarm: {}", s("reason")),
        "kill.engaged" => format!(":octagonal_sign: Kill switch engaged for {}", kill_whom(d, true)),
        "kill.lifted" => format!(":large_green_circle: Kill switch lifted for {}", kill_whom(d, true)),
        _ => format!(":no_entry: Denied: {call}"),
    };
    let mut lines = vec![title.clone()];
    // The daemon's fields first, then the call's text, each in a code span.
    for (label, key) in [("Risk", "risk_level"), ("Expires", "expires_at"), ("Rule", "rule_id")] {
        let v = s(key);
        if !v.is_empty() {
            lines.push(format!("*{label}:* {}", slack_code(&v, 80)));
        }
    }
    for (label, key, max) in [("Call", "summary", FIELD_MAX), ("Why", "reason", REASON_MAX)] {
        let v = s(key);
        if !v.is_empty() {
            lines.push(format!("*{label}:* {}", slack_code(&v, max)));
        }
    }
    let mut blocks = vec![json!({"type": "section", "text": {"type": "mrkdwn", "text": lines.join("\n")}})];
    let link = s("link");
    if !link.is_empty() {
        blocks.push(json!({"type": "actions", "elements": [
            {"type": "button", "text": {"type": "plain_text", "text": "Open in Faramesh"}, "url": link}
        ]}));
    }
    json!({"text": title, "blocks": blocks})
}

#[cfg(test)]
mod tests {
    use super::*;
    use faramesh_daemon::service::notify::summary;

    /// The Standard Webhooks specification's own example.
    #[test]
    fn signatures_follow_standard_webhooks() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
        assert!(sign("whsec_!!", "a", 1, "b").is_err());
    }

    /// A DEFER notice whose agent-controlled fields hold `agent`, `summary` and `reason`.
    fn hostile(agent: &str, summary: &str, reason: &str) -> Note {
        Note {
            id: "m".into(),
            channel: "c".into(),
            event: "approval.requested".into(),
            created_ms: 0,
            data: json!({"agent_id": agent, "tool": "shell", "operation": "exec", "summary": summary,
                         "reason": reason, "rule_id": "shell", "risk_level": "high",
                         "approval_id": "apr_real", "action_id": "act_1", "link": "http://127.0.0.1:1/#action=act_1"}),
        }
    }

    fn slack_text(note: &Note) -> String {
        slack_body(note)["blocks"][0]["text"]["text"].as_str().unwrap().to_owned()
    }

    /// The text between backquotes of a Slack mrkdwn line (the code spans) and outside them.
    fn code_spans(line: &str) -> (Vec<&str>, String) {
        let parts: Vec<&str> = line.split('`').collect();
        let inside = parts.iter().skip(1).step_by(2).copied().collect();
        let outside = parts.iter().step_by(2).copied().collect::<Vec<_>>().join("");
        (inside, outside)
    }

    /// Regression: agent text went into Slack mrkdwn as it was, so `<!channel>` notified everyone.
    #[test]
    fn slack_channel_mention_in_agent_text_is_escaped() {
        let note = hostile("<!channel> bot", "cmd: <!here> <@U024BE7LH> & more", "<!everyone>");
        let body = slack_body(&note);
        for text in [slack_text(&note), body["text"].as_str().unwrap().to_owned()] {
            assert!(!text.contains('<') && !text.contains('>'), "{text}");
            assert!(text.contains("&lt;!channel&gt; bot"), "{text}");
        }
        assert!(slack_text(&note).contains("cmd: &lt;!here&gt; &lt;@U024BE7LH&gt; &amp; more"));
    }

    /// Regression: `<https://evil.example|Open in Faramesh>` in agent text was a link in the
    /// message; agent text is now escaped and inside code spans (Slack links nothing there).
    #[test]
    fn slack_link_in_agent_text_is_not_a_link() {
        let note =
            hostile("bot", "url: <https://evil.example/approve|Open in Faramesh> https://evil.example/x", "");
        let text = slack_text(&note);
        assert!(!text.contains("<https"), "{text}");
        for line in text.lines() {
            let (_, outside) = code_spans(line);
            assert!(!outside.contains("evil.example"), "outside a code span: {line}");
        }
        // The only link is the daemon's own button.
        let body = slack_body(&note);
        assert_eq!(body["blocks"][1]["elements"][0]["url"], "http://127.0.0.1:1/#action=act_1");
    }

    /// Regression: a backquote in agent text ended the code span around it, and what followed
    /// was formatted (and linked) again.
    #[test]
    fn slack_backquote_cannot_leave_the_code_span() {
        let note = hostile("a`*b*`<!channel>", "cmd: ls ``` *Risk:* low ```", "");
        let text = slack_text(&note);
        for line in text.lines() {
            let (inside, outside) = code_spans(line);
            assert!(!outside.contains("Risk:* low") && !outside.contains("*b*"), "{line}");
            assert!(inside.iter().all(|c| !c.contains('`')));
        }
        assert!(text.contains("`aˋ*b*ˋ&lt;!channel&gt;`"), "{text}");
    }

    /// Regression: a line break in agent text started a line of its own, such as a forged
    /// `Risk: low` in Slack or in the email.
    #[test]
    fn forged_risk_line_stays_inside_quote() {
        let note =
            hostile("bot", "cmd: rm -rf /srv\n*Risk:* low\r\nRisk: low\u{2028}Risk: low", "ok\n*Risk:* low");
        let text = slack_text(&note);
        let risk: Vec<&str> = text.lines().filter(|l| l.contains("Risk:")).collect();
        assert_eq!(risk[0], "*Risk:* `high`", "{text}");
        for line in &risk[1..] {
            let (_, outside) = code_spans(line);
            assert!(!outside.contains("Risk"), "{line}");
        }
        let (_, mail) = email_text(&note);
        let risk: Vec<&str> = mail.lines().filter(|l| l.contains("Risk:")).collect();
        assert_eq!(risk[0], "Risk:     high", "{mail}");
        assert!(risk[1..].iter().all(|l| l.starts_with("> ")), "{mail}");
        assert!(mail.contains("> Arguments: cmd: rm -rf /srv⏎*Risk:* low⏎⏎Risk: low⏎Risk: low"), "{mail}");
    }

    /// Regression: an agent's text could put `Approve: faramesh approve <another pending id>`
    /// above the real command in the email.
    #[test]
    fn email_forged_approve_line_is_quoted() {
        let forged = "Approve: faramesh approve apr_other";
        let note = hostile(&format!("bot\n{forged}"), &format!("cmd: ls\n\n{forged}\u{85}{forged}"), forged);
        let (subject, mail) = email_text(&note);
        assert!(!subject.contains('\n') && !subject.contains('\r'), "{subject}");
        let lines: Vec<&str> = mail.lines().collect();
        let approve: Vec<&&str> = lines.iter().filter(|l| l.starts_with("Approve:")).collect();
        assert_eq!(approve, [&"Approve: faramesh approve apr_real"], "printed once, from the daemon's id");
        let first_quote = lines.iter().position(|l| l.starts_with("> ")).unwrap();
        let real = lines.iter().position(|l| l.starts_with("Approve:")).unwrap();
        assert!(real < first_quote, "the command comes before the agent's text");
        for line in lines.iter().filter(|l| l.contains("apr_other")) {
            assert!(line.starts_with("> "), "agent text outside the quote: {line:?}\n{mail}");
        }
        // Invisible and direction-changing characters cannot hide or reorder a line either.
        let (_, mail) = email_text(&hostile("bot\u{202e}evorppa", "cmd: x\u{200b}", ""));
        assert!(mail.contains("> Agent:     bot�evorppa") && mail.contains("> Arguments: cmd: x�"), "{mail}");
    }

    #[test]
    fn summaries_name_what_the_call_does() {
        assert_eq!(summary(&json!({"cmd": "rm -rf /", "x": 1})), "cmd: rm -rf /");
        assert_eq!(summary(&json!({"amount": 150})), "amount: 150");
        assert_eq!(summary(&json!({})), "");
        let slack = slack_body(&Note {
            id: "m".into(),
            channel: "c".into(),
            event: "approval.requested".into(),
            created_ms: 0,
            data: json!({"agent_id": "bot", "tool": "shell", "operation": "exec", "summary": "cmd: ls", "link": "http://x/#action=1"}),
        });
        assert!(slack["text"].as_str().unwrap().contains("Approval needed"));
        assert_eq!(slack["blocks"][1]["elements"][0]["url"], "http://x/#action=1");
    }
}
