#!/bin/sh
# cluster.sh BUILD_DIR [OUT_DIR] — a whole soft-RoCE cluster, by hand:
# fabctld on the host side of the VMs' bridge (10.88.0.1), fabnode node-a in
# VM 1 and node-b in VM 2, both on the RDMA transport; node-b exports a
# disk, and a partition on node-a (blockbench, every read verified) uses it
# over RDMA. Prints `fabctl node list` with both nodes up on rdma, the
# guest's report and each node's counters (SIGUSR1). Results stay in
# OUT_DIR. Read it as the recipe for running the cluster by hand: the node
# config files below are what an operator writes.
set -eu

build=$(readlink -f "$1")
here=$(dirname "$(readlink -f "$0")")
work=$(mktemp -d /var/tmp/fab-cluster.XXXXXX)
out=${2:-$work/out}
trap 'rm -rf -- "$work/pki" "$work"/*.conf "$work/ctl.db"*' EXIT

"$build/controller/fabctl" pki init --dir "$work/pki" --nodes node-a,node-b >/dev/null
CTL=10.88.0.1:7700
cat >"$work/node-a.conf" <<EOF
name = node-a
controller = $CTL
pki = $work/pki
transport = rdma
[remote web1/disk0]
node = node-b
address = 10.88.0.12:7800
export = disk0
timeout_ms = 10000
EOF
cat >"$work/node-b.conf" <<EOF
name = node-b
controller = $CTL
pki = $work/pki
data_listen = 10.88.0.12:7800
transport = rdma
[export disk0]
path = /tmp/disk0.img
EOF

fabnode="$build/node-hv/fabnode"
fabctl="$build/controller/fabctl --controller $CTL --pki $work/pki"
host='set -u
'"$build"'/controller/fabctld --listen '"$CTL"' --db '"$work"'/ctl.db --pki '"$work"'/pki \
	--lease-ms 3000 2>"$FABVM_OUT/fabctld.log" &
ctl=$!
fabvm-signal controller-up
fabvm-wait partition-done 240
echo "== fabctl node list (while the partition ran)"
cat "$FABVM_RUN/node-list.txt"
kill $ctl; wait $ctl
exit 0'
cmd2='set -u
truncate -s 64M /tmp/disk0.img
fabvm-wait controller-up 60
'"$fabnode"' serve --config '"$work"'/node-b.conf 2>"$FABVM_OUT/node-b.log" &
pid=$!
fabvm-retry 30 grep -q "serving 1 export" "$FABVM_OUT/node-b.log" && fabvm-signal node-b-up
fabvm-wait partition-done 240
kill -USR1 $pid; sleep 1; kill $pid; wait $pid
exit 0'
cmd1='set -u
fabvm-wait controller-up 60
'"$fabnode"' serve --config '"$work"'/node-a.conf 2>"$FABVM_OUT/node-a.log" &
pid=$!
fabvm-wait node-b-up 60
fabvm-retry 30 sh -c "'"$fabctl"' node list | grep -q \"node-a.*up\""
'"$fabctl"' node list > "$FABVM_RUN/node-list.txt"
'"$fabnode"' run '"$build"'/guest/blockbench.elf --config '"$work"'/node-a.conf --name web1 \
	--log-level info -- --mode write-then-verify --bs 4096 --qd 16 --ops 2000 --seed 5 &
run=$!
sleep 2
kill -USR1 $run
wait $run
rc=$?
fabvm-signal partition-done
kill $pid; wait $pid
exit $rc'

"$here/fabvm.sh" run --vms 2 --out "$out" --share "$build" --share "$work" --timeout 300 -q \
	--host-cmd "$host" --cmd1 "$cmd1" --cmd2 "$cmd2"
rc=$?
cat "$out/host/out"
echo "== the partition on node-a (its disk served by node-b over RDMA)"
cat "$out/vm1/out"
echo "== counters (SIGUSR1)"
grep -h -E "data plane|link to|session from|remote web1|export disk0" \
	"$out/vm1/out" "$out/vm1/err" "$out/vm2/node-b.log" 2>/dev/null || true
echo "== results in $out"
exit $rc
