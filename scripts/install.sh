#!/usr/bin/env bash
# Installs faramesh under systemd, idempotently. See docs/operations.md.
#
#   scripts/install.sh                  system-wide: /usr/local/bin, /etc/systemd/system, user faramesh
#   scripts/install.sh --user           for this user: ~/.local/bin, ~/.config/systemd/user, ~/.faramesh
#   scripts/install.sh --prefix DIR     the binary and docs under DIR (default /usr/local)
#   scripts/install.sh --destdir DIR    stage everything under DIR (packaging, tests); starts nothing
#   scripts/install.sh --binary PATH    the binary to install (default target/release/faramesh)
#   scripts/install.sh --uninstall      stop and remove the units and the binary; keeps the state
#   scripts/install.sh --uninstall --purge   also deletes the state dir (the decision log!)
#
# Never overwrites an existing policy. Run again to upgrade: the binary and units are replaced,
# and a running daemon is restarted.
set -euo pipefail
cd "$(dirname "$0")/.."

prefix=/usr/local
destdir=""
user=0
uninstall=0
purge=0
binary="target/release/faramesh"
while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) prefix="$2"; shift 2 ;;
        --destdir) destdir="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --user) user=1; shift ;;
        --uninstall) uninstall=1; shift ;;
        --purge) purge=1; shift ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown option $1 (see --help)" >&2; exit 1 ;;
    esac
done

say() { printf 'install.sh: %s\n' "$*"; }
# Whether to talk to a running service manager (never when staging into --destdir).
live() {
    [ -z "$destdir" ] || return 1
    if [ "$user" = 1 ]; then
        systemctl --user show-environment >/dev/null 2>&1
    else
        [ -d /run/systemd/system ]
    fi
}

if [ "$user" = 1 ]; then
    home="${HOME:?}"
    bindir="$destdir$home/.local/bin"
    unitdir="$destdir$home/.config/systemd/user"
    confdir="$destdir$home/.faramesh"
    statedir="$destdir$home/.faramesh/state"
    docdir="$destdir$home/.local/share/doc/faramesh"
    ctl=(systemctl --user)
    units=(systemd/user/faramesh.service systemd/user/faramesh.socket)
else
    if [ -z "$destdir" ] && [ "$(id -u)" != 0 ]; then
        echo "install.sh: a system-wide install needs root (or use --user)" >&2
        exit 1
    fi
    bindir="$destdir$prefix/bin"
    unitdir="$destdir/etc/systemd/system"
    confdir="$destdir/etc/faramesh"
    statedir="$destdir/var/lib/faramesh"
    docdir="$destdir$prefix/share/doc/faramesh"
    sysusersdir="$destdir/etc/sysusers.d"
    ctl=(systemctl)
    units=(systemd/faramesh.service systemd/faramesh.socket)
fi

if [ "$uninstall" = 1 ]; then
    if live; then
        "${ctl[@]}" disable --now faramesh.socket faramesh.service >/dev/null 2>&1 || true
    fi
    rm -f "$unitdir/faramesh.service" "$unitdir/faramesh.socket" "$bindir/faramesh"
    rm -rf "$docdir"
    [ "$user" = 1 ] || rm -f "$sysusersdir/faramesh.conf"
    live && "${ctl[@]}" daemon-reload || true
    if [ "$purge" = 1 ]; then
        rm -rf "$statedir"
        say "removed the units, the binary and the state dir $statedir"
    else
        say "removed the units and the binary; kept the policy in $confdir and the state (decision log) in $statedir (--purge deletes it)"
    fi
    exit 0
fi

if [ ! -x "$binary" ]; then
    say "building the release binary"
    cargo build --release --locked --bin faramesh
fi
install -d -m 0755 "$bindir" "$unitdir" "$docdir"
install -m 0755 "$binary" "$bindir/faramesh.new" && mv -f "$bindir/faramesh.new" "$bindir/faramesh"
for u in "${units[@]}"; do
    dest="$unitdir/$(basename "$u")"
    if [ "$user" = 1 ]; then
        install -m 0644 "$u" "$dest"
    else
        sed -e "s|/usr/local/bin/faramesh|$prefix/bin/faramesh|" \
            -e "s|/usr/local/share/doc/faramesh|$prefix/share/doc/faramesh|" "$u" >"$dest.new"
        chmod 0644 "$dest.new" && mv -f "$dest.new" "$dest"
    fi
done
install -m 0644 docs/operations.md "$docdir/operations.md"
if [ "$user" = 1 ]; then
    install -d -m 0700 "$confdir" "$confdir/runtime"
else
    install -d -m 0755 "$confdir" "$sysusersdir"
    install -m 0644 systemd/faramesh.sysusers "$sysusersdir/faramesh.conf"
fi
if [ -e "$confdir/policy.yaml" ]; then
    say "kept the existing policy $confdir/policy.yaml"
else
    install -m 0644 policies/default.yaml "$confdir/policy.yaml"
    say "installed the default policy as $confdir/policy.yaml (edit it; \`faramesh apply --policy …\` reloads)"
fi

if live; then
    if [ "$user" = 0 ]; then
        systemd-sysusers "$sysusersdir/faramesh.conf"
    fi
    "${ctl[@]}" daemon-reload
    "${ctl[@]}" enable faramesh.socket faramesh.service >/dev/null
    if "${ctl[@]}" is-active --quiet faramesh.service; then
        "${ctl[@]}" restart faramesh.service
        say "restarted faramesh.service with the new binary"
    else
        "${ctl[@]}" start faramesh.socket
        say "enabled faramesh.socket; the daemon starts on the first connection"
    fi
else
    say "files staged; systemd is not running here, so nothing was started"
fi
if [ "$user" = 1 ]; then
    say "agents connect with: export FARAMESH_SOCKET=$home/.faramesh/runtime/faramesh.sock"
else
    say "agents in group faramesh-agents connect with: export FARAMESH_SOCKET=/run/faramesh/faramesh.sock"
fi
