//! Tokens and words: operators, redirections, and a word's quoting (`'…'`, `"…"`,
//! `$'…'`, `\`), arrays and balanced parentheses.

use super::{Dialect, OPS, Parser, R, REDIRS, Tok, safe_arith, syntax, unreadable};
use crate::command::expand::{Exp, Piece, Word};

impl Parser<'_> {
    pub(super) fn lex(&mut self) -> R<Tok> {
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
    pub(super) fn word(&mut self) -> R<Word> {
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

    pub(super) fn rest_of_word(&self) -> String {
        self.s[self.i..]
            .iter()
            .take(80)
            .take_while(|c| !c.is_whitespace() && !";&|<>()".contains(**c))
            .collect()
    }

    /// `(…)` of an extended glob, from `(` to its `)`.
    pub(super) fn balanced_parens(&mut self) -> R<()> {
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
    pub(super) fn array(&mut self, w: &mut Word) -> R<()> {
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

    pub(super) fn double_quoted(&mut self, w: &mut Word) -> R<()> {
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

    /// The body of `$'…'` from after the quote: decoded as bash does.
    pub(super) fn ansi_c(&mut self, w: &mut Word) -> R<()> {
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

    pub(super) fn hex_digits(&mut self, max: usize) -> Option<u32> {
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
}
