"""Runs the README's commands in order, as a newcomer would, and checks they print what it shows.

Usage: python tour.py README.md FARAMESH_BIN PYTHON

Every ```console and ```sh block is run top to bottom in one shell session (exports carry over)
as after the README's `pip install .` in an active venv: `faramesh` on PATH is the binary under
test, and `python` is PYTHON (a venv with our SDK). HOME is a fresh directory; the working
directory is `~/faramesh` there, holding the repository's `README.md`, `policies/` and `sdk/`
(links), so files the tour writes land there. ```yaml blocks are policies: `faramesh policy
check` must accept them.

A ```python or ```js block whose first line names a file (`# first.py`, `// first.mjs`) is
written to that file, for the commands after it to run (`$ python first.py`); any other
```python block runs with PYTHON. A block in a language the tour cannot run fails unless
skipped.

- In a console block, `$ ` starts a command (a trailing `\\` continues it) and the lines up to
  the next command are its output: each must match a line the command printed, in order (other
  lines may come between). In expected output `…` matches anything; numbers, hex ids, times and
  `/home/me` match whatever this run has. An id shown in the README is bound to the id printed
  in its place, and later commands that use it (or a prefix of it) get the real one.
- A command that runs until Ctrl-C (`faramesh serve`, `faramesh dev`, `faramesh tail`) starts
  in the background; the tour waits for its output to match, and sends it SIGINT once its
  output matched (`tail`), or at the end of its section (a daemon: the commands after it in the
  section are the second shell's, and the README stops it before the next section).
- The port `8000` and `8443` in commands become free ports (FARAMESH_PORT is set to match).
- A block right after `<!-- tour: skip REASON -->` is not run; the reason is printed.

Prints each command with ok/FAIL, and exits 1 on any failure.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "pylib"))
from faramesh_testd import free_port  # noqa: E402

FOREVER = re.compile(r"^(faramesh (serve|dev)\b|faramesh tail\b)")
HEX = re.compile(r"\b[0-9a-f]{8,64}\b")


@dataclass
class Block:
    lang: str
    lines: list[str]
    line_no: int
    skip: str | None = None
    section: int = 0


@dataclass
class Command:
    text: str
    expected: list[str] = field(default_factory=list)


def blocks(readme: str) -> list[Block]:
    out: list[Block] = []
    lines = readme.splitlines()
    i = 0
    section = 0
    skip: str | None = None
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section += 1
        m = re.match(r"<!-- tour: skip (.*) -->", line.strip())
        if m:
            skip = m.group(1)
        elif line.startswith("```") and len(line) > 3:
            lang, start, body = line[3:].strip(), i + 1, []
            i += 1
            while i < len(lines) and not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            out.append(Block(lang, body, start, skip, section))
            skip = None
        elif line.strip() and not line.startswith("<!--"):
            skip = None if line.startswith("#") else skip
        i += 1
    return out


def commands(block: Block) -> list[Command]:
    cmds: list[Command] = []
    if block.lang == "sh":
        joined = "\n".join(block.lines).replace("\\\n", "")
        for line in joined.splitlines():
            text = strip_comment(line).strip()
            if text:
                cmds.append(Command(text))
        return cmds
    current: Command | None = None
    continuing = False
    for line in block.lines:
        if continuing and current is not None:
            current.text += "\n" + line
            continuing = line.endswith("\\")
        elif line.startswith("$ "):
            current = Command(line[2:])
            cmds.append(current)
            continuing = line.endswith("\\")
        elif current is not None and line.strip():
            current.expected.append(line)
    for c in cmds:
        c.text = strip_comment(c.text.replace("\\\n", " "))
    return cmds


def strip_comment(text: str) -> str:
    """Drops a trailing `# comment` that is outside quotes."""
    quote = None
    for i, ch in enumerate(text):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or text[i - 1] in " \t"):
            return text[:i].rstrip()
    return text


class Tour:
    def __init__(self, bin_path: str, python: str, home: Path, cwd: Path) -> None:
        self.home, self.cwd, self.python = home, cwd, python
        self.ids: dict[str, str] = {}
        self.ports = {"8000": str(free_port()), "8443": str(free_port())}
        self.state = home / ".tour-env"
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("FARAMESH_", "VIRTUAL_ENV", "XDG_")) and k not in ("INVOCATION_ID", "LISTEN_FDS", "NOTIFY_SOCKET", "JOURNAL_STREAM")}
        path = f"{Path(bin_path).parent}:{Path(python).parent}:{env.get('PATH', '')}"
        env.update(HOME=str(home), PATH=path, FARAMESH_PORT=self.ports["8000"], NO_COLOR="1", FARAMESH_LOG="warn")
        self.env = env
        self.state.write_text("")
        self.background: list[tuple[str, subprocess.Popen[str], Path]] = []
        self.failures = 0
        self.section = 0
        # Snippet files written and not yet run by a command (file name → README line).
        self.unrun: dict[str, int] = {}

    def substitute(self, text: str) -> str:
        for readme_port, port in self.ports.items():
            text = text.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}")
        for shown, real in sorted(self.ids.items(), key=lambda kv: -len(kv[0])):
            text = re.sub(rf"\b{shown}", real, text)
        # A prefix of a bound id (`approve 5c321b5a`) stands for the same prefix of the real one.
        def prefix(m: re.Match[str]) -> str:
            word = m.group(0)
            for shown, real in self.ids.items():
                if shown.startswith(word) and shown != word:
                    return real[: len(word)]
            return word
        return HEX.sub(prefix, text)

    def shell(self, text: str) -> str:
        return (f"set -a; . {self.state}; set +a; cd {self.cwd}\n{text}\n"
                f"__rc=$?; export -p > {self.state}; exit $__rc")

    def report(self, ok: bool, what: str, detail: str = "") -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {what}")
        if not ok:
            self.failures += 1
            print("     " + detail.replace("\n", "\n     "))

    def match(self, expected: list[str], actual: str) -> str | None:
        """Binds ids and returns None when every expected line matches in order, else why not."""
        lines = actual.splitlines()
        at = 0
        for want in expected:
            for readme_port, port in self.ports.items():
                want = want.replace(f"127.0.0.1:{readme_port}", f"127.0.0.1:{port}")
            pattern, ids = line_pattern(want, str(self.home))
            while at < len(lines):
                m = pattern.search(lines[at])
                at += 1
                # An id the README showed before must be the same id here.
                pairs = list(zip(ids, m.groups(), strict=True)) if m else []
                if m and all(self.ids.get(shown, got) == got for shown, got in pairs if shown):
                    for shown, got in pairs:
                        if shown:
                            self.ids.setdefault(shown, got)
                    break
            else:
                return f"no line matches {want!r}"
        return None

    def run_block(self, block: Block) -> None:
        if block.section != self.section:
            # The README stops a daemon it started in the foreground before the next section.
            self.stop_background()
            self.section = block.section
        if block.skip:
            print(f"skip README.md:{block.line_no} ({block.lang}): {block.skip}")
            return
        if block.lang == "yaml":
            path = self.cwd / "tour-snippet.yaml"
            path.write_text("\n".join(block.lines) + "\n")
            done = subprocess.run(["faramesh", "policy", "check", str(path)], env=self.env, capture_output=True, text=True)
            self.report(done.returncode == 0, f"README.md:{block.line_no} the policy snippet passes `policy check`", done.stderr)
            return
        named = re.match(r"(?:#|//) ([\w.-]+\.(?:py|mjs))\b", block.lines[0]) if block.lines else None
        if block.lang in ("python", "js") and named:
            (self.cwd / named.group(1)).write_text(self.substitute("\n".join(block.lines)) + "\n")
            print(f"file README.md:{block.line_no} ({block.lang}) written to {named.group(1)}")
            self.unrun[named.group(1)] = block.line_no
            return
        if block.lang == "python":
            path = self.cwd / "tour-snippet.py"
            path.write_text(self.substitute("\n".join(block.lines)) + "\n")
            env = dict(self.env)
            env.update(self.exported())
            done = subprocess.run([self.python, str(path)], env=env, cwd=self.cwd, capture_output=True, text=True, timeout=60)
            self.report(done.returncode == 0, f"README.md:{block.line_no} the Python snippet runs", done.stdout + done.stderr)
            if os.environ.get("TOUR_VERBOSE"):
                print("     " + (done.stdout + done.stderr).replace("\n", "\n     "))
            return
        if block.lang not in ("console", "sh"):
            self.report(False, f"README.md:{block.line_no} a ```{block.lang} block the tour cannot run",
                        "name the file it is (a first line `# name.py` or `// name.mjs`) and run it in a console block, or skip it")
            return
        for cmd in commands(block):
            self.run_command(cmd)

    def exported(self) -> dict[str, str]:
        done = subprocess.run(["bash", "-c", f". {self.state}; env"], env=self.env, capture_output=True, text=True)
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line and line.startswith("FARAMESH_"))

    def run_command(self, cmd: Command) -> None:
        text = self.substitute(cmd.text)
        for name in [n for n in self.unrun if re.search(rf"(^|\s){re.escape(n)}(\s|$)", text)]:
            del self.unrun[name]
        if FOREVER.match(text):
            self.start_background(text, cmd)
            return
        done = subprocess.run(["bash", "-c", self.shell(text)], env=self.env, capture_output=True, text=True, timeout=120)
        output = done.stdout + done.stderr
        errors_shown = any(line.startswith("error:") for line in cmd.expected)
        if done.returncode != 0 and not errors_shown:
            self.report(False, f"$ {text}", f"exit {done.returncode}:\n{output}")
            return
        why = self.match(cmd.expected, output)
        self.report(why is None, f"$ {text}", f"{why}\n--- printed:\n{output}")
        if os.environ.get("TOUR_VERBOSE"):
            print("     " + output.replace("\n", "\n     "))

    def start_background(self, text: str, cmd: Command) -> None:
        log = self.home / f"bg-{len(self.background)}.log"
        with open(log, "w") as out:
            # Ctrl-C as at a terminal, even where this test run was started with SIGINT ignored
            # (a background job of a non-interactive shell), which children would inherit.
            proc = subprocess.Popen(["bash", "-c", self.shell(f"exec {text}")], env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        is_tail = text.startswith("faramesh tail")
        deadline = time.time() + (3 if is_tail else 60)
        why: str | None = "nothing printed"
        while time.time() < deadline:
            why = self.match(cmd.expected, log.read_text()) if cmd.expected else None
            ready = why is None and (cmd.expected or "serving" in log.read_text() or is_tail)
            if ready or proc.poll() is not None:
                break
            time.sleep(0.1)
        if is_tail:
            time.sleep(0.5)
            stop(proc)
            why = self.match(cmd.expected, log.read_text()) if cmd.expected else None
            self.report(why is None and proc.returncode in (0, 130, -2), f"$ {text}   (then Ctrl-C)", f"{why}\n--- printed:\n{log.read_text()}")
            if os.environ.get("TOUR_VERBOSE"):
                print("     " + log.read_text().replace("\n", "\n     "))
            return
        alive = proc.poll() is None
        self.report(alive and why is None, f"$ {text}   (runs until Ctrl-C)", f"{why}; running: {alive}\n--- printed:\n{log.read_text()}")
        self.background.append((text, proc, log))

    def stop_background(self) -> None:
        for text, proc, log in self.background:
            stop(proc)
            self.report(proc.returncode in (0, 130, -2), f"Ctrl-C stops `{text}`", f"exit {proc.returncode}\n{log.read_text()[-2000:]}")
        self.background.clear()


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def line_pattern(want: str, home: str) -> tuple[re.Pattern[str], list[str | None]]:
    """A regex for one expected output line, and for each of its groups the README id it binds."""
    want = want.replace("/home/me", home).strip()
    token = re.compile(r"…|\d{4}-\d\d-\d\dT[\d:.]+Z|\b[0-9a-f]{8,64}\b|\d+(?:\.\d+)?|\s+")
    parts: list[str] = []
    ids: list[str | None] = []
    at = 0
    for m in token.finditer(want):
        parts.append(re.escape(want[at:m.start()]))
        t = m.group(0)
        if t == "…":
            parts.append(".*?")
        elif t[0].isspace():
            parts.append(r"\s+")
        elif "T" in t and t[0].isdigit() and "-" in t:
            parts.append(r"\d{4}-\d\d-\d\dT[\d:.]+Z")
        elif re.fullmatch(r"[0-9a-f]{8,64}", t) and not t.isdigit():
            parts.append(r"([0-9a-f]{8,64})")
            ids.append(t)
        else:
            parts.append(r"\d+(?:\.\d+)?")
        at = m.end()
    parts.append(re.escape(want[at:]))
    return re.compile("".join(parts)), ids


def main() -> int:
    readme, bin_path = Path(sys.argv[1]).resolve(), str(Path(sys.argv[2]).resolve())
    python = str(Path(sys.argv[3]).absolute())
    with tempfile.TemporaryDirectory(prefix="fm-tour-") as tmp:
        # The clone is ~/faramesh, as in the README's outputs.
        home = Path(tmp) / "home"
        cwd = home / "faramesh"
        cwd.mkdir(parents=True)
        for name in ("README.md", "policies", "sdk"):
            (cwd / name).symlink_to(readme.parent / name)
        tour = Tour(bin_path, python, home, cwd)
        try:
            for block in blocks(readme.read_text()):
                tour.run_block(block)
        finally:
            tour.stop_background()
            subprocess.run(["bash", "-c", tour.shell("faramesh stop >/dev/null 2>&1 || true")], env=tour.env)
    for name, line in tour.unrun.items():
        tour.report(False, f"README.md:{line} {name} is run by a command after it", "no command runs it")
    print(f"README tour: {'ok' if tour.failures == 0 else f'{tour.failures} failed'}")
    return 1 if tour.failures else 0


if __name__ == "__main__":
    sys.exit(main())
