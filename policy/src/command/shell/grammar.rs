//! The grammar above words: lists, pipelines, compound commands (`if`, `for`, `case`,
//! `{ }`, `( )`, `[[ ]]`, `(( ))`), redirections and here-documents, and simple commands,
//! which go to the resolver.

use super::{
    CLOSERS, Dialect, Heredoc, Parser, Peek, R, Stop, Tok, is_name, is_number, is_reserved, safe_arith,
    syntax, unreadable,
};
use crate::command::expand::{self, Field, Piece, Word};
use crate::command::{WrittenFile, programs};

impl Parser<'_> {
    /// Reads the bodies of the here-documents started on the line just ended.
    pub(super) fn read_heredocs(&mut self) -> R<()> {
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

    pub(super) fn script(&mut self) -> R<()> {
        self.list()?;
        match self.peek()? {
            Peek::Eof => Ok(()),
            Peek::Word(Some(w)) => syntax(&w, "a command bash would refuse as a syntax error"),
            Peek::Op(o) => syntax(o, "a command bash would refuse as a syntax error"),
            _ => syntax("", "a command bash would refuse as a syntax error"),
        }
    }

    pub(super) fn at_list_end(&mut self) -> R<bool> {
        Ok(match self.peek()? {
            Peek::Eof => true,
            Peek::Op(")" | ";;" | ";&" | ";;&") => true,
            Peek::Word(Some(w)) => CLOSERS.contains(&w.as_str()),
            _ => false,
        })
    }

    /// Commands separated by `;`, `&` and newlines, up to a closing word, `)` or `;;`.
    pub(super) fn list(&mut self) -> R<()> {
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

    pub(super) fn and_or(&mut self) -> R<()> {
        self.pipeline()?;
        while let Peek::Op("&&" | "||") = self.peek()? {
            self.next()?;
            self.skip_newlines()?;
            self.pipeline()?;
        }
        Ok(())
    }

    pub(super) fn pipeline(&mut self) -> R<()> {
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

    pub(super) fn command(&mut self) -> R<()> {
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

    pub(super) fn compound(&mut self, word: &str) -> R<()> {
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

    pub(super) fn rest_after_blanks_is(&self, c: char) -> bool {
        self.s[self.i..].iter().find(|x| !x.is_whitespace()) == Some(&c)
    }

    pub(super) fn for_loop(&mut self) -> R<()> {
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

    pub(super) fn case(&mut self) -> R<()> {
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
    pub(super) fn conditional(&mut self) -> R<()> {
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
    pub(super) fn redirect(&mut self) -> R<Option<WrittenFile>> {
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
    pub(super) fn written(&mut self, op: &str, target: &Word) -> Option<WrittenFile> {
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

    pub(super) fn simple(&mut self) -> R<()> {
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
    pub(super) fn expand(&mut self, w: &Word) -> Vec<Field> {
        match expand::fields(w, self.dialect == Dialect::Posix) {
            Ok(f) => f,
            Err(why) => {
                self.refuse(&w.text, &why.to_string());
                vec![Field::Unknown { text: w.text.clone(), one: false, may_be_flag: true }]
            }
        }
    }

    pub(super) fn assignment(&mut self, w: &Word) {
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
