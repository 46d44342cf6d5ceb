#!/bin/bash
# smoke.sh [OUT_DIR] — end-to-end check of the soft-RoCE VMs (fabvm.sh): two
# VMs, each shows rxe0 (ibv_devices, rdma link) and runs a KVM guest
# (kvm-smoke.c); then ibv_rc_pingpong and rping between them over rxe0,
# server in VM 2, client in VM 1. Prints a "N passed, N failed" line; exit 0
# only when everything passed. Needs root and the packages listed in
# deploy/vm/README.md. Results stay in OUT_DIR (default: a new directory
# under $TMPDIR or /tmp, printed at the end).
# shellcheck disable=SC2016 # the commands expand $FABVM_* inside the VMs
set -eu -o pipefail

here=$(dirname "$(readlink -f "$0")")
out=${1:-}
tmp=$(mktemp -d "${TMPDIR:-/tmp}/fabvm-smoke.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
[ -n "$out" ] || out=$(mktemp -d "${TMPDIR:-/tmp}/fabvm-smoke-out.XXXXXX")

# The KVM probe is built into a directory under /tmp, which VMs do not see
# through their root: --share makes it visible at the same path.
cc -O2 -Wall -o "$tmp/kvm-smoke" "$here/kvm-smoke.c"

common='rc=0
echo "== ibv_devices"; ibv_devices || rc=1
echo "== rdma link"; rdma link || rc=1
echo "== gid index $FABVM_GID_INDEX"
echo "== /dev/kvm"; ls -l /dev/kvm || rc=1
'"$tmp"'/kvm-smoke || rc=1'
server="$common"'
echo "== ibv_rc_pingpong server"
ibv_rc_pingpong -d "$FABVM_RDMA_DEV" -g "$FABVM_GID_INDEX" -n 1000 -s 64 || rc=1
echo "== rping server"
fabvm-signal rping-server
rping -s -a "$FABVM_ADDR" -C 10 -v || rc=1
exit $rc'
client="$common"'
echo "== ibv_rc_pingpong client"
fabvm-wait vm2-ready 60 &&
	fabvm-retry 30 ibv_rc_pingpong -d "$FABVM_RDMA_DEV" -g "$FABVM_GID_INDEX" -n 1000 -s 64 "$FABVM_ADDR_2" || rc=1
echo "== rping client"
fabvm-wait rping-server 60 && fabvm-retry 30 rping -c -a "$FABVM_ADDR_2" -C 10 -v || rc=1
exit $rc'

t0=$(date +%s.%N)
run_rc=0
"$here/fabvm.sh" run --vms 2 --timeout 120 --out "$out" --share "$tmp" \
	--cmd1 "$client" --cmd2 "$server" || run_rc=$?
t1=$(date +%s.%N)

pass=0
failed=0
check() {
	local what=$1 file=$2 pattern=$3
	if grep -qE -- "$pattern" "$file" 2>/dev/null; then
		echo "PASS $what"
		pass=$((pass + 1))
	else
		echo "FAIL $what (no /$pattern/ in $file)"
		failed=$((failed + 1))
	fi
}
for i in 1 2; do
	check "vm$i: ibv_devices lists rxe0" "$out/vm$i/out" '^ +rxe0 '
	check "vm$i: rdma link rxe0 ACTIVE on eth0" "$out/vm$i/out" 'link rxe0/1 state ACTIVE .*netdev eth0'
	check "vm$i: KVM guest ran" "$out/vm$i/out" '^kvm-smoke: ok'
	check "vm$i: command exit 0" "$out/vm$i/rc" '^0$'
done
check "ibv_rc_pingpong client" "$out/vm1/out" '^1000 iters in'
check "ibv_rc_pingpong server" "$out/vm2/out" '^1000 iters in'
check "rping client" "$out/vm1/out" '^ping data: rdma-ping-9:'
check "rping server" "$out/vm2/out" '^server ping data: rdma-ping-9:'
[ "$run_rc" = 0 ] || { echo "FAIL fabvm.sh exit $run_rc"; failed=$((failed + 1)); }

echo "round trip: $(grep -h 'usec/iter' "$out/vm1/out" || echo -)"
awk -v a="$t0" -v b="$t1" 'BEGIN { printf "end to end: %.1f s\n", b - a }'
echo "results in $out"
echo "$pass passed, $failed failed"
[ "$failed" = 0 ]
