//! A reader of bash's grammar: lists, pipelines, compound commands (`if`, `for`, `case`,
//! `{ }`, `( )`, `[[ ]]`, `(( ))`), words with their quoting (`'…'`, `"…"`, `$'…'`, `\`),
//! expansions (`$x`, `${…}`, `$(…)`, backquotes, `$((…))`, `<(…)`), redirections and
//! here-documents. Every simple command it finds goes to [`super::programs::resolve`]; the
//! commands inside substitutions are read as commands too. What it cannot read with certainty
//! is recorded as unresolved; what no shell could read (an unbalanced quote) is an error.

mod expansions;
mod grammar;
mod words;

use super::expand::Word;
use super::{MAX_DEPTH, Out};
use crate::command::{ReadError, refuse};

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
    Unreadable(ReadError),
    /// A construct this reader does not follow: recorded as unresolved.
    Syntax(String, String),
}

type R<T> = Result<T, Stop>;

fn syntax<T>(part: &str, why: &str) -> R<T> {
    Err(Stop::Syntax(part.to_owned(), why.to_owned()))
}

fn unreadable<T>(why: impl Into<ReadError>) -> R<T> {
    Err(Stop::Unreadable(why.into()))
}

/// Reads `text` as a script into `out`. `Err` when it cannot be read strictly.
pub(super) fn read_script(
    out: &mut Out,
    text: &str,
    depth: usize,
    dialect: Dialect,
) -> Result<(), ReadError> {
    if depth > MAX_DEPTH {
        return refuse(format!("commands nested more than {MAX_DEPTH} deep"));
    }
    if let Some(c) = text.chars().find(|c| c.is_control() && *c != '\n' && *c != '\t') {
        return refuse(format!("control character U+{:04X} in a command", u32::from(c)));
    }
    let mut p =
        Parser { s: text.chars().collect(), i: 0, depth, dialect, out, heredocs: Vec::new(), peeked: None };
    match p.script() {
        Ok(()) => Ok(()),
        Err(Stop::Unreadable(e)) => refuse(e),
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

    // ---- grammar ----
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
