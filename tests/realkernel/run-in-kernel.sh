#!/usr/bin/env bash
# run-in-kernel.sh CMD [ARG...]
#
# Runs CMD as root inside a second Linux kernel: Debian's User Mode Linux (UML) 6.1, started as
# an ordinary process. The host kernel of the CI machine has XFRM but no ESP; the UML kernel has
# ESP, veth, network namespaces and the IPsec crypto as modules. No KVM and no disk image are
# needed: the guest's root file system is the host "/" through hostfs, read-only, and the repo
# checkout this script lives in is mounted read-write at the same path.
#
# CMD's stdout and stderr are streamed to ours (they travel over two raw UML serial lines), its
# stdin is /dev/null, and this script exits with CMD's exit status; 124 on timeout, 125 when the
# guest did not report a status (the kernel log is printed then).
#
# Knobs (environment):
#   RK_TIMEOUT=900     seconds until the guest is killed (exit 124)
#   RK_MEM=512M        guest RAM
#   RK_RW="DIR ..."    host directories mounted read-write at the same path in the guest
#                      (default: the repo checkout containing this script)
#   RK_PASSENV="V ..." more environment variable names copied into the guest
#   RK_MODULES="m ..." modules preloaded in one modprobe call (default: the IPsec set; empty: none)
#   RK_VERBOSE=1       print the guest kernel log afterwards; RK_KEEP=1 keeps the control dir
#   RK_TMPDIR=DIR      where UML keeps its RAM file (default /dev/shm when big enough, else /var/tmp)
#   RK_CACHE=DIR       where the Debian packages get unpacked when they are not installed
#                      (default /var/tmp/realkernel-cache); RK_FETCH=1 always uses that path
#   RK_UML=FILE RK_UML_MODULES=DIR   another UML kernel and its module tree
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${RK_CACHE:-/var/tmp/realkernel-cache}
TIMEOUT=${RK_TIMEOUT:-900}
MEM=${RK_MEM:-512M}

if [ $# -eq 0 ]; then
    echo "usage: $0 CMD [ARG...]" >&2
    exit 2
fi

fail() { echo "run-in-kernel: $*" >&2; exit 125; }

# Unpack a Debian package into $CACHE/<name> without installing it (no dpkg lock needed), for
# machines where user-mode-linux or busybox-static are not installed.
unpack_pkg() {
    local pkg=$1 dest=$CACHE/$1
    if [ ! -e "$dest/.complete" ]; then
        local dl; dl=$(mktemp -d "${CACHE%/}.dl.XXXXXX" 2>/dev/null) \
            || { mkdir -p "$CACHE"; dl=$(mktemp -d "$CACHE/.dl.XXXXXX"); }
        ( cd "$dl" && apt-get download "$pkg" >&2 ) \
            || { rm -rf "$dl"; fail "apt-get download $pkg failed (apt-get update first?)"; }
        rm -rf "$dest"; mkdir -p "$dest"
        dpkg -x "$dl"/*.deb "$dest"
        rm -rf "$dl"
        touch "$dest/.complete"
    fi
    echo "$dest"
}

# --- the UML kernel and its modules ---------------------------------------------------------------
UML=${RK_UML:-}
MODS=${RK_UML_MODULES:-}
if [ -z "$UML" ]; then
    if [ -z "${RK_FETCH:-}" ] && [ -x /usr/bin/linux.uml ] && [ -d /usr/lib/uml/modules ]; then
        UML=/usr/bin/linux.uml
        MODS=/usr/lib/uml/modules
    else
        d=$(unpack_pkg user-mode-linux)
        UML=$d/usr/bin/linux.uml
        MODS=$d/usr/lib/uml/modules
    fi
fi
MODS=${MODS:-/usr/lib/uml/modules}
[ -x "$UML" ] || fail "no UML kernel at $UML"

# --- a statically linked busybox: modprobe, ping, poweroff and stty inside the guest --------------
BB=""
if [ -z "${RK_FETCH:-}" ]; then
    for c in /bin/busybox /usr/bin/busybox; do
        if [ -x "$c" ] && ! ldd "$c" >/dev/null 2>&1; then BB=$c; break; fi
    done
fi
if [ -z "$BB" ]; then
    BB=$(unpack_pkg busybox-static)/bin/busybox
fi
[ -x "$BB" ] || fail "no static busybox"

# --- per-run control directory (mounted in the guest at /run/rk/ctl) ------------------------------
CTL=$(mktemp -d /tmp/rk.XXXXXX)
UML_PID=""
cleanup() {
    if [ -n "$UML_PID" ] && kill -0 "$UML_PID" 2>/dev/null; then
        # timeout(1) forwards TERM to the kernel's process group; the group id is its pid
        kill -TERM "$UML_PID" 2>/dev/null || true
        for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 "$UML_PID" 2>/dev/null || break; sleep 0.5; done
        kill -KILL -- "-$UML_PID" 2>/dev/null || true
    fi
    if [ -n "${RK_KEEP:-}" ]; then echo "run-in-kernel: kept $CTL" >&2; else rm -rf "$CTL"; fi
}
trap cleanup EXIT
trap 'exit 143' TERM
trap 'exit 130' INT

# pyenv shims are shell scripts costing seconds per start under UML: put the directory of the
# real interpreter first.
GPATH=$PATH
if [[ ":$PATH:" == *"/.pyenv/shims:"* ]] && command -v pyenv >/dev/null 2>&1; then
    if py=$(pyenv which python3 2>/dev/null); then GPATH="$(dirname "$py"):$PATH"; fi
fi

{
    echo '# written by run-in-kernel.sh'
    printf 'export PATH=%q\n' "$GPATH"
    for v in HOME LANG LC_ALL TERM PYTHONPATH PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED \
             PYENV_ROOT PYENV_VERSION VIRTUAL_ENV ${RK_PASSENV:-}; do
        if [ -n "${!v+x}" ]; then printf 'export %s=%q\n' "$v" "${!v}"; fi
    done
    echo 'export PATH="$PATH:/run/rk/bin"'
    printf 'cd %q 2>/dev/null || cd /\n' "$PWD"
    printf 'exec'
    printf ' %q' "$@"
    printf '\n'
} > "$CTL/cmd.sh"

RW=${RK_RW-$REPO}

# Guest RAM is an unlinked file in $TMPDIR (UML's choice) or /dev/shm; a small /dev/shm (docker:
# 64 MB) cannot hold it.
memk=$(( $(numfmt --from=iec "$MEM" 2>/dev/null || echo 536870912) / 1024 ))
if [ -n "${RK_TMPDIR:-}" ]; then
    export TMPDIR=$RK_TMPDIR
else
    shmk=$(df -Pk /dev/shm 2>/dev/null | awk 'NR==2 {print $4}')
    if [ -z "$shmk" ] || [ "$shmk" -lt $((memk + 65536)) ]; then export TMPDIR=/var/tmp; else unset TMPDIR; fi
fi

# Words of the kernel command line the kernel does not know (RK_*) land in init's environment.
# GNU timeout puts the kernel in a process group of its own and signals that whole group, so the
# UML helper processes go too.
set +e
timeout -k 10 "$TIMEOUT" \
    "$UML" mem="$MEM" \
    root=/dev/root rootfstype=hostfs rootflags=/ ro \
    init="$HERE/uml-init.sh" \
    RK_CTL="$CTL" RK_BB="$BB" RK_MODS="$MODS" RK_RW="${RW// /,}" \
    ${RK_MODULES+RK_MODULES="${RK_MODULES// /,}"} \
    uml_dir="$CTL" umid=rk \
    con=null con0=null,fd:5 ssl=null ssl1=null,fd:3 ssl2=null,fd:4 \
    3>&1 4>&2 5>"$CTL/kernel.log" >"$CTL/uml.log" 2>&1 </dev/null &
UML_PID=$!
wait "$UML_PID"
urc=$?
UML_PID=""
set -e

if [ "$urc" -eq 124 ] || [ "$urc" -eq 137 ]; then
    echo "run-in-kernel: guest killed after ${TIMEOUT}s; kernel log tail:" >&2
    tail -n 30 "$CTL/kernel.log" >&2 2>/dev/null || true
    exit 124
fi
if [ -n "${RK_VERBOSE:-}" ]; then
    echo "---- run-in-kernel: guest logs ----" >&2
    cat "$CTL/uml.log" "$CTL/kernel.log" "$CTL/init.log" >&2 2>/dev/null || true
fi
if [ ! -s "$CTL/rc" ]; then
    echo "run-in-kernel: the guest reported no exit status (UML rc $urc); logs:" >&2
    cat "$CTL/uml.log" "$CTL/kernel.log" "$CTL/init.log" >&2 2>/dev/null || true
    exit 125
fi
exit "$(cat "$CTL/rc")"
