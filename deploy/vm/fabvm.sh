#!/bin/bash
# fabvm.sh — boot N throw-away QEMU VMs with soft-RoCE (rxe) and KVM, run one
# command in each, collect the results, tear everything down. DESIGN.md §7.
#
# Everything comes from Debian packages on the host: the kernel is Debian's
# (linux-image-amd64; the host may run another kernel), the initramfs is built
# here from busybox-static and that kernel's modules, and the VMs' root is the
# host's own root filesystem, shared read-only over 9p with a tmpfs overlay on
# top, so the host's binaries (the build tree, ibverbs-utils, rdmacm-utils...)
# run inside unchanged. Must run as root (network namespace, tap devices).
#
# Usage:
#   fabvm.sh run --vms N --out DIR [options] [--cmdI 'CMD']... [--cmd-all 'CMD']
#   fabvm.sh sweep        remove namespaces, VMs and state of dead runs
#   fabvm.sh help
#
# run options:
#   --vms N             number of VMs (1..200)
#   --out DIR           results: DIR/vmI/{out,err,rc,boot,dmesg,console.log};
#                       DIR/host/{out,err,rc} for --host-cmd. Created if
#                       needed; DIR/vm1..vmN are emptied first.
#   --cmdI 'CMD'        shell command line for VM I (I = 1..N), run by the
#                       host's /bin/sh inside the VM, as root, in the
#                       directory fabvm.sh was started from (if the VM sees
#                       it, else /root), stdin /dev/null
#   --cmd-all 'CMD'     command for every VM that has no --cmdI
#   --host-cmd 'CMD'    command run on the host inside the run's network
#                       namespace (reaches the VMs; e.g. a controller), with
#                       the same FABVM_* variables (FABVM_SELF=0)
#   --timeout S         limit for each command, counted from its VM's boot (300)
#   --boot-timeout S    limit for a VM to reach its command (90)
#   --mem MB            memory per VM (1024)
#   --smp N             vCPUs per VM (1)
#   --share DIR         also share host DIR read-only at the same path inside
#                       the VMs (repeatable; needed for anything under /tmp;
#                       done by itself for the working directory)
#   --modules a,b       extra kernel modules to insert at boot (with deps)
#   --kernel VER        kernel version (default: the one linux-image-amd64
#                       depends on, else the newest in /lib/modules)
#   --subnet A.B.C      /24 of the run's bridge (10.88.0); host side .1,
#                       VM I is .(10+I)
#   --keep              keep the run's state directory (initramfs, configs)
#   -q, --quiet         print only the summary
#
# Environment: FABVM_STATE_DIR (run state and the unpacked kernel cache,
# default /tmp/fabvm), FABVM_KERNEL (as --kernel), FABVM_QEMU (binary),
# FABVM_QEMU_OPTS (extra QEMU arguments, split on blanks), FABVM_KERNEL_ARGS
# (extra kernel arguments, e.g. loglevel=7 for a verbose console.log),
# FABVM_BUSYBOX (a static busybox, default /bin/busybox).
#
# Inside each VM, the command runs with eth0 configured, rxe0 created on it
# (`rdma link add rxe0 type rxe netdev eth0`, port ACTIVE, IPv4 GID present),
# kvm and kvm-amd or kvm-intel loaded (/dev/kvm), and these variables:
#   FABVM_SELF          this VM's number I (0 in --host-cmd)
#   FABVM_N             number of VMs
#   FABVM_ADDR          this VM's IPv4 address; FABVM_ADDR_1..FABVM_ADDR_N all
#   FABVM_HOST_ADDR     the bridge's address (host side of the namespace)
#   FABVM_RDMA_DEV      rxe0
#   FABVM_GID_INDEX     GID index of the RoCEv2 IPv4 GID (for ibv_*_pingpong -g)
#   FABVM_OUT           this VM's result directory (writable, on the host)
#   FABVM_RUN           directory shared by all VMs and the host command;
#                       helpers in $FABVM_RUN/bin are on PATH:
#     fabvm-signal NAME             mark NAME as reached (a file in flags/)
#     fabvm-wait NAME [SECS]        wait until NAME is marked (default 60 s)
#     fabvm-retry SECS CMD...       rerun CMD every 0.5 s until it succeeds
#   Every VM marks "vmI-ready" just before its command starts, so a client can
#   `fabvm-wait vm2-ready` and then `fabvm-retry 30 ...` its connection.
#   Only FABVM_* variables pass from the host; PATH is Debian's default.
#
# Example (server in VM 2, client in VM 1, over rxe0):
#   fabvm.sh run --vms 2 --out /var/tmp/pp \
#     --cmd2 'ibv_rc_pingpong -d rxe0 -g $FABVM_GID_INDEX' \
#     --cmd1 'fabvm-wait vm2-ready && fabvm-retry 30 \
#             ibv_rc_pingpong -d rxe0 -g $FABVM_GID_INDEX $FABVM_ADDR_2'
# (single quotes: the variables expand inside the VM, not on the host).
#
# Exit status: 0 when every VM booted and its command exited 0 (and the host
# command, if any); 1 otherwise (the summary says which and why); 2 on usage
# errors; 130/143 when interrupted. Nothing is left running either way: VMs
# are killed and the namespace is deleted on exit, Ctrl-C included, and QEMU
# # dies with this script even on SIGKILL (parent-death signal); `sweep` (also
# run at the start of every run) deletes the namespaces and state of runs
# whose script is gone.
#
# Caveats: the VM's /tmp, /run and /dev/shm are fresh tmpfs, so binaries the
# VMs run must live elsewhere on the host (a build tree under /tmp is not
# visible unless given with --share, or it is the working directory). The root is cached by the guest
# (cache=loose): files changed on the host during a run may appear stale.
# Names, addresses and run state: namespace "fabvm-PID-XXXX" (unique per run),
# bridge br0 and taps tap1..tapN inside it, state in $FABVM_STATE_DIR
# (default /tmp/fabvm).
set -eu -o pipefail

PROG=${0##*/}
SELF_PATH=$(readlink -f "$0")
STATE_ROOT=${FABVM_STATE_DIR:-/tmp/fabvm}
QEMU=${FABVM_QEMU:-qemu-system-x86_64}
QUIET=0
KEEP=0

log() {
	[ "$QUIET" = 1 ] || printf '%s: %s\n' "$PROG" "$*" >&2
}

die() {
	printf '%s: error: %s\n' "$PROG" "$*" >&2
	exit 1
}

usage() {
	sed -n '2,/^set -eu/{/^set -eu/d;s/^# \{0,1\}//;p}' "$SELF_PATH"
}

# Milliseconds since the epoch (integer arithmetic in loops).
now_ms() {
	local t=${EPOCHREALTIME}
	local us=${t#*.}
	echo $(( ${t%.*} * 1000 + 10#${us:0:3} ))
}

# ---------------------------------------------------------------- sweep ----

# Start time of process $1 in clock ticks since boot (field 22 of its stat,
# counted after the parenthesised command name, which may hold spaces).
proc_start() {
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	read -ra stat <<<"${stat##*) }"
	echo "${stat[19]}"
}

# A run is alive while its script runs. The namespace name carries the
# script's PID and the state directory its start time, so a reused PID is
# not mistaken for the owner; without a state directory, the PID's command
# line must at least mention fabvm.
owner_alive() {
	local run=$1 pid=$2 want
	if [ -f "$STATE_ROOT/$run/owner" ]; then
		read -r _ want <"$STATE_ROOT/$run/owner" || return 1
		[ "$(proc_start "$pid")" = "$want" ]
		return
	fi
	[ -r "/proc/$pid/cmdline" ] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'fabvm'
}

# Kill every process in namespace $1 and the QEMUs of run $1, then delete it.
destroy_run() {
	local run=$1
	local -a pids
	mapfile -t pids < <(ip netns pids "$run" 2>/dev/null
		pgrep -f -- "-name $run-vm" 2>/dev/null)
	[ "${#pids[@]}" = 0 ] || kill -KILL "${pids[@]}" 2>/dev/null || true
	if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$run"; then
		ip netns del "$run" 2>/dev/null || true
	fi
	rm -rf -- "${STATE_ROOT:?}/$run"
}

sweep() {
	local run pid runs
	runs=$( {
		ip netns list 2>/dev/null | awk '{print $1}'
		ls -1 "$STATE_ROOT" 2>/dev/null || true
	} | grep -E '^fabvm-[0-9]+-[0-9a-f]+$' | sort -u || true)
	for run in $runs; do
		pid=${run#fabvm-}
		pid=${pid%%-*}
		owner_alive "$run" "$pid" && continue
		destroy_run "$run"
		log "swept $run"
	done
	# Half-written kernel unpacks of dead runs.
	for run in "$STATE_ROOT"/cache/vmlinux.*; do
		pid=${run##*.}
		if [ -f "$run" ] && [[ $pid =~ ^[0-9]+$ ]] && ! kill -0 "$pid" 2>/dev/null; then
			rm -f -- "$run"
		fi
	done
	return 0
}

# ------------------------------------------------------------ kernel -------

pick_kernel() {
	local v
	if [ -n "${KVER:-}" ]; then
		:
	elif v=$(dpkg-query -W -f='${Depends}' linux-image-amd64 2>/dev/null) &&
		v=$(printf '%s' "$v" | grep -o 'linux-image-[^ ,]*' | head -n1) &&
		[ -n "$v" ] && [ -d "/lib/modules/${v#linux-image-}" ]; then
		KVER=${v#linux-image-}
	else
		KVER=$(find /lib/modules -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null |
			sort -V | while read -r v; do
				[ ! -f "/boot/vmlinuz-$v" ] || echo "$v"
			done | tail -n1)
	fi
	[ -n "$KVER" ] || die "no kernel found: apt-get install linux-image-amd64"
	VMLINUZ=/boot/vmlinuz-$KVER
	MODDIR=/lib/modules/$KVER
	[ -f "$VMLINUZ" ] || die "$VMLINUZ missing"
	[ -f "$MODDIR/modules.dep" ] || die "$MODDIR/modules.dep missing"
}

# QEMU boots an uncompressed vmlinux through its PVH entry point without
# firmware real-mode setup or in-guest decompression, which under TCG saves
# about 3 s per boot. The vmlinux is unpacked once from Debian's bzImage and
# cached; any surprise (no PVH, unknown compression) falls back to bzImage.
unpack_vmlinux() {
	local cache=$STATE_ROOT/cache stamp off magic tool
	stamp=$(stat -c '%s-%Y' "$VMLINUZ")
	KERNEL_IMAGE=$VMLINUZ
	grep -qx 'CONFIG_PVH=y' "/boot/config-$KVER" 2>/dev/null || return 0
	if [ -f "$cache/vmlinux-$KVER-$stamp" ]; then
		KERNEL_IMAGE=$cache/vmlinux-$KVER-$stamp
		return 0
	fi
	mkdir -p "$cache"
	for magic in '\xfd7zXZ\x00:xz -dc --single-stream' '\x28\xb5\x2f\xfd:zstd -qdc' \
		'\x1f\x8b\x08:gzip -dcq'; do
		off=$(LC_ALL=C grep -obUaP "${magic%%:*}" "$VMLINUZ" 2>/dev/null | head -n1 | cut -d: -f1)
		[ -n "$off" ] || continue
		tool=${magic#*:}
		command -v "${tool%% *}" >/dev/null 2>&1 || continue
		tail -c +$((off + 1)) "$VMLINUZ" | $tool >"$cache/vmlinux.$$" 2>/dev/null || true
		if [ "$(head -c4 "$cache/vmlinux.$$" | od -An -tx1 | tr -d ' ')" = 7f454c46 ]; then
			mv "$cache/vmlinux.$$" "$cache/vmlinux-$KVER-$stamp"
			find "$cache" -name "vmlinux-$KVER-*" ! -name "vmlinux-$KVER-$stamp" -delete
			KERNEL_IMAGE=$cache/vmlinux-$KVER-$stamp
			return 0
		fi
	done
	rm -f "$cache/vmlinux.$$"
	log "could not unpack $VMLINUZ; booting it as is (slower)"
}

# Load order from modules.dep: every module after all the modules it needs
# (a depth-first walk, not the listing order, so no assumption about how
# depmod sorts a line). Names compare with '-' and '_' equal.
declare -A MOD_PATH MOD_DEPS MOD_SEEN MOD_BUILTIN

mod_name() {
	local b=${1##*/}
	b=${b%%.ko*}
	echo "${b//-/_}"
}

mod_index() {
	local line path deps name b
	while IFS= read -r line; do
		path=${line%%:*}
		deps=${line#*:}
		b=${path##*/}
		b=${b%%.ko*}
		name=${b//-/_}
		MOD_PATH[$name]=$path
		MOD_DEPS[$name]=$deps
	done <"$MODDIR/modules.dep"
	if [ -f "$MODDIR/modules.builtin" ]; then
		while IFS= read -r line; do
			b=${line##*/}
			b=${b%%.ko*}
			MOD_BUILTIN[${b//-/_}]=1
		done <"$MODDIR/modules.builtin"
	fi
}

# mod_order NAME: append NAME and its missing dependencies to MOD_ORDER.
mod_order() {
	local name=${1//-/_} d dn
	[ -n "${MOD_SEEN[$name]:-}" ] && return 0
	MOD_SEEN[$name]=1
	if [ -z "${MOD_PATH[$name]:-}" ]; then
		[ -n "${MOD_BUILTIN[$name]:-}" ] && return 0
		die "kernel module $name not found in $MODDIR"
	fi
	for d in ${MOD_DEPS[$name]}; do
		dn=$(mod_name "$d")
		mod_order "$dn"
	done
	MOD_ORDER+=("$name")
}

# Copy module $1 into $2/$1.ko, uncompressed (busybox insmod reads plain ELF).
mod_copy() {
	local src=$MODDIR/${MOD_PATH[$1]} dst=$2/$1.ko
	case $src in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) xz -dc "$src" >"$dst" ;;
	*.ko.zst) zstd -qdc "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	*) die "unknown module format: $src" ;;
	esac
}

BOOT_MODULES="virtio_pci virtio_net 9pnet_virtio 9p overlay"
RDMA_MODULES="crc32_generic rdma_rxe ib_uverbs rdma_ucm"

build_initramfs() {
	local root=$STATE/initramfs m list
	mkdir -p "$root/bin" "$root/mods" "$root/proc" "$root/sys" "$root/dev" \
		"$root/lower" "$root/rw" "$root/newroot"
	cp "$BUSYBOX" "$root/bin/busybox"
	mod_index
	MOD_ORDER=()
	for m in $BOOT_MODULES $RDMA_MODULES ${EXTRA_MODULES//,/ }; do
		mod_order "$m"
	done
	printf '%s\n' "${MOD_ORDER[@]}" >"$root/mods/base"
	# kvm-amd and kvm-intel: both shipped, the VM picks by its CPU flags.
	local -A base_seen=()
	for m in "${!MOD_SEEN[@]}"; do base_seen[$m]=1; done
	for list in kvm_amd kvm_intel; do
		MOD_SEEN=()
		for m in "${!base_seen[@]}"; do MOD_SEEN[$m]=1; done
		MOD_ORDER=()
		mod_order "$list"
		printf '%s\n' "${MOD_ORDER[@]}" >"$root/mods/$list"
	done
	sort -u "$root"/mods/base "$root"/mods/kvm_amd "$root"/mods/kvm_intel |
		while read -r m; do mod_copy "$m" "$root/mods"; done
	write_init >"$root/init"
	write_stage2 >"$root/stage2"
	chmod 755 "$root/init"
	(cd "$root" && find . | "$BUSYBOX" cpio -o -H newc 2>/dev/null) >"$STATE/initrd"
}

# ------------------------------------------------------------ in-VM code ---

# Stage 1, PID 1 in the initramfs: modules, root = 9p (ro) + tmpfs overlay,
# the run's shares, then switch_root into stage 2. Any failure powers off at
# once so the host reports a boot failure instead of waiting for its timeout.
write_init() {
	cat <<'EOF'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
fail() {
	echo "fabvm-init: FAILED: $*" >/dev/console
	poweroff -f
	sleep 10
}
for m in $(cat /mods/base); do
	insmod /mods/$m.ko >/dev/console 2>&1 || fail "insmod $m"
done
kvm=
if grep -qw svm /proc/cpuinfo; then kvm=kvm_amd; fi
if grep -qw vmx /proc/cpuinfo; then kvm=kvm_intel; fi
if [ -n "$kvm" ]; then
	for m in $(cat /mods/$kvm); do
		insmod /mods/$m.ko >/dev/console 2>&1 || echo "fabvm-init: insmod $m failed" >/dev/console
	done
fi
self=
for a in $(cat /proc/cmdline); do
	case $a in fabvm.self=*) self=${a#fabvm.self=} ;; esac
done
o9p=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $o9p,ro,cache=loose fabroot /lower || fail "mount 9p root"
mount -t tmpfs -o mode=0755 tmpfs /rw || fail "mount tmpfs"
mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot ||
	fail "mount overlay"
mkdir -p /newroot/fabvm/out /newroot/fabvm/run /newroot/fabvm/sbin
mount -t 9p -o $o9p fabout /newroot/fabvm/out || fail "mount 9p out"
mount -t 9p -o $o9p fabrun /newroot/fabvm/run || fail "mount 9p run"
cp /bin/busybox /stage2 /newroot/fabvm/sbin/
for d in proc sys dev; do
	mkdir -p /newroot/$d
	mount --move /$d /newroot/$d
done
# Stage 2 runs under the host's /bin/sh: this busybox prefers its own applets
# (ip, timeout...) over the host's, whose behaviour differs.
sh=/bin/sh
[ -x /newroot/bin/sh ] || sh="/fabvm/sbin/busybox sh"
exec switch_root /newroot $sh /fabvm/sbin/stage2 "$self"
EOF
}

# Stage 2, PID 1 in the host's root: fresh /tmp etc., network, rxe0, run
# the command under `timeout`, write its results, power off.
write_stage2() {
	cat <<'EOF'
self=$1
bb=/fabvm/sbin/busybox
. /fabvm/run/conf
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/fabvm/run/bin
out=/fabvm/out
say() { echo "fabvm-vm$self: $*" >/dev/console; }
halt() {
	dmesg >$out/dmesg 2>&1
	sync
	$bb poweroff -f
	sleep 10
}
fail() { say "FAILED: $*"; echo "$*" >$out/error; halt; }
$bb mkdir -p /dev/pts /dev/shm /tmp /run
$bb mount -t devpts -o mode=0620,ptmxmode=0666 devpts /dev/pts
$bb mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$bb mount -t tmpfs -o mode=1777 tmpfs /tmp
$bb mount -t tmpfs -o mode=0755 tmpfs /run
$bb mount -t configfs configfs /sys/kernel/config 2>/dev/null
$bb mount -t cgroup2 cgroup2 /sys/fs/cgroup 2>/dev/null
i=0
for p in $FABVM_SHARES; do
	$bb mkdir -p "$p"
	$bb mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,ro,cache=loose \
		fabshare$i "$p" || fail "mount share $p"
	i=$((i + 1))
done
eval "addr=\$FABVM_ADDR_$self"
$bb hostname "fabvm$self"
ip link set lo up
ip addr add "$addr/24" dev eth0 || fail "address on eth0"
ip link set eth0 up || fail "eth0 up"
rdma link add rxe0 type rxe netdev eth0 || fail "rdma link add rxe0"
# Wait until rxe0's port is ACTIVE and the IPv4-mapped RoCEv2 GID exists.
want=0000:0000:0000:0000:0000:ffff:$(echo "$addr" |
	$bb awk -F. '{printf "%02x%02x:%02x%02x", $1, $2, $3, $4}')
port=/sys/class/infiniband/rxe0/ports/1
gid=
n=0
while [ $n -lt 100 ]; do
	if grep -q ACTIVE $port/state 2>/dev/null; then
		for g in $port/gids/*; do
			[ "$(cat $g 2>/dev/null)" = "$want" ] || continue
			k=${g##*/}
			[ "$(cat $port/gid_attrs/types/$k 2>/dev/null)" = "RoCE v2" ] || continue
			gid=$k
			break
		done
	fi
	[ -n "$gid" ] && break
	sleep 0.1
	n=$((n + 1))
done
[ -n "$gid" ] || fail "rxe0 not active or no RoCEv2 GID for $addr"
[ -e /dev/kvm ] || say "no /dev/kvm"
export FABVM_SELF=$self FABVM_ADDR=$addr FABVM_GID_INDEX=$gid FABVM_OUT=$out
export FABVM_RUN=/fabvm/run FABVM_RDMA_DEV=rxe0 HOME=/root TERM=dumb
t0=$($bb cut -d' ' -f1 /proc/uptime)
echo "$t0" >$out/boot
: >$FABVM_RUN/flags/vm$self-ready
cd "$FABVM_CWD" 2>/dev/null || cd /root 2>/dev/null || cd /
say "ready: eth0 $addr, rxe0 GID index $gid, $(ls /dev/kvm 2>/dev/null || echo no /dev/kvm)"
timeout -k 5 "$FABVM_TIMEOUT" /bin/sh $FABVM_RUN/cmd/vm$self.sh </dev/null >$out/out 2>$out/err
rc=$?
say "command exited $rc"
t1=$($bb cut -d' ' -f1 /proc/uptime)
echo "$t0 $t1" >$out/times
echo $rc >$out/rc.tmp && $bb mv $out/rc.tmp $out/rc
halt
EOF
}

# Helpers on PATH in the VMs and the host command.
write_helpers() {
	local bin=$1
	cat >"$bin/fabvm-signal" <<'EOF'
#!/bin/sh
# fabvm-signal NAME: mark NAME as reached for every VM of the run.
[ $# -eq 1 ] || { echo "usage: fabvm-signal NAME" >&2; exit 2; }
: >"$FABVM_RUN/flags/$1"
EOF
	cat >"$bin/fabvm-wait" <<'EOF'
#!/bin/sh
# fabvm-wait NAME [SECS]: wait until NAME is marked (fabvm-signal); 1 on timeout.
[ $# -ge 1 ] || { echo "usage: fabvm-wait NAME [SECS]" >&2; exit 2; }
n=$(( ${2:-60} * 10 ))
while [ ! -e "$FABVM_RUN/flags/$1" ]; do
	n=$((n - 1))
	[ $n -gt 0 ] || { echo "fabvm-wait: timed out waiting for $1" >&2; exit 1; }
	sleep 0.1
done
EOF
	cat >"$bin/fabvm-retry" <<'EOF'
#!/bin/sh
# fabvm-retry SECS CMD...: run CMD until it succeeds, every 0.5 s, for at most
# SECS seconds; exits with CMD's last status.
[ $# -ge 2 ] || { echo "usage: fabvm-retry SECS CMD..." >&2; exit 2; }
end=$(( $(date +%s) + $1 ))
shift
while :; do
	"$@" && exit 0
	rc=$?
	[ "$(date +%s)" -lt "$end" ] || exit $rc
	sleep 0.5
done
EOF
	chmod 755 "$bin"/fabvm-*
}

# ---------------------------------------------------------------- run ------

RUN=
STATE=
NS_MADE=0
declare -a VM_PID
HOST_PID=

cleanup() {
	local p i
	local -a alive=()
	trap - EXIT INT TERM HUP
	[ -n "$RUN" ] || return 0
	for p in "${VM_PID[@]}" "$HOST_PID"; do
		[ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive+=("$p")
	done
	if [ "${#alive[@]}" -gt 0 ]; then
		kill -TERM "${alive[@]}" 2>/dev/null || true
		for i in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "${alive[@]}" 2>/dev/null || break
			sleep 0.2
		done
		kill -KILL "${alive[@]}" 2>/dev/null || true
		for p in "${alive[@]}"; do
			wait "$p" 2>/dev/null || true
		done
	fi
	if [ "$NS_MADE" = 1 ]; then
		mapfile -t alive < <(ip netns pids "$RUN" 2>/dev/null)
		[ "${#alive[@]}" = 0 ] || kill -KILL "${alive[@]}" 2>/dev/null || true
		ip netns del "$RUN" 2>/dev/null || true
	fi
	if [ "$KEEP" = 1 ]; then
		log "state kept in $STATE"
	else
		rm -rf -- "$STATE"
	fi
}

on_signal() {
	printf '%s: interrupted (%s), stopping VMs\n' "$PROG" "$1" >&2
	cleanup
	exit "$2"
}

need() {
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || die "$c not found (see deploy/vm/README.md for packages)"
	done
}

shell_quote() {
	printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

cmd_run() {
	local n='' out='' timeout=300 boot_timeout=90 mem=1024 smp=1 subnet=10.88.0
	local cmd_all='' host_cmd='' i a
	local -A cmd
	local -a shares=()
	KEEP=0
	EXTRA_MODULES=
	KVER=${FABVM_KERNEL:-}
	while [ $# -gt 0 ]; do
		a=$1
		case $a in
		--vms | --out | --timeout | --boot-timeout | --mem | --smp | --share | \
			--modules | --kernel | --subnet | --cmd-all | --host-cmd | --cmd[0-9]*)
			[ $# -ge 2 ] || { echo "$PROG: $a needs a value" >&2; exit 2; } ;;
		esac
		case $a in
		--vms) n=$2 ;;
		--out) out=$2 ;;
		--timeout) timeout=$2 ;;
		--boot-timeout) boot_timeout=$2 ;;
		--mem) mem=$2 ;;
		--smp) smp=$2 ;;
		--share) shares+=("$(readlink -f "$2")") ;;
		--modules) EXTRA_MODULES=$2 ;;
		--kernel) KVER=$2 ;;
		--subnet) subnet=$2 ;;
		--cmd-all) cmd_all=$2 ;;
		--host-cmd) host_cmd=$2 ;;
		--cmd[0-9]*)
			i=${a#--cmd}
			[[ $i =~ ^[1-9][0-9]*$ ]] || { echo "$PROG: bad option $a" >&2; exit 2; }
			cmd[$i]=$2
			;;
		--keep) KEEP=1; shift; continue ;;
		-q | --quiet) QUIET=1; shift; continue ;;
		*) echo "$PROG: unknown option $a (see $PROG help)" >&2; exit 2 ;;
		esac
		shift 2
	done
	if ! [[ $n =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ] || [ "$n" -gt 200 ]; then
		echo "$PROG: --vms N (1..200) required" >&2
		exit 2
	fi
	[ -n "$out" ] || { echo "$PROG: --out DIR required" >&2; exit 2; }
	for a in "$timeout" "$boot_timeout" "$mem" "$smp"; do
		[[ $a =~ ^[1-9][0-9]*$ ]] || { echo "$PROG: bad number $a" >&2; exit 2; }
	done
	[ "$mem" -ge 256 ] || { echo "$PROG: --mem below 256 MB does not boot" >&2; exit 2; }
	if ! [[ $subnet =~ ^([0-9]{1,3})\.([0-9]{1,3})\.([0-9]{1,3})$ ]] ||
		[ "${BASH_REMATCH[1]}" -gt 255 ] || [ "${BASH_REMATCH[2]}" -gt 255 ] ||
		[ "${BASH_REMATCH[3]}" -gt 255 ]; then
		echo "$PROG: bad --subnet $subnet" >&2
		exit 2
	fi
	for i in "${!cmd[@]}"; do
		[ "$i" -le "$n" ] || { echo "$PROG: --cmd$i but only $n VMs" >&2; exit 2; }
	done
	for ((i = 1; i <= n; i++)); do
		[ -n "${cmd[$i]:-}" ] || [ -n "$cmd_all" ] ||
			{ echo "$PROG: no command for VM $i (--cmd$i or --cmd-all)" >&2; exit 2; }
	done
	# A working directory the VM's tmpfs mounts would hide (a clone under
	# /tmp) is shared, so commands relative to it still work.
	case $PWD in
	/tmp/?* | /run/?* | /dev/shm/?*)
		[[ " ${shares[*]} " == *" $PWD "* ]] || shares+=("$PWD") ;;
	esac
	for a in "${shares[@]}"; do
		[ -d "$a" ] || { echo "$PROG: --share $a: not a directory" >&2; exit 2; }
		[[ $a != *[[:space:]]* ]] || { echo "$PROG: --share path with spaces" >&2; exit 2; }
	done
	[ "$(id -u)" = 0 ] || die "must run as root (network namespace, tap devices)"
	need "$QEMU" ip setpriv timeout pgrep
	BUSYBOX=${FABVM_BUSYBOX:-/bin/busybox}
	[ -x "$BUSYBOX" ] || die "$BUSYBOX missing: apt-get install busybox-static"
	if ldd "$BUSYBOX" >/dev/null 2>&1; then
		die "$BUSYBOX is dynamically linked: apt-get install busybox-static"
	fi
	[ -c /dev/net/tun ] || die "/dev/net/tun missing"

	local t_start
	t_start=$(now_ms)
	sweep
	RUN=fabvm-$$-$(od -An -N2 -tx2 /dev/urandom | tr -d ' \n')
	STATE=$STATE_ROOT/$RUN
	trap cleanup EXIT
	trap 'on_signal INT 130' INT
	trap 'on_signal TERM 143' TERM
	trap 'on_signal HUP 129' HUP
	mkdir -p "$STATE/share/cmd" "$STATE/share/flags" "$STATE/share/bin"
	echo "$$ $(proc_start $$)" >"$STATE/owner"
	mkdir -p "$out"
	out=$(readlink -f "$out")

	pick_kernel
	unpack_vmlinux
	log "run $RUN: $n VM(s), kernel $KVER, out $out"
	build_initramfs
	write_helpers "$STATE/share/bin"

	# The configuration every VM sources (stage 2) and the host command gets.
	{
		echo "export FABVM_N=$n FABVM_HOST_ADDR=$subnet.1 FABVM_TIMEOUT=$timeout"
		echo "export FABVM_RUN_ID=$RUN"
		echo "FABVM_CWD=$(shell_quote "$PWD")"
		for ((i = 1; i <= n; i++)); do
			echo "export FABVM_ADDR_$i=$subnet.$((10 + i))"
		done
		echo "FABVM_SHARES='${shares[*]}'"
	} >"$STATE/share/conf"
	for ((i = 1; i <= n; i++)); do
		printf '%s\n' "${cmd[$i]:-$cmd_all}" >"$STATE/share/cmd/vm$i.sh"
		rm -rf "${out:?}/vm$i"
		mkdir -p "$out/vm$i"
	done

	# Network: a bridge in a namespace of our own, one tap per VM.
	ip netns add "$RUN"
	NS_MADE=1
	ip -n "$RUN" link set lo up
	ip -n "$RUN" link add br0 type bridge
	ip -n "$RUN" addr add "$subnet.1/24" dev br0
	ip -n "$RUN" link set br0 up
	for ((i = 1; i <= n; i++)); do
		ip -n "$RUN" tuntap add dev "tap$i" mode tap
		ip -n "$RUN" link set "tap$i" master br0 up
	done

	local -a qargs share_args=()
	local k=0 qout qstate
	# QEMU option values: a comma is written as two.
	qout=${out//,/,,}
	qstate=${STATE//,/,,}
	for a in "${shares[@]}"; do
		share_args+=(-fsdev "local,id=fs$k,path=${a//,/,,},security_model=none,readonly=on,multidevs=remap"
			-device "virtio-9p-pci,fsdev=fs$k,mount_tag=fabshare$k")
		k=$((k + 1))
	done
	local -a qemu_opts=()
	read -ra qemu_opts <<<"${FABVM_QEMU_OPTS:-}"
	# qboot: a minimal firmware, faster than SeaBIOS under TCG.
	local -a firmware=()
	[ ! -f /usr/share/qemu/qboot.rom ] || firmware=(-bios /usr/share/qemu/qboot.rom)
	local t_boot
	t_boot=$(now_ms)
	for ((i = 1; i <= n; i++)); do
		qargs=(-name "$RUN-vm$i" -machine pc -accel tcg -cpu max -smp "$smp" -m "$mem"
			-nodefaults -no-user-config -display none -vga none -no-reboot
			"${firmware[@]}" -kernel "$KERNEL_IMAGE" -initrd "$STATE/initrd"
			-append "console=ttyS0 quiet panic=-1 no_timer_check tsc=reliable fabvm.self=$i ${FABVM_KERNEL_ARGS:-}"
			-chardev "file,id=con,path=$qout/vm$i/console.log" -serial chardev:con
			-netdev "tap,id=n0,ifname=tap$i,script=no,downscript=no"
			-device "virtio-net-pci,netdev=n0,mac=52:54:00:fa:$(printf '%02x:%02x' $((i / 256)) $((i % 256)))"
			-fsdev "local,id=fsroot,path=/,security_model=none,readonly=on,multidevs=remap"
			-device "virtio-9p-pci,fsdev=fsroot,mount_tag=fabroot"
			-virtfs "local,path=$qout/vm$i,mount_tag=fabout,security_model=none"
			-virtfs "local,path=$qstate/share,mount_tag=fabrun,security_model=none"
			"${share_args[@]}" "${qemu_opts[@]}")
		ip netns exec "$RUN" setpriv --pdeathsig KILL "$QEMU" "${qargs[@]}" \
			</dev/null >"$STATE/qemu$i.log" 2>&1 &
		VM_PID[i]=$!
	done
	if [ -n "$host_cmd" ]; then
		mkdir -p "$out/host"
		rm -f "$out/host/out" "$out/host/err" "$out/host/rc"
		printf '%s\n' "$host_cmd" >"$STATE/share/cmd/host.sh"
		(
			set +e
			# shellcheck source=/dev/null
			. "$STATE/share/conf"
			export FABVM_SELF=0 FABVM_ADDR=$subnet.1 FABVM_RUN=$STATE/share FABVM_OUT=$out/host
			export PATH=$PATH:$STATE/share/bin
			ip netns exec "$RUN" setpriv --pdeathsig KILL \
				timeout -k 5 "$((boot_timeout + timeout))" /bin/sh "$STATE/share/cmd/host.sh" \
				</dev/null >"$out/host/out" 2>"$out/host/err"
			echo $? >"$out/host/rc"
		) &
		HOST_PID=$!
	fi
	log "booting (netns $RUN)"

	# Watch: a VM that has not reached its command by the boot deadline, or
	# whose command outlives its timeout (plus grace for `timeout` inside the
	# VM to report), is killed.
	local -a status booted_at
	local running=$n t grace=20 boot_deadline=$((t_boot + boot_timeout * 1000))
	while [ "$running" -gt 0 ] || { [ -n "$HOST_PID" ] && kill -0 "$HOST_PID" 2>/dev/null; }; do
		sleep 0.2
		t=$(now_ms)
		for ((i = 1; i <= n; i++)); do
			[ -z "${status[$i]:-}" ] || continue
			if [ -z "${booted_at[$i]:-}" ] && [ -f "$out/vm$i/boot" ]; then
				booted_at[i]=$t
				log "vm$i booted after $(ms_str $((t - t_boot)))"
			fi
			if ! kill -0 "${VM_PID[$i]}" 2>/dev/null; then
				wait "${VM_PID[$i]}" 2>/dev/null || true
				status[i]=exited
			elif [ -z "${booted_at[$i]:-}" ] && [ "$t" -gt "$boot_deadline" ]; then
				kill -KILL "${VM_PID[$i]}" 2>/dev/null || true
				wait "${VM_PID[$i]}" 2>/dev/null || true
				status[i]="boot timeout (${boot_timeout}s)"
			elif [ -n "${booted_at[$i]:-}" ] &&
				[ "$t" -gt $((booted_at[i] + (timeout + grace) * 1000)) ]; then
				kill -KILL "${VM_PID[$i]}" 2>/dev/null || true
				wait "${VM_PID[$i]}" 2>/dev/null || true
				status[i]="killed (no result ${grace}s after --timeout ${timeout}s)"
			else
				continue
			fi
			running=$((running - 1))
			[ "${status[$i]}" = exited ] || log "vm$i: ${status[$i]}"
		done
	done
	[ -z "$HOST_PID" ] || wait "$HOST_PID" 2>/dev/null || true
	local t_end
	t_end=$(now_ms)

	# Summary.
	local failed=0 rc st bt ct
	printf '%-5s %-13s %7s %8s %4s  %s\n' vm address boot cmd rc status
	for ((i = 1; i <= n; i++)); do
		rc=-
		bt=-
		ct=-
		st=${status[$i]}
		if [ -f "$out/vm$i/times" ]; then
			read -r a k <"$out/vm$i/times"
			bt=$(printf '%.1fs' "$a")
			ct=$(awk -v a="$a" -v b="$k" 'BEGIN { printf "%.1fs", b - a }')
		elif [ -f "$out/vm$i/boot" ]; then
			bt=$(printf '%.1fs' "$(cat "$out/vm$i/boot")")
		fi
		if [ -f "$out/vm$i/rc" ]; then
			rc=$(cat "$out/vm$i/rc")
			if [ "$rc" = 0 ]; then
				st=ok
			elif [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
				st="command timed out (${timeout}s)"
			else
				st="command failed"
			fi
		elif [ "$st" = exited ]; then
			if [ -f "$out/vm$i/error" ]; then
				st="setup failed: $(cat "$out/vm$i/error")"
			elif [ -f "$out/vm$i/boot" ]; then
				st="VM stopped without a result"
			else
				st="boot failed (see $out/vm$i/console.log)"
			fi
		fi
		[ "$st" = ok ] || failed=1
		[ -s "$STATE/qemu$i.log" ] && cp "$STATE/qemu$i.log" "$out/vm$i/qemu.log"
		printf '%-5s %-13s %7s %8s %4s  %s\n' "vm$i" "$subnet.$((10 + i))" "$bt" "$ct" "$rc" "$st"
	done
	if [ -n "$host_cmd" ]; then
		rc=$(cat "$out/host/rc" 2>/dev/null || echo -)
		st=ok
		[ "$rc" = 0 ] || { st="command failed"; failed=1; }
		[ "$rc" != 124 ] || st="command timed out"
		printf '%-5s %-13s %7s %8s %4s  %s\n' host "$subnet.1" - - "$rc" "$st"
	fi
	printf 'total %s (setup %s), results in %s\n' "$(ms_str $((t_end - t_start)))" \
		"$(ms_str $((t_boot - t_start)))" "$out"
	cleanup
	return $failed
}

ms_str() {
	printf '%d.%01ds' $(($1 / 1000)) $((($1 % 1000) / 100))
}

case "${1:-}" in
run)
	shift
	cmd_run "$@"
	;;
sweep)
	[ "$(id -u)" = 0 ] || die "must run as root"
	sweep
	;;
help | -h | --help) usage ;;
*)
	usage >&2
	exit 2
	;;
esac
