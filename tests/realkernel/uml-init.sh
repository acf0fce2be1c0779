#!/bin/sh
# PID 1 of the User Mode Linux guest that run-in-kernel.sh boots.
#
# The root file system is the host "/" over hostfs, read-only. The kernel command line hands us:
#   RK_CTL   host control directory (cmd.sh to run; rc, init.log are written back)
#   RK_BB    a static busybox on the host
#   RK_MODS  host directory holding <kernel version>/modules.dep and the modules
#   RK_RW    comma-separated host directories to mount read-write at the same path
#   RK_MODULES (optional) comma-separated modules to preload
# PID 1 must never exit (the kernel would panic): it powers the guest off at the end.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs -o mode=755 run /run
mkdir -p /run/rk/ctl /run/rk/bin /run/rk/mods /run/rk/modroot/bin /run/rk/modroot/lib/modules /run/netns

# Copy busybox and bind the module tree before /tmp is covered by a tmpfs: either may live there.
cp "$RK_BB" /run/rk/modroot/bin/busybox
BB=/run/rk/modroot/bin/busybox
mount --bind "$RK_MODS" /run/rk/mods
mount -t hostfs -o "$RK_CTL" hostfs /run/rk/ctl
mount -t tmpfs -o mode=1777 tmp /tmp

# Read-write host directories (the repo checkout).
IFS=,
set -f
for d in $RK_RW; do
    mkdir -p "$d" 2>/dev/null     # only possible below a guest tmpfs such as /tmp
    [ -d "$d" ] && mount -t hostfs -o "$d" hostfs "$d"
done
unset IFS
set +f
grep -q ' /dev/pts ' /proc/mounts || { mkdir -p /dev/pts 2>/dev/null; mount -t devpts devpts /dev/pts 2>/dev/null; }
mkdir -p /dev/shm 2>/dev/null && mount -t tmpfs shm /dev/shm 2>/dev/null
mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null

# busybox modprobe looks in /lib/modules/$(uname -r), which the host does not have.
# Fast way: a read-only overlay on /usr/lib (/lib on merged-/usr Debian) whose upper layer only
# adds "modules" -> the module tree; the kernel's module helper is then busybox itself.
# Fallback (RK_NO_OVERLAY=1 or no overlayfs): busybox modprobe in a tiny chroot, 3 execs a call.
mount --bind "$RK_MODS" /run/rk/modroot/lib/modules
cat > /run/rk/modprobe-chroot <<'EOF'
#!/run/rk/modroot/bin/busybox sh
exec /run/rk/modroot/bin/busybox chroot /run/rk/modroot /bin/busybox modprobe "$@"
EOF
chmod 755 /run/rk/modprobe-chroot
if [ -z "$RK_NO_OVERLAY" ] && [ ! -e /lib/modules ] \
   && /run/rk/modprobe-chroot -q overlay \
   && mkdir -p /run/rk/libtop && ln -s "$RK_MODS" /run/rk/libtop/modules \
   && mount -t overlay -o ro,lowerdir=/run/rk/libtop:/usr/lib rk-usr-lib /usr/lib \
   && [ -e "/lib/modules/$(uname -r)/modules.dep" ]; then
    ln -s "$BB" /run/rk/bin/modprobe
else
    echo "rk-init: no overlay for /lib/modules, using the chroot modprobe" >> /run/rk/ctl/init.log
    ln -s /run/rk/modprobe-chroot /run/rk/bin/modprobe
fi
echo /run/rk/bin/modprobe > /proc/sys/kernel/modprobe

# busybox applets the host may lack; they come last in PATH so host tools win.
for a in ping ping6 insmod rmmod lsmod modinfo poweroff stty nc traceroute unshare nsenter; do
    ln -s "$BB" "/run/rk/bin/$a"
done
export PATH="$PATH:/run/rk/bin"

$BB hostname rk-uml
ip link set lo up

# One modprobe call for the IPsec set (every exec is slow under UML); the kernel still loads
# anything else on demand.
DEFAULT_MODULES=veth,dummy,xfrm_user,esp4,esp6,xfrm4_tunnel,xfrm6_tunnel,authenc,cbc,hmac,sha256_generic,gcm,ghash-generic,ctr,seqiv,echainiv
MODULES=$(echo "${RK_MODULES-$DEFAULT_MODULES}" | tr ',' ' ')
if [ -n "$MODULES" ] && ! /run/rk/bin/modprobe -q -a $MODULES 2>>/run/rk/ctl/init.log; then
    for m in $MODULES; do
        /run/rk/bin/modprobe -q "$m" 2>/dev/null || echo "rk-init: modprobe $m failed" >> /run/rk/ctl/init.log
    done
fi

# The command's stdout/stderr: serial lines ttyS1/ttyS2 = host fds 3/4, raw so no \r and no echo.
$BB stty -F /dev/ttyS1 raw -echo 2>/dev/null
$BB stty -F /dev/ttyS2 raw -echo 2>/dev/null

/bin/bash /run/rk/ctl/cmd.sh </dev/null >/dev/ttyS1 2>/dev/ttyS2
echo "$?" > /run/rk/ctl/rc
sync
$BB poweroff -f
echo o > /proc/sysrq-trigger    # if busybox could not power off
sleep 10
