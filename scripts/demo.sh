#!/bin/sh
# The main demo: a controller and two nodes, each node in its own network
# namespace joined by veth to the controller's (loopback ports when not
# root). Shows `fabctl node list` with both nodes up, then tears it all down.
#
#   scripts/demo.sh BUILD_DIR       (make demo runs this)
set -eu

BUILD=${1:-build/debug}
BUILD=$(cd "$BUILD" && pwd)
HERE=$(cd "$(dirname "$0")" && pwd)
FABCTLD=$BUILD/controller/fabctld
FABCTL=$BUILD/controller/fabctl
FABNODE=$BUILD/node-hv/fabnode
WORK=$(mktemp -d /tmp/fabdemo-XXXXXX)
PREFIX=""
PIDS=""

cleanup() {
	status=$?
	for p in $PIDS; do kill "$p" 2>/dev/null || true; done
	sleep 0.3
	for p in $PIDS; do kill -9 "$p" 2>/dev/null || true; done
	[ -n "$PREFIX" ] && "$HERE/fabnet.sh" destroy "$PREFIX"
	rm -rf "$WORK"
	if [ "$status" -eq 0 ]; then
		echo "== torn down: processes stopped, namespaces and $WORK removed"
	fi
	exit "$status"
}
trap cleanup EXIT INT TERM

step() { printf '\n== %s\n' "$*"; }

step "cluster PKI (fabctl pki init)"
"$FABCTL" pki init --dir "$WORK/pki" --nodes node-a,node-b

if [ "$(id -u)" -eq 0 ] && command -v ip >/dev/null; then
	"$HERE/fabnet.sh" sweep
	PREFIX="fab-demo-$$-$(date +%s)"
	step "network: namespace $PREFIX-hub (controller, bridge 10.77.0.1) + $PREFIX-n1, $PREFIX-n2 (veth)"
	"$HERE/fabnet.sh" create "$PREFIX" 2
	CTL_NS="ip netns exec $PREFIX-hub"
	NS_A="ip netns exec $PREFIX-n1"
	NS_B="ip netns exec $PREFIX-n2"
	LISTEN=10.77.0.1:7700
else
	step "network: loopback (not root: no namespaces)"
	CTL_NS=""
	NS_A=""
	NS_B=""
	LISTEN=127.0.0.1:0
fi

step "starting fabctld"
$CTL_NS "$FABCTLD" --listen "$LISTEN" --db "$WORK/fabctld.db" --pki "$WORK/pki" \
	--lease-ms 3000 --addr-file "$WORK/ctl.addr" 2>"$WORK/fabctld.log" &
PIDS="$PIDS $!"
for _ in $(seq 100); do [ -s "$WORK/ctl.addr" ] && break; sleep 0.05; done
ADDR=$(cat "$WORK/ctl.addr")
echo "fabctld listening on $ADDR"

# node-b serves a disk to other nodes (an [export]); node-a's partition
# web1 gets it as its disk0 (a [remote] binding). Format: nodecfg.h.
if [ -n "$PREFIX" ]; then
	B_DATA=10.77.0.12:7800
else
	B_DATA=127.0.0.1:17800
fi
truncate -s 64M "$WORK/remote.img"
cat >"$WORK/node-b.conf" <<EOF
name = node-b
controller = $ADDR
pki = $WORK/pki
data_listen = $B_DATA
vcpus = 1
memory = 4G
[export disk0]
path = $WORK/remote.img
EOF
cat >"$WORK/node-a.conf" <<EOF
name = node-a
controller = $ADDR
pki = $WORK/pki
[remote web1/disk0]
node = node-b
address = $B_DATA
export = disk0
timeout_ms = 10000
EOF

step "starting fabnode node-a and node-b (node-b exports disk0 on $B_DATA)"
$NS_A "$FABNODE" serve --config "$WORK/node-a.conf" 2>"$WORK/node-a.log" &
PIDS="$PIDS $!"
$NS_B "$FABNODE" serve --config "$WORK/node-b.conf" 2>"$WORK/node-b.log" &
PIDS="$PIDS $!"

ctl() { $CTL_NS "$FABCTL" --controller "$ADDR" --pki "$WORK/pki" "$@"; }

up=0
for _ in $(seq 100); do
	up=$(ctl node list --json 2>/dev/null | grep -c '"state": "up"' || true)
	[ "$up" -ge 2 ] && break
	sleep 0.1
done

step "fabctl node list"
ctl node list
if [ "$up" -lt 2 ]; then
	echo "demo: expected 2 nodes up, saw $up" >&2
	cat "$WORK"/*.log >&2
	exit 1
fi

step "controller log"
cat "$WORK/fabctld.log"

if [ -r /dev/kvm ]; then
	step "a partition on node-a: blockbench over VMBus on a 64 MiB disk image (every read verified)"
	truncate -s 64M "$WORK/disk.img"
	$NS_A "$FABNODE" run "$BUILD/guest/blockbench.elf" --disk "$WORK/disk.img" -- \
		--mode write-then-verify --bs 4096 --qd 16 --ops 4000 --seed 42

	step "partition web1 on node-a, its disk served by node-b over rvmbus (TLS): the guest sees a local SCSI disk"
	$NS_A "$FABNODE" run "$BUILD/guest/blockbench.elf" --config "$WORK/node-a.conf" \
		--name web1 --log-level info -- \
		--mode write-then-verify --bs 4096 --qd 32 --ops 8000 --seed 7
	step "node-b's side of it"
	grep -E "rvmbus session|export disk0" "$WORK/node-b.log"
else
	step "no /dev/kvm here: skipping the partition part of the demo"
fi
step "both nodes up"
