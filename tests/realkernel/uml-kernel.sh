#!/usr/bin/env bash
# Prints `UML=... MODS=...` for a User Mode Linux kernel that really boots on this host, for
# run-in-kernel.sh to eval.
#
# Why a probe: UML saves and restores the guest's FPU state through ptrace(PTRACE_SETREGSET,
# NT_X86_XSTATE), and the host kernel insists on a buffer of the host's full XSAVE size. On
# CPUs with AMX (Sapphire Rapids and later) that size is about 11 KB, larger than the buffer of
# Debian 12's UML 6.1 (and of 6.12): its first user process dies with "ptrace set fp regs
# failed, errno = 14" and the kernel panics. Newer UML kernels size the buffer from the host.
# So: try Debian 12's kernel; if it cannot start a process here, take user-mode-linux (and the
# C library it was built against) from Debian unstable, unpacked into the cache, never
# installed, with the kernel's ELF interpreter pointed at that C library (patchelf).
# Results are cached per kernel binary and CPU, so the probe boots once per machine.
#
#   RK_CACHE=DIR   where packages are unpacked (default /var/tmp/realkernel-cache)
#   RK_UML_SUITE   the Debian suite for the newer kernel (default unstable)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${RK_CACHE:-/var/tmp/realkernel-cache}
SUITE=${RK_UML_SUITE:-unstable}
mkdir -p "$CACHE"

fail() { echo "uml-kernel: $*" >&2; exit 125; }

static_busybox() {
    for c in /bin/busybox /usr/bin/busybox "$CACHE/busybox-static/bin/busybox"; do
        if [ -x "$c" ] && ! ldd "$c" >/dev/null 2>&1; then echo "$c"; return; fi
    done
    fail "no static busybox (install busybox-static)"
}

# probe UML: does it boot and run a process? Cached by binary identity and CPU flags.
probe() {
    local uml=$1 key marker dir out
    key=$( { stat -c '%s %Y %i' "$uml"; grep -m1 '^flags' /proc/cpuinfo; } | sha256sum | cut -c1-16)
    marker=$CACHE/probe-ok-$key
    [ -e "$marker" ] && return 0
    [ -e "$CACHE/probe-bad-$key" ] && return 1
    dir=$(mktemp -d /tmp/uml-probe.XXXXXX)
    printf '#!%s sh\necho UML-PROBE-OK\n%s poweroff -f\n' "$(static_busybox)" "$(static_busybox)" \
        > "$dir/init"
    chmod 755 "$dir/init"
    out=$(cd "$dir" && TMPDIR=$dir timeout 60 "$uml" mem=64M root=/dev/root rootfstype=hostfs \
          rootflags=/ ro init="$dir/init" con=null con0=null,fd:1 ssl=null </dev/null 2>&1) || true
    rm -rf "$dir"
    if grep -q UML-PROBE-OK <<<"$out"; then
        touch "$marker"; return 0
    fi
    grep -m1 -E 'fp regs|panic' <<<"$out" >&2 || true
    touch "$CACHE/probe-bad-$key"
    return 1
}

# unpack packages of another Debian suite into $CACHE/<dest> (private apt state: nothing of the
# host's apt configuration or dpkg database changes)
fetch_suite() {
    local dest=$1; shift
    local apt=$CACHE/apt-$SUITE
    local opts=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
                -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache"
                -o APT::Sandbox::User=root)
    mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial"
    echo "deb http://deb.debian.org/debian $SUITE main" > "$apt/sources.list"
    apt-get "${opts[@]}" update -qq >&2 || fail "apt-get update ($SUITE) failed"
    local dl; dl=$(mktemp -d "$CACHE/.dl.XXXXXX")
    (cd "$dl" && apt-get "${opts[@]}" download "$@" >&2) || { rm -rf "$dl"; fail "download $* failed"; }
    rm -rf "$dest"; mkdir -p "$dest"
    for deb in "$dl"/*.deb; do dpkg -x "$deb" "$dest"; done
    rm -rf "$dl"
}

newer_uml() {
    local dest=$CACHE/uml-$SUITE
    if [ ! -e "$dest/.complete" ]; then
        command -v patchelf >/dev/null || fail "patchelf is needed for the $SUITE UML kernel"
        fetch_suite "$dest" "user-mode-linux/$SUITE" "libc6/$SUITE"
        local ld libdir
        ld=$(find "$dest/usr/lib64" "$dest/lib64" -name 'ld-linux-x86-64.so.2' 2>/dev/null | head -1)
        libdir=$(dirname "$(find "$dest/usr/lib" -name 'libc.so.6' | head -1)")
        [ -n "$ld" ] && [ -d "$libdir" ] || fail "no C library in the $SUITE packages"
        patchelf --set-interpreter "$ld" --set-rpath "$libdir" "$dest/usr/bin/linux.uml"
        touch "$dest/.complete"
    fi
    echo "$dest"
}

if [ -x /usr/bin/linux.uml ] && [ -d /usr/lib/uml/modules ] && probe /usr/bin/linux.uml; then
    echo "UML=/usr/bin/linux.uml MODS=/usr/lib/uml/modules"
    exit 0
fi
d=$(newer_uml)
probe "$d/usr/bin/linux.uml" || fail "neither Debian 12's nor $SUITE's UML kernel boots on this host"
echo "UML=$d/usr/bin/linux.uml MODS=$d/usr/lib/uml/modules"
