#!/usr/bin/env bash
# Capture, as byte-exact fixtures, what the Linux kernel puts on the wire when it forwards a
# pod's packet to a remote node in flannel's VXLAN and host-gw modes. podfwd's encapsulation
# is tested against these files (see docs/kernel-vxlan.md).
#
# Topology, entirely inside namespaces this script creates (pfx-cap-<pid>-*):
#
#   podA eth0 --- veth-pod nodeA eth0 ===== eth0 nodeB veth-pod --- eth0 podB
#   10.244.0.2    10.244.0.1     10.168.0.2    10.168.0.3  10.244.1.1    10.244.1.2
#   02..a2        02..a3         02..a1        02..b1      02..b3        02..b2
#                 flannel.1 0e..0a (VNI 1, 8472)   flannel.1 0e..0b
#
# Usage: tools/capture-kernel-vxlan.sh [--experiments] [--pcap-dir DIR] [OUT_DIR]
#   OUT_DIR          where the .bin fixtures go (default: src/wire/testdata of this repo)
#   --experiments    also run the experiments docs/kernel-vxlan.md cites (source port
#                    derivation, IP ID, ECN, foreign inner destination MAC) and print results
#   --pcap-dir DIR   keep the pcap files there (default: a temporary directory, removed)
#   -v               print every command
#
# Needs root, iproute2, tcpdump, ethtool, ping (iputils), python3. Exit status 0 on success,
# 1 on failure, 2 on a missing prerequisite (a "skip" for CI). Touches nothing in the
# root namespace: every link is created inside a namespace (ip -n) and all namespaces are
# deleted on exit, also on failure or interrupt.

set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR="$REPO/src/wire/testdata"
EXPERIMENTS=0
PCAP_DIR=""
while [ $# -gt 0 ]; do
    case "$1" in
    --experiments) EXPERIMENTS=1 ;;
    --pcap-dir) PCAP_DIR=$2; shift ;;
    -v) set -x ;;
    -h | --help) sed -n '2,25p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 1 ;;
    *) OUT_DIR=$1 ;;
    esac
    shift
done

skip() { echo "SKIP: $*" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || skip "needs root (network namespaces)"
for tool in ip tcpdump ethtool ping bridge; do
    command -v "$tool" >/dev/null || skip "$tool not installed"
done
# A real interpreter path: version-manager shims may not work under `ip netns exec`.
PY=$(command -v /usr/bin/python3 || command -v python3) || skip "python3 not installed"
ip netns list >/dev/null 2>&1 || skip "ip netns unavailable"

PFX="pfx-cap-$$-"
PODA=${PFX}podA
NODEA=${PFX}nodeA
NODEB=${PFX}nodeB
PODB=${PFX}podB
ALL_NS=("$PODA" "$NODEA" "$NODEB" "$PODB")

WORK=$(mktemp -d /tmp/pfx-cap-$$.XXXXXX)
CAPTURE_PIDS=()

cleanup() {
    local rc=$?
    set +e
    for pid in "${CAPTURE_PIDS[@]}"; do kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    for ns in "${ALL_NS[@]}"; do
        # Kill anything still running inside before deleting (a namespace lives on while
        # a process holds it).
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'exit 129' HUP
trap 'exit 141' PIPE

# Namespaces of earlier runs that died without cleaning up (SIGKILL): the pid in the name
# is no longer alive.
for ns in $(ip netns list | awk '{print $1}' | grep '^pfx-cap-[0-9]*-' || true); do
    pid=${ns#pfx-cap-}; pid=${pid%%-*}
    if ! kill -0 "$pid" 2>/dev/null; then
        echo "removing stale namespace $ns"
        ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
        ip netns del "$ns" || true
    fi
done
for dir in /tmp/pfx-cap-[0-9]*.*; do
    [ -d "$dir" ] || continue
    pid=${dir#/tmp/pfx-cap-}; pid=${pid%%.*}
    kill -0 "$pid" 2>/dev/null || rm -rf "$dir"
done

nsx() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# ---------------------------------------------------------------------------------------
# Topology

for ns in "${ALL_NS[@]}"; do
    ip netns add "$ns"
    nsx "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
    nsx "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
    ip -n "$ns" link set lo up
done

# veth pairs are created inside a namespace and the peer is created directly in the other
# one: no end ever exists in the root namespace.
ip -n "$PODA" link add eth0 address 02:00:00:00:00:a2 type veth \
    peer name veth-pod address 02:00:00:00:00:a3 netns "$NODEA"
ip -n "$NODEA" link add eth0 address 02:00:00:00:00:a1 type veth \
    peer name eth0 address 02:00:00:00:00:b1 netns "$NODEB"
ip -n "$PODB" link add eth0 address 02:00:00:00:00:b2 type veth \
    peer name veth-pod address 02:00:00:00:00:b3 netns "$NODEB"

# Pods: the sender computes its own L4 checksums (tx checksum offload off), so the bytes
# captured are the bytes a real NIC would send, not a CHECKSUM_PARTIAL pseudo-header sum.
for ns in "$PODA" "$PODB"; do
    nsx "$ns" ethtool -K eth0 tx off >/dev/null
done
ip -n "$PODA" addr add 10.244.0.2/24 dev eth0
ip -n "$PODA" link set eth0 up
ip -n "$PODA" route add default via 10.244.0.1
ip -n "$PODA" neigh replace 10.244.0.1 lladdr 02:00:00:00:00:a3 dev eth0 nud permanent
ip -n "$PODB" addr add 10.244.1.2/24 dev eth0
ip -n "$PODB" link set eth0 up
ip -n "$PODB" route add default via 10.244.1.1
ip -n "$PODB" neigh replace 10.244.1.1 lladdr 02:00:00:00:00:b3 dev eth0 nud permanent

# Nodes: pod side and underlay.
ip -n "$NODEA" addr add 10.244.0.1/24 dev veth-pod
ip -n "$NODEA" addr add 10.168.0.2/24 dev eth0
ip -n "$NODEB" addr add 10.244.1.1/24 dev veth-pod
ip -n "$NODEB" addr add 10.168.0.3/24 dev eth0
for ns in "$NODEA" "$NODEB"; do
    # The VTEP's outer UDP checksum is on by default (see docs); with tx offload on the
    # veth the capture would hold only the pseudo-header sum. Software checksums = wire bytes.
    nsx "$ns" ethtool -K eth0 tx off >/dev/null
    ip -n "$ns" link set veth-pod up
    ip -n "$ns" link set eth0 up
    nsx "$ns" sysctl -qw net.ipv4.ip_forward=1
done
ip -n "$NODEA" neigh replace 10.244.0.2 lladdr 02:00:00:00:00:a2 dev veth-pod nud permanent
ip -n "$NODEA" neigh replace 10.168.0.3 lladdr 02:00:00:00:00:b1 dev eth0 nud permanent
ip -n "$NODEB" neigh replace 10.244.1.2 lladdr 02:00:00:00:00:b2 dev veth-pod nud permanent
ip -n "$NODEB" neigh replace 10.168.0.2 lladdr 02:00:00:00:00:a1 dev eth0 nud permanent

# VTEPs exactly as flanneld writes them (DESIGN.md); MTU = underlay MTU - 50 as flanneld
# sets it; the /32 address flanneld gives flannel.1 (the subnet's .0).
vtep() { # ns own_ip own_mac own_net0 peer_net0 peer_cidr peer_ip peer_mac
    local ns=$1 own_ip=$2 own_mac=$3 own_net0=$4 peer_net0=$5 peer_cidr=$6 peer_ip=$7 peer_mac=$8
    local mtu
    mtu=$(ip -n "$ns" -o link show eth0 | sed -n 's/.* mtu \([0-9]*\) .*/\1/p')
    ip -n "$ns" link add flannel.1 type vxlan id 1 local "$own_ip" dev eth0 nolearning dstport 8472
    ip -n "$ns" link set flannel.1 address "$own_mac" mtu $((mtu - 50))
    ip -n "$ns" addr add "$own_net0/32" dev flannel.1
    ip -n "$ns" link set flannel.1 up
    ip -n "$ns" neigh add "$peer_net0" lladdr "$peer_mac" dev flannel.1 nud permanent
    bridge -n "$ns" fdb add "$peer_mac" dev flannel.1 dst "$peer_ip"
    ip -n "$ns" route add "$peer_cidr" via "$peer_net0" dev flannel.1 onlink
}
vtep "$NODEA" 10.168.0.2 0e:00:00:00:00:0a 10.244.0.0 10.244.1.0 10.244.1.0/24 10.168.0.3 0e:00:00:00:00:0b
vtep "$NODEB" 10.168.0.3 0e:00:00:00:00:0b 10.244.1.0 10.244.0.0 10.244.0.0/24 10.168.0.2 0e:00:00:00:00:0a

# ---------------------------------------------------------------------------------------
# Capture helpers

# start_capture NAME NS IFACE DIRECTION COUNT FILTER... -> background tcpdump writing
# $WORK/NAME.pcap; returns once tcpdump is listening.
start_capture() {
    local name=$1 ns=$2 ifc=$3 dir=$4 count=$5; shift 5
    local args=(-i "$ifc" -Q "$dir" -nn -U --immediate-mode -w "$WORK/$name.pcap")
    [ "$count" -gt 0 ] && args+=(-c "$count")
    # Not through a shell function: $! must be the process that gets the signal. timeout
    # forwards SIGINT to tcpdump and bounds a capture that never sees its frame.
    timeout -s INT 60 ip netns exec "$ns" tcpdump "${args[@]}" "$@" 2>"$WORK/$name.err" &
    CAPTURE_PIDS+=($!)
    eval "CAP_$name=$!"
    local i
    for i in $(seq 100); do
        grep -q "listening on" "$WORK/$name.err" 2>/dev/null && return 0
        sleep 0.05
    done
    cat "$WORK/$name.err" >&2
    echo "tcpdump for $name did not start" >&2
    return 1
}

# finish_capture NAME [wait]: wait (up to 5 s) for a counted capture to end, else stop it.
finish_capture() {
    local name=$1 pid
    eval "pid=\$CAP_$name"
    local i
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        [ "${2:-}" = wait ] || break
        sleep 0.05
    done
    # Frames still in flight (veth, forwarding, encapsulation) arrive within milliseconds.
    sleep 0.3
    kill -INT "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cat >"$WORK/pcap.py" <<'PYEOF'
"""Tiny pcap reader (stdlib only): extract frames, print the fields the docs cite."""
import struct, sys

def frames(path):
    data = open(path, "rb").read()
    if len(data) < 24:
        return []
    magic = struct.unpack("<I", data[:4])[0]
    end = "<" if magic in (0xA1B2C3D4, 0xA1B23C4D) else ">"
    linktype = struct.unpack(end + "I", data[20:24])[0]
    assert linktype == 1, f"{path}: linktype {linktype}, want Ethernet"
    off, out = 24, []
    while off + 16 <= len(data):
        _, _, incl, orig = struct.unpack(end + "IIII", data[off:off + 16])
        assert incl == orig, f"{path}: truncated capture"
        out.append(data[off + 16:off + 16 + incl])
        off += 16 + incl
    return out

def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s

def mac(b):
    return ":".join("%02x" % x for x in b)

def ip4(b):
    return ".".join(str(x) for x in b)

def check_ipv4(f, o, what):
    ihl = (f[o] & 0xF) * 4
    assert csum(f[o:o + ihl]) == 0xFFFF, f"{what}: bad IPv4 header checksum"
    proto = f[o + 9]
    tot = struct.unpack("!H", f[o + 2:o + 4])[0]
    l4 = f[o + ihl:o + tot]
    if proto == 17:
        ck = struct.unpack("!H", l4[6:8])[0]
        if ck != 0:
            pseudo = f[o + 12:o + 20] + struct.pack("!BBH", 0, 17, len(l4))
            assert csum(pseudo + l4) == 0xFFFF, f"{what}: bad UDP checksum"
    elif proto == 1:
        assert csum(l4) == 0xFFFF, f"{what}: bad ICMP checksum"

def describe(f):
    eth = f"eth {mac(f[6:12])} > {mac(f[0:6])} type 0x{f[12]:02x}{f[13]:02x}"
    o = 14
    ver_ihl, tos, tot, ident, frag, ttl, proto, ck = struct.unpack("!BBHHHBBH", f[o:o + 12])
    ip = (f"ip {ip4(f[o+12:o+16])} > {ip4(f[o+16:o+20])} tos 0x{tos:02x} len {tot} "
          f"id 0x{ident:04x} flags {'DF' if frag & 0x4000 else '--'} ttl {ttl} proto {proto} "
          f"csum 0x{ck:04x}")
    s = f"{eth} | {ip}"
    if proto == 17:
        sp, dp, ln, uck = struct.unpack("!HHHH", f[34:42])
        s += f" | udp {sp} > {dp} len {ln} csum 0x{uck:04x}"
        if dp == 8472:
            flags, vni = f[42], int.from_bytes(f[46:49], "big")
            s += f" | vxlan flags 0x{flags:02x} rsvd {f[43:46].hex()} vni {vni} rsvd {f[49]:02x}"
            s += "\n    inner: " + describe(f[50:])
    return s

def main():
    cmd = sys.argv[1]
    if cmd == "extract":  # extract PCAP OUT.bin [index]
        fs = frames(sys.argv[2])
        idx = int(sys.argv[4]) if len(sys.argv) > 4 else 0
        if len(fs) <= idx:
            sys.exit(f"{sys.argv[2]}: {len(fs)} frame(s), wanted frame {idx}")
        open(sys.argv[3], "wb").write(fs[idx])
    elif cmd == "describe":  # describe FILE... (.pcap or raw .bin)
        for p in sys.argv[2:]:
            fs = frames(p) if p.endswith(".pcap") else [open(p, "rb").read()]
            for f in fs:
                print(f"{p.rsplit('/', 1)[-1]} ({len(f)} bytes): {describe(f)}")
    elif cmd == "sports":  # sports PCAP: outer UDP source port, outer IP ID of each frame
        for f in frames(sys.argv[2]):
            sp = struct.unpack("!H", f[34:36])[0]
            ident = struct.unpack("!H", f[18:20])[0]
            isp = struct.unpack("!H", f[84:86])[0] if f[50 + 14 + 9] == 17 else None
            icmp_id = struct.unpack("!H", f[88:90])[0] if f[50 + 14 + 9] == 1 else None
            print(f"outer_sport {sp} outer_id 0x{ident:04x} outer_tos 0x{f[15]:02x} "
                  f"inner_tos 0x{f[65]:02x} inner_sport {isp} icmp_id {icmp_id}")
    elif cmd == "verify-encap":  # verify-encap POD.bin OUTER.bin: inner == forwarded pod frame
        pod, outer = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
        check_ipv4(pod, 14, "pod frame")
        check_ipv4(outer, 14, "outer")
        inner = outer[50:]
        check_ipv4(inner, 14, "inner")
        assert len(inner) == len(pod), f"inner {len(inner)} bytes, pod frame {len(pod)}"
        assert inner[0:6] == bytes.fromhex("0e000000000b"), "inner dst != peer VTEP MAC"
        assert inner[6:12] == bytes.fromhex("0e000000000a"), "inner src != own VTEP MAC"
        assert inner[22] == pod[22] - 1, "inner TTL not decremented by one"
        same = lambda a, b: a[12:22] + a[23:24] + a[26:] == b[12:22] + b[23:24] + b[26:]
        assert same(inner, pod), "inner differs from the pod frame beyond MACs/TTL/checksum"
        print(f"ok: {sys.argv[3].rsplit('/', 1)[-1]} = VXLAN({sys.argv[2].rsplit('/', 1)[-1]} "
              f"with MACs 0e..0a > 0e..0b, TTL {pod[22]}->{inner[22]}, IP checksum updated)")
    elif cmd == "verify-hostgw":  # verify-hostgw POD.bin ROUTED.bin
        pod, routed = open(sys.argv[2], "rb").read(), open(sys.argv[3], "rb").read()
        check_ipv4(routed, 14, "routed")
        assert routed[0:6] == bytes.fromhex("0200000000b1"), "dst MAC != nodeB underlay"
        assert routed[6:12] == bytes.fromhex("0200000000a1"), "src MAC != nodeA underlay"
        assert routed[22] == pod[22] - 1, "TTL not decremented by one"
        assert routed[12:22] + routed[23:24] + routed[26:] == pod[12:22] + pod[23:24] + pod[26:]
        print(f"ok: host-gw frame = pod frame with MACs 02..a1 > 02..b1, TTL "
              f"{pod[22]}->{routed[22]}, IP checksum updated")
    else:
        sys.exit(f"unknown command {cmd}")

main()
PYEOF
pcap() { "$PY" "$WORK/pcap.py" "$@"; }

# Fixed traffic from podA.
PING_PATTERN=706f6466776400ff # "podfwd\0\xff", repeated by ping over the payload after the timestamp
PING_ID=20550 # 0x5046, "PF"; fixed so the fixture does not depend on ping's pid
send_ping() { # dst [extra ping args]
    local dst=$1; shift
    nsx "$PODA" ping -n -c1 -W1 -s 56 -p "$PING_PATTERN" "$@" "$dst" >"$WORK/ping.out" 2>&1 || true
}
send_udp() { # dport sport payload [connect]
    nsx "$PODA" "$PY" - "$@" <<'PYEOF'
import socket, sys
dport, sport, payload = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.244.0.2", sport))
if len(sys.argv) > 4 and sys.argv[4] == "connect":
    s.connect(("10.244.1.2", dport))
    s.send(payload)
else:
    s.sendto(payload, ("10.244.1.2", dport))
s.close()
PYEOF
}

mkdir -p "$OUT_DIR"
UNDERLAY_FILTER=(udp dst port 8472 and src host 10.168.0.2)

# ---------------------------------------------------------------------------------------
# VXLAN: ICMP echo and UDP from podA, seen leaving podA and arriving at nodeB.

# podB answers UDP so the capture also proves the kernel VTEP on nodeB accepted the frame.
ip netns exec "$PODB" "$PY" -c '
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.244.1.2", 5000))
s.settimeout(10)
data, peer = s.recvfrom(2048)
open(sys.argv[1], "w").write("%s %s:%d\n" % (data.decode(), peer[0], peer[1]))
' "$WORK/podb-received" &
CAPTURE_PIDS+=($!)
RECV_PID=$!
sleep 0.3

start_capture pod_icmp "$PODA" eth0 out 1 icmp and src host 10.244.0.2
start_capture vx_icmp "$NODEB" eth0 in 1 "${UNDERLAY_FILTER[@]}"
send_ping 10.244.1.2 -e "$PING_ID"
finish_capture pod_icmp wait
finish_capture vx_icmp wait
grep -q " 0% packet loss" "$WORK/ping.out" || { cat "$WORK/ping.out" >&2; echo "VXLAN ping failed" >&2; exit 1; }

start_capture pod_udp "$PODA" eth0 out 1 udp and src host 10.244.0.2
start_capture vx_udp "$NODEB" eth0 in 1 "${UNDERLAY_FILTER[@]}"
send_udp 5000 40000 podfwd
finish_capture pod_udp wait
finish_capture vx_udp wait
wait "$RECV_PID" || { echo "podB did not receive the UDP datagram" >&2; exit 1; }
echo "podB received: $(cat "$WORK/podb-received")"

pcap extract "$WORK/pod_icmp.pcap" "$OUT_DIR/pod_icmp.bin"
pcap extract "$WORK/vx_icmp.pcap" "$OUT_DIR/kernel_vxlan_icmp.bin"
pcap extract "$WORK/pod_udp.pcap" "$OUT_DIR/pod_udp.bin"
pcap extract "$WORK/vx_udp.pcap" "$OUT_DIR/kernel_vxlan_udp.bin"
pcap verify-encap "$OUT_DIR/pod_icmp.bin" "$OUT_DIR/kernel_vxlan_icmp.bin"
pcap verify-encap "$OUT_DIR/pod_udp.bin" "$OUT_DIR/kernel_vxlan_udp.bin"

# ---------------------------------------------------------------------------------------
# Experiments cited by docs/kernel-vxlan.md.

if [ "$EXPERIMENTS" = 1 ]; then
    echo
    echo "== E0: the VTEP as configured on nodeA"
    ip -n "$NODEA" -d link show flannel.1 | sed 's/^/    /'
    ip -n "$NODEA" neigh show dev flannel.1 | sed 's/^/    neigh: /'
    bridge -n "$NODEA" fdb show dev flannel.1 | sed 's/^/    fdb: /'
    ip -n "$NODEA" route show 10.244.1.0/24 | sed 's/^/    route: /'
    echo "    ip_default_ttl $(nsx "$NODEA" sysctl -n net.ipv4.ip_default_ttl)," \
        "ip_local_port_range $(nsx "$NODEA" sysctl -n net.ipv4.ip_local_port_range | tr '\t' ' ')"
    echo "== tcpdump decoding of the VXLAN fixtures (-T vxlan: tcpdump calls 8472 OTV)"
    for f in vx_icmp vx_udp; do
        tcpdump -r "$WORK/$f.pcap" -nn -e -vvv -xx -T vxlan 2>/dev/null | sed 's/^/    /'
    done

    echo "== E1: outer UDP source port / IP ID, same inner 5-tuple, 5 fresh unconnected sockets"
    start_capture e1 "$NODEB" eth0 in 0 "${UNDERLAY_FILTER[@]}"
    for _ in 1 2 3 4 5; do send_udp 5001 40000 podfwd; done
    finish_capture e1
    pcap sports "$WORK/e1.pcap"

    echo "== E2: same inner 5-tuple, 3 fresh *connected* sockets"
    start_capture e2 "$NODEB" eth0 in 0 "${UNDERLAY_FILTER[@]}"
    for _ in 1 2 3; do send_udp 5001 40000 podfwd connect; done
    finish_capture e2
    pcap sports "$WORK/e2.pcap"

    echo "== E3: inner source port 40000..40007 (unconnected)"
    start_capture e3 "$NODEB" eth0 in 0 "${UNDERLAY_FILTER[@]}"
    for p in $(seq 40000 40007); do send_udp 5001 "$p" podfwd; done
    finish_capture e3
    pcap sports "$WORK/e3.pcap"

    echo "== E4: ICMP echo, ids 1,1,2,3 (separate ping processes)"
    start_capture e4 "$NODEB" eth0 in 0 "${UNDERLAY_FILTER[@]}"
    for id in 1 1 2 3; do send_ping 10.244.1.2 -e "$id"; done
    finish_capture e4
    pcap sports "$WORK/e4.pcap"

    echo "== E5: nodeA net.ipv4.ip_local_port_range = 50000 50009, inner sports 40000..40007"
    old_range=$(nsx "$NODEA" sysctl -n net.ipv4.ip_local_port_range)
    nsx "$NODEA" sysctl -qw net.ipv4.ip_local_port_range="50000 50009"
    start_capture e5 "$NODEB" eth0 in 0 "${UNDERLAY_FILTER[@]}"
    for p in $(seq 40000 40007); do send_udp 5001 "$p" podfwd; done
    finish_capture e5
    pcap sports "$WORK/e5.pcap"
    nsx "$NODEA" sysctl -qw net.ipv4.ip_local_port_range="$old_range"

    echo "== E6: inner TOS/ECN -> outer TOS (ping -Q 0x00 0x01 0x02 0x03 0xb8 0xbb)"
    start_capture e6 "$NODEB" eth0 in 0 "${UNDERLAY_FILTER[@]}"
    for q in 0x00 0x01 0x02 0x03 0xb8 0xbb; do send_ping 10.244.1.2 -e 7 -Q "$q"; done
    finish_capture e6
    pcap sports "$WORK/e6.pcap"

    echo "== E8: nodeA underlay veth with tx checksum offload on (the veth default)"
    nsx "$NODEA" ethtool -K eth0 tx on >/dev/null
    start_capture e8 "$NODEB" eth0 in 0 "${UNDERLAY_FILTER[@]}"
    send_udp 5000 40000 podfwd
    finish_capture e8
    nsx "$NODEA" ethtool -K eth0 tx off >/dev/null
    "$PY" - "$WORK/e8.pcap" "$WORK/pcap.py" <<'PYEOF'
import struct, sys
exec(open(sys.argv[2]).read().split("def main")[0])
for f in frames(sys.argv[1]):
    ck = struct.unpack("!H", f[40:42])[0]
    pseudo = csum(f[26:34] + struct.pack("!BBH", 0, 17, len(f) - 34))
    full = 0xFFFF - csum(f[26:34] + struct.pack("!BBH", 0, 17, len(f) - 34) + f[34:40] + f[42:])
    print(f"    outer udp csum on the wire 0x{ck:04x}; pseudo-header sum 0x{pseudo:04x}; "
          f"correct checksum 0x{full:04x}")
PYEOF

    echo "== E9: what nodeB's kernel VTEP accepts (hand-built VXLAN sent from nodeA userspace)"
    ip netns exec "$PODB" "$PY" -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.244.1.2", 5002))
s.settimeout(2)
got = []
try:
    while True:
        got.append(s.recv(2048).decode())
except socket.timeout:
    pass
print("    podB received:", " ".join(sorted(got)) or "nothing")
' &
    E9_PID=$!
    CAPTURE_PIDS+=($E9_PID)
    sleep 0.3
    nsx "$NODEA" "$PY" - <<'PYEOF'
import socket, struct

def csum(b):
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b + b"\0" * (len(b) % 2)))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return 0xFFFF - s

def inner(tag, dst_mac="0e000000000b"):
    payload = tag.encode()
    udp = struct.pack("!HHHH", 40000, 5002, 8 + len(payload), 0) + payload  # csum 0: allowed
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 63, 17, 0,
                     socket.inet_aton("10.244.0.2"), socket.inet_aton("10.244.1.2"))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    return bytes.fromhex(dst_mac + "0e000000000a0800") + ip + udp

def vxlan(flags=0x08, vni=1):
    return struct.pack("!B3xI", flags, vni << 8)

cases = [  # tag, source port, zero outer checksum, vxlan header, inner dst mac
    ("sport1234-csum", 1234, False, vxlan(), "0e000000000b"),
    ("sport1234-zerocsum", 1234, True, vxlan(), "0e000000000b"),
    ("sport65535", 65535, False, vxlan(), "0e000000000b"),
    ("no-I-flag", 1234, False, vxlan(flags=0x00), "0e000000000b"),
    ("extra-flags-0x0c", 1234, False, vxlan(flags=0x0C), "0e000000000b"),
    ("vni2", 1234, False, vxlan(vni=2), "0e000000000b"),
    ("bcast-inner-dst", 1234, False, vxlan(), "ffffffffffff"),
]
for tag, sport, zero, hdr, dmac in cases:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if zero:
        s.setsockopt(socket.SOL_SOCKET, 11, 1)  # SO_NO_CHECK: send UDP checksum 0
    s.bind(("10.168.0.2", sport))
    s.sendto(hdr + inner(tag, dmac), ("10.168.0.3", 8472))
    s.close()
print("    sent:", " ".join(c[0] for c in cases))
PYEOF
    wait "$E9_PID" || true

    echo "== E7: inner destination MAC is not nodeB's VTEP MAC (nodeA neigh -> 0e:..:0c)"
    ip -n "$NODEA" neigh replace 10.244.1.0 lladdr 0e:00:00:00:00:0c dev flannel.1 nud permanent
    bridge -n "$NODEA" fdb add 0e:00:00:00:00:0c dev flannel.1 dst 10.168.0.3
    before=$(ip -n "$NODEB" -s -s -j link show flannel.1)
    start_capture e7 "$NODEB" eth0 in 0 "${UNDERLAY_FILTER[@]}"
    start_capture e7b "$PODB" eth0 in 0 icmp
    send_ping 10.244.1.2 -e 9
    finish_capture e7
    finish_capture e7b
    after=$(ip -n "$NODEB" -s -s -j link show flannel.1)
    grep -E "transmitted|loss" "$WORK/ping.out" | sed 's/^/    ping: /'
    pcap describe "$WORK/e7.pcap" | sed 's/^/    nodeB eth0: /'
    echo "    frames reaching podB: $("$PY" -c 'import sys; exec(open(sys.argv[1]).read().split("def main")[0]); print(len(frames(sys.argv[2])))' "$WORK/pcap.py" "$WORK/e7b.pcap")"
    "$PY" - "$before" "$after" <<'PYEOF'
import json, sys
b, a = (json.loads(x)[0]["stats64"]["rx"] for x in sys.argv[1:3])
print("    nodeB flannel.1 rx delta: " + ", ".join(
    f"{k} +{a[k] - b.get(k, 0)}" for k in sorted(a) if a[k] != b.get(k, 0)))
PYEOF
    ip -n "$NODEA" neigh replace 10.244.1.0 lladdr 0e:00:00:00:00:0b dev flannel.1 nud permanent
    bridge -n "$NODEA" fdb del 0e:00:00:00:00:0c dev flannel.1 dst 10.168.0.3
    echo
fi

# ---------------------------------------------------------------------------------------
# host-gw: the same UDP datagram routed straight to nodeB's underlay address.

ip -n "$NODEA" route del 10.244.1.0/24
ip -n "$NODEA" route add 10.244.1.0/24 via 10.168.0.3 dev eth0
ip -n "$NODEB" route del 10.244.0.0/24
ip -n "$NODEB" route add 10.244.0.0/24 via 10.168.0.2 dev eth0
start_capture pod_hgw "$PODA" eth0 out 1 udp and src host 10.244.0.2
start_capture hgw_udp "$NODEB" eth0 in 1 udp and src host 10.244.0.2
send_udp 5000 40000 podfwd
finish_capture pod_hgw wait
finish_capture hgw_udp wait
pcap extract "$WORK/pod_hgw.pcap" "$OUT_DIR/pod_hostgw_udp.bin"
pcap extract "$WORK/hgw_udp.pcap" "$OUT_DIR/kernel_hostgw_udp.bin"
pcap verify-hostgw "$OUT_DIR/pod_hostgw_udp.bin" "$OUT_DIR/kernel_hostgw_udp.bin"

if [ -n "$PCAP_DIR" ]; then
    mkdir -p "$PCAP_DIR"
    cp "$WORK"/*.pcap "$PCAP_DIR"/
    echo "pcaps kept in $PCAP_DIR"
fi

echo
pcap describe "$OUT_DIR"/pod_icmp.bin "$OUT_DIR"/kernel_vxlan_icmp.bin \
    "$OUT_DIR"/pod_udp.bin "$OUT_DIR"/kernel_vxlan_udp.bin \
    "$OUT_DIR"/pod_hostgw_udp.bin "$OUT_DIR"/kernel_hostgw_udp.bin
echo
echo "wrote:"
for f in pod_icmp kernel_vxlan_icmp pod_udp kernel_vxlan_udp pod_hostgw_udp kernel_hostgw_udp; do
    printf '  %s (%s bytes)\n' "$OUT_DIR/$f.bin" "$(stat -c %s "$OUT_DIR/$f.bin")"
done
