#!/usr/bin/env bash
# The demo itself; runs as root inside the UML guest started by scripts/demo.sh (any kernel
# with ESP and network namespaces will do). Every command that matters is printed before it
# runs, so the output doubles as a how-to.
#
#   lanA 198.51.100.10 --- 198.51.100.1 [gwA] 192.0.2.1 ==== 192.0.2.2 [gwB] 203.0.113.1 --- 203.0.113.10 lanB
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"

WORK=$(mktemp -d /tmp/ikepriv-demo.XXXXXX)
PIDS=()
NAMESPACES=(gwA gwB lanA lanB)

say()  { printf '\n== %s\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

cleanup() {
    local rc=$?
    say "clean-up"
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    if [ "${DEMO_VERBOSE:-0}" = 1 ] || [ "$rc" != 0 ]; then
        for gw in gwA gwB; do
            [ -f "$WORK/$gw/ikeprivd.log" ] && { echo "--- $gw ikeprivd log"; cat "$WORK/$gw/ikeprivd.log"; }
        done
    fi
    for ns in "${NAMESPACES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    rm -rf "$WORK"
    echo "daemons stopped, namespaces removed"
    if [ "$rc" = 0 ]; then
        printf '\ndemo: success: lanA reached lanB through an ikepriv IKEv1/ESP tunnel\n'
    else
        printf '\ndemo: FAILED (exit %s)\n' "$rc" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT

say "kernel $(uname -r): two gateways and two LANs in network namespaces"
ip -batch - <<'IP'
netns add gwA
netns add gwB
netns add lanA
netns add lanB
link add vA netns gwA type veth peer name vB netns gwB
link add eA netns gwA type veth peer name eth0 netns lanA
link add eB netns gwB type veth peer name eth0 netns lanB
IP
ip -n gwA -batch - <<'IP'
link set lo up
addr add 192.0.2.1/24 dev vA
addr add 198.51.100.1/24 dev eA
link set vA up
link set eA up
route add 203.0.113.0/24 via 192.0.2.2
IP
ip -n gwB -batch - <<'IP'
link set lo up
addr add 192.0.2.2/24 dev vB
addr add 203.0.113.1/24 dev eB
link set vB up
link set eB up
route add 198.51.100.0/24 via 192.0.2.1
IP
ip -n lanA -batch - <<'IP'
link set lo up
addr add 198.51.100.10/24 dev eth0
link set eth0 up
route add 203.0.113.0/24 via 198.51.100.1
IP
ip -n lanB -batch - <<'IP'
link set lo up
addr add 203.0.113.10/24 dev eth0
link set eth0 up
route add 198.51.100.0/24 via 203.0.113.1
IP
ip netns exec gwA sysctl -qw net.ipv4.ip_forward=1
ip netns exec gwB sysctl -qw net.ipv4.ip_forward=1
# A guard on each gateway: LAN-to-LAN pings are dropped unless an IPsec policy carries them,
# so a ping that gets through can only have gone through the tunnel.
ip -n gwA xfrm policy add src 198.51.100.0/24 dst 203.0.113.0/24 proto icmp dir out action block priority 4000000000
ip -n gwB xfrm policy add src 203.0.113.0/24 dst 198.51.100.0/24 proto icmp dir out action block priority 4000000000
echo "lanA 198.51.100.10 - [gwA 192.0.2.1] ==== [gwB 192.0.2.2] - lanB 203.0.113.10"
if ip netns exec lanA ping -c 1 -W 1 203.0.113.10 >/dev/null 2>&1; then
    echo "demo: a cleartext ping passed the guard; the topology is wrong" >&2; exit 1
fi
echo "without a tunnel, lanA cannot reach lanB (checked)"

say "the tunnel definition (one file for both gateways; gwB loads it with ikedb -s)"
cat > "$WORK/site.toml" <<'TOML'
[[phase1]]
name = "to-peer"
local_addr = "192.0.2.1"
remote_addr = "192.0.2.2"
mode = "main"
auth = "psk"
psk = "demo only: use a long random key in real life"
proposals = ["aes128-sha256-modp2048"]

[[phase2]]
name = "lanA-lanB"
phase1 = "to-peer"
local_subnet = "198.51.100.0/24"
remote_subnet = "203.0.113.0/24"
proposals = ["aes128-sha256-modp2048"]
TOML
chmod 600 "$WORK/site.toml"
grep -v '^psk' "$WORK/site.toml" | sed 's/^/    /'
echo '    (psk = "..." hidden)'

# Each gateway gets its own database, control socket and empty directory for the sandbox.
for gw in gwA gwB; do mkdir -p -m 700 "$WORK/$gw"; mkdir -p -m 755 "$WORK/$gw/empty"; done
use() {  # point ikedb and ike at one gateway's daemon
    export IKEPRIV_DB=$WORK/$1/tunnels.db IKEPRIV_CONTROL=$WORK/$1/control.sock
}

say "load the definitions into each gateway's database"
use gwA; show ikedb -p "$WORK/site.toml"
use gwB; show ikedb -p "$WORK/site.toml" -s
echo "gwB's copy, as ikedb -g prints it (-s swapped local and remote):"
ikedb -g -t phase1 | grep -E '^(name|local_addr|remote_addr|local_id|remote_id) ' | sed 's/^/    /'

say "start one ikeprivd per gateway (root parent + sandboxed negotiator child)"
for gw in gwA gwB; do
    echo "\$ ip netns exec $gw ikeprivd --db $WORK/$gw/tunnels.db --control $WORK/$gw/control.sock --chroot $WORK/$gw/empty --log-stderr &"
    ip netns exec "$gw" ikeprivd --db "$WORK/$gw/tunnels.db" --control "$WORK/$gw/control.sock" \
        --chroot "$WORK/$gw/empty" --log-stderr >"$WORK/$gw/ikeprivd.log" 2>&1 &
    PIDS+=($!)
done
for gw in gwA gwB; do
    use "$gw"
    for _ in $(seq 1 300); do
        ike cmd=list >/dev/null 2>&1 && break
        sleep 0.1
    done
    ike cmd=list >/dev/null || { echo "demo: ikeprivd on $gw did not come up" >&2; exit 1; }
done
echo "both daemons answer"

say "bring the tunnel up from gateway A"
use gwA; show ike cmd=activate
printf 'waiting for phase 1 and phase 2 on both gateways'
up() { use "$1"; ike cmd=list json 2>/dev/null | python3 -c '
import json, sys
rows = json.load(sys.stdin)
ok = {r["phase"] for r in rows if r["state"] == "established"} == {1, 2}
sys.exit(0 if ok else 1)'; }
for i in $(seq 1 60); do
    if up gwA && up gwB; then break; fi
    [ "$i" = 60 ] && { echo; echo "demo: the tunnel did not come up in 30 s" >&2; exit 1; }
    printf '.'; sleep 0.5
done
echo " established"

say "ping lanA -> lanB through the tunnel"
show ip netns exec lanA ping -c 3 -i 0.2 203.0.113.10

say "ike cmd=list on gateway A (initiator)"
use gwA; show ike cmd=list phase=1+ verbose
say "ike cmd=list on gateway B (responder)"
use gwB; show ike cmd=list phase=1+ verbose

say "the kernel's ESP SAs and their counters (packets really went through ESP)"
for gw in gwA gwB; do
    echo "--- $gw: ip -s xfrm state (keys not shown)"
    ip -n "$gw" -s xfrm state | awk '
        /^src / {src = $2; dst = $4}
        /proto esp spi/ {spi = $4; sub(/\(.*/, "", spi)}
        /^[[:space:]]+(enc|aead|auth-trunc) / {alg = alg (alg ? "+" : "") $2}
        /^[[:space:]]+[0-9]+\(bytes\), [0-9]+\(packets\)/ && !seen[spi]++ {
            match($0, /[0-9]+\(packets\)/); n = substr($0, RSTART, RLENGTH - 9)
            printf "  %s -> %s  ESP spi %s  %s  %s packets\n", src, dst, spi, alg, n
            total += n; alg = ""
        }
        END { exit (total > 0 ? 0 : 1) }' \
        || { echo "demo: no ESP packets counted on $gw" >&2; exit 1; }
done

say "take the tunnel down again"
use gwA; show ike cmd=remove
