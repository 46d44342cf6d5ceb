#!/bin/sh
# bench/remote_vm.sh — remote VMBus between two soft-RoCE VMs against the
# verbs floors of the same VMs, in one run (issue 6's benchmark):
#
#   remote_vm.sh [--transport rdma|tcp] [--secs S] [--echo-n N] BUILD_DIR
#
# VM 2 (node-b) exports an echo device and a 64 MiB disk; VM 1 (node-a)
# runs the guests:
#   1. 512 B request/response: vmbus_bench echo through the remote echo
#      device, against ibv_rc_pingpong -s 512 between the same VMs;
#   2. 64 KiB GPA-direct transfers at queue depth 8: blockbench seqwrite
#      (node-b pulls the guest's data: RDMA READ) against ib_read_bw, and
#      seqread (node-b pushes into guest RAM: RDMA WRITE) against
#      ib_write_bw, 64 KiB messages.
# Everything runs under QEMU's software emulation, so absolute figures mean
# little; the ratio to the floor in the same VMs is the figure.
# Needs root, deploy/vm's packages and perftest (scripts/install-deps.sh).
set -eu

transport=rdma
secs=5
echo_n=2000
while [ $# -gt 1 ]; do
	case $1 in
	--transport) transport=$2 ;;
	--secs) secs=$2 ;;
	--echo-n) echo_n=$2 ;;
	*) echo "usage: $0 [--transport rdma|tcp] [--secs S] [--echo-n N] BUILD_DIR" >&2; exit 2 ;;
	esac
	shift 2
done
[ $# -eq 1 ] || { echo "usage: $0 [--transport rdma|tcp] [--secs S] [--echo-n N] BUILD_DIR" >&2; exit 2; }
build=$(readlink -f "$1")
here=$(dirname "$(readlink -f "$0")")
fabvm="$here/../deploy/vm/fabvm.sh"
for t in ib_write_bw ib_read_bw ibv_rc_pingpong qemu-system-x86_64; do
	command -v $t >/dev/null 2>&1 || { echo "$0: $t missing (scripts/install-deps.sh)" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/fab-bench-vm.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
"$build/controller/fabctl" pki init --dir "$work/pki" --nodes node-a,node-b >/dev/null
B=10.88.0.12
cat >"$work/b.conf" <<EOF
name = node-b
pki = $work/pki
data_listen = $B:7800
transport = $transport
[export disk0]
path = /tmp/disk0.img
[export echo0]
type = echo
EOF
cat >"$work/a.conf" <<EOF
name = node-a
pki = $work/pki
transport = $transport
[remote bench/disk0]
node = node-b
address = $B:7800
export = disk0
[remote bench/echo0]
node = node-b
address = $B:7800
export = echo0
type = echo
EOF
ms=$((secs * 1000))
fabnode="$build/node-hv/fabnode"
run="$fabnode run --memory 256M --config $work/a.conf --name bench"
gid='$FABVM_GID_INDEX'

cmd2='set -u
truncate -s 64M /tmp/disk0.img
'"$fabnode"' serve --config '"$work"'/b.conf 2>/tmp/b.log &
pid=$!
fabvm-retry 30 grep -q "serving 2 export" /tmp/b.log && fabvm-signal served
fabvm-wait ours-done 600 || exit 1
kill $pid; wait $pid; cp /tmp/b.log "$FABVM_OUT/b.log"
ibv_rc_pingpong -d rxe0 -g '"$gid"' -s 512 -n '"$echo_n"' > "$FABVM_OUT/pp.out" 2>&1
ib_read_bw -d rxe0 -x '"$gid"' -s 65536 -D '"$secs"' -q 1 -F --report_gbits > "$FABVM_OUT/rbw.out" 2>&1
ib_write_bw -d rxe0 -x '"$gid"' -s 65536 -D '"$secs"' -q 1 -F --report_gbits > "$FABVM_OUT/wbw.out" 2>&1
exit 0'

cmd1='set -u
fabvm-wait served 120 || exit 1
'"$run $build/guest/vmbus_bench.elf"' -- echo '"$echo_n"' 512 > "$FABVM_OUT/echo.out" 2>&1
'"$run $build/guest/blockbench.elf"' -- --mode seqwrite --bs 65536 --qd 8 --blocks 1024 --ops 1 --ms '"$ms"' > "$FABVM_OUT/sw.out" 2>&1
'"$run $build/guest/blockbench.elf"' -- --mode seqread --bs 65536 --qd 8 --blocks 1024 --ops 1 --ms '"$ms"' --gen 9 > "$FABVM_OUT/sr.out" 2>&1
fabvm-signal ours-done
sleep 1
fabvm-retry 60 ibv_rc_pingpong -d rxe0 -g '"$gid"' -s 512 -n '"$echo_n"' '"$B"' > "$FABVM_OUT/pp.out" 2>&1
sleep 1
fabvm-retry 60 ib_read_bw -d rxe0 -x '"$gid"' -s 65536 -D '"$secs"' -q 1 -F --report_gbits '"$B"' > "$FABVM_OUT/rbw.out" 2>&1
sleep 1
fabvm-retry 60 ib_write_bw -d rxe0 -x '"$gid"' -s 65536 -D '"$secs"' -q 1 -F --report_gbits '"$B"' > "$FABVM_OUT/wbw.out" 2>&1
exit 0'

out="$work/out"
if ! "$fabvm" run --vms 2 --mem 1536 --out "$out" --share "$build" --share "$work" \
	--timeout 900 -q --cmd1 "$cmd1" --cmd2 "$cmd2"; then
	for f in "$out"/vm*/*.out "$out"/vm*/err "$out"/vm2/b.log; do
		[ -f "$f" ] && { echo "----- $f"; tail -20 "$f"; }
	done
	exit 1
fi
o="$out/vm1"
# seqread with another pattern generation than seqwrite wrote: blockbench
# counts every block as a mismatch, expected here; only the rate is used.
python3 - "$o" "$transport" "$secs" <<'PY'
import re, sys
o, transport, secs = sys.argv[1], sys.argv[2], sys.argv[3]
def grab(path, rx, what):
    t = open(path).read()
    m = re.search(rx, t)
    if not m:
        sys.exit(f"remote_vm: no {what} in {path}:\n{t}")
    return float(m.group(1))
n = grab(f"{o}/echo.out", r"echo n=(\d+)", "echo count")
rtt = grab(f"{o}/echo.out", r"ref_100ns=(\d+)", "echo time") / 10.0 / n
pp = grab(f"{o}/pp.out", r"= ([\d.]+) usec/iter", "ibv_rc_pingpong result")
sw = grab(f"{o}/sw.out", r"kib_s=(\d+)", "seqwrite rate") * 1024 / 1e6
sr = grab(f"{o}/sr.out", r"kib_s=(\d+)", "seqread rate") * 1024 / 1e6
def bw(path):
    # perftest: "#bytes #iterations BW peak[Gb/sec] BW average[Gb/sec] MsgRate"
    for line in open(path):
        f = line.split()
        if len(f) >= 4 and f[0] == "65536":
            return float(f[3]) * 1e9 / 8 / 1e6
    sys.exit(f"remote_vm: no 65536-byte result in {path}:\n" + open(path).read())
rbw, wbw = bw(f"{o}/rbw.out"), bw(f"{o}/wbw.out")
print(f"remote_vm: two QEMU (TCG) VMs, soft-RoCE rxe0, rvmbus over {transport}; "
      f"{secs} s per transfer run; absolute figures are emulation's, the ratio is the figure")
print(f"{'measure':<44} {'fabric':>12}   {'floor (same VMs)':<30} {'value':>12}   ratio")
print(f"{'512 B request/response (mean)':<44} {rtt:9.1f} us   {'ibv_rc_pingpong -s 512':<30} {pp:9.1f} us   {rtt/pp:5.2f}x")
print(f"{'64 KiB guest writes, QD8 (node-b pulls)':<44} {sw:7.1f} MB/s   {'ib_read_bw 64 KiB':<30} {rbw:7.1f} MB/s   {sw/rbw:5.2f}x")
print(f"{'64 KiB guest reads, QD8 (node-b pushes)':<44} {sr:7.1f} MB/s   {'ib_write_bw 64 KiB':<30} {wbw:7.1f} MB/s   {sr/wbw:5.2f}x")
PY
