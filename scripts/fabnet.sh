#!/bin/sh
# Test and demo network: one hub namespace with a bridge, and one namespace
# per node joined to it by a veth pair. Names carry a prefix unique to the
# run, so runs never collide and leftovers can be recognised and swept.
#
#   fabnet.sh create PREFIX N   hub "PREFIX-hub" (br0 10.77.0.1/24) and nodes
#                               "PREFIX-n1".."PREFIX-nN" (eth0 10.77.0.1X/24)
#   fabnet.sh destroy PREFIX    kill what runs inside them, delete them
#   fabnet.sh sweep             destroy every fab-*-PID-* prefix whose PID is gone
set -eu

SUBNET=10.77.0

ns_list() {
	ip netns list 2>/dev/null | awk '{print $1}'
}

destroy() {
	prefix=$1
	for ns in $(ns_list | grep "^$prefix-" || true); do
		pids=$(ip netns pids "$ns" 2>/dev/null || true)
		[ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
	done
}

create() {
	prefix=$1
	n=$2
	hub="$prefix-hub"
	trap 'destroy "$prefix"' EXIT
	ip netns add "$hub"
	ip -n "$hub" link set lo up
	ip -n "$hub" link add br0 type bridge
	ip -n "$hub" addr add "$SUBNET.1/24" dev br0
	ip -n "$hub" link set br0 up
	i=1
	while [ "$i" -le "$n" ]; do
		ns="$prefix-n$i"
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip -n "$hub" link add "vn$i" type veth peer name eth0 netns "$ns"
		ip -n "$hub" link set "vn$i" master br0 up
		ip -n "$ns" addr add "$SUBNET.$((10 + i))/24" dev eth0
		ip -n "$ns" link set eth0 up
		i=$((i + 1))
	done
	trap - EXIT
}

sweep() {
	for ns in $(ns_list | grep '^fab-' || true); do
		pid=$(echo "$ns" | sed -n 's/^fab-[a-z0-9]*-\([0-9]*\)-.*$/\1/p')
		[ -n "$pid" ] || continue
		if ! kill -0 "$pid" 2>/dev/null; then
			pids=$(ip netns pids "$ns" 2>/dev/null || true)
			[ -n "$pids" ] && kill -9 $pids 2>/dev/null || true
			ip netns del "$ns" 2>/dev/null || true
		fi
	done
}

case "${1:-}" in
create) create "$2" "$3" ;;
destroy) destroy "$2" ;;
sweep) sweep ;;
*)
	echo "usage: $0 create PREFIX N | destroy PREFIX | sweep" >&2
	exit 2
	;;
esac
