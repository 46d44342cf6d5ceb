#!/bin/sh
# ctest wrapper: the soft-RoCE VM smoke test (deploy/vm/smoke.sh), skipped
# loudly (exit 77) where VMs cannot be made.
set -eu
here=$(dirname "$(readlink -f "$0")")
if [ "$(id -u)" -ne 0 ]; then
	echo "SKIP: soft-RoCE VMs need root (network namespace, tap devices)"
	exit 77
fi
for t in qemu-system-x86_64 busybox ip; do
	if ! command -v "$t" >/dev/null 2>&1; then
		echo "SKIP: $t not installed (scripts/install-deps.sh installs it)"
		exit 77
	fi
done
if ! ls /lib/modules/*/kernel/drivers/infiniband/sw/rxe/rdma_rxe.ko* >/dev/null 2>&1; then
	echo "SKIP: no Debian kernel with rdma_rxe under /lib/modules (package linux-image-amd64)"
	exit 77
fi
out=$(mktemp -d "${TMPDIR:-/tmp}/vm-smoke.XXXXXX")
trap 'rm -rf -- "$out"' EXIT
"$here/../../deploy/vm/smoke.sh" "$out"
