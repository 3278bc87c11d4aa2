#!/usr/bin/env bash
# Captures real rtnetlink replies from a throwaway network namespace as seeds for the
# netlink fuzz target: bash tools/fuzz/netlink-seeds.sh OUT_DIR (as root). Never touches
# the root namespace; the namespace is deleted on exit.
set -euo pipefail
out=${1:?usage: netlink-seeds.sh OUT_DIR}
here=$(cd "$(dirname "$0")" && pwd)
ns=pfx-fuzz-$$
ip netns add "$ns"
trap 'ip netns del "$ns" 2>/dev/null || true' EXIT
x() { ip netns exec "$ns" "$@"; }
x ip link set lo up
x ip link add pfx-a type veth peer name pfx-b
x ip link set pfx-a address 02:00:00:00:00:0a up
x ip link set pfx-b up
x ip addr add 10.168.0.2/24 dev pfx-a
x ip addr add 10.168.0.5/32 dev pfx-a
x ip addr add 192.0.2.1 peer 192.0.2.2 dev pfx-b
x ip -6 addr add fd00::1/64 dev pfx-a nodad
x ip link add flannel.1 type vxlan id 1 local 10.168.0.2 dev pfx-a nolearning dstport 8472
x ip link set flannel.1 address 0e:00:00:00:00:0a up
x ip addr add 10.244.0.0/32 dev flannel.1
x ip link add pfx-br type bridge 2>/dev/null || true  # a third kind of link, if the kernel has it
x ip neigh add 10.168.0.3 lladdr 02:00:00:00:00:0b dev pfx-a nud permanent
x ip neigh add 10.168.0.4 lladdr 02:00:00:00:00:0c dev pfx-a nud stale
x ip neigh add 10.168.0.9 dev pfx-a nud incomplete 2>/dev/null || x ip neigh add 10.168.0.9 dev pfx-a nud failed
x ip neigh add 10.244.1.0 lladdr 0e:00:00:00:00:0b dev flannel.1 nud permanent
x ip neigh add proxy 10.168.0.77 dev pfx-a
x ip -6 neigh add fd00::2 lladdr 02:00:00:00:00:0d dev pfx-a nud permanent
x python3 "$here/capture-netlink.py" "$out"
