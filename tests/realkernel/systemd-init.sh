#!/bin/sh
# Boots a real systemd as PID 1 of the User Mode Linux guest (run with RK_EXEC_INIT=<this file>).
#
# uml-init.sh has done the set-up (proc, sys, modules, busybox, serial lines) and execs us. The
# guest root (the host "/" over hostfs) is read-only, so we build a writable root: an overlay
# whose lower layer is that root and whose upper layer is a tmpfs. Everything written there
# (an install into /opt, /etc/systemd/system, /var/lib, a system user) vanishes with the guest;
# the host is never written. The command of run-in-kernel.sh becomes a oneshot unit
# (rk-cmd.service, the only thing default.target pulls in besides basic.target): its
# stdout/stderr go to the two serial lines, its exit status to the control directory, then the
# guest powers off.
set -e
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
BB=/run/rk/modroot/bin/busybox
/run/rk/bin/modprobe -q overlay 2>/dev/null || true
/run/rk/bin/modprobe -q autofs4 2>/dev/null || true

S=/run/rk/sd
mkdir -p $S/upper $S/work $S/root
mount -t overlay -o lowerdir=/,upperdir=$S/upper,workdir=$S/work rk-root $S/root
R=$S/root

# The control directory and the read-write host directories, at the same paths as before.
mkdir -p $R/rkctl
mount -t hostfs -o "$RK_CTL" hostfs $R/rkctl
IFS=,
set -f
for d in $RK_RW; do
    mkdir -p "$R$d" 2>/dev/null || true
    [ -d "$R$d" ] && mount -t hostfs -o "$d" hostfs "$R$d"
done
unset IFS
set +f

# Nothing of the host's own configuration should start: no fstab, no machine-specific units.
: > $R/etc/fstab
rm -f $R/etc/machine-id
: > $R/etc/machine-id
echo rk-uml > $R/etc/hostname
U=$R/etc/systemd/system
mkdir -p $U
# cmd.sh was written for /run/rk/ctl; under systemd the control directory is /rkctl.
cat > $U/rk-cmd.service <<'EOF'
[Unit]
Description=run-in-kernel.sh command
After=basic.target

[Service]
Type=oneshot
ExecStart=/bin/bash /rkctl/cmd.sh
StandardInput=null
StandardOutput=file:/dev/ttyS1
StandardError=file:/dev/ttyS2
TimeoutStartSec=infinity
ExecStopPost=/bin/sh -c 'echo "$EXIT_STATUS" > /rkctl/rc; sync; systemctl --no-block poweroff'
EOF
cat > $U/rk.target <<'EOF'
[Unit]
Description=run-in-kernel.sh under systemd
Requires=basic.target rk-cmd.service
After=basic.target
AllowIsolate=yes
EOF
ln -sf rk.target $U/default.target
# Units of the host that make no sense in a throwaway guest without devices or network.
for u in systemd-udevd.service systemd-udev-trigger.service systemd-udev-settle.service \
         systemd-networkd.service systemd-resolved.service systemd-timesyncd.service \
         getty.target console-getty.service serial-getty@.service systemd-firstboot.service \
         systemd-random-seed.service apt-daily.timer apt-daily-upgrade.timer \
         systemd-journald-audit.socket ldconfig.service man-db.timer \
         sys-kernel-debug.mount sys-kernel-tracing.mount; do
    ln -sf /dev/null "$U/$u"
done

cd $R
mount --move . /
exec $BB chroot . /lib/systemd/systemd --log-target=kmsg --show-status=0 </dev/console >/dev/console 2>&1
