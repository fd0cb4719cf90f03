//! The shell grammar: quoting, brace expansion, compound commands and substitutions, dialects,
//! and the limits that make what cannot be read strictly an error.

use serde_json::json;

use super::{destructive, programs, read, resolved, rm_rf, unresolved};
use crate::command::{Reading, read_line, read_params, shell};

#[test]
fn what_cannot_be_read_strictly_is_an_error() {
    for v in [
        json!("rm -rf '/"),
        json!("echo \"x"),
        json!("echo $(rm"),
        json!("echo `x"),
        json!("rm -rf /\r"),
        json!("r\u{0430}m -rf /"), // Cyrillic a
        json!("\u{0440}m -rf /"),  // Cyrillic er
        json!(["rm", 5]),
        json!(5),
    ] {
        let got = read(v.clone());
        assert!(matches!(got, Reading::Unreadable(_)), "{v} was read: {got:?}");
    }
    // An en dash is not a dash: the word is an argument, not a flag.
    assert!(!rm_rf().holds(read(json!("rm \u{2013}rf /")).commands()));
    let Reading::Unreadable(e) = read_params(&json!({"command": "\u{0440}m -rf /"})) else { panic!() };
    assert!(e.starts_with("`params.command`:") && e.contains("outside ASCII"), "{e}");
    assert_eq!(read_params(&json!({"path": "/"})), Reading::NoCommand);
}

#[test]
fn brace_expansion_rm_is_destructive() {
    // Regression: `{rm,-rf} /x` was one word to the reader and `rm -rf /x` to bash.
    for line in
        ["{rm,-rf} /x", "{rm,-r,-f,/x}", "r{m,} -rf /x", "rm -{r,f} /x", "rm {-r,-f} /x", "{sudo,rm} -rf /x"]
    {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    assert_eq!(resolved("echo {1..3}")[0].args, ["1", "2", "3"]);
    assert_eq!(resolved("echo '{a,b}'")[0].args, ["{a,b}"]);
    assert!(unresolved("echo {1..100000}").contains("{1..100000}"));
}

#[test]
fn ansi_c_quoted_program_decoded() {
    // Regression: `$'\x72m' -rf /` was the program `$\x72m` to the reader and `rm` to bash.
    for line in [
        "$'rm' -rf /x",
        "$'\\x72\\x6d' -rf /x",
        "$'\\162\\155' -rf /x",
        "$'\\u0072m' -rf /x",
        "$'\\U00000072m' -rf /x",
        "rm $'-\\x72f' /x",
        "rm $'-r' $'\\x2df' /x",
        "$'rm\\0junk' -rf /x",
    ] {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    // A decoded look-alike is still refused.
    assert!(matches!(read_line("$'\\u0440m' -rf /x"), Reading::Unreadable(_)));
    assert_eq!(resolved("printf $'a\\tb\\n'")[0].args, ["a\tb\n"]);
}

#[test]
fn posix_sh_scripts_refuse_what_dash_reads_differently() {
    // dash reads `{rm,-rf}` as one word and `$'rm'` as `$rm`; bash does not.
    assert!(unresolved("sh -c '{rm,-rf} /x'").contains("{rm,-rf}"));
    assert!(unresolved("sh -c \"\\$'rm' -rf /x\"").contains("$'rm'"));
    assert!(unresolved("dash -c 'time rm'").contains("time"));
    assert!(destructive("bash -c '{rm,-rf} /x'"));
}

#[test]
fn compound_commands_and_substitutions_are_read() {
    assert_eq!(
        programs("if test -f x; then cat x; elif ls; then :; else rm y; fi"),
        ["test", "cat", "ls", ":", "rm"]
    );
    assert_eq!(programs("for f in $(ls); do wc -l \"$f\"; done"), ["ls", "wc"]);
    assert_eq!(programs("case $(id) in a|b) rm x ;; (*) ls ;; esac"), ["id", "rm", "ls"]);
    assert_eq!(programs("while read l; do echo \"$l\"; done < <(cat f)"), ["read", "echo", "cat"]);
    assert_eq!(programs("{ ls; } && ( cd /tmp; pwd ) || ! true"), ["ls", "cd", "pwd", "true"]);
    assert_eq!(programs("x=$(rm a) y=`rm b` ls"), ["rm", "rm", "ls"]);
    assert_eq!(programs("cat <<EOF\n$(rm a)\nEOF\nls"), ["rm", "cat", "ls"]);
    assert_eq!(programs("cat <<'EOF'\n$(rm a)\nEOF\nls"), ["cat", "ls"]);
    assert_eq!(programs("echo \"${x:-$(rm a)}\""), ["rm", "echo"]);
    assert_eq!(programs("ls |& cat 2>&1 >/dev/null & wait"), ["ls", "cat", "wait"]);
    assert_eq!(programs("[[ -f $(rm a) ]] && ls"), ["rm", "ls"]);
    assert_eq!(programs("ls # rm -rf /"), ["ls"]);
    assert_eq!(programs("echo a\\\n  b"), ["echo"]);
    assert!(unresolved("if true; then ls").contains("fi"));
    // After `timeout`'s duration, `--` is the program (GNU timeout runs a command named `--`).
    assert_eq!(programs("timeout 5 -- rm -rf /x"), ["timeout", "--"]);
    assert!(unresolved("ls )").contains(')'));
    assert!(unresolved("fi").contains("fi"));
}

#[test]
fn limits_are_errors() {
    let nest = |n: usize| (0..n).fold("ls".to_owned(), |acc, _| format!("bash -c {}", shell::quote(&acc)));
    assert!(read_line(&nest(8)).is_resolved());
    assert!(matches!(read_line(&nest(9)), Reading::Unreadable(e) if e.contains("nested")));
    let nested = (0..12).fold("rm -rf /x".to_owned(), |acc, _| format!("nice {acc}"));
    assert!(matches!(read_line(&nested), Reading::Unreadable(e) if e.contains("nested")));
    let many = "ls;".repeat(300);
    assert!(matches!(read_line(&many), Reading::Unreadable(e) if e.contains("more than")));
    let parens = format!("{}ls{}", "( ".repeat(500), " )".repeat(500));
    assert!(matches!(read_line(&parens), Reading::Unreadable(e) if e.contains("nested")));
    let dollars = format!("{}ls{}", "$(".repeat(500), ")".repeat(500));
    assert!(matches!(read_line(&dollars), Reading::Unreadable(_)));
    let params = format!("echo {}x{}", "${a:-".repeat(500), "}".repeat(500));
    assert!(matches!(read_line(&params), Reading::Unreadable(_)));
}

#[test]
fn hostile_lines_are_refused_within_the_limits() {
    // Nesting across scripts counts as one budget; none of these may exhaust the stack.
    let mut deep = "ls".to_owned();
    for _ in 0..8 {
        deep = format!("bash -c {}", shell::quote(&format!("{}{deep}{}", "( ".repeat(60), " )".repeat(60))));
    }
    assert!(matches!(read_line(&deep), Reading::Unreadable(e) if e.contains("nested")));
    // A long word is read like any other.
    assert!(read_line(&format!("echo {}", "$'\\x41'".repeat(20_000))).is_resolved());
    for line in [
        "{".repeat(100_000),
        format!("echo {}", "{1..1}".repeat(10_000)),
        format!("echo {}{}", "{a,b}".repeat(9), "x".repeat(5000)),
        format!("cat {}", "<<a ".repeat(100)),
        "$'".repeat(50_001),
        "\"$(".repeat(30_000),
        format!("a=({})", "(".repeat(10_000)),
        "${".repeat(50_000),
        "`".repeat(10_001),
    ] {
        let r = read_line(&line);
        assert!(!r.is_resolved(), "{:?} was resolved", &line[..40]);
    }
}
