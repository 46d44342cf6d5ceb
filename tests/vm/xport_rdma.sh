#!/bin/sh
# The RDMA transport's tests between two soft-RoCE VMs:
#   xport_rdma.sh BUILD_DIR
# test_xport_rdma runs as server in VM 2 and client in VM 1 (message
# exchange, credits exhausted and replenished, RDMA READ/WRITE, remote
# access refused, foreign CA and wrong names refused). Exit 77 (skip) where
# VMs cannot be made.
set -eu
build=$(readlink -f "$1")
here=$(dirname "$(readlink -f "$0")")
t="$build/tests/unit/test_xport_rdma"
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: soft-RoCE VMs need root"
	exit 77
fi
if ! command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	! ls /lib/modules/*/kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko* >/dev/null 2>&1; then
	echo "SKIP: QEMU or a Debian kernel with rdma_rxe missing (scripts/install-deps.sh)"
	exit 77
fi
work=$(mktemp -d /var/tmp/fab-vm-xrdma.XXXXXX)
trap 'rm -rf -- "$work"' EXIT
"$t" pki "$work/pki" >/dev/null
if ! "$here/../../deploy/vm/fabvm.sh" run --vms 2 --out "$work/out" --share "$build" \
	--share "$work" --timeout 180 -q \
	--cmd2 "XR_PKI=$work/pki $t server \$FABVM_ADDR:7471" \
	--cmd1 "fabvm-wait vm2-ready 60 && XR_PKI=$work/pki $t client \$FABVM_ADDR_2:7471 n2"; then
	for f in "$work"/out/vm*/out "$work"/out/vm*/err; do
		[ -f "$f" ] && { echo "----- $f"; tail -60 "$f"; }
	done
	exit 1
fi
tail -3 "$work/out/vm1/out"
tail -3 "$work/out/vm2/out"
