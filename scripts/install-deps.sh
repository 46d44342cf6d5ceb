#!/bin/sh
# Installs the Debian 12 packages that the build, the tests, the demo and the
# benchmarks need (fio and qemu-utils: the peer bench_remote compares with).
# Idempotent: packages already present are not fetched again.
set -eu

PKGS="build-essential cmake ninja-build pkg-config git ca-certificates
      libev-dev libssl-dev openssl libsqlite3-dev sqlite3
      protobuf-c-compiler libprotobuf-c-dev libcmocka-dev
      libibverbs-dev librdmacm-dev clang libclang-rt-14-dev
      iproute2 procps fio qemu-utils
      qemu-system-x86 linux-image-amd64 busybox-static xz-utils
      rdmacm-utils ibverbs-utils ibverbs-providers perftest"

missing=""
for p in $PKGS; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
		missing="$missing $p"
	fi
done

if [ -z "$missing" ]; then
	echo "install-deps: all packages present"
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing (run as root to install)" >&2
	exit 1
fi

echo "install-deps: installing$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
