#!/usr/bin/env bash
# Builds a minimal container image (FROM scratch) from a faramesh binary: the binary, the shared
# libraries it links and the bundled default policy, laid out by `faramesh init-docker`, with the
# runtime stage of ./Dockerfile. No registry is needed (nothing is pulled).
#
#   scripts/container-image.sh [--binary target/release/faramesh] [--tag faramesh:local]
#
# Uses podman when present, else docker (CONTAINER_ENGINE overrides). On a host without systemd
# podman is run with --cgroup-manager=cgroupfs, and with runc when crun is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
binary=target/release/faramesh
tag=faramesh:local
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --tag) tag="$2"; shift 2 ;;
        *) echo "usage: $0 [--binary PATH] [--tag NAME]" >&2; exit 1 ;;
    esac
done
[ -x "$binary" ] || { echo "no binary at $binary: cargo build --release (or pass --binary)" >&2; exit 1; }

engine() {
    if [ -n "${CONTAINER_ENGINE:-}" ]; then
        # shellcheck disable=SC2086
        $CONTAINER_ENGINE "$@"
    elif command -v podman >/dev/null; then
        local flags=()
        [ -d /run/systemd/system ] || flags+=(--cgroup-manager=cgroupfs)
        command -v crun >/dev/null || flags+=(--runtime runc)
        podman "${flags[@]}" "$@"
    elif command -v docker >/dev/null; then
        docker "$@"
    else
        echo "neither podman nor docker is installed" >&2
        exit 1
    fi
}

context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
"$binary" init-docker --dir "$context" >/dev/null
# --format docker: OCI images have no HEALTHCHECK.
if engine --version | grep -qi podman; then
    engine build --quiet --format docker -t "$tag" "$context" >/dev/null
else
    engine build --quiet -t "$tag" "$context" >/dev/null
fi
echo "built $tag from $binary ($(du -sh "$context/faramesh-image" | cut -f1) of files)"
