//! Expansions inside a word: `$x`, `${…}` with its operators, `$(…)` and backquotes (whose
//! commands are read as commands), and `$((…))`.

use super::{Dialect, Parser, R, Stop, Tok, read_script, safe_arith, syntax, unreadable};
use crate::command::expand::{Exp, Piece, Word};

impl Parser<'_> {
    /// Whatever starts with `$` at `self.i`.
    pub(super) fn dollar(&mut self, w: &mut Word, quoted: bool) -> R<()> {
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

    /// Arithmetic up to `end` (`))` or `]`): its text and whether it is only numbers.
    pub(super) fn arithmetic(&mut self, end: &str) -> R<(String, bool)> {
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
    pub(super) fn substitution(&mut self) -> R<()> {
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
    pub(super) fn backquote(&mut self, w: &mut Word, quoted: bool) -> R<()> {
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
    pub(super) fn parameter(&mut self, quoted: bool) -> R<bool> {
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
    pub(super) fn skip_parameter_word(&mut self) -> R<()> {
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
}
