#!/bin/sh
# The main demo: a controller and three nodes (compute node-a and node-b,
# storage-only node-s), each node in its own network namespace joined by
# veth to the controller's (loopback ports when not root). The operator
# asks for a volume and a partition running blockbench on it; the
# scheduler puts the partition on a compute node, so its disk is a remote
# VMBus channel to node-s. Then the partition is live-migrated to the
# other compute node while blockbench reads and verifies, its disk channel
# re-bound to node-s from there. Shows the placement explanation, the
# migration's figures, the guest's results (no I/O error, every read
# verified), the cluster picture, and tears everything down.
#
#   scripts/demo.sh BUILD_DIR       (make demo runs this)
set -eu

IN_VM=0
if [ "${1:-}" = "--in-vm" ]; then
	IN_VM=1
	shift
fi
BUILD=${1:-build/debug}
BUILD=$(cd "$BUILD" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)

# Partitions need KVM. Where /dev/kvm does not open (no hardware
# virtualization exposed to this machine), the whole demo runs inside a
# throw-away QEMU VM that has it (TCG with an emulated SVM: slower, same
# code), its output streamed here.
if [ "$IN_VM" -eq 0 ] && ! dd if=/dev/kvm of=/dev/null count=0 2>/dev/null &&
	[ "$(id -u)" -eq 0 ] && command -v qemu-system-x86_64 >/dev/null &&
	ls /boot/vmlinuz-* >/dev/null 2>&1; then
	echo "== no usable /dev/kvm on this machine: running the demo inside a QEMU VM with"
	echo "   nested KVM (deploy/vm/fabvm.sh; the VM boots in about 10 s)"
	OUT=$(mktemp -d /var/tmp/fabdemo-vm-XXXXXX)
	"$HERE/../deploy/vm/fabvm.sh" run --vms 1 --smp 2 --mem 4096 --modules veth,bridge \
		--timeout 600 --out "$OUT" -q --cmd1 "'$HERE/demo.sh' --in-vm '$BUILD' 2>&1" &
	vm=$!
	for _ in $(seq 600); do [ -f "$OUT/vm1/out" ] && break; sleep 0.1; done
	tail -n +1 -f --pid=$vm "$OUT/vm1/out" 2>/dev/null &
	tailer=$!
	rc=0
	wait $vm || rc=$?
	sleep 0.3
	kill $tailer 2>/dev/null || true
	cat "$OUT/vm1/err" >&2 2>/dev/null || true
	vrc=$(cat "$OUT/vm1/rc" 2>/dev/null || echo 1)
	rm -rf "$OUT"
	[ "$rc" -eq 0 ] && [ "$vrc" = 0 ] && exit 0
	echo "demo: failed inside the VM (exit ${vrc:-?})" >&2
	exit 1
fi
FABCTLD=$BUILD/controller/fabctld
FABCTL=$BUILD/controller/fabctl
FABNODE=$BUILD/node-hv/fabnode
IMAGES=$BUILD/guest
WORK=$(mktemp -d /tmp/fabdemo-XXXXXX)
PREFIX=""
PIDS=""
START=$(date +%s)

cleanup() {
	status=$?
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
	[ -n "$PREFIX" ] && "$HERE/fabnet.sh" destroy "$PREFIX"
	if [ "$status" -ne 0 ]; then
		for f in "$WORK"/*.log; do
			[ -f "$f" ] && { echo "----- $f"; tail -n 40 "$f"; } >&2
		done
	fi
	rm -rf "$WORK"
	if [ "$status" -eq 0 ]; then
		echo "== torn down: processes stopped, namespaces and $WORK removed" \
			"($(($(date +%s) - START)) s in all)"
	fi
	exit "$status"
}
trap cleanup EXIT INT TERM

step() { printf '\n== %s\n' "$*"; }

step "cluster PKI (fabctl pki init)"
"$FABCTL" pki init --dir "$WORK/pki" --nodes node-a,node-b,node-s

if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null; then
	"$HERE/fabnet.sh" sweep
	PREFIX="fab-demo-$$-$(date +%s)"
	step "network: namespace $PREFIX-hub (controller, bridge 10.77.0.1) + one per node (veth)"
	"$HERE/fabnet.sh" create "$PREFIX" 3
	CTL_NS="ip netns exec $PREFIX-hub"
	NS_A="ip netns exec $PREFIX-n1"
	NS_B="ip netns exec $PREFIX-n2"
	NS_S="ip netns exec $PREFIX-n3"
	LISTEN=10.77.0.1:7700
	A_DATA=10.77.0.11:7800
	B_DATA=10.77.0.12:7800
	S_DATA=10.77.0.13:7800
else
	step "network: loopback (not root: no namespaces)"
	CTL_NS=""
	NS_A=""
	NS_B=""
	NS_S=""
	LISTEN=127.0.0.1:0
	A_DATA=127.0.0.1:17801
	B_DATA=127.0.0.1:17802
	S_DATA=127.0.0.1:17800
fi

step "starting fabctld (SQLite store, spread placement)"
$CTL_NS "$FABCTLD" --listen "$LISTEN" --db "$WORK/fabctld.db" --pki "$WORK/pki" \
	--lease-ms 3000 --addr-file "$WORK/ctl.addr" 2>"$WORK/fabctld.log" &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -s "$WORK/ctl.addr" ] && break; sleep 0.05; done
ADDR=$(cat "$WORK/ctl.addr")
echo "fabctld listening on $ADDR"

# The transport: auto (RDMA where a device is up, else TCP). In the demo's
# VM the soft-RoCE device sits on the VM's own interface, not on the
# namespaces' veths the nodes talk over, so there it is TCP.
TRANSPORT=auto
[ "$IN_VM" -eq 1 ] && TRANSPORT=tcp

# Node settings: nodecfg.h. node-s offers no vCPUs: it only serves volumes.
# Every node listens on the data plane: node-s serves its volumes there,
# and a compute node receives migrated partitions there.
node_conf() { # NAME VCPUS [DATA_LISTEN]
	mkdir -p "$WORK/$1/volumes" "$WORK/$1/state"
	cat >"$WORK/$1.conf" <<EOF
name = $1
controller = $ADDR
pki = $WORK/pki
transport = $TRANSPORT
vcpus = $2
memory = 2G
volume_dir = $WORK/$1/volumes
image_dir = $IMAGES
state_dir = $WORK/$1/state
EOF
	[ -n "${3:-}" ] && echo "data_listen = $3" >>"$WORK/$1.conf"
	return 0
}
node_conf node-a 2 "$A_DATA"
node_conf node-b 2 "$B_DATA"
node_conf node-s 0 "$S_DATA"

step "starting fabnode on node-a, node-b (compute) and node-s (storage, serves on $S_DATA)"
$NS_A "$FABNODE" serve --config "$WORK/node-a.conf" 2>"$WORK/node-a.log" &
PIDS="$PIDS $!"
$NS_B "$FABNODE" serve --config "$WORK/node-b.conf" 2>"$WORK/node-b.log" &
PIDS="$PIDS $!"
$NS_S "$FABNODE" serve --config "$WORK/node-s.conf" 2>"$WORK/node-s.log" &
PIDS="$PIDS $!"

ctl() { $CTL_NS "$FABCTL" --controller "$ADDR" --pki "$WORK/pki" "$@"; }

up=0
for _ in $(seq 200); do
	up=$(ctl node list --json 2>/dev/null | grep -c '"state": "up"' || true)
	[ "$up" -ge 3 ] && break
	sleep 0.1
done

step "fabctl node list"
ctl node list
if [ "$up" -lt 3 ]; then
	echo "demo: expected 3 nodes up, saw $up" >&2
	exit 1
fi

step "fabctl volume create data1 --size 64M --node node-s (the storage node)"
ctl volume create data1 --size 64M --node node-s
ctl volume list

if [ -r /dev/kvm ]; then
	step "fabctl partition create web1 --image blockbench --volume data1 (blockbench writes its disk, then reads and verifies it until told to stop)"
	ctl partition create web1 --image blockbench --memory 64M --volume data1 -- \
		--mode persist --blocks 2048 --qd 8 --seed 7
	written=0
	for _ in $(seq 1200); do
		if ctl partition console web1 2>/dev/null | grep -q "persist: wrote 2048 blocks"; then
			written=1
			break
		fi
		sleep 0.1
	done
	if [ "$written" -ne 1 ]; then
		echo "demo: web1 did not write its disk" >&2
		ctl partition show web1 >&2 || true
		exit 1
	fi

	step "fabctl partition explain web1 (why this node)"
	ctl partition explain web1

	step "fabctl partition show web1 (its disk is a remote channel to node-s)"
	ctl partition show web1

	step "fabctl partition migrate web1 (live, while blockbench reads and verifies; the scheduler picks the other compute node)"
	ctl partition migrate web1

	step "fabctl partition show web1 (on the other node now; the disk channel re-bound to node-s from there)"
	ctl partition show web1
	# A few more seconds of verified reads on the new node, then a
	# graceful stop through the shutdown IC.
	sleep 6
	ctl partition stop web1
	for _ in $(seq 300); do
		state=$(ctl --json partition show web1 | sed -n 's/.*"state": "\([a-z]*\)".*/\1/p' | head -n 1)
		case "$state" in exited | crashed | failed | stopped | lost) break ;; esac
		sleep 0.1
	done
	echo "web1: $state"

	step "fabctl partition console web1 (the guest's results: every read verified, no I/O error)"
	ctl partition console web1 | tee "$WORK/web1.console"
	if [ "$state" != stopped ] || grep -q -e MISMATCH -e FAILED "$WORK/web1.console" ||
		grep "reads verified" "$WORK/web1.console" | grep -qv " 0 errors" ||
		! grep -q "reads verified, 0 errors" "$WORK/web1.console"; then
		echo "demo: web1 saw bad data or I/O errors" >&2
		exit 1
	fi
else
	step "no /dev/kvm here: skipping the partition part of the demo"
fi

step "fabctl cluster graph (Graphviz DOT)"
ctl cluster graph --output "$WORK/cluster.dot"
cat "$WORK/cluster.dot"
if [ "$IN_VM" -eq 0 ] && command -v dot >/dev/null; then
	ctl cluster graph --svg /tmp/fabric-demo-cluster.svg >/dev/null
	echo "(SVG kept at /tmp/fabric-demo-cluster.svg)"
fi

step "controller events"
grep -E "partition|volume|node .*: up" "$WORK/fabctld.log" | sed 's/^[^ ]* //' | head -n 30

if [ -r /dev/kvm ]; then
	ctl partition delete web1 >/dev/null
fi
