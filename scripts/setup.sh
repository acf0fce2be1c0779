#!/usr/bin/env bash
# Installs what ikepriv needs on a fresh Debian 12 machine, as root, idempotently:
# the system packages (compilers and headers for the C extension and python-prctl,
# libseccomp, User Mode Linux for the real-kernel tier, strongSwan and libreswan for
# interop, Cockpit and Debian's Chromium for the console's browser tests), then a virtual environment in .venv with the package and its test tools.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  build-essential python3-dev libcap-dev libseccomp2 libssl-dev libgmp-dev linux-libc-dev util-linux
  iproute2 iputils-ping procps
  user-mode-linux busybox-static
  strongswan-charon strongswan-swanctl libcharon-extra-plugins
  libstrongswan-extra-plugins libstrongswan-standard-plugins libnss3-tools
  tcpdump patchelf
  systemd-container man-db python3-venv
  cockpit-ws cockpit-bridge cockpit-system chromium chromium-driver
)

need_apt=0
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || { need_apt=1; break; }
done
if [ "$need_apt" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: system packages missing and not root: ${APT_PACKAGES[*]}" >&2
    exit 1
  fi
  # keep package installs from starting system services (strongSwan would otherwise start)
  if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${APT_PACKAGES[@]}" >/dev/null
fi

# libreswan conflicts with strongSwan as a Debian package, so it is unpacked beside it.
if [ ! -x /opt/libreswan-4.10/usr/libexec/ipsec/pluto ] && [ "${IKEPRIV_SKIP_LIBRESWAN:-0}" != 1 ]; then
  bash scripts/install-libreswan.sh
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip setuptools wheel
.venv/bin/pip install -q -e '.[test]'

# A UML kernel that boots on this CPU: Debian 12's cannot start processes on hosts with AMX
# (see tests/realkernel/uml-kernel.sh); a newer one is unpacked into a cache once, here rather
# than inside a timed test.
if [ "$(id -u)" = 0 ] && [ "${IKEPRIV_SKIP_UML:-0}" != 1 ]; then
  bash tests/realkernel/uml-kernel.sh >/dev/null
fi
