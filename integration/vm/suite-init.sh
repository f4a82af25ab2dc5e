#!/bin/busybox sh
# /init of the test-suite guest: the host's root filesystem arrives read-only
# over 9p (tag hostroot), a writable results directory over 9p (tag out). We
# chroot into the host's root with tmpfs where tests write, and run the
# privileged integration test binaries the host built, against the guest's
# kernel, with the same `tapio` binary. integration/vm/run.sh reads the
# results from the out directory.
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
v=$(uname -r)
for m in /mods/$v/*.ko; do insmod "$m" || echo "suite: insmod $m failed"; done
H=/host
mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose hostroot $H || {
	echo "suite: no host root over 9p"
	poweroff -f
}
mount -t proc proc $H/proc
mount -t sysfs sys $H/sys
mount -t devtmpfs dev $H/dev
mkdir -p $H/dev/pts $H/dev/shm 2>/dev/null
mount -t devpts devpts $H/dev/pts
mount -t tmpfs shm $H/dev/shm
# The repository (its test scripts and fixtures) stays visible even when
# it lives below a directory the tmpfs mounts hide (a clone in /tmp).
R=$(cat /repo-dir)
mkdir -p /repo
mount --bind "$H$R" /repo
for d in tmp run var/tmp; do mount -t tmpfs "t-$d" "$H/$d"; done
if [ ! -d "$H$R/integration" ]; then
	mkdir -p "$H$R"
	mount --bind /repo "$H$R"
fi
chmod 1777 $H/tmp $H/var/tmp
mount -t bpf bpf $H/sys/fs/bpf
mount -t tracefs tracefs $H/sys/kernel/tracing
mount -t cgroup2 cgroup2 $H/sys/fs/cgroup
mount -t securityfs securityfs $H/sys/kernel/security
mkdir -p $H/run/tapio-out
mount -t 9p -o trans=virtio,version=9p2000.L out $H/run/tapio-out
O=$H/run/tapio-out

# The kernel's module autoloader (its usermode helper runs in this
# initramfs, not in the chroot) and the setup below use the host's kmod with
# the guest kernel's own modules, unpacked by run.sh under /modules-root.
printf '#!/bin/sh\nexec chroot /host /sbin/modprobe -d %s "$@"\n' "$(cat /modules-root)" >/bin/modprobe-host
chmod +x /bin/modprobe-host
echo /bin/modprobe-host >/proc/sys/kernel/modprobe
/bin/modprobe-host -a veth sch_ingress cls_bpf || echo "suite: modprobe failed"
chroot $H /bin/ip link set lo up
# The host's environment for the tests (PATH, CI, CARGO_* paths), written by
# run.sh next to the list of test binaries.
echo "suite: kernel $v ready at $(cut -d' ' -f1 /proc/uptime)s" >$O/boot.txt
# One test per line: a name, a timeout in seconds, a shell command.
# shellcheck disable=SC2162
while read name timeout_s cmd; do
	start=$(cut -d' ' -f1 /proc/uptime)
	# Written through to the host before the binary runs: if this boot
	# dies, run.sh knows what was running and what had not started.
	echo "$start" >"$O/$name.started"
	sync
	# shellcheck disable=SC2046
	# Each output line stamped with the guest's uptime, so run.sh can tell
	# how long each test took.
	{
		chroot $H /usr/bin/env -i $(cat $O/env) timeout -s KILL "$timeout_s" /bin/sh -c "$cmd" 2>&1
		echo $? >"$O/$name.rc"
	} | while IFS= read -r line; do
		echo "$(cut -d' ' -f1 /proc/uptime) $line"
	done >"$O/$name.txt"
	end=$(cut -d' ' -f1 /proc/uptime)
	echo "$start $end" | awk '{printf "%d\n", $2 - $1}' >"$O/$name.secs"
done <$O/tests
echo "$(cut -d' ' -f1 /proc/uptime)" >"$O/done"
sync
poweroff -f
