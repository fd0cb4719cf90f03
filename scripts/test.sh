#!/usr/bin/env bash
# The one test command: formatting, lints, every Rust test, and the compatibility checks
# against the real published Python SDK. Installs what it needs itself; exits non-zero on
# any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

step() { printf '\n==> %s\n' "$*"; }

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
cargo test --locked

if [ "$(id -u)" = 0 ]; then
    step "rust tests that need root (clients as another uid)"
    cargo test --locked --test daemon_e2e -- --ignored --skip approve_child
fi

step "python venv with the published SDK (faramesh-sdk==0.3.3, pinned in tests/compat/requirements.txt)"
VENV="$ROOT/.venv"
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

step "our SDK: ruff, mypy --strict"
(cd sdk/python && "$SDKVENV/bin/ruff" check src tests && "$SDKVENV/bin/ruff" format --check src tests && "$SDKVENV/bin/mypy")

step "our SDK against the real daemon (LangChain/LangGraph, OpenAI Agents, CrewAI, AutoGen, MCP, the seeds' snippets)"
# Run from outside the source tree so the installed package is what is tested.
(cd sdk/python/tests && FARAMESH_BIN="$BIN" CREWAI_TESTING=true "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)

step "our TypeScript SDK (sdk/typescript): npm ci from the lock file, tsc --strict, node --test against the real daemon"
(cd sdk/typescript && npm ci --no-audit --no-fund --loglevel=error && FARAMESH_BIN="$BIN" npm test --silent </dev/null)

step "the dashboard in a real browser (Debian's chromium, Playwright) against \`faramesh dev\`"
if ! command -v chromium >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    fi
fi
# Screenshots land in target/dashboard/.
(cd tests/dashboard && FARAMESH_BIN="$BIN" "$SDKVENV/bin/python" -m pytest -q -p no:cacheprovider . </dev/null)

step "policy tools on the bundled policies"
for cases in policies/*.cases.yaml policies/examples/*.cases.yaml; do
    policy="${cases%.cases.yaml}.yaml"
    "$BIN" policy check "$policy" >/dev/null
    "$BIN" policy test "$policy" "$cases" | tail -n 1
done

printf '\nall checks passed\n'
