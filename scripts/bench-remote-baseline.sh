#!/bin/sh
# Baselines for the remote-disk benchmark, measured in one run between two
# namespaces made by fabnet.sh: node n2 (10.77.0.12) serves, node n1
# (10.77.0.11) drives.
#
#   (a) the raw TCP round-trip floor: bench/remote_floor, server in n2,
#       client in n1, one ping-pong run per message size;
#   (b) a named peer serving the same kind of disk: qemu-nbd exporting the
#       raw image from n2, driven by fio's nbd engine (libnbd, userspace, no
#       kernel nbd module needed) from n1: 4 KiB random read and 64 KiB
#       sequential write at the same queue depth, each for a fixed time.
#
# Why qemu-nbd --cache=writeback --aio=threads: our storage server does
# plain pread/pwrite on a raw image opened without O_DIRECT, and fdatasync
# only when the guest flushes. writeback is qemu-nbd doing the same: page
# cache I/O from a thread pool, fdatasync on NBD_CMD_FLUSH. cache=none
# (O_DIRECT) would measure the disk instead of the server and make the
# peer look slower than it is. The peer does get one advantage we lack:
# its thread pool runs several requests at once, where our storage worker
# runs one at a time.
#
# Usage: bench-remote-baseline.sh [options] PREFIX IMAGE
#   PREFIX            namespace prefix given to `fabnet.sh create PREFIX 2`
#   IMAGE             raw image file; ITS CONTENTS ARE OVERWRITTEN by the
#                     write test. Fill it with data first (a sparse image
#                     reads holes, which costs the server nothing).
#   --floor BIN       remote_floor binary (default $REMOTE_FLOOR, then PATH)
#   --sizes LIST      floor message sizes in bytes, comma separated
#                     (default 512,4096,65536)
#   --count N         floor exchanges per size (default 10000)
#   --warmup N        floor exchanges before timing (default 1000)
#   --qd N            fio queue depth, both tests (default 32)
#   --runtime S       fio time per test in seconds (default 10)
#   --ramp S          fio warm-up per test, not counted (default 2)
#   --floor-port P    (default 7000)      --nbd-port P   (default 10809)
#
# Output, one line each on stdout (MB/s is 10^6 bytes/s; latencies are
# fio's submission-to-completion lat, not clat):
#   baseline config prefix=.. image=.. image_bytes=.. qd=.. runtime_s=.. ...
#   baseline floor size=512 n=.. min_us=.. p50_us=.. p99_us=.. mean_us=.. max_us=.. ops_s=..
#   baseline randread4k_qd32 iops=.. mbps=.. lat_mean_us=.. lat_p99_us=..
#   baseline seqwrite64k_qd32 iops=.. mbps=.. lat_mean_us=.. lat_p99_us=..
#
# Needs root, iproute2 (ip, ss), fio built with the nbd engine (Debian 12's
# is), qemu-utils (qemu-nbd) and python3 (a dependency of Debian's fio).
set -eu

# Node addresses as fabnet.sh assigns them (SUBNET.1X for node X).
SERVER_IP=10.77.0.12

usage() {
	sed -n '/^# Usage:/,/^set -eu/s/^# \{0,1\}//p' "$0" >&2
	exit 2
}

die() {
	echo "bench-remote-baseline: $*" >&2
	exit 1
}

floor_bin=${REMOTE_FLOOR:-}
sizes=512,4096,65536
count=10000
warmup=1000
qd=32
runtime=10
ramp=2
floor_port=7000
nbd_port=10809

while [ $# -gt 0 ]; do
	case $1 in
	--floor | --sizes | --count | --warmup | --qd | --runtime | --ramp | --floor-port | --nbd-port)
		[ $# -ge 2 ] || die "$1 needs a value"
		case $1 in
		--floor) floor_bin=$2 ;;
		--sizes) sizes=$2 ;;
		--count) count=$2 ;;
		--warmup) warmup=$2 ;;
		--qd) qd=$2 ;;
		--runtime) runtime=$2 ;;
		--ramp) ramp=$2 ;;
		--floor-port) floor_port=$2 ;;
		--nbd-port) nbd_port=$2 ;;
		esac
		shift 2
		;;
	-h | --help) usage ;;
	-*) die "unknown option $1" ;;
	*) break ;;
	esac
done
[ $# -eq 2 ] || usage
prefix=$1
image=$2
ns_srv="$prefix-n2"
ns_cli="$prefix-n1"

for v in "$count" "$warmup" "$qd" "$runtime" "$ramp" "$floor_port" "$nbd_port"; do
	case $v in
	'' | *[!0-9]*) die "'$v' is not a non-negative integer" ;;
	esac
done
sizes=$(echo "$sizes" | tr ',' ' ')
for s in $sizes; do
	case $s in
	'' | *[!0-9]*) die "size '$s' is not a positive integer" ;;
	esac
done

# ---- preconditions: say what is missing before anything starts ------------
[ "$(id -u)" -eq 0 ] || die "must run as root (ip netns exec)"
if [ -z "$floor_bin" ]; then
	floor_bin=$(command -v remote_floor 2>/dev/null) ||
		die "no remote_floor: pass --floor BIN or set REMOTE_FLOOR"
fi
[ -x "$floor_bin" ] || die "$floor_bin: not an executable"
for tool in ip ss fio qemu-nbd python3; do
	command -v "$tool" >/dev/null 2>&1 || die "$tool not found (see scripts/install-deps.sh)"
done
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine (it needs libnbd at build time)"
for ns in "$ns_srv" "$ns_cli"; do
	ip netns list | awk '{print $1}' | grep -qx "$ns" ||
		die "no namespace $ns: run scripts/fabnet.sh create $prefix 2 first"
done
if [ ! -f "$image" ] || [ ! -w "$image" ]; then
	die "$image: not a writable file"
fi
image=$(cd "$(dirname "$image")" && pwd)/$(basename "$image")
floor_bin=$(cd "$(dirname "$floor_bin")" && pwd)/$(basename "$floor_bin")
image_bytes=$(stat -c %s "$image")
alloc_bytes=$(($(stat -c '%b * %B' "$image")))
[ "$image_bytes" -ge $((64 * 1024)) ] || die "$image: smaller than one 64 KiB write"
if [ "$alloc_bytes" -lt $((image_bytes / 2)) ]; then
	echo "bench-remote-baseline: warning: $image is mostly holes;" \
		"random reads will be cheaper than on a filled disk" >&2
fi

# ---- cleanup: only what this script started ----------------------------------
tmp=$(mktemp -d /tmp/bench-remote-baseline.XXXXXX)
pids=""

cleanup() {
	for p in $pids; do
		kill "$p" 2>/dev/null || true
	done
	for p in $pids; do
		wait "$p" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
	np=""
	for p in $pids; do
		[ "$p" = "$1" ] || np="$np $p"
	done
	pids=$np
}

# Waits up to 5 s until process $3 (the server) listens on port $2 in
# namespace $1, giving up early if it has died; shows its log $4 on failure.
# The listener must be that process: a stray server already on the port
# would otherwise pass for ours and the client would hang talking to it.
wait_listen() {
	i=0
	while ! ip netns exec "$1" ss -Hltnp "sport = :$2" | grep -q "pid=$3,"; do
		if ! kill -0 "$3" 2>/dev/null || [ $i -ge 50 ]; then
			echo "bench-remote-baseline: server on $SERVER_IP:$2 did not come up:" >&2
			cat "$4" >&2
			return 1
		fi
		sleep 0.1
		i=$((i + 1))
	done
}

echo "baseline config prefix=$prefix image=$image image_bytes=$image_bytes qd=$qd" \
	"runtime_s=$runtime ramp_s=$ramp nbd_cache=writeback nbd_aio=threads" \
	"floor_count=$count floor_warmup=$warmup"

# ---- (a) TCP floor -----------------------------------------------------------
for s in $sizes; do
	log="$tmp/floor-server-$s.log"
	# `ip netns exec` execs its command, so $! is the server itself.
	ip netns exec "$ns_srv" "$floor_bin" server "$SERVER_IP:$floor_port" >"$log" 2>&1 &
	srv=$!
	pids="$pids $srv"
	wait_listen "$ns_srv" "$floor_port" "$srv" "$log"
	line=$(ip netns exec "$ns_cli" "$floor_bin" client "$SERVER_IP:$floor_port" \
		--size "$s" --count "$count" --warmup "$warmup") ||
		die "floor client failed for size $s"
	if ! wait "$srv"; then
		forget_pid "$srv"
		cat "$log" >&2
		die "floor server failed for size $s"
	fi
	forget_pid "$srv"
	echo "baseline $line"
done

# ---- (b) qemu-nbd + fio ------------------------------------------------------
nbd_log="$tmp/qemu-nbd.log"
# --persistent: keep serving after the first fio disconnects. --shared=1
# (the default): one client at a time, as fio uses one connection per job.
ip netns exec "$ns_srv" qemu-nbd --bind="$SERVER_IP" --port="$nbd_port" --format=raw \
	--cache=writeback --aio=threads --persistent --shared=1 "$image" >"$nbd_log" 2>&1 &
nbd=$!
pids="$pids $nbd"
wait_listen "$ns_srv" "$nbd_port" "$nbd" "$nbd_log"

# fio_run NAME RW BS: one time-based job against the whole export.
fio_run() {
	out="$tmp/$1.json"
	# --output: the nbd engine prints "connected to NBD server" on stdout,
	# which would otherwise land in front of the JSON.
	# In the background and waited for, so that a signal to this shell
	# runs the trap at once instead of after fio's whole runtime.
	ip netns exec "$ns_cli" fio --name="$1" --ioengine=nbd \
		--uri="nbd://$SERVER_IP:$nbd_port/" --rw="$2" --bs="$3" --iodepth="$qd" \
		--time_based --runtime="$runtime" --ramp_time="$ramp" --lat_percentiles=1 \
		--output-format=json --output="$out" >"$tmp/$1.log" 2>&1 &
	fio_pid=$!
	pids="$pids $fio_pid"
	rc=0
	wait "$fio_pid" || rc=$?
	forget_pid "$fio_pid"
	if [ "$rc" -ne 0 ]; then
		cat "$tmp/$1.log" "$out" >&2 2>/dev/null || true
		die "fio $1 failed (exit $rc)"
	fi
}

# fio_report NAME DDIR: one baseline line from the job's JSON.
fio_report() {
	python3 - "$1" "$2" "$tmp/$1.json" <<'EOF'
import json
import sys

name, ddir, path = sys.argv[1:4]
with open(path) as f:
    text = f.read()
# Skip anything an engine printed before the JSON document.
doc = json.loads(text[text.index("{"):])
job = doc["jobs"][0]
d = job[ddir]
if job.get("error") or d["io_bytes"] == 0:
    sys.exit(f"bench-remote-baseline: fio {name}: error {job.get('error')}, "
             f"{d['io_bytes']} bytes moved")
lat = d["lat_ns"]
p99 = lat.get("percentile", {}).get("99.000000")
p99_us = f"{p99 / 1e3:.1f}" if p99 is not None else "nan"
print(f"baseline {name} iops={d['iops']:.0f} mbps={d['bw_bytes'] / 1e6:.1f} "
      f"lat_mean_us={lat['mean'] / 1e3:.1f} lat_p99_us={p99_us}")
EOF
}

fio_run "randread4k_qd$qd" randread 4k
fio_report "randread4k_qd$qd" read
fio_run "seqwrite64k_qd$qd" write 64k
fio_report "seqwrite64k_qd$qd" write
