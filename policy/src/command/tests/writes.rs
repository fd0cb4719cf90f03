//! Files a command writes through its output redirections, and the `writes` matcher.

use super::{destructive, program_writing, resolved, writes};
use crate::command::{CommandCond, CommandMatch, Match, read_line};
use crate::model::NamePat;

#[test]
fn output_redirections_are_files_the_command_writes() {
    // Regression: `ls > /etc/passwd` was only `ls` to the reader.
    for line in [
        "ls > /tmp/x",
        "ls &>/tmp/x",
        "ls >/tmp/x 2>&1",
        "ls >> /tmp/x",
        "ls >| /tmp/x",
        "ls 2> /tmp/x",
        "ls <> /tmp/x",
        "ls &>> /tmp/x",
        "ls >& /tmp/x",
        "ls 3>/tmp/x",
        "ls {fd}>/tmp/x",
        "> /tmp/x ls",
        "ls >'/tmp/x'",
    ] {
        assert_eq!(writes(line), ["ls:/tmp/x"], "{line}");
    }
    for line in [
        "ls >/dev/null",
        "ls > /dev/null 2>&1",
        "ls 2>&1",
        "ls >&2",
        "ls 3>&-",
        "ls 3>&1-",
        "cat < /etc/passwd",
        "cat <<< x",
        "cat <<EOF\nx\nEOF",
        "ls > >(cat)",
        "ls 2>/dev/stderr",
    ] {
        assert_eq!(writes(line), Vec::<String>::new(), "{line}");
    }
    assert_eq!(writes("ls > \"$f\""), ["ls:?\"$f\""]);
    assert_eq!(writes("ls > ~/x"), ["ls:?~/x"]);
    assert_eq!(writes("sudo ls > /x"), ["sudo:/x", "ls:/x"]);
    // A compound command's redirection applies to every command in it.
    assert_eq!(writes("{ ls; cat y; } > /x"), ["ls:/x", "cat:/x"]);
    assert_eq!(writes("( ls ) > /x"), ["ls:/x"]);
    assert_eq!(writes("for i in 1; do ls; done >> /x"), ["ls:/x"]);
    assert_eq!(writes("sh -c 'ls > /x'"), ["ls:/x"]);
    // Without a command, the redirection still truncates the file: a command without a program.
    assert_eq!(writes("> /etc/passwd"), [":/etc/passwd"]);
    assert_eq!(writes("ls; X=1 >/x"), [":/x"]);
    assert_eq!(writes("(( 1 )) > /x"), [":/x"]);
    assert_eq!(writes("[[ a ]] > /x"), [":/x"]);
}

#[test]
fn an_allow_rule_covers_a_file_written_only_when_it_lists_it() {
    // Regression: an allow rule for `ls` and `cat` allowed `ls > /etc/passwd`.
    let read_only = CommandCond {
        matchers: vec![CommandMatch {
            programs: vec![NamePat::new("ls"), NamePat::new("cat")],
            flags: vec![],
            args: vec![],
            writes: vec![],
        }],
        all: true,
    };
    for line in [
        "ls > /etc/passwd",
        "ls &>/tmp/x",
        "ls > /tmp/x",
        "ls 2>/tmp/x",
        "ls; > /etc/passwd",
        "{ ls; } > /x",
        "ls > \"$f\"",
        "cat <> /x",
    ] {
        assert_eq!(read_only.check_reading(&read_line(line)), Match::No, "{line}");
    }
    for line in ["ls", "ls >/dev/null 2>&1", "cat < /etc/passwd", "ls 2>&1 | cat"] {
        assert_eq!(read_only.check_reading(&read_line(line)), Match::Yes, "{line}");
    }
    let to_tmp = program_writing(true, "ls", &["/tmp/*"]);
    assert_eq!(to_tmp.check(&resolved("ls > /tmp/x")), Match::Yes);
    assert_eq!(to_tmp.check(&resolved("ls &> /tmp/a/b")), Match::Yes);
    assert_eq!(to_tmp.check(&resolved("ls")), Match::Yes);
    assert_eq!(to_tmp.check(&resolved("ls > /tmp/../etc/passwd")), Match::No);
    assert_eq!(to_tmp.check(&resolved("ls > /tmp/x 2> /var/log/y")), Match::No);
    assert!(matches!(to_tmp.check(&resolved("ls > \"$f\"")), Match::Maybe(_)));
    assert_eq!(program_writing(true, "ls", &["*"]).check(&resolved("ls > \"$f\"")), Match::Yes);
    // Elsewhere, `writes` holds when one file written is listed.
    let etc = program_writing(false, "*", &["/etc/*"]);
    assert_eq!(etc.check(&resolved("ls > /tmp/x; echo x >> /etc/hosts")), Match::Yes);
    assert_eq!(etc.check(&resolved("> /etc/passwd")), Match::Yes);
    assert_eq!(etc.check(&resolved("ls > /tmp/x")), Match::No);
    assert_eq!(etc.check(&resolved("ls")), Match::No);
    assert!(matches!(etc.check(&resolved("ls > \"$f\"")), Match::Maybe(_)));
    // A deny matcher without `writes` ignores redirections.
    assert!(destructive("rm -rf /x > /dev/null 2>&1"));
    assert!(destructive("rm -rf /x > /tmp/log"));
}
