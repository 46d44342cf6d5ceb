#!/bin/sh
# Runs a test program that needs KVM.
#
# Where /dev/kvm opens, the program runs here. Where it does not (a host
# without hardware virtualization exposed), it runs inside a throw-away
# QEMU VM (deploy/vm/fabvm.sh: TCG with an emulated SVM, so KVM works in
# there), with the host's root filesystem and this build tree shared
# read-only; the test's own exit status comes back. When neither is
# possible (not root, no QEMU, or --no-vm) it skips loudly with exit 77.
#
#   kvm_run.sh [--no-vm WHY] [--mem MB] [--smp N] [--timeout S] [--share DIR]...
#              -- PROGRAM [ARGS...]
#
# --timeout S: how long one VM may run (default 400 s, below the
# tests' ctest timeout so a hang still shows its output and console).
# --share DIR: the VM sees DIR too (its /tmp is its own: a build tree or
# source tree under /tmp must be shared to be seen).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
FABVM=$HERE/../../deploy/vm/fabvm.sh
MEM=4096
SMP=2
TIMEOUT=400
VM=1
NOVM_WHY=""
SHARES=""

while [ $# -gt 0 ]; do
	case "$1" in
	--no-vm) VM=0; NOVM_WHY=$2; shift ;;
	--mem) MEM=$2; shift ;;
	--smp) SMP=$2; shift ;;
	--timeout) TIMEOUT=$2; shift ;;
	--share) SHARES="$SHARES --share $2"; shift ;;
	--) shift; break ;;
	*) echo "kvm_run.sh: unknown option $1" >&2; exit 2 ;;
	esac
	shift
done
[ $# -ge 1 ] || { echo "usage: kvm_run.sh [options] -- PROGRAM [ARGS...]" >&2; exit 2; }

# dd opens the device and reads nothing: the open is the test.
if dd if=/dev/kvm of=/dev/null count=0 2>/dev/null; then
	exec "$@"
fi
why=""
if [ "$VM" -eq 0 ]; then
	why="this test does not run in a VM: $NOVM_WHY"
elif [ "$(id -u)" -ne 0 ]; then
	why="not root (the VM needs a network namespace and a tap device)"
elif ! command -v qemu-system-x86_64 >/dev/null; then
	why="qemu-system-x86_64 is not installed"
elif ! ls /boot/vmlinuz-* >/dev/null 2>&1; then
	why="no Debian kernel in /boot (linux-image-amd64)"
fi
if [ -n "$why" ]; then
	echo "SKIP: /dev/kvm cannot be opened here and $why: $(basename "$1") was NOT run"
	exit 77
fi

OUT=$(mktemp -d /var/tmp/fabkvm-XXXXXX)
trap 'rm -rf "$OUT"' EXIT INT TERM
# The program and its arguments, quoted for the VM's shell.
cmd=""
for a in "$@"; do
	cmd="$cmd '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'"
done
echo "kvm_run.sh: no usable /dev/kvm here; running $(basename "$1") in a QEMU VM with nested KVM" \
	"($SMP vCPUs, $MEM MiB)"
# A VM that ends without the test's exit status — its kernel panicked, or
# the whole VM wedged and was killed — failed below the test: a test that
# hangs is stopped inside the VM and reports 124. Under TCG's emulated SVM
# both have happened with nested KVM under load (a kernel stack corrupted
# in __schedule; a VM that stopped answering). The run is repeated once in
# a new VM, saying so, with the panic's reason where there is one; a second
# such end fails the test.
attempt=1
while :; do
	start=$(date +%s)
	rm -rf "${OUT:?}"/*
	set +e
	# shellcheck disable=SC2086 # SHARES holds option pairs
	"$FABVM" run --vms 1 --smp "$SMP" --mem "$MEM" --modules veth,bridge --timeout "$TIMEOUT" \
		$SHARES --out "$OUT" -q --cmd1 "$cmd"
	set -e
	rc=$(cat "$OUT/vm1/rc" 2>/dev/null || echo "")
	panic=""
	if [ -z "$rc" ]; then
		panic=$(grep -a -m1 -E "Kernel panic|stack-protector|BUG:|Oops" "$OUT/vm1/console.log" 2>/dev/null || true)
	fi
	if [ -z "$rc" ] && [ "$attempt" -lt 2 ]; then
		if [ -n "$panic" ]; then
			echo "kvm_run.sh: the VM's kernel panicked after $(($(date +%s) - start)) s" \
				"(\"$(printf '%s' "$panic" | tr -d '\r')\"); the test's output so far:"
		else
			echo "kvm_run.sh: the VM ended without the test's exit status after" \
				"$(($(date +%s) - start)) s (wedged or died); the test's output so far:"
			tail -n 5 "$OUT/vm1/console.log" 2>/dev/null || true
		fi
		cat "$OUT/vm1/out" 2>/dev/null || true
		cat "$OUT/vm1/err" >&2 2>/dev/null || true
		echo "kvm_run.sh: running $(basename "$1") once more in a new VM"
		attempt=$((attempt + 1))
		continue
	fi
	break
done
cat "$OUT/vm1/out" 2>/dev/null || true
cat "$OUT/vm1/err" >&2 2>/dev/null || true
echo "kvm_run.sh: $(basename "$1") in the VM: exit ${rc:-none} after $(($(date +%s) - start)) s" \
	"(attempt $attempt)"
if [ -z "$rc" ]; then
	echo "kvm_run.sh: the VM did not report an exit status (boot failure, kernel panic or timeout):" >&2
	[ -z "$panic" ] || echo "kvm_run.sh: guest kernel: $panic" >&2
	tail -n 30 "$OUT/vm1/console.log" >&2 2>/dev/null || true
	exit 1
fi
exit "$rc"
