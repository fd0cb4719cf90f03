//! Wrappers seen through: their options and values, and the command they run.

use super::{destructive, programs, resolved, rm_rf, unresolved};
use crate::command::{Match, Reading, read_line};

#[test]
fn sudo_with_user_option_is_seen_through() {
    // Regression: `-u`'s value was read as the program in some spellings.
    for line in [
        "sudo -u root rm -rf /x",
        "sudo -g wheel rm -rf /x",
        "sudo --user=root rm -rf /x",
        "sudo --user root rm -rf /x",
        "sudo -u root -- rm -rf /x",
        "sudo -E -H -n -u root rm -rf /x",
        "sudo -iu root rm -rf /x",
        "sudo -C 3 -D /tmp -p x -T 5 rm -rf /x",
        "sudo A=1 rm -rf /x",
    ] {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    assert!(unresolved("sudo -s").contains("sudo"));
    assert!(unresolved("sudo -h host rm -rf /x").contains("-h"));
}

#[test]
fn stdbuf_nice_timeout_with_option_values_are_seen_through() {
    // Regression: `stdbuf -o L rm` read `L` as the program, `nice -n 5 rm` read `5`.
    for line in [
        "stdbuf -o L rm -rf /x",
        "stdbuf -oL -e 0 rm -rf /x",
        "stdbuf --output=L --error 0 rm -rf /x",
        "nice -n 5 rm -rf /x",
        "nice -n5 rm -rf /x",
        "nice -5 rm -rf /x",
        "nice --10 rm -rf /x",
        "nice -n -5 rm -rf /x",
        "nice --adjustment 5 rm -rf /x",
        "timeout 5 rm -rf /x",
        "timeout -s KILL -k 1 5 rm -rf /x",
        "timeout --signal=KILL -- 5s rm -rf /x",
        "nohup rm -rf /x",
        "setsid -w rm -rf /x",
        "ionice -c 3 rm -rf /x",
        "ionice -c2 -n7 -t rm -rf /x",
        "chrt -o 0 rm -rf /x",
        "chrt --idle 0 rm -rf /x",
        "taskset 0x1 rm -rf /x",
        "taskset -c 0,1 rm -rf /x",
        "time rm -rf /x",
        "time -p rm -rf /x",
        "command time -f %e rm -rf /x",
    ] {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    assert_eq!(programs("taskset -p 0x1 123"), ["taskset"]);
    assert_eq!(programs("ionice -p 123"), ["ionice"]);
    assert_eq!(programs("nice"), ["nice"]);
}

#[test]
fn exec_with_argv0_is_seen_through() {
    // Regression: `exec -a NAME rm` read NAME as the program.
    let cmds = resolved("exec -a foo rm -rf /x");
    let rm = cmds.iter().find(|c| c.program == "rm").expect("rm is read");
    assert_eq!(rm.argv, ["foo", "-rf", "/x"]);
    assert!(destructive("exec -a foo rm -rf /x"));
    assert!(destructive("exec -cla foo rm -rf /x"));
    assert!(destructive("exec -- rm -rf /x"));
}

#[test]
fn xargs_long_options_are_seen_through() {
    // Regression: `xargs --max-args 1 rm` read `1` as the program.
    for line in [
        "xargs --max-args 1 rm -rf",
        "xargs --max-args=1 rm -rf",
        "xargs --delimiter '\\n' rm -rf",
        "xargs -d '\\n' -n 1 -P 4 rm -rf",
        "xargs --arg-file=list rm -rf",
        "xargs -0 -r rm -rf",
        "xargs -L1 rm -rf",
        "xargs -I {} rm -rf {}",
        "xargs -i rm -rf {}",
        "xargs --replace=X rm -rf X",
    ] {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    // The arguments xargs reads may be `-r`: a deny rule on `rm -r -f` may hold.
    assert!(matches!(rm_rf().check(read_line("xargs rm").commands()), Match::Maybe(_)));
    // A command line built from its input is not read.
    assert!(unresolved("xargs -I{} sh -c 'echo {}'").contains("{}"));
    assert!(unresolved("xargs bash -c").contains("xargs"));
}

#[test]
fn shell_options_with_values_before_c_are_seen_through() {
    // Regression: `bash -o errexit -c 'rm -rf /'` read `errexit` as the script.
    for line in [
        "bash -o errexit -c 'rm -rf /x'",
        "bash -O extglob -c 'rm -rf /x'",
        "bash +O extglob -c 'rm -rf /x'",
        "bash +o posix -c 'rm -rf /x'",
        "bash -eo pipefail -c 'rm -rf /x'",
        "bash -co errexit 'rm -rf /x'",
        "bash --rcfile /dev/null -c 'rm -rf /x'",
        "bash --norc --noprofile -c 'rm -rf /x'",
        "bash -c -e 'rm -rf /x'",
        "bash -c -- 'rm -rf /x'",
        "sh -e -o nounset -c 'rm -rf /x'",
        "dash -c 'rm -rf /x'",
        "zsh -o shwordsplit -c 'rm -rf /x'",
        "/bin/bash -lc 'rm -rf /x'",
    ] {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    assert!(unresolved("bash --bogus -c 'rm -rf /x'").contains("--bogus"));
    assert!(unresolved("bash -c \"$SCRIPT\"").contains("$SCRIPT"));
}

#[test]
fn wrappers_that_take_a_command_line_are_seen_through() {
    for line in [
        "su -c 'rm -rf /x'",
        "su - root -c 'rm -rf /x'",
        "su root --command='rm -rf /x'",
        "su -s /bin/bash root -c 'rm -rf /x'",
        "runuser -u nobody -- rm -rf /x",
        "runuser -l nobody -c 'rm -rf /x'",
        "pkexec rm -rf /x",
        "pkexec --user root rm -rf /x",
        "script -qc 'rm -rf /x' /dev/null",
        "script -q -c 'rm -rf /x'",
        "flock /tmp/l rm -rf /x",
        "flock -n -w 3 /tmp/l rm -rf /x",
        "flock /tmp/l -c 'rm -rf /x'",
        "flock -c 'rm -rf /x' /tmp/l",
        "unshare -r rm -rf /x",
        "unshare --mount --fork -U rm -rf /x",
        "unshare -mU --propagation private rm -rf /x",
        "watch rm -rf /x",
        "watch -n 1 -d 'rm -rf /x'",
        "watch -x rm -rf /x",
        "nsenter -t 1 -m -u rm -rf /x",
        "nsenter --target 1 --mount rm -rf /x",
        "chroot / rm -rf /x",
        "chroot --userspec=1:1 / rm -rf /x",
        "doas -u root rm -rf /x",
        "env -S 'rm -rf' /x",
        "env --split-string='rm -rf /x'",
        "env -- rm -rf /x",
        "env -u HOME -C /tmp rm -rf /x",
        "busybox rm -rf /x",
        "busybox sh -c 'rm -rf /x'",
        "strace -f -o /dev/null rm -rf /x",
        "fakeroot -- rm -rf /x",
        "find . -exec rm -rf {} +",
        "find / -name x -execdir rm -rf {} \\;",
        "sg wheel 'rm -rf /x'",
        "setpriv --reuid=1 rm -rf /x",
    ] {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    for line in [
        "su",
        "su - root",
        "runuser -l nobody",
        "pkexec",
        "script",
        "unshare -r",
        "nsenter -t 1 -a",
        "chroot /",
        "newgrp wheel",
        "doas -s",
    ] {
        assert!(matches!(read_line(line), Reading::Unresolved { .. }), "{line}: {:?}", read_line(line));
    }
    // The shell such a wrapper starts is a command too.
    assert_eq!(programs("watch ls"), ["watch", "sh", "ls"]);
}

#[test]
fn unknown_wrapper_option_is_unresolved() {
    for (line, part) in [
        ("sudo --bogus rm -rf /x", "--bogus"),
        ("nice -z rm -rf /x", "-z"),
        ("timeout --bogus 5 rm -rf /x", "--bogus"),
        ("env --bogus rm -rf /x", "--bogus"),
        ("xargs --bogus rm -rf", "--bogus"),
        ("stdbuf -z rm -rf /x", "-z"),
        ("sudo --us=root rm -rf /x", "--us=root"),
        ("unshare --bogus rm -rf /x", "--bogus"),
    ] {
        assert_eq!(unresolved(line), part, "{line}");
    }
}

#[test]
fn systemd_run_run0_and_ssh_are_seen_through() {
    // Regression: `systemd-run rm -rf /x` and `ssh host rm -rf /x` were read as one program
    // each, with `rm -rf` as mere arguments.
    for line in [
        "systemd-run rm -rf /x",
        "systemd-run --user --scope -p Nice=5 -E A=1 rm -rf /x",
        "systemd-run --on-active=30 --unit x -- rm -rf /x",
        "run0 rm -rf /x",
        "run0 -u root --chdir=/ rm -rf /x",
        "ssh host rm -rf /x",
        "ssh host 'rm -rf /x'",
        "ssh -p 22 -i key host -t rm -rf /x",
        "ssh -oBatchMode=yes user@host -- rm -rf /x",
        "ssh host sudo rm -rf /x",
    ] {
        assert!(destructive(line), "{line}: {:?}", read_line(line));
    }
    assert_eq!(programs("ssh host ls -l"), ["ssh", "sh", "ls"]);
    for (line, part) in [
        ("ssh host", "ssh host"),
        ("ssh $H ls", "$H"),
        ("ssh host \"$CMD\"", "\"$CMD\""),
        ("ssh -o RemoteCommand='rm -rf /x' host", "ssh -o RemoteCommand=rm -rf /x host"),
        ("ssh -s host sftp", "ssh -s host sftp"),
        ("ssh --bogus host ls", "--bogus"),
        ("systemd-run -p ExecStartPre='/bin/rm -rf /x' true", "ExecStartPre=/bin/rm -rf /x"),
        ("systemd-run -E LD_PRELOAD=/x.so ls", "LD_PRELOAD=/x.so"),
        ("systemd-run --shell", "systemd-run --shell"),
        ("systemd-run --bogus rm -rf /x", "--bogus"),
        ("run0", "run0"),
    ] {
        assert_eq!(unresolved(line), part, "{line}");
    }
    for line in ["ssh -N -L 8080:localhost:80 host", "ssh -V", "systemd-run --version"] {
        assert!(read_line(line).is_resolved(), "{line}: {:?}", read_line(line));
    }
}
