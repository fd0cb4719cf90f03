//! Matching what was read: `rm -rf` in every spelling, flags, and allow rules that hold only
//! for commands read in full.

use serde_json::json;

use super::{destructive, program_writing, read, resolved, rm_rf};
use crate::command::{CommandCond, CommandMatch, Flag, Match, Reading, read_line, read_params};
use crate::model::NamePat;

#[test]
fn every_spelling_of_rm_rf_is_rm_with_r_and_f() {
    // Regression: `pattern: "rm -rf"` let each of these through as a low-risk DEFER.
    for v in [
        json!("rm -rf /"),
        json!("rm -Rf /"),
        json!("rm -fr /"),
        json!("/bin/rm -r -f /"),
        json!("rm --recursive --force /"),
        json!("rm / -rf"),
        json!(["rm", "-rf", "/"]),
        json!("rm\u{a0}-rf /"),
        json!("rm\u{2003}-r\u{3000}-f /"),
        json!("sudo rm -rf /"),
        json!("sudo -u root -- rm -rf /"),
        json!("env -i PATH=/bin rm -rf /"),
        json!("env -S 'rm -rf' /"),
        json!("sh -c 'rm -rf /'"),
        json!("bash -lc \"cd / && rm -rf .\""),
        json!("ls; rm -rf /"),
        json!("ls && sudo sh -c \"nohup rm -rf / &\""),
        json!("echo $(rm -rf /)"),
        json!("echo `rm -rf /`"),
        json!("FOO=1 rm -rf /"),
        json!("timeout 5 nice -n 10 rm -rf /"),
        json!(["sh", "-c", "rm -rf /"]),
        json!("r\\m -rf /"),
        json!("'rm' -rf /"),
    ] {
        let r = read(v.clone());
        assert!(rm_rf().holds(r.commands()), "{v} read as {r:?}");
    }
    for v in [json!("rm -r /tmp/x"), json!("rm -f x"), json!("echo 'rm -rf /'"), json!("ls -rf")] {
        assert!(!rm_rf().holds(read(v.clone()).commands()), "{v}");
    }
}

#[test]
fn in_an_allow_rule_every_command_must_match() {
    let ls = CommandCond {
        matchers: vec![CommandMatch {
            programs: vec![NamePat::new("ls")],
            flags: vec![],
            args: vec![],
            writes: vec![],
        }],
        all: true,
    };
    assert!(ls.holds(&resolved("ls -la /tmp")));
    assert!(!ls.holds(&resolved("ls; rm -rf /")));
    assert!(!ls.holds(&resolved("ls $(rm -rf /)")));
    assert!(!ls.holds(&resolved("sudo ls")));
    assert!(ls.holds(&resolved("ls 2>&1")));
    assert!(!ls.holds(&[]));
    let args = CommandMatch {
        programs: vec![NamePat::new("dd")],
        flags: vec![],
        args: vec![NamePat::new("if=*")],
        writes: vec![],
    };
    assert_eq!(args.matches(&resolved("dd if=/dev/zero of=/dev/sda")[0], false), Match::Yes);
    let Reading::Resolved(c) = read_params(&json!({"command": "rm", "args": ["-rf", "/"]})) else { panic!() };
    assert_eq!(c[0].short, vec!['r', 'f']);
}

#[test]
fn a_word_known_only_when_the_command_runs_may_be_any_flag() {
    // Regression: `X=-rf; rm $X /` is `rm -rf /` to bash.
    for line in
        ["rm $X /x", "rm -f \"$f\"", "rm -f *", "rm -f $(cat list)", "rm -f -$R /x", "echo x | xargs rm -f"]
    {
        assert!(matches!(rm_rf().check(read_line(line).commands()), Match::Maybe(_)), "{line}");
    }
    // After `--`, or starting with a character other than `-`, a word is no flag.
    for line in ["rm -f -- \"$f\"", "rm -f ./*.o", "rm -f \"./$f\"", "rm -f x\"$Y\""] {
        assert_eq!(rm_rf().check(read_line(line).commands()), Match::No, "{line}");
    }
}

#[test]
fn abbreviated_long_flags_are_the_flag_in_deny_rules() {
    // Regression: GNU rm reads `--recur` as `--recursive` and `--r --f` as `--recursive
    // --force`; the matcher compared only full spellings, so the default policy's
    // `shell-destructive` let them through as a grantable DEFER.
    for line in ["rm --recur --forc /x", "rm --r --f /x", "rm --recursive --f /x", "rm -r --for=x /x"] {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    assert!(!destructive("rm --force /x"));
    assert!(!destructive("rm --recursive-x --force /x"));
    // An allow rule asking for a flag holds only for its full spelling.
    let allow = CommandCond {
        matchers: vec![CommandMatch {
            programs: vec![NamePat::new("rm")],
            flags: vec![vec![Flag::Long("interactive".into())]],
            args: vec![],
            writes: vec![],
        }],
        all: true,
    };
    assert_eq!(allow.check(&resolved("rm --interactive x")), Match::Yes);
    assert_eq!(allow.check(&resolved("rm --inter x")), Match::No);
}

#[test]
fn a_line_not_read_in_full_never_surely_matches_an_allow_rule() {
    // Regression: `$X` alone read as no command at all, so an allow rule for any program was
    // passed over as not matching (a default DENY) instead of sending it to a person.
    let any = program_writing(true, "*", &[]);
    for line in ["$X", "$(echo rm) -rf /", "`echo rm` x", "eval $X", "sudo $X", "bash -c \"$X\"", "ls; $X"] {
        assert!(
            matches!(any.check_reading(&read_line(line)), Match::Maybe(_)),
            "{line}: {:?}",
            read_line(line)
        );
    }
    // What was read still decides where it does not match.
    let ls = program_writing(true, "ls", &[]);
    assert_eq!(ls.check_reading(&read_line("rm -rf /x; $X")), Match::No);
    // Deny rules see only what was read.
    assert_eq!(rm_rf().check_reading(&read_line("$X")), Match::No);
}
