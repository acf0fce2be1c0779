#!/usr/bin/env bash
# libreswan 4.10 cannot be apt-installed next to strongSwan (the packages conflict), so its
# library dependencies are installed and the package itself is unpacked into /opt.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends libaudit1 libcap-ng0 libcurl3-nss \
    libevent-core-2.1-7 libevent-pthreads-2.1-7 libldap-2.5-0 libldns3 libnspr4 libnss3 \
    libpam0g libselinux1 libsystemd0 libunbound8 dns-root-data libnss3-tools >/dev/null
tmp=$(mktemp -d)
( cd "$tmp" && apt-get download libreswan >/dev/null )
mkdir -p /opt/libreswan-4.10
dpkg -x "$tmp"/libreswan_*.deb /opt/libreswan-4.10
rm -rf "$tmp"
test -x /opt/libreswan-4.10/usr/libexec/ipsec/pluto
