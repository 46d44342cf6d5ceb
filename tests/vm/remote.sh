#!/bin/sh
# Remote VMBus between two soft-RoCE VMs (deploy/vm/fabvm.sh):
#   remote.sh BUILD_DIR TRANSPORT     (TRANSPORT: rdma or tcp)
# VM 2 (node-b) serves a disk; VM 1 (node-a) runs blockbench in a KVM
# partition with that disk over TRANSPORT:
#   1. 4 KiB and 64 KiB write-then-verify, every read verified; over rdma,
#      node-b's counters must show the data moved by RDMA READ/WRITE into
#      the guest's RAM (not inline in messages);
#   2. node-b's whole VM powered off at once in the middle of a run (no
#      disconnect reaches node-a): node-a notices (RDMA retries or the
#      link's 5 s keepalive dead time), the guest's I/O fails after the
#      timeout (SCSI NOT READY), no hang, node-a's fabnode exits cleanly.
# Exit 0 when all holds, 1 otherwise, 77 (skip) where VMs cannot be made.
set -eu

build=$(readlink -f "$1")
transport=$2
here=$(dirname "$(readlink -f "$0")")
fabvm="$here/../../deploy/vm/fabvm.sh"
fabnode="$build/node-hv/fabnode"
fabctl="$build/controller/fabctl"
bb="$build/guest/blockbench.elf"

if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: soft-RoCE VMs need root"
	exit 77
fi
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	! ls /lib/modules/*/kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko* >/dev/null 2>&1; then
	echo "SKIP: QEMU or a Debian kernel with rdma_rxe missing (scripts/install-deps.sh)"
	exit 77
fi

# Outside /tmp (the VMs have their own), and shared with them explicitly.
work=$(mktemp -d /var/tmp/fab-vm-remote.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
"$fabctl" pki init --dir "$work/pki" --nodes node-a,node-b >/dev/null

B=10.88.0.12
cat >"$work/b.conf" <<EOF
name = node-b
pki = $work/pki
data_listen = $B:7800
transport = $transport
[export disk0]
path = /tmp/disk0.img
EOF
cat >"$work/a.conf" <<EOF
name = node-a
pki = $work/pki
transport = $transport
[remote web1/disk0]
node = node-b
address = $B:7800
export = disk0
timeout_ms = 4000
EOF

# VM 2: serve; after the first client phase, report counters and get
# killed (SIGKILL) while the second phase runs.
cmd2='set -u
truncate -s 64M /tmp/disk0.img
'"$fabnode"' serve --config '"$work"'/b.conf --log-level info 2>/tmp/b.log &
pid=$!
fabvm-retry 30 grep -q "serving 1 export" /tmp/b.log && fabvm-signal b-serving
fabvm-wait phase1-done 200 || { cat /tmp/b.log; exit 1; }
kill -TERM $pid; wait $pid
cp /tmp/b.log "$FABVM_OUT/b-phase1.log"
'"$fabnode"' serve --config '"$work"'/b.conf --log-level info 2>/tmp/b2.log &
pid=$!
fabvm-retry 30 grep -q "serving 1 export" /tmp/b2.log && fabvm-signal b-serving-2
fabvm-wait phase2-running 200 || exit 1
sleep 3
cp /tmp/b2.log "$FABVM_OUT/b-phase2.log"
fabvm-signal b-killed
# The whole VM goes away at once: no process exit, no FIN, no disconnect;
# node-a has to notice by itself. Our result first, then power off.
echo 0 >"$FABVM_OUT/rc.tmp" && mv "$FABVM_OUT/rc.tmp" "$FABVM_OUT/rc"
echo o >/proc/sysrq-trigger
sleep 30
exit 1'

run="$fabnode run $bb --memory 128M --config $work/a.conf --name web1 --log-level info --"
cmd1='set -u
fabvm-wait b-serving 120 || exit 1
rc=0
'"$run"' --mode write-then-verify --bs 4096 --qd 16 --ops 2000 --seed 3 || rc=1
'"$run"' --mode write-then-verify --bs 65536 --qd 8 --ops 300 --blocks 512 --gen 2 || rc=1
fabvm-signal phase1-done
fabvm-wait b-serving-2 120 || exit 1
( sleep 1; fabvm-signal phase2-running ) &
start=$(date +%s)
'"$run"' --mode randwrite --bs 4096 --qd 8 --ops 1 --ms 20000 > "$FABVM_OUT/phase2.out" 2>&1
st=$?
echo "phase 2: fabnode run exited $st after $(( $(date +%s) - start )) s"
exit $rc'

out="$work/out"
if ! "$fabvm" run --vms 2 --out "$out" --share "$build" --share "$work" --timeout 240 -q \
	--cmd1 "$cmd1" --cmd2 "$cmd2"; then
	for f in "$out"/vm*/out "$out"/vm*/err "$out"/vm*/*.log "$out"/vm1/phase2.out; do
		[ -f "$f" ] && { echo "----- $f"; cat "$f"; }
	done
	echo "FAIL: the VM run failed"
	exit 1
fi

fail=0
check() { # description, command...
	d=$1
	shift
	if "$@"; then echo "ok: $d"; else echo "FAIL: $d"; fail=1; fi
}
a="$out/vm1/out"
b1="$out/vm2/b-phase1.log"
p2="$out/vm1/phase2.out"
check "both write-then-verify runs pass" test "$(grep -c 'blockbench: OK' "$a")" -eq 2
check "every read verified, no I/O error" sh -c "! grep -q 'errors=[1-9]' '$a'"
check "node-b served over $transport" grep -q "over $transport" "$b1"
max() { grep -o "$1=[0-9]*" "$2" | cut -d= -f2 | sort -n | tail -1; }
rr=$(max remote_read_bytes "$b1")
rw=$(max remote_write_bytes "$b1")
echo "node-b: guest RAM by remote access: read ${rr:-0} B, written ${rw:-0} B"
if [ "$transport" = rdma ]; then
	check "writes' data fetched by RDMA READ (>= 64 KiB x 300)" test "${rr:-0}" -ge 19660800
	check "reads' data placed by RDMA WRITE" test "${rw:-0}" -gt 0
fi
check "guest I/O failed after node-b's VM vanished" grep -q "sense 2/08/00" "$p2"
check "node-a's stub reported the outage" grep -q "unreachable for 4000 ms" "$p2"
check "node-a's fabnode exited cleanly (exit 1: guest saw errors)" \
	grep -q "phase 2: fabnode run exited 1 after" "$a"
if [ $fail -ne 0 ]; then
	for f in "$a" "$out"/vm1/err "$b1" "$out"/vm2/b-phase2.log "$p2"; do
		[ -f "$f" ] && { echo "----- $f"; tail -40 "$f"; }
	done
	exit 1
fi
echo "node-a's view of the outage:"
grep -E "nothing heard|link to node node-b .* down|unreachable for|retrying" "$p2" | head -5
echo "PASS: remote VMBus over $transport between soft-RoCE VMs"
