#!/bin/bash
# nspawn-systemd.sh: deploy/install.sh and ikeprivd.service under a real systemd (252, Debian),
# booted as PID 1 of a systemd-nspawn container; no image and no download: the container's root
# is an overlay whose lower layer is this machine's "/" (read-only to it) and whose upper layer
# is a tmpfs, so the install and everything the test does vanish afterwards; the host is not
# written. Steps: (1) `systemd-nspawn --pipe` (no boot, host network: pip reaches the package
# index) runs deploy/install.sh as an operator would; (2) the container boots with its own
# network namespace (--private-network) and runs tests/deploy/in-container.sh as a unit;
# (3) its exit status comes back; the mounts are removed.
# Needs: root, systemd-container (systemd-nspawn), overlayfs. Exit: the check's status.
set -euo pipefail
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
N=$(mktemp -d /var/tmp/ikepriv-nspawn.XXXXXX)
R=$N/root
cleanup() {
    umount -l "$R" 2>/dev/null || true
    umount -l "$N" 2>/dev/null || true
    rmdir "$N" 2>/dev/null || true
}
trap cleanup EXIT
mount -t tmpfs -o mode=755,size=4G ikepriv-nspawn "$N"
mkdir -p "$N/upper" "$N/work" "$R"
mount -t overlay -o "lowerdir=/,upperdir=$N/upper,workdir=$N/work" ikepriv-nspawn-root "$R"

# The machine's own units stay out: the boot pulls in basic.target and the check only.
U=$R/etc/systemd/system
: > "$R/etc/fstab"
rm -f "$R/etc/machine-id"
rm -f "$R"/etc/systemd/system/*.wants/*
rm -f "$R/usr/local/sbin/ike" "$R/usr/local/sbin/ikedb" "$R/usr/local/sbin/ikeprivd" "$R/usr/local/sbin/ikedump"
NSPAWN=(systemd-nspawn -q -D "$R" --register=no --keep-unit --machine=ikepriv-test)

echo "== install (deploy/install.sh --no-start, in the container root)"
"${NSPAWN[@]}" --pipe --setenv=PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    /bin/bash "$REPO/deploy/install.sh" --no-start </dev/null
echo "== installing again (idempotent upgrade)"
"${NSPAWN[@]}" --pipe /bin/bash "$REPO/deploy/install.sh" --no-start </dev/null >/dev/null

cat > "$U/rk-cmd.service" <<UNIT
[Unit]
After=basic.target
[Service]
Type=oneshot
ExecStart=/bin/bash $REPO/tests/deploy/in-container.sh $REPO/tests/deploy/site.toml $REPO
StandardOutput=journal+console
StandardError=journal+console
TimeoutStartSec=600
ExecStopPost=/bin/sh -c 'echo "\$EXIT_STATUS" > /rk-rc; systemctl --no-block poweroff'
UNIT
printf '[Unit]\nRequires=basic.target rk-cmd.service\nAfter=basic.target\nAllowIsolate=yes\n' > "$U/rk.target"
ln -sf rk.target "$U/default.target"
# the daemon logs to the console too, so its lines reach this script
mkdir -p "$U/ikeprivd.service.d"
printf "[Service]\nStandardError=journal+console\nExecStart=\nExecStart=/usr/local/sbin/ikeprivd --log-stderr\n" > "$U/ikeprivd.service.d/console.conf"
# what multi-user.target would start of ours (install.sh enabled ikeprivd there)
[ -L "$U/multi-user.target.wants/ikeprivd.service" ] || { echo "install.sh did not enable the unit"; exit 1; }
printf '[Unit]\nWants=ikeprivd.service\n' > "$U/rk.target.d.conf"
mkdir -p "$U/rk.target.d" && mv "$U/rk.target.d.conf" "$U/rk.target.d/ikepriv.conf"

echo "== boot (systemd as PID 1, private network namespace)"
timeout -k 10 900 "${NSPAWN[@]}" --boot --private-network </dev/null \
    | tee "${IKEPRIV_NSPAWN_LOG:-/dev/null}" | sed -u 's/\x1b\[[0-9;]*m//g' | grep -v -E '^\s*(\[ *OK *\]|Starting|Stopping|Mounting|Unmounting|Stopped|Finished|Reached|Mounted|Unmounted|Listening|Created slice|Removed slice|Closed)' || true
rc=$(cat "$N/upper/rk-rc" 2>/dev/null || echo 125)
echo "== check exit status: $rc"
exit "$rc"
