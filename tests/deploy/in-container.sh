#!/bin/bash
# Runs inside the booted systemd-nspawn container (as rk-cmd.service), after deploy/install.sh
# installed ikepriv there: the unit's lifecycle under the real systemd, with a tunnel (phase 1:
# the host kernel has no ESP) to a second ikeprivd in a network namespace made here.
set -euo pipefail
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
SITE=$1
step() { echo "== $*"; }
fail() { echo "FAIL: $*"; systemctl status ikeprivd --no-pager -l | tail -15; journalctl -u ikeprivd --no-pager | tail -40; exit 1; }
wait_until() { local what=$1; shift; for _ in $(seq 1 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done; fail "timed out: $what"; }
mainpid() { systemctl show -P MainPID ikeprivd.service; }

step "systemd $(systemctl --version | head -1 | cut -d' ' -f2) is PID 1: $(cat /proc/1/comm)"
[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is not systemd"
systemctl is-enabled ikeprivd || fail "not enabled"
systemctl is-active -q ikeprivd || { echo "(not started by the boot; starting it)"; systemctl start ikeprivd || fail "start failed"; }
wait_until "ikeprivd active" systemctl is-active -q ikeprivd
step "started with no database: $(stat -c '%a %U' /var/lib/ikepriv) / $(stat -c '%a %U' /var/lib/ikepriv/tunnels.db)"
[ "$(stat -c %a /var/lib/ikepriv)" = 700 ] && [ "$(stat -c %a /var/lib/ikepriv/tunnels.db)" = 600 ] || fail "modes"
id ikepriv
child=$(pgrep -P "$(mainpid)" | head -1)
step "negotiator runs as: $(ps -o user= -p "$child")"
[ "$(ps -o user= -p "$child")" = ikepriv ] || fail "the negotiator is not the ikepriv user"
man -w ike && man ike | grep -q "stats prom" || fail "man ike"

step "network: this container <-> netns peer over veth"
ip netns add peer
ip link add vA type veth peer name vB
ip link set vB netns peer
ip addr add 192.0.2.1/24 dev vA; ip link set vA up
ip -n peer addr add 192.0.2.2/24 dev vB; ip -n peer link set vB up; ip -n peer link set lo up
mkdir -p /root/peer/empty
ikedb -p "$SITE"
ikedb -p "$SITE" -s --db /root/peer/tunnels.db
ip netns exec peer /usr/local/sbin/ikeprivd --db /root/peer/tunnels.db --control /root/peer/ctl \
    --chroot /root/peer/empty --log-stderr 2>/root/peer/log &
PEER=$!
trap 'kill $PEER 2>/dev/null || true' EXIT
wait_until "peer control socket" test -S /root/peer/ctl
wait_until "definitions loaded by the service" sh -c 'ike cmd=list db | grep -q to-siteB'

up() {
    ike cmd=activate phase=1 numlist=1
    wait_until "phase 1 established" sh -c 'ike cmd=list phase=1 | grep -q -i established'
    ike cmd=list phase=1
    ike cmd=list stats prom | grep 'ikepriv_tunnel_established{phase="1",number="1",name="to-siteB"} 1' \
        || fail "prom gauge"
}
step "tunnel up through the service"; up

step "reload (systemctl reload = SIGHUP)"
pid=$(mainpid); systemctl reload ikeprivd
wait_until "reload logged" sh -c 'journalctl -u ikeprivd --no-pager | grep -q "definitions reloaded"'
[ "$(mainpid)" = "$pid" ] || fail "reload restarted the daemon"

step "stop"
systemctl stop ikeprivd
systemctl is-active -q ikeprivd && fail "still active"
[ -S /run/ikepriv/control.sock ] && fail "control socket left behind"
set +e; ike cmd=list; rc=$?; set -e
[ "$rc" = 3 ] || fail "ike against a stopped daemon: rc $rc, want 3"

step "start"
systemctl start ikeprivd; up

step "kill -9 of the parent: systemd restarts it"
pid=$(mainpid); kill -9 "$pid"
wait_until "a new main PID" sh -c "[ \"\$(systemctl show -P MainPID ikeprivd)\" != $pid ] && [ \"\$(systemctl show -P MainPID ikeprivd)\" != 0 ] && systemctl is-active -q ikeprivd"
step "restarted as $(mainpid) (NRestarts=$(systemctl show -P NRestarts ikeprivd))"
wait_until "control socket back" test -S /run/ikepriv/control.sock
up

step "uninstall keeps the database, --purge removes it"
bash "$2/deploy/install.sh" --uninstall
[ -e /var/lib/ikepriv/tunnels.db ] || fail "uninstall removed the database"
[ ! -e /usr/local/sbin/ike ] && [ ! -e /etc/systemd/system/ikeprivd.service ] || fail "uninstall left files"
bash "$2/deploy/install.sh" --uninstall --purge
[ ! -e /var/lib/ikepriv ] && ! id ikepriv 2>/dev/null || fail "purge"
echo "ALL OK"
