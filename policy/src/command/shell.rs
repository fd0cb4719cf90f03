//! A reader of bash's grammar: lists, pipelines, compound commands (`if`, `for`, `case`,
//! `{ }`, `( )`, `[[ ]]`, `(( ))`), words with their quoting (`'…'`, `"…"`, `$'…'`, `\`),
//! expansions (`$x`, `${…}`, `$(…)`, backquotes, `$((…))`, `<(…)`), redirections and
//! here-documents. Every simple command it finds goes to [`super::programs::resolve`]; the
//! commands inside substitutions are read as commands too. What it cannot read with certainty
//! is recorded as unresolved; what no shell could read (an unbalanced quote) is an error.

use super::expand::{self, Exp, Field, Piece, Word};
use super::{MAX_DEPTH, Out, WrittenFile, programs};

/// Deepest nesting of compound commands, substitutions and expansions, scripts within scripts
/// included.
const MAX_NEST: usize = 100;

/// Which shell reads the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    /// bash.
    Bash,
    /// `sh` (dash on some systems, bash on others) and the other POSIX shells: what bash and
    /// dash read differently (`$'…'`, brace expansion, the `time` keyword) is refused.
    Posix,
    /// zsh: the same grammar, with its own expansions refused.
    Zsh,
}

/// Why reading stopped.
enum Stop {
    /// No shell could read this (an unbalanced quote): the whole command is refused.
    Unreadable(String),
    /// A construct this reader does not follow: recorded as unresolved.
    Syntax(String, String),
}

type R<T> = Result<T, Stop>;

fn syntax<T>(part: &str, why: &str) -> R<T> {
    Err(Stop::Syntax(part.to_owned(), why.to_owned()))
}

fn unreadable<T>(why: impl Into<String>) -> R<T> {
    Err(Stop::Unreadable(why.into()))
}

/// Reads `text` as a script into `out`. `Err` when it cannot be read strictly.
pub(super) fn read_script(out: &mut Out, text: &str, depth: usize, dialect: Dialect) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("commands nested more than {MAX_DEPTH} deep"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t') {
        return Err(format!("control character U+{:04X} in a command", u32::from(c)));
    }
    let mut p =
        Parser { s: text.chars().collect(), i: 0, depth, dialect, out, heredocs: Vec::new(), peeked: None };
    match p.script() {
        Ok(()) => Ok(()),
        Err(Stop::Unreadable(e)) => Err(e),
        Err(Stop::Syntax(part, why)) => {
            p.out.refuse(&part, why);
            Ok(())
        }
    }
}

/// `word` single-quoted for a shell.
pub(super) fn quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', "'\\''"))
}

/// A token.
#[derive(Debug)]
enum Tok {
    Word(Word),
    /// `;` `&` `&&` `||` `|` `|&` `;;` `;&` `;;&` `(` `)` and a newline (`"\n"`).
    Op(&'static str),
    /// A redirection operator.
    Redir(&'static str),
    Eof,
}

/// What the next token is, without its word.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Peek {
    /// A word; its text when it is only unquoted characters.
    Word(Option<String>),
    Op(&'static str),
    Redir,
    Eof,
}

struct Heredoc {
    delim: String,
    strip_tabs: bool,
    expand: bool,
}

const OPS: &[&str] = &[";;&", ";;", ";&", ";", "&&", "&", "||", "|&", "|", "(", ")"];
const REDIRS: &[&str] = &["&>>", "&>", "<<<", "<<-", "<<", "<&", "<>", "<", ">>", ">&", ">|", ">"];
/// Reserved words that end a list.
const CLOSERS: &[&str] = &["then", "elif", "else", "fi", "do", "done", "esac", "}"];

struct Parser<'o> {
    s: Vec<char>,
    i: usize,
    depth: usize,
    dialect: Dialect,
    out: &'o mut Out,
    heredocs: Vec<Heredoc>,
    peeked: Option<Tok>,
}

impl Parser<'_> {
    fn enter(&mut self) -> R<()> {
        self.out.nest += 1;
        if self.out.nest > MAX_NEST {
            return unreadable(format!("commands nested more than {MAX_NEST} deep"));
        }
        Ok(())
    }

    fn leave(&mut self) {
        self.out.nest = self.out.nest.saturating_sub(1);
    }

    fn at(&self, k: usize) -> Option<char> {
        self.s.get(self.i + k).copied()
    }

    fn rest_starts(&self, pat: &str) -> bool {
        pat.chars().enumerate().all(|(k, c)| self.at(k) == Some(c))
    }

    fn refuse(&mut self, part: &str, why: &str) {
        self.out.refuse(part, why);
    }

    // ---- tokens ----

    fn peek(&mut self) -> R<Peek> {
        if self.peeked.is_none() {
            let t = self.lex()?;
            self.peeked = Some(t);
        }
        Ok(match &self.peeked {
            Some(Tok::Word(w)) => Peek::Word(w.plain()),
            Some(Tok::Op(o)) => Peek::Op(o),
            Some(Tok::Redir(_)) => Peek::Redir,
            Some(Tok::Eof) | None => Peek::Eof,
        })
    }

    fn next(&mut self) -> R<Tok> {
        match self.peeked.take() {
            Some(t) => Ok(t),
            None => self.lex(),
        }
    }

    fn peek_reserved(&mut self) -> R<Option<String>> {
        Ok(match self.peek()? {
            Peek::Word(Some(w)) => Some(w),
            _ => None,
        })
    }

    fn expect_reserved(&mut self, word: &str) -> R<()> {
        match self.peek()? {
            Peek::Word(Some(w)) if w == word => {
                self.next()?;
                Ok(())
            }
            _ => syntax(word, "a compound command that is not closed as bash expects"),
        }
    }

    fn expect_op(&mut self, op: &str) -> R<()> {
        match self.peek()? {
            Peek::Op(o) if o == op => {
                self.next()?;
                Ok(())
            }
            Peek::Eof if op == ")" => unreadable("unbalanced `(` in a command"),
            _ => syntax(op, "a command bash would refuse as a syntax error"),
        }
    }

    fn skip_newlines(&mut self) -> R<()> {
        while self.peek()? == Peek::Op("\n") {
            self.next()?;
        }
        Ok(())
    }

    fn lex(&mut self) -> R<Tok> {
        loop {
            let Some(c) = self.at(0) else { return Ok(Tok::Eof) };
            match c {
                ' ' | '\t' => self.i += 1,
                '\\' if self.at(1) == Some('\n') => self.i += 2,
                '\n' => {
                    self.i += 1;
                    self.read_heredocs()?;
                    return Ok(Tok::Op("\n"));
                }
                // Not a separator to bash, but one to a reader that looks like one: the words
                // are read apart, as the call presents itself.
                c if c.is_whitespace() => self.i += 1,
                '#' => {
                    while self.at(0).is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
        if (self.rest_starts("<(") || self.rest_starts(">(")) && !self.rest_starts("<((") {
            return Ok(Tok::Word(self.word()?));
        }
        for op in REDIRS {
            if self.rest_starts(op) {
                self.i += op.chars().count();
                return Ok(Tok::Redir(op));
            }
        }
        for op in OPS {
            if self.rest_starts(op) {
                self.i += op.chars().count();
                return Ok(Tok::Op(op));
            }
        }
        let w = self.word()?;
        // `2>file`, `{fd}>file`: the word is the redirection's descriptor.
        if matches!(self.at(0), Some('<' | '>')) && self.at(1) != Some('(') {
            // `{name}>` names a descriptor in bash and zsh; POSIX shells read `{name}` as a word.
            let posix = self.dialect == Dialect::Posix;
            let fd = w.plain().is_some_and(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit())
                    || (!posix && p.starts_with('{') && p.ends_with('}') && p.len() > 2)
            });
            if fd {
                for op in REDIRS.iter().filter(|o| o.starts_with(['<', '>'])) {
                    if self.rest_starts(op) {
                        self.i += op.chars().count();
                        return Ok(Tok::Redir(op));
                    }
                }
            }
        }
        if w.pieces.is_empty() && w.text.is_empty() {
            return unreadable(format!("unexpected character `{}`", self.at(0).unwrap_or(' ')));
        }
        Ok(Tok::Word(w))
    }

    /// Reads one word at `self.i`.
    fn word(&mut self) -> R<Word> {
        self.enter()?;
        let start = self.i;
        let mut w = Word::default();
        while let Some(c) = self.at(0) {
            match c {
                '<' | '>' if w.pieces.is_empty() && self.at(1) == Some('(') => {
                    let from = self.i;
                    self.i += 2;
                    self.substitution()?;
                    let text: String = self.s[from..self.i].iter().collect();
                    w.pieces.push(Piece::Exp(Exp { text, quoted: false, many: false }));
                }
                ' ' | '\t' | '\n' | ';' | '&' | '|' | '<' | '>' | ')' => break,
                '(' => {
                    if w.assignment().is_some() && matches!(w.pieces.last(), Some(Piece::Ch('=', false))) {
                        self.array(&mut w)?;
                        continue;
                    }
                    if let Some(Piece::Ch(p @ ('?' | '*' | '+' | '@' | '!'), false)) = w.pieces.last() {
                        let p = *p;
                        let from = self.i;
                        self.balanced_parens()?;
                        let text: String = self.s[from..self.i].iter().collect();
                        self.refuse(&format!("{p}{text}"), "an extended glob pattern");
                        w.pieces.push(Piece::Exp(Exp { text, quoted: false, many: true }));
                        continue;
                    }
                    break;
                }
                c if c.is_whitespace() => break,
                '\\' => match self.at(1) {
                    None => return unreadable("a command ends with a lone backslash"),
                    Some('\n') => self.i += 2,
                    Some(next) => {
                        w.pieces.push(Piece::Ch(next, true));
                        self.i += 2;
                    }
                },
                '\'' => {
                    self.i += 1;
                    let before = w.pieces.len();
                    loop {
                        match self.at(0) {
                            None => return unreadable("unbalanced single quote in a command"),
                            Some('\'') => break,
                            Some(c) => w.pieces.push(Piece::Ch(c, true)),
                        }
                        self.i += 1;
                    }
                    self.i += 1;
                    if w.pieces.len() == before {
                        w.pieces.push(Piece::Empty);
                    }
                }
                '"' => self.double_quoted(&mut w)?,
                '$' => self.dollar(&mut w, false)?,
                '`' => self.backquote(&mut w, false)?,
                '=' if w.pieces.is_empty() && self.dialect == Dialect::Zsh => {
                    self.refuse(&self.rest_of_word(), "a zsh `=command` expansion");
                    w.pieces.push(Piece::Exp(Exp { text: "=".into(), quoted: false, many: true }));
                    self.i += 1;
                }
                c => {
                    w.pieces.push(Piece::Ch(c, false));
                    self.i += 1;
                }
            }
        }
        w.text = self.s[start..self.i].iter().collect();
        self.leave();
        Ok(w)
    }

    fn rest_of_word(&self) -> String {
        self.s[self.i..]
            .iter()
            .take(80)
            .take_while(|c| !c.is_whitespace() && !";&|<>()".contains(**c))
            .collect()
    }

    /// `(…)` of an extended glob, from `(` to its `)`.
    fn balanced_parens(&mut self) -> R<()> {
        let mut depth = 0usize;
        loop {
            match self.at(0) {
                None => return unreadable("unbalanced `(` in a command"),
                Some('\\') => self.i += 1,
                Some('(') => depth += 1,
                Some(')') => {
                    depth -= 1;
                    if depth == 0 {
                        self.i += 1;
                        return Ok(());
                    }
                }
                _ => {}
            }
            self.i += 1;
        }
    }

    /// An array assignment's `(…)`: each element is a word.
    fn array(&mut self, w: &mut Word) -> R<()> {
        self.i += 1;
        w.array = true;
        loop {
            match self.at(0) {
                None => return unreadable("unbalanced `(` in a command"),
                Some(')') => {
                    self.i += 1;
                    return Ok(());
                }
                Some(c) if c.is_whitespace() => self.i += 1,
                Some('#') => {
                    while self.at(0).is_some_and(|c| c != '\n') {
                        self.i += 1;
                    }
                }
                Some(_) => {
                    let element = self.word()?;
                    if element.text.is_empty() {
                        return syntax(&self.rest_of_word(), "an array assignment bash would refuse");
                    }
                    if let Some(Piece::Ch('[', false)) = element.pieces.first() {
                        let sub: String = element.text.chars().skip(1).take_while(|c| *c != ']').collect();
                        if !safe_arith(&sub) {
                            self.refuse(
                                &element.text,
                                "an array subscript that is evaluated when the command runs",
                            );
                        }
                    }
                }
            }
        }
    }

    fn double_quoted(&mut self, w: &mut Word) -> R<()> {
        self.enter()?;
        self.i += 1;
        let before = w.pieces.len();
        loop {
            match self.at(0) {
                None => return unreadable("unbalanced double quote in a command"),
                Some('"') => {
                    self.i += 1;
                    break;
                }
                Some('\\') => match self.at(1) {
                    Some(e @ ('$' | '`' | '"' | '\\')) => {
                        w.pieces.push(Piece::Ch(e, true));
                        self.i += 2;
                    }
                    Some('\n') => self.i += 2,
                    _ => {
                        w.pieces.push(Piece::Ch('\\', true));
                        self.i += 1;
                    }
                },
                Some('$') => self.dollar(w, true)?,
                Some('`') => self.backquote(w, true)?,
                Some(c) => {
                    w.pieces.push(Piece::Ch(c, true));
                    self.i += 1;
                }
            }
        }
        if w.pieces.len() == before {
            w.pieces.push(Piece::Empty);
        }
        self.leave();
        Ok(())
    }

    /// Whatever starts with `$` at `self.i`.
    fn dollar(&mut self, w: &mut Word, quoted: bool) -> R<()> {
        let start = self.i;
        let exp = |p: &Parser<'_>, many: bool| {
            let text: String = p.s[start..p.i].iter().collect();
            Piece::Exp(Exp { text, quoted, many })
        };
        match self.at(1) {
            Some('\'') if !quoted => {
                if self.dialect == Dialect::Posix {
                    self.refuse(
                        &self.rest_of_word(),
                        "`$'…'`, which POSIX shells such as dash read as `$` and a quote",
                    );
                }
                self.i += 2;
                let before = w.pieces.len();
                self.ansi_c(w)?;
                if w.pieces.len() == before {
                    w.pieces.push(Piece::Empty);
                }
            }
            Some('"') if !quoted => {
                // Translated through the locale's message catalog: not known here.
                self.i += 1;
                let mut inner = Word::default();
                self.double_quoted(&mut inner)?;
                w.pieces.push(exp(self, false));
                if let Some(Piece::Exp(e)) = w.pieces.last_mut() {
                    e.quoted = true;
                }
            }
            Some('(') if self.at(2) == Some('(') => {
                self.i += 3;
                let (body, safe) = self.arithmetic("))")?;
                if !safe {
                    self.refuse(
                        &format!("$(({body}))"),
                        "arithmetic that refers to variables or runs commands",
                    );
                }
                w.pieces.push(exp(self, false));
            }
            Some('(') => {
                self.i += 2;
                self.substitution()?;
                w.pieces.push(exp(self, false));
            }
            Some('[') => {
                self.i += 2;
                let (body, safe) = self.arithmetic("]")?;
                if !safe {
                    self.refuse(
                        &format!("$[{body}]"),
                        "arithmetic that refers to variables or runs commands",
                    );
                }
                w.pieces.push(exp(self, false));
            }
            Some('{') => {
                self.i += 2;
                let many = self.parameter(quoted)?;
                w.pieces.push(exp(self, many));
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                self.i += 1;
                while self.at(0).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.i += 1;
                }
                if self.dialect == Dialect::Zsh && self.at(0) == Some('[') {
                    self.refuse(&self.rest_of_word(), "a zsh subscript");
                }
                w.pieces.push(exp(self, false));
            }
            Some(c) if c.is_ascii_digit() || "*#?-$!".contains(c) => {
                self.i += 2;
                w.pieces.push(exp(self, false));
            }
            Some('@') => {
                self.i += 2;
                w.pieces.push(exp(self, true));
            }
            Some(c) if self.dialect == Dialect::Zsh && "=~^+(".contains(c) => {
                self.i += 2;
                self.refuse(&format!("${c}"), "a zsh expansion flag");
                w.pieces.push(exp(self, true));
            }
            _ => {
                w.pieces.push(Piece::Ch('$', quoted));
                self.i += 1;
            }
        }
        Ok(())
    }

    /// The body of `$'…'` from after the quote: decoded as bash does.
    fn ansi_c(&mut self, w: &mut Word) -> R<()> {
        let mut bytes: Vec<u8> = Vec::new();
        loop {
            let Some(c) = self.at(0) else { return unreadable("unbalanced `$'` quote in a command") };
            self.i += 1;
            if c == '\'' {
                break;
            }
            let push = |b: &mut Vec<u8>, ch: char| {
                let mut buf = [0u8; 4];
                b.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
            };
            if c != '\\' {
                push(&mut bytes, c);
                continue;
            }
            let Some(e) = self.at(0) else { return unreadable("unbalanced `$'` quote in a command") };
            self.i += 1;
            let simple = match e {
                'a' => Some(7u8),
                'b' => Some(8),
                'e' | 'E' => Some(27),
                'f' => Some(12),
                'n' => Some(10),
                'r' => Some(13),
                't' => Some(9),
                'v' => Some(11),
                '\\' => Some(b'\\'),
                '\'' => Some(b'\''),
                '"' => Some(b'"'),
                '?' => Some(b'?'),
                _ => None,
            };
            if let Some(b) = simple {
                bytes.push(b);
                continue;
            }
            match e {
                '0'..='7' => {
                    let mut n = e.to_digit(8).unwrap_or(0);
                    for _ in 0..2 {
                        match self.at(0).and_then(|d| d.to_digit(8)) {
                            Some(d) => {
                                n = n * 8 + d;
                                self.i += 1;
                            }
                            None => break,
                        }
                    }
                    bytes.push((n & 0xff) as u8);
                }
                'x' => {
                    let n = self.hex_digits(2);
                    match n {
                        Some(n) => bytes.push((n & 0xff) as u8),
                        None => bytes.extend_from_slice(b"\\x"),
                    }
                }
                'u' | 'U' => {
                    let n = self.hex_digits(if e == 'u' { 4 } else { 8 });
                    match n.and_then(char::from_u32) {
                        Some(ch) => push(&mut bytes, ch),
                        None => {
                            let text: String = self.s[..self.i].iter().rev().take(2).collect();
                            self.refuse(&text, "an ANSI-C escape the reader does not decode");
                        }
                    }
                }
                'c' => match self.at(0) {
                    Some(x) => {
                        self.i += 1;
                        let code = if x == '?' { 0x7f } else { (u32::from(x.to_ascii_uppercase())) & 0x1f };
                        bytes.push((code & 0xff) as u8);
                    }
                    None => return unreadable("unbalanced `$'` quote in a command"),
                },
                other => {
                    bytes.push(b'\\');
                    push(&mut bytes, other);
                }
            }
        }
        // Bash ends the string at a NUL byte.
        if let Some(n) = bytes.iter().position(|b| *b == 0) {
            bytes.truncate(n);
        }
        for ch in String::from_utf8_lossy(&bytes).chars() {
            w.pieces.push(Piece::Ch(ch, true));
        }
        Ok(())
    }

    fn hex_digits(&mut self, max: usize) -> Option<u32> {
        let mut n = 0u32;
        let mut count = 0;
        while count < max {
            match self.at(0).and_then(|d| d.to_digit(16)) {
                Some(d) => {
                    n = n * 16 + d;
                    self.i += 1;
                    count += 1;
                }
                None => break,
            }
        }
        (count > 0).then_some(n)
    }

    /// Arithmetic up to `end` (`))` or `]`): its text and whether it is only numbers.
    fn arithmetic(&mut self, end: &str) -> R<(String, bool)> {
        let start = self.i;
        let mut depth = 0usize;
        loop {
            if self.at(0).is_none() {
                return unreadable("unbalanced arithmetic in a command");
            }
            if depth == 0 && self.rest_starts(end) {
                let body: String = self.s[start..self.i].iter().collect();
                self.i += end.chars().count();
                let safe = safe_arith(&body);
                return Ok((body, safe));
            }
            match self.at(0) {
                Some('(') => depth += 1,
                Some(')') if depth > 0 => depth -= 1,
                Some(')') if end == "))" => {
                    let body: String = self.s[start..self.i].iter().collect();
                    return syntax(&body, "arithmetic the reader cannot delimit");
                }
                Some('\\') => self.i += 1,
                _ => {}
            }
            self.i += 1;
        }
    }

    /// `$(…)` or `<(…)` from after the `(`: the commands inside are read, up to the `)`.
    fn substitution(&mut self) -> R<()> {
        self.enter()?;
        let peeked = self.peeked.take();
        let docs = std::mem::take(&mut self.heredocs);
        self.list()?;
        match self.next()? {
            Tok::Op(")") => {}
            Tok::Eof => return unreadable("unbalanced `$(` in a command"),
            _ => return syntax("$(", "a substitution bash would refuse as a syntax error"),
        }
        if !self.heredocs.is_empty() {
            self.refuse("<<", "a here-document inside a substitution");
        }
        self.heredocs = docs;
        self.peeked = peeked;
        self.leave();
        Ok(())
    }

    /// A backquoted command at `self.i`: read as a script of its own.
    fn backquote(&mut self, w: &mut Word, quoted: bool) -> R<()> {
        let start = self.i;
        self.i += 1;
        let mut inner = String::new();
        loop {
            match self.at(0) {
                None => return unreadable("unbalanced backquote in a command"),
                Some('`') => break,
                Some('\\') => {
                    match self.at(1) {
                        Some(e @ ('$' | '`' | '\\')) => inner.push(e),
                        Some('"') if quoted => inner.push('"'),
                        Some(e) => {
                            inner.push('\\');
                            inner.push(e);
                        }
                        None => return unreadable("unbalanced backquote in a command"),
                    }
                    self.i += 2;
                    continue;
                }
                Some(c) => inner.push(c),
            }
            self.i += 1;
        }
        self.i += 1;
        read_script(self.out, &inner, self.depth + 1, self.dialect).map_err(Stop::Unreadable)?;
        let text: String = self.s[start..self.i].iter().collect();
        w.pieces.push(Piece::Exp(Exp { text, quoted, many: false }));
        Ok(())
    }

    /// `${…}` from after the `{`: whether it expands to several words even when quoted.
    fn parameter(&mut self, quoted: bool) -> R<bool> {
        self.enter()?;
        let start = self.i - 2;
        let text_to = |p: &Parser<'_>| -> String { p.s[start..p.i.min(p.s.len())].iter().collect() };
        let mut indirect = false;
        if self.at(0) == Some('#') && self.at(1) != Some('}') {
            self.i += 1;
        } else if self.at(0) == Some('!') && self.at(1) != Some('}') {
            indirect = true;
            self.i += 1;
        }
        // The name.
        let name_start = self.i;
        match self.at(0) {
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                while self.at(0).is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    self.i += 1;
                }
            }
            Some(c) if c.is_ascii_digit() => {
                while self.at(0).is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            Some(c) if "@*#?-$!0".contains(c) => self.i += 1,
            _ => {
                self.skip_parameter_word()?;
                let text = text_to(self);
                self.refuse(&text, "a parameter expansion the reader cannot read");
                self.leave();
                return Ok(true);
            }
        }
        let name: String = self.s[name_start..self.i].iter().collect();
        let mut many = name == "@";
        let mut listing = false;
        if self.at(0) == Some('[') {
            self.i += 1;
            let sub_start = self.i;
            let mut depth = 0usize;
            loop {
                match self.at(0) {
                    None => return unreadable("unbalanced `${` in a command"),
                    Some('[') => depth += 1,
                    Some(']') if depth == 0 => break,
                    Some(']') => depth -= 1,
                    _ => {}
                }
                self.i += 1;
            }
            let sub: String = self.s[sub_start..self.i].iter().collect();
            self.i += 1;
            if sub == "@" {
                many = true;
                listing = true;
            } else if sub == "*" {
                listing = true;
            } else if !safe_arith(&sub) {
                self.skip_parameter_word()?;
                let text = text_to(self);
                self.refuse(&text, "an array subscript that is evaluated when the command runs");
                self.leave();
                return Ok(true);
            }
        }
        if indirect {
            if matches!(self.at(0), Some('*' | '@')) && self.at(1) == Some('}') {
                many = self.at(0) == Some('@');
                self.i += 1;
            } else if !listing {
                self.skip_parameter_word()?;
                let text = text_to(self);
                self.refuse(&text, "an indirect expansion (the variable's value names another)");
                self.leave();
                return Ok(true);
            }
        }
        match self.at(0) {
            None => return unreadable("unbalanced `${` in a command"),
            Some('}') => {
                self.i += 1;
            }
            Some(':') if !matches!(self.at(1), Some('-' | '=' | '?' | '+')) => {
                // `${x:offset:length}`: arithmetic.
                self.i += 1;
                let from = self.i;
                self.skip_parameter_word()?;
                let body: String = self.s[from..self.i.saturating_sub(1)].iter().collect();
                if !body.split(':').all(safe_arith) {
                    let text = text_to(self);
                    self.refuse(&text, "a substring offset that is evaluated when the command runs");
                }
            }
            Some('@') => {
                let op = self.at(1);
                self.i += 2;
                if self.at(0) != Some('}')
                    || !matches!(op, Some('Q' | 'E' | 'A' | 'K' | 'a' | 'k' | 'L' | 'U' | 'u'))
                {
                    self.skip_parameter_word()?;
                    let text = text_to(self);
                    self.refuse(&text, "a parameter transformation that expands prompts or is not known");
                    self.leave();
                    return Ok(true);
                }
                self.i += 1;
            }
            Some(':' | '-' | '=' | '?' | '+' | '#' | '%' | '/' | '^' | ',') => {
                self.i += 1;
                self.skip_parameter_word()?;
            }
            Some(_) => {
                self.skip_parameter_word()?;
                let text = text_to(self);
                self.refuse(&text, "a parameter expansion the reader cannot read");
                many = true;
            }
        }
        let _ = quoted;
        self.leave();
        Ok(many)
    }

    /// The rest of a `${…}` up to and past its `}`, reading the substitutions inside.
    fn skip_parameter_word(&mut self) -> R<()> {
        let mut scratch = Word::default();
        let mut depth = 0usize;
        loop {
            match self.at(0) {
                None => return unreadable("unbalanced `${` in a command"),
                Some('}') if depth == 0 => {
                    self.i += 1;
                    return Ok(());
                }
                Some('}') => {
                    depth -= 1;
                    self.i += 1;
                }
                Some('{') => {
                    depth += 1;
                    self.i += 1;
                }
                Some('\\') => self.i += 2,
                Some('\'') => {
                    self.i += 1;
                    while self.at(0).is_some_and(|c| c != '\'') {
                        self.i += 1;
                    }
                    if self.at(0).is_none() {
                        return unreadable("unbalanced single quote in a command");
                    }
                    self.i += 1;
                }
                Some('"') => self.double_quoted(&mut scratch)?,
                Some('$') => self.dollar(&mut scratch, true)?,
                Some('`') => self.backquote(&mut scratch, true)?,
                Some(_) => self.i += 1,
            }
        }
    }

    /// Reads the bodies of the here-documents started on the line just ended.
    fn read_heredocs(&mut self) -> R<()> {
        let docs = std::mem::take(&mut self.heredocs);
        for doc in docs {
            let body_start = self.i;
            let mut body_end = self.s.len();
            let mut after = self.s.len();
            let mut pos = self.i;
            while pos < self.s.len() {
                let line_end = (pos..self.s.len()).find(|&k| self.s[k] == '\n').unwrap_or(self.s.len());
                let mut line_start = pos;
                if doc.strip_tabs {
                    while line_start < line_end && self.s[line_start] == '\t' {
                        line_start += 1;
                    }
                }
                let line: String = self.s[line_start..line_end].iter().collect();
                if line == doc.delim {
                    body_end = pos;
                    after = (line_end + 1).min(self.s.len());
                    break;
                }
                pos = line_end + 1;
            }
            if doc.expand {
                self.i = body_start;
                let mut scratch = Word::default();
                while self.i < body_end {
                    match self.at(0) {
                        Some('\\') => self.i += 2,
                        Some('$') => self.dollar(&mut scratch, true)?,
                        Some('`') => self.backquote(&mut scratch, true)?,
                        _ => self.i += 1,
                    }
                }
                if self.i > body_end {
                    return syntax("<<", "a here-document whose expansions run past its end");
                }
            }
            self.i = after.max(body_start);
        }
        Ok(())
    }

    // ---- grammar ----

    fn script(&mut self) -> R<()> {
        self.list()?;
        match self.peek()? {
            Peek::Eof => Ok(()),
            Peek::Word(Some(w)) => syntax(&w, "a command bash would refuse as a syntax error"),
            Peek::Op(o) => syntax(o, "a command bash would refuse as a syntax error"),
            _ => syntax("", "a command bash would refuse as a syntax error"),
        }
    }

    fn at_list_end(&mut self) -> R<bool> {
        Ok(match self.peek()? {
            Peek::Eof => true,
            Peek::Op(")" | ";;" | ";&" | ";;&") => true,
            Peek::Word(Some(w)) => CLOSERS.contains(&w.as_str()),
            _ => false,
        })
    }

    /// Commands separated by `;`, `&` and newlines, up to a closing word, `)` or `;;`.
    fn list(&mut self) -> R<()> {
        loop {
            self.skip_newlines()?;
            if self.at_list_end()? {
                return Ok(());
            }
            self.and_or()?;
            match self.peek()? {
                Peek::Op(";" | "&" | "\n") => {
                    self.next()?;
                }
                _ => return Ok(()),
            }
        }
    }

    fn and_or(&mut self) -> R<()> {
        self.pipeline()?;
        while let Peek::Op("&&" | "||") = self.peek()? {
            self.next()?;
            self.skip_newlines()?;
            self.pipeline()?;
        }
        Ok(())
    }

    fn pipeline(&mut self) -> R<()> {
        loop {
            match self.peek_reserved()?.as_deref() {
                Some("!") => {
                    self.next()?;
                }
                Some("time") => {
                    if self.dialect == Dialect::Posix {
                        self.refuse(
                            "time",
                            "`time`, a keyword in bash but a program in POSIX shells such as dash",
                        );
                    }
                    self.next()?;
                    if self.peek_reserved()?.as_deref() == Some("-p") {
                        self.next()?;
                    }
                    if self.peek_reserved()?.as_deref() == Some("--") {
                        self.next()?;
                    }
                    if self.at_list_end()? || matches!(self.peek()?, Peek::Op(";" | "&" | "\n" | "&&" | "||"))
                    {
                        return Ok(());
                    }
                }
                _ => break,
            }
        }
        self.command()?;
        while let Peek::Op("|" | "|&") = self.peek()? {
            self.next()?;
            self.skip_newlines()?;
            self.command()?;
        }
        Ok(())
    }

    fn command(&mut self) -> R<()> {
        self.enter()?;
        let from = self.out.cmds.len();
        match self.peek()? {
            Peek::Word(Some(w)) if is_reserved(&w) => self.compound(&w)?,
            Peek::Word(_) | Peek::Redir => {
                self.simple()?;
                self.leave();
                return Ok(());
            }
            Peek::Op("(") => {
                self.next()?;
                if self.at(0) == Some('(') {
                    self.i += 1;
                    let (body, safe) = self.arithmetic("))")?;
                    if !safe {
                        self.refuse(
                            &format!("(({body}))"),
                            "arithmetic that refers to variables or runs commands",
                        );
                    }
                } else {
                    self.list()?;
                    self.expect_op(")")?;
                }
            }
            Peek::Op(o) => return syntax(o, "a command bash would refuse as a syntax error"),
            Peek::Eof => return syntax("", "a command that ends where bash expects more"),
        }
        let mut writes = Vec::new();
        while self.peek()? == Peek::Redir {
            writes.extend(self.redirect()?);
        }
        self.out.add_writes(from, &writes).map_err(Stop::Unreadable)?;
        self.leave();
        Ok(())
    }

    fn compound(&mut self, word: &str) -> R<()> {
        match word {
            "{" => {
                self.next()?;
                self.list()?;
                self.expect_reserved("}")
            }
            "if" => {
                self.next()?;
                self.list()?;
                self.expect_reserved("then")?;
                self.list()?;
                loop {
                    match self.peek_reserved()?.as_deref() {
                        Some("elif") => {
                            self.next()?;
                            self.list()?;
                            self.expect_reserved("then")?;
                            self.list()?;
                        }
                        Some("else") => {
                            self.next()?;
                            self.list()?;
                            return self.expect_reserved("fi");
                        }
                        _ => return self.expect_reserved("fi"),
                    }
                }
            }
            "while" | "until" => {
                self.next()?;
                self.list()?;
                self.expect_reserved("do")?;
                self.list()?;
                self.expect_reserved("done")
            }
            "for" | "select" => self.for_loop(),
            "case" => self.case(),
            "[[" => self.conditional(),
            "function" => {
                self.next()?;
                let name = match self.next()? {
                    Tok::Word(w) => w.text,
                    _ => return syntax("function", "a function definition bash would refuse"),
                };
                self.refuse(
                    &format!("function {name}"),
                    "a function definition (a name that later runs other commands)",
                );
                if self.peek()? == Peek::Op("(") {
                    self.next()?;
                    self.expect_op(")")?;
                }
                self.skip_newlines()?;
                self.command()
            }
            "coproc" => {
                self.next()?;
                self.refuse("coproc", "a coprocess");
                if let Peek::Word(Some(w)) = self.peek()?
                    && !is_reserved(&w)
                    && self.rest_after_blanks_is('{')
                {
                    self.next()?;
                }
                self.command()
            }
            other => syntax(other, "a reserved word where bash expects a command"),
        }
    }

    fn rest_after_blanks_is(&self, c: char) -> bool {
        self.s[self.i..].iter().find(|x| !x.is_whitespace()) == Some(&c)
    }

    fn for_loop(&mut self) -> R<()> {
        self.next()?;
        if self.peek()? == Peek::Op("(") && self.at(0) == Some('(') {
            self.next()?;
            self.i += 1;
            let (body, safe) = self.arithmetic("))")?;
            if !safe {
                self.refuse(
                    &format!("for (({body}))"),
                    "arithmetic that refers to variables or runs commands",
                );
            }
        } else {
            match self.next()? {
                Tok::Word(w) if w.plain().is_some_and(|n| is_name(&n)) => {}
                _ => return syntax("for", "a `for` loop bash would refuse"),
            }
            self.skip_newlines()?;
            if self.peek_reserved()?.as_deref() == Some("in") {
                self.next()?;
                while let Peek::Word(_) = self.peek()? {
                    if let Tok::Word(w) = self.next()? {
                        self.expand(&w);
                    }
                }
            }
        }
        if let Peek::Op(";" | "\n") = self.peek()? {
            self.next()?;
        }
        self.skip_newlines()?;
        match self.peek_reserved()?.as_deref() {
            Some("do") => {
                self.next()?;
                self.list()?;
                self.expect_reserved("done")
            }
            Some("{") => {
                self.next()?;
                self.list()?;
                self.expect_reserved("}")
            }
            _ => syntax("for", "a `for` loop bash would refuse"),
        }
    }

    fn case(&mut self) -> R<()> {
        self.next()?;
        match self.next()? {
            Tok::Word(w) => {
                self.expand(&w);
            }
            _ => return syntax("case", "a `case` bash would refuse"),
        }
        self.skip_newlines()?;
        self.expect_reserved("in")?;
        loop {
            self.skip_newlines()?;
            if self.peek_reserved()?.as_deref() == Some("esac") {
                self.next()?;
                return Ok(());
            }
            if self.peek()? == Peek::Op("(") {
                self.next()?;
            }
            loop {
                match self.next()? {
                    Tok::Word(_) => {}
                    _ => return syntax("case", "a `case` pattern bash would refuse"),
                }
                if self.peek()? == Peek::Op("|") {
                    self.next()?;
                } else {
                    break;
                }
            }
            self.expect_op(")")?;
            self.list()?;
            match self.peek()? {
                Peek::Op(";;" | ";&" | ";;&") => {
                    self.next()?;
                }
                Peek::Word(Some(w)) if w == "esac" => {}
                _ => return syntax("case", "a `case` bash would refuse"),
            }
        }
    }

    /// `[[ … ]]`: no commands inside, but arithmetic comparisons evaluate their operands.
    fn conditional(&mut self) -> R<()> {
        self.next()?;
        let mut prev: Option<Word> = None;
        let mut arith_next = false;
        loop {
            match self.next()? {
                Tok::Eof => return syntax("[[", "a `[[` that is not closed"),
                Tok::Word(w) => {
                    let plain = w.plain();
                    if plain.as_deref() == Some("]]") {
                        return Ok(());
                    }
                    if arith_next {
                        if !plain.as_deref().is_some_and(is_number) {
                            self.refuse(
                                &w.text,
                                "an arithmetic comparison whose operand is evaluated when the command runs",
                            );
                        }
                        arith_next = false;
                    }
                    match plain.as_deref() {
                        Some("-eq" | "-ne" | "-lt" | "-le" | "-gt" | "-ge") => {
                            if !prev.as_ref().and_then(Word::plain).as_deref().is_some_and(is_number) {
                                let text = prev.as_ref().map_or(String::new(), |p| p.text.clone());
                                self.refuse(&text, "an arithmetic comparison whose operand is evaluated when the command runs");
                            }
                            arith_next = true;
                        }
                        Some("-v" | "-R") => arith_next = false,
                        _ => {}
                    }
                    if prev.as_ref().and_then(Word::plain).as_deref() == Some("-v") && w.text.contains('[') {
                        self.refuse(&w.text, "an array subscript that is evaluated when the command runs");
                    }
                    prev = Some(w);
                }
                Tok::Op(_) | Tok::Redir(_) => prev = None,
            }
        }
    }

    /// Reads one redirection: the file it writes, if it writes one.
    fn redirect(&mut self) -> R<Option<WrittenFile>> {
        let op = match self.next()? {
            Tok::Redir(op) => op,
            _ => return syntax("", "a redirection bash would refuse"),
        };
        let target = match self.next()? {
            Tok::Word(w) => w,
            _ => return syntax(op, "a redirection without a target"),
        };
        if (op == "<<" || op == "<<-") && self.heredocs.len() >= 16 {
            return unreadable("more than 16 here-documents on one line");
        }
        if op == "<<" || op == "<<-" {
            let delim: String = target
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Ch(c, _) => c.to_string(),
                    Piece::Empty => String::new(),
                    Piece::Exp(e) => e.text.clone(),
                })
                .collect();
            let expand = target.pieces.iter().all(|p| matches!(p, Piece::Ch(_, false)));
            self.heredocs.push(Heredoc { delim, strip_tabs: op == "<<-", expand });
        }
        Ok(self.written(op, &target))
    }

    /// The file a redirection `op target` writes: none for input, descriptor duplication
    /// (`>&2`, `>&-`, `>&3-`), `/dev/null`, `/dev/stdout`, `/dev/stderr` and a process
    /// substitution (a pipe to a command read as a command).
    fn written(&mut self, op: &str, target: &Word) -> Option<WrittenFile> {
        if !matches!(op, ">" | ">>" | ">|" | "&>" | "&>>" | "<>" | ">&") {
            return None;
        }
        if let [Piece::Exp(e)] = target.pieces.as_slice()
            && (e.text.starts_with(">(") || e.text.starts_with("<("))
        {
            return None;
        }
        let fields = self.expand(target);
        let known = match fields.as_slice() {
            [expand::Field::Known(path)] => Some(path.clone()),
            _ => None,
        };
        match known {
            Some(path) => {
                let dup = op == ">&" && {
                    let digits = path.strip_suffix('-').unwrap_or(&path);
                    path == "-" || (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
                };
                if dup || matches!(path.as_str(), "/dev/null" | "/dev/stdout" | "/dev/stderr") {
                    return None;
                }
                Some(WrittenFile { path, known: true })
            }
            None => Some(WrittenFile { path: target.text.clone(), known: false }),
        }
    }

    fn simple(&mut self) -> R<()> {
        let mut words: Vec<Word> = Vec::new();
        let mut writes: Vec<WrittenFile> = Vec::new();
        loop {
            match self.peek()? {
                Peek::Word(_) => {
                    let Tok::Word(w) = self.next()? else { return syntax("", "a word that went missing") };
                    if words.is_empty() && w.assignment().is_some() {
                        self.assignment(&w);
                        continue;
                    }
                    if w.array {
                        self.refuse(&w.text, "an array assignment where bash expects an argument");
                    }
                    words.push(w);
                    if words.len() == 1 && self.peek()? == Peek::Op("(") {
                        // `name () body`: a function definition.
                        self.next()?;
                        self.expect_op(")")?;
                        let name = words[0].text.clone();
                        self.refuse(
                            &format!("{name}()"),
                            "a function definition (a name that later runs other commands)",
                        );
                        self.skip_newlines()?;
                        return self.command();
                    }
                }
                Peek::Redir => writes.extend(self.redirect()?),
                _ => break,
            }
        }
        let mut fields = Vec::new();
        for w in &words {
            fields.extend(self.expand(w));
        }
        let from = self.out.cmds.len();
        programs::resolve_in(self.out, fields, self.depth, self.dialect).map_err(Stop::Unreadable)?;
        self.out.add_writes(from, &writes).map_err(Stop::Unreadable)
    }

    /// The words bash makes of `w`; too many is recorded as unresolved.
    fn expand(&mut self, w: &Word) -> Vec<Field> {
        match expand::fields(w, self.dialect == Dialect::Posix) {
            Ok(f) => f,
            Err(why) => {
                self.refuse(&w.text, &why);
                vec![Field::Unknown { text: w.text.clone(), one: false, may_be_flag: true }]
            }
        }
    }

    fn assignment(&mut self, w: &Word) {
        let Some((name, sub)) = w.assignment() else { return };
        if let Some(why) = programs::dangerous_variable(&name) {
            self.refuse(&w.text, why);
        }
        if let Some(sub) = sub
            && !safe_arith(&sub)
        {
            self.refuse(&w.text, "an array subscript that is evaluated when the command runs");
        }
    }
}

fn is_reserved(w: &str) -> bool {
    matches!(
        w,
        "{" | "}"
            | "if"
            | "then"
            | "elif"
            | "else"
            | "fi"
            | "while"
            | "until"
            | "do"
            | "done"
            | "for"
            | "select"
            | "case"
            | "esac"
            | "[["
            | "function"
            | "coproc"
    )
}

fn is_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

fn is_number(s: &str) -> bool {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Whether arithmetic text holds only numbers and operators: a name in it would be evaluated
/// as arithmetic in turn (`a[$(cmd)]` runs `cmd`), so any name is refused.
pub(super) fn safe_arith(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            // A number: `10`, `0x1F`, `2#101`, `64#_@`.
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_alphanumeric() || *d == '#' || *d == '@' || *d == '_')
            {
                chars.next();
            }
        } else if !(c.is_whitespace() || "+-*/%()<>=!&|^~?:,".contains(c)) {
            return false;
        }
    }
    true
}
