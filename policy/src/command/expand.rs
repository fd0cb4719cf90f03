//! Words as the lexer reads them, and what bash makes of them before running a command:
//! brace expansion (`{a,b}`, `{1..3}`), quote removal, and whether each resulting word is known
//! or only known when the command runs (a variable, a substitution, a glob).

use crate::command::{ReadError, refuse};

/// Most words one word may brace-expand into.
const MAX_FIELDS: usize = 256;
/// Longest word brace expansion is done on, and most brace expressions read in one word.
const MAX_BRACE_WORD: usize = 4096;
const MAX_BRACES: usize = 64;

/// A piece of a word.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Piece {
    /// A character, and whether it was quoted (quoted characters are literal).
    Ch(char, bool),
    /// A pair of quotes with nothing between them (`""`): keeps an empty word.
    Empty,
    /// An expansion whose value is only known when the command runs.
    Exp(Exp),
}

/// A parameter, command, arithmetic or process expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Exp {
    /// As written.
    pub text: String,
    /// Inside double quotes (no word splitting, no globbing).
    pub quoted: bool,
    /// Expands to several words even when quoted (`"$@"`, `"${a[@]}"`).
    pub many: bool,
}

/// A word as read: its pieces and its text as written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Word {
    pub pieces: Vec<Piece>,
    pub text: String,
    /// An array assignment (`a=(1 2)`).
    pub array: bool,
}

impl Word {
    /// The word when it is only unquoted characters (reserved words, `--`, assignment names).
    pub fn plain(&self) -> Option<String> {
        let mut s = String::new();
        for p in &self.pieces {
            match p {
                Piece::Ch(c, false) => s.push(*c),
                _ => return None,
            }
        }
        Some(s)
    }

    /// The name of an assignment word (`NAME=…`, `NAME+=…`, `NAME[sub]=…`) and its subscript.
    pub fn assignment(&self) -> Option<(String, Option<String>)> {
        let mut name = String::new();
        let mut iter = self.pieces.iter().peekable();
        while let Some(Piece::Ch(c, false)) = iter.peek() {
            if c.is_ascii_alphanumeric() || *c == '_' {
                name.push(*c);
                iter.next();
            } else {
                break;
            }
        }
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            return None;
        }
        let mut sub = None;
        if let Some(Piece::Ch('[', false)) = iter.peek() {
            iter.next();
            let mut text = String::new();
            let mut depth = 0usize;
            loop {
                match iter.next()? {
                    Piece::Ch('[', _) => {
                        depth += 1;
                        text.push('[');
                    }
                    Piece::Ch(']', _) if depth == 0 => break,
                    Piece::Ch(']', _) => {
                        depth -= 1;
                        text.push(']');
                    }
                    Piece::Ch(c, _) => text.push(*c),
                    Piece::Exp(e) => text.push_str(&e.text),
                    Piece::Empty => {}
                }
            }
            sub = Some(text);
        }
        if let Some(Piece::Ch('+', false)) = iter.peek() {
            iter.next();
        }
        match iter.next() {
            Some(Piece::Ch('=', false)) => Some((name, sub)),
            _ => None,
        }
    }
}

/// A word after expansion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Field {
    /// Known exactly.
    Known(String),
    /// Starts with a tilde prefix bash replaces by a home directory (`~/bin/x`): known but
    /// for that prefix.
    Home(String),
    /// Only known when the command runs.
    Unknown {
        /// As written.
        text: String,
        /// Exactly one word (quoted expansions only, no glob).
        one: bool,
        /// May start with `-`.
        may_be_flag: bool,
    },
}

impl Field {
    /// The value, or the word as written when it is unknown.
    pub fn text(&self) -> &str {
        match self {
            Field::Known(v) | Field::Home(v) => v,
            Field::Unknown { text, .. } => text,
        }
    }

    /// The known value (a home-directory prefix counts as known).
    pub fn known(&self) -> Option<&str> {
        match self {
            Field::Known(v) | Field::Home(v) => Some(v),
            Field::Unknown { .. } => None,
        }
    }

    /// An unknown word standing for what a program fills in (`xargs`, `find -exec {}`).
    pub fn filled_in(text: &str, may_be_flag: bool) -> Field {
        Field::Unknown { text: text.to_owned(), one: false, may_be_flag }
    }
}

/// The words `word` expands into. `Err` when brace expansion yields too many, or (`posix`:
/// for a shell that may not expand braces at all) would change the word.
pub(super) fn fields(word: &Word, posix: bool) -> Result<Vec<Field>, ReadError> {
    let mut results = Vec::new();
    let has_brace = word.pieces.contains(&Piece::Ch('{', false));
    if has_brace && word.pieces.len() > MAX_BRACE_WORD {
        return refuse(format!("brace expansion in a word longer than {MAX_BRACE_WORD} characters"));
    }
    braces(word.pieces.clone(), &mut results, 0)?;
    if posix && results != [word.pieces.clone()] {
        return Err("brace expansion, which POSIX shells such as dash do not do".into());
    }
    let mut out: Vec<Field> = results.iter().filter_map(|p| field(p)).collect();
    // One word: shown as written.
    if let [Field::Unknown { text, .. }] = out.as_mut_slice() {
        text.clone_from(&word.text);
    }
    Ok(out)
}

/// Brace expansion, as bash does it before any other expansion.
fn braces(pieces: Vec<Piece>, acc: &mut Vec<Vec<Piece>>, depth: usize) -> Result<(), ReadError> {
    if depth > MAX_BRACES {
        return refuse(format!("more than {MAX_BRACES} brace expressions in one word"));
    }
    let mut start = 0;
    loop {
        let Some(open) = (start..pieces.len()).find(|&i| pieces[i] == Piece::Ch('{', false)) else {
            return push(acc, pieces);
        };
        // The matching `}` and the top-level commas.
        let mut depth = 0usize;
        let mut commas = Vec::new();
        let mut close = None;
        for (i, p) in pieces.iter().enumerate().skip(open + 1) {
            match p {
                Piece::Ch('{', false) => depth += 1,
                Piece::Ch('}', false) if depth == 0 => {
                    close = Some(i);
                    break;
                }
                Piece::Ch('}', false) => depth -= 1,
                Piece::Ch(',', false) if depth == 0 => commas.push(i),
                _ => {}
            }
        }
        let Some(close) = close else {
            start = open + 1;
            continue;
        };
        let pre = &pieces[..open];
        let post = &pieces[close + 1..];
        if !commas.is_empty() {
            let mut bounds = vec![open];
            bounds.extend(&commas);
            bounds.push(close);
            for pair in bounds.windows(2) {
                let mut next = pre.to_vec();
                next.extend_from_slice(&pieces[pair[0] + 1..pair[1]]);
                next.extend_from_slice(post);
                braces(next, acc, depth + 1)?;
            }
            return Ok(());
        }
        if let Some(items) = sequence(&pieces[open + 1..close])? {
            for item in items {
                let mut next = pre.to_vec();
                next.extend(item.chars().map(|c| Piece::Ch(c, true)));
                if item.is_empty() {
                    next.push(Piece::Empty);
                }
                next.extend_from_slice(post);
                braces(next, acc, depth + 1)?;
            }
            return Ok(());
        }
        start = open + 1;
    }
}

fn push(acc: &mut Vec<Vec<Piece>>, pieces: Vec<Piece>) -> Result<(), ReadError> {
    acc.push(pieces);
    if acc.len() > MAX_FIELDS {
        return refuse(format!("brace expansion into more than {MAX_FIELDS} words"));
    }
    Ok(())
}

/// `{x..y}` / `{x..y..step}` with integers, or letters of one case: the words, or `None`
/// when it is not a sequence expression (then the braces are literal).
fn sequence(inner: &[Piece]) -> Result<Option<Vec<String>>, ReadError> {
    let mut text = String::new();
    for p in inner {
        match p {
            Piece::Ch(c, false) => text.push(*c),
            _ => return Ok(None),
        }
    }
    let parts: Vec<&str> = text.split("..").collect();
    let (from, to, step) = match parts.as_slice() {
        [a, b] => (*a, *b, None),
        [a, b, c] => (*a, *b, Some(*c)),
        _ => return Ok(None),
    };
    let step = match step {
        None => 1,
        Some(s) => match parse_int(s) {
            Some(n) => n.unsigned_abs().max(1),
            None => return Ok(None),
        },
    };
    if let (Some(a), Some(b)) = (parse_int(from), parse_int(to)) {
        let count = a.abs_diff(b) / step + 1;
        if count > MAX_FIELDS as u64 {
            return refuse(format!("brace expansion into more than {MAX_FIELDS} words"));
        }
        let padded = [from, to].iter().any(|t| {
            let digits = t.trim_start_matches('-');
            digits.len() > 1 && digits.starts_with('0')
        });
        let width = padded.then(|| from.len().max(to.len()));
        let mut out = Vec::new();
        let mut n = a;
        for _ in 0..count {
            out.push(match width {
                Some(w) if n < 0 => format!("-{:0>width$}", n.unsigned_abs(), width = w.saturating_sub(1)),
                Some(w) => format!("{n:0>w$}"),
                None => n.to_string(),
            });
            let delta = i64::try_from(step).unwrap_or(i64::MAX);
            n = if a <= b { n.saturating_add(delta) } else { n.saturating_sub(delta) };
        }
        return Ok(Some(out));
    }
    let one = |t: &str| {
        let mut chars = t.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if c.is_ascii_alphabetic() => Some(c),
            _ => None,
        }
    };
    let (Some(a), Some(b)) = (one(from), one(to)) else { return Ok(None) };
    if a.is_ascii_lowercase() != b.is_ascii_lowercase() {
        // Bash walks the ASCII table between the cases (through `[`, `\`, …): not read.
        return Err("a brace sequence between upper and lower case letters".into());
    }
    let (lo, hi) = (u32::from(a), u32::from(b));
    let step = u32::try_from(step).unwrap_or(u32::MAX);
    let mut out = Vec::new();
    let mut n = lo;
    loop {
        out.push(char::from_u32(n).map(String::from).unwrap_or_default());
        let next = if lo <= hi { n.checked_add(step) } else { n.checked_sub(step) };
        match next {
            Some(x) if (lo <= hi && x <= hi) || (lo > hi && x >= hi) => n = x,
            _ => break,
        }
    }
    Ok(Some(out))
}

fn parse_int(t: &str) -> Option<i64> {
    let digits = t.strip_prefix('-').unwrap_or(t);
    if digits.is_empty() || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    t.parse().ok()
}

/// One word after brace expansion: `None` when it disappears (an unquoted empty word).
fn field(pieces: &[Piece]) -> Option<Field> {
    if pieces.is_empty() {
        return None;
    }
    let has_exp = pieces.iter().any(|p| matches!(p, Piece::Exp(_)));
    let glob = pieces.iter().enumerate().any(|(i, p)| match p {
        Piece::Ch('*' | '?', false) => true,
        Piece::Ch('[', false) => pieces[i + 1..].iter().any(|q| matches!(q, Piece::Ch(']', _))),
        _ => false,
    });
    let text: String = pieces
        .iter()
        .map(|p| match p {
            Piece::Ch(c, _) => c.to_string(),
            Piece::Empty => String::new(),
            Piece::Exp(e) => e.text.clone(),
        })
        .collect();
    if !has_exp && !glob {
        if tilde_prefix(pieces) {
            return Some(Field::Home(text));
        }
        return Some(Field::Known(text));
    }
    // Unquoted expansions split into words that may start with anything; a glob's words all
    // start as the pattern does.
    let splits = pieces.iter().any(|p| matches!(p, Piece::Exp(e) if !e.quoted || e.many));
    let one = !glob && !splits;
    let may_be_flag = splits
        || matches!(
            pieces.first(),
            Some(Piece::Exp(_) | Piece::Ch('-', _) | Piece::Ch('*' | '?' | '[', false))
        );
    Some(Field::Unknown { text, one, may_be_flag })
}

/// Whether the word starts with an unquoted `~` prefix bash replaces (`~`, `~/x`, `~user/x`).
fn tilde_prefix(pieces: &[Piece]) -> bool {
    if pieces.first() != Some(&Piece::Ch('~', false)) {
        return false;
    }
    for p in &pieces[1..] {
        match p {
            Piece::Ch('/', false) => return true,
            Piece::Ch(c, false) if c.is_ascii_alphanumeric() || "._-+".contains(*c) => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{Field, Piece, Word, fields};

    fn word(text: &str) -> Word {
        Word { pieces: text.chars().map(|c| Piece::Ch(c, false)).collect(), text: text.into(), array: false }
    }

    fn known(text: &str) -> Vec<String> {
        fields(&word(text), false).unwrap().iter().map(|f| f.text().to_owned()).collect()
    }

    #[test]
    fn braces_expand_as_bash_does() {
        assert_eq!(known("{rm,-rf}"), ["rm", "-rf"]);
        assert_eq!(known("a{,}b"), ["ab", "ab"]);
        assert_eq!(known("{,x}"), ["x"]);
        assert_eq!(known("{a..e}"), ["a", "b", "c", "d", "e"]);
        assert_eq!(known("{01..3}"), ["01", "02", "03"]);
        assert_eq!(known("{1..10..-3}"), ["1", "4", "7", "10"]);
        assert_eq!(known("{3..1}"), ["3", "2", "1"]);
        assert_eq!(known("{-1..2}"), ["-1", "0", "1", "2"]);
        assert_eq!(known("{a..c..2}"), ["a", "c"]);
        assert_eq!(known("{a}"), ["{a}"]);
        assert_eq!(known("{a,b"), ["{a,b"]);
        assert_eq!(known("{x..-}"), ["{x..-}"]);
        assert_eq!(known("{a{b,c}}"), ["{ab}", "{ac}"]);
        assert_eq!(known("{a,{b,c}"), ["{a,b", "{a,c"]);
        assert_eq!(known("x{a,b}{1,2}"), ["xa1", "xa2", "xb1", "xb2"]);
        assert!(fields(&word("{1..100000}"), false).is_err());
        assert!(fields(&word("{a..Z}"), false).is_err());
        assert!(fields(&word("{a,b}"), true).is_err());
        assert_eq!(fields(&word("{a}"), true).unwrap(), [Field::Known("{a}".into())]);
    }
}
