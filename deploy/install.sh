#!/usr/bin/env bash
# Install ikepriv as a system service on a Debian 12 gateway, as root:
#
#   bash deploy/install.sh                    install or upgrade (stop, replace, start)
#   bash deploy/install.sh --uninstall        remove it again; keeps /var/lib/ikepriv (keys!)
#   bash deploy/install.sh --uninstall --purge   ... and the database and the ikepriv user
#
# Options: --root DIR (install below DIR instead of /, for packaging and tests: no service is
# started), --wheelhouse DIR (pip works offline from DIR), --no-start (install and enable,
# do not start), --source PATH (a checkout or a built wheel; default: this checkout).
#
# What goes where:
#   /opt/ikepriv/                     virtual environment with ikepriv and its dependencies
#   /usr/local/sbin/{ikeprivd,ike,ikedb,ikedump}   links into it
#   /etc/systemd/system/ikeprivd.service, /etc/sysusers.d/ikepriv.conf,
#   /etc/tmpfiles.d/ikepriv.conf      the unit, the ikepriv user, the directories
#   /usr/local/share/man/man{5,8}/    ike(8) ikedb(8) ikeprivd(8) ikedump(8) ikepriv.toml(5)
#   /usr/local/share/cockpit/ikepriv/ the Cockpit page "IKE tunnels" (docs/console.md)
#   /var/lib/ikepriv/tunnels.db       created empty (0600) by the daemon on first start
# Idempotent: running it again upgrades in place.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$(cd "$HERE/.." && pwd)
ROOT=""
WHEELHOUSE=""
UNINSTALL=0
PURGE=0
START=1
PY=${PYTHON:-}

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
    case "$1" in
        --root) ROOT=${2%/}; shift 2 ;;
        --wheelhouse) WHEELHOUSE=$(cd "$2" && pwd); shift 2 ;;
        --source) SRC=$(realpath "$2"); shift 2 ;;
        --uninstall) UNINSTALL=1; shift ;;
        --purge) PURGE=1; shift ;;
        --no-start) START=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage ;;
    esac
done
[ "$(id -u)" = 0 ] || { echo "install.sh: run as root" >&2; exit 1; }
[ "$PURGE" = 0 ] || [ "$UNINSTALL" = 1 ] || { echo "install.sh: --purge goes with --uninstall" >&2; exit 2; }

OPT=/opt/ikepriv
SBIN=/usr/local/sbin
MAN=/usr/local/share/man
UNIT=/etc/systemd/system/ikeprivd.service
SYSUSERS=/etc/sysusers.d/ikepriv.conf
TMPFILES=/etc/tmpfiles.d/ikepriv.conf
PROGS=(ikeprivd ike ikedb ikedump)
COCKPIT=/usr/local/share/cockpit/ikepriv
PAGES=(man8/ikeprivd.8 man8/ike.8 man8/ikedb.8 man8/ikedump.8 man5/ikepriv.toml.5)

say() { echo "install.sh: $*"; }
# systemd is running as init here (not: --root, a chroot, a container build)
systemd_up() { [ -z "$ROOT" ] && [ -d /run/systemd/system ]; }
was_active=0
stop_service() {
    if systemd_up && systemctl is-active -q ikeprivd.service 2>/dev/null; then
        was_active=1
        say "stopping ikeprivd.service"
        systemctl stop ikeprivd.service
    fi
}

if [ "$UNINSTALL" = 1 ]; then
    stop_service
    if [ -z "$ROOT" ] && command -v systemctl >/dev/null; then
        systemctl disable -q ikeprivd.service 2>/dev/null || true
    fi
    rm -f "$ROOT$UNIT" "$ROOT$SYSUSERS" "$ROOT$TMPFILES"
    rm -f "$ROOT/etc/systemd/system/multi-user.target.wants/ikeprivd.service"
    for p in "${PROGS[@]}"; do rm -f "$ROOT$SBIN/$p"; done
    for m in "${PAGES[@]}"; do rm -f "$ROOT$MAN/$m.gz" "$ROOT$MAN/$m"; done
    rm -rf "$ROOT$OPT" "$ROOT$COCKPIT"
    if systemd_up; then systemctl daemon-reload; fi
    if [ "$PURGE" = 1 ]; then
        say "purging the tunnel database, the negotiator's root and the ikepriv user"
        rm -rf "$ROOT/var/lib/ikepriv" "$ROOT/var/empty/ikepriv" "$ROOT/run/ikepriv"
        if [ -z "$ROOT" ]; then
            if id ikepriv >/dev/null 2>&1; then userdel ikepriv; fi
        elif grep -q '^ikepriv:' "$ROOT/etc/passwd" 2>/dev/null; then
            userdel --root "$ROOT" ikepriv
        fi
    elif [ -e "$ROOT/var/lib/ikepriv" ]; then
        say "kept /var/lib/ikepriv (tunnel definitions and keys); --purge removes it"
    fi
    say "uninstalled"
    exit 0
fi

# --- install / upgrade ------------------------------------------------------------------------
if [ -z "$PY" ]; then
    if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=$(command -v python3); fi
fi
"$PY" -c 'import sys; assert sys.version_info >= (3, 11)' \
    || { echo "install.sh: $PY is older than Python 3.11" >&2; exit 1; }
"$PY" -c 'import ensurepip, venv' 2>/dev/null \
    || { echo "install.sh: $PY has no venv/ensurepip (apt-get install python3-venv)" >&2; exit 1; }

stop_service
PIP_ARGS=(-q --disable-pip-version-check)
if [ -n "$WHEELHOUSE" ]; then PIP_ARGS+=(--no-index --find-links "$WHEELHOUSE"); fi
say "building $OPT from $SRC with $PY"
# A virtual environment is not relocatable: it is built in place, the service stopped.
rm -rf "$ROOT$OPT"
mkdir -p "$ROOT/opt"
"$PY" -m venv "$ROOT$OPT"
"$ROOT$OPT/bin/pip" install "${PIP_ARGS[@]}" setuptools wheel 'cffi>=1.16'
"$ROOT$OPT/bin/pip" install "${PIP_ARGS[@]}" --no-build-isolation "$SRC"

mkdir -p "$ROOT$SBIN"
for p in "${PROGS[@]}"; do ln -sfn "$OPT/bin/$p" "$ROOT$SBIN/$p"; done
install -D -m 0644 "$HERE/ikeprivd.service" "$ROOT$UNIT"
install -D -m 0644 "$HERE/ikepriv.sysusers" "$ROOT$SYSUSERS"
install -D -m 0644 "$HERE/ikepriv.tmpfiles" "$ROOT$TMPFILES"

say "man pages into $MAN"
mandir=$(mktemp -d)
IKEPRIV_DOCS="$SRC/docs" "$ROOT$OPT/bin/python" -m ikepriv.cli.manpages "$mandir" >/dev/null
for m in "${PAGES[@]}"; do
    install -D -m 0644 "$mandir/$m" "$ROOT$MAN/$m"
    gzip -9nf "$ROOT$MAN/$m"
done
rm -rf "$mandir"

# The Cockpit page: plain files, found by cockpit-bridge under /usr/local/share/cockpit.
rm -rf "$ROOT$COCKPIT"
for f in "$SRC"/deploy/cockpit/ikepriv/*; do install -D -m 0644 "$f" "$ROOT$COCKPIT/$(basename "$f")"; done

if [ -n "$ROOT" ]; then
    systemd-sysusers --root "$ROOT" "$ROOT$SYSUSERS"
    systemd-tmpfiles --root "$ROOT" --create "$ROOT$TMPFILES" || true
    systemctl --root "$ROOT" enable -q ikeprivd.service
    say "installed below $ROOT (no service started)"
    exit 0
fi
systemd-sysusers "$SYSUSERS"
systemd-tmpfiles --create "$TMPFILES" || true   # /run is made at boot when systemd is not up
if command -v mandb >/dev/null; then mandb -q 2>/dev/null || true; fi
if systemd_up; then
    systemctl daemon-reload
    systemctl enable -q ikeprivd.service
    if [ "$START" = 1 ] || [ "$was_active" = 1 ]; then
        say "starting ikeprivd.service"
        systemctl start ikeprivd.service
    fi
else
    systemctl enable -q ikeprivd.service 2>/dev/null || true
    say "systemd is not running here: ikeprivd.service is enabled for the next boot"
fi
say "installed: ikedb -p FILE loads definitions, ike cmd=list shows tunnels (man ike)"
