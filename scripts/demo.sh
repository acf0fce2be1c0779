#!/usr/bin/env bash
# The main job, end to end, on a fresh Debian 12 machine (run as root):
#
#   bash scripts/demo.sh
#
# 1. installs everything (scripts/setup.sh: system packages, .venv with ikepriv),
# 2. boots a second Linux kernel as an ordinary process (User Mode Linux: the host kernel of
#    this kind of machine has no ESP), and inside it, in network namespaces:
#      lanA --- [gateway A] ===== IKEv1 + ESP ===== [gateway B] --- lanB
#    starts one ikeprivd per gateway, loads the tunnel definitions with ikedb, brings the
#    tunnel up with `ike cmd=activate` on gateway A, pings from lanA to lanB through it and
#    shows `ike cmd=list` of both gateways and the kernel's ESP counters (scripts/demo_inside.sh),
# 3. exits 0 when the ping went through the tunnel.
#
# Nothing outside the UML guest is touched; the guest's namespaces, daemons and files vanish
# when it powers off. DEMO_VERBOSE=1 also prints the daemons' logs.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "demo: please run as root (it installs packages and creates network namespaces)" >&2
    exit 1
fi

echo "== 1/2 setup: system packages and the Python environment (.venv); quiet unless it fails"
bash scripts/setup.sh

echo
echo "== 2/2 booting User Mode Linux (a kernel with ESP) and running the demo inside it"
RK_TIMEOUT=${RK_TIMEOUT:-300} RK_PASSENV="DEMO_VERBOSE ${RK_PASSENV:-}" \
    tests/realkernel/run-in-kernel.sh bash scripts/demo_inside.sh
