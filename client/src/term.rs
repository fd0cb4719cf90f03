//! Text that others wrote (agent ids, tool names, parameters, MCP servers' tool names, reasons
//! quoting them), rendered for the operator's terminal: a name holding an escape sequence or a
//! line break must not clear the screen, recolour, retitle or add a line that looks like the
//! CLI's own. Every table and text output of the CLI prints such text through [`safe`]; `--json`
//! output is JSON, which escapes control characters itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Characters a terminal does not show as themselves: C0 and C1 controls and DEL (escape
/// sequences, line breaks, carriage returns, backspaces, tabs), and the invisible or
/// direction-changing ones (zero-width characters, bidirectional overrides and isolates, line
/// and paragraph separators, the byte order mark, tag characters) that make text read other
/// than it is.
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(u32::from(c),
            0x061C | 0x180E | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F
            | 0xFEFF | 0xFFF9..=0xFFFB | 0xE0000..=0xE007F)
}

/// `text` as a terminal may show it: every character of `hidden` written as an escape
/// (`\n`, `\r`, `\t`, `\x1b` for the other ASCII ones, `\u{202e}` beyond ASCII), the rest as
/// it is. Borrowed when there is nothing to escape.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_ascii() && hidden(c) => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Several lines of the CLI's own (a pretty-printed JSON document, a multi-line error): each
/// line through [`safe`], the line breaks between them kept.
pub fn safe_lines(text: &str) -> String {
    text.split('\n').map(safe).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::{safe, safe_lines};

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        assert_eq!(safe("bot\x1b[2J\nDENY ok"), "bot\\x1b[2J\\nDENY ok");
        assert_eq!(safe("a\r\tb\x07\x7f\u{9b}c"), "a\\r\\tb\\x07\\x7f\\u{9b}c");
        assert_eq!(safe("evil\u{202e}txt.exe\u{200b}"), "evil\\u{202e}txt.exe\\u{200b}");
        assert_eq!(safe("line\u{2028}sep"), "line\\u{2028}sep");
        assert!(matches!(safe("payments-bot/stripe.refund é 日本"), Cow::Borrowed(_)));
        assert_eq!(safe_lines("{\n  \"a\": \"\u{202e}x\"\n}"), "{\n  \"a\": \"\\u{202e}x\"\n}");
        assert_eq!(safe_lines("one\r\ntwo\x1b"), "one\\r\ntwo\\x1b");
    }
}
