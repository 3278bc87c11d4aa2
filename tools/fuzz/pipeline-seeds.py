#!/usr/bin/env python3
"""Writes hand-made seeds for the pipeline fuzz target (fuzz/fuzz_targets/pipeline.rs).

The target reads its input as a little program (node, ports, FIB operations, frames);
these seeds spell out the demo cluster's node A in VXLAN and host-gw mode with the
frames that take each path: encapsulation, decapsulation to a local pod, the node's own
traffic, an expiring TTL, IPv4 options, a frame over the MTU. Byte meanings follow
`build_fib`, `build_packet` and `build_ipv4` in that file. Usage: pipeline-seeds.py OUT_DIR
"""

import os
import sys

# Addresses are one byte b: 10.(b>>6).((b>>3)&7).(b&7); prefix lengths 16 + b % 17.
NODE_A, NODE_B = 2, 3  # 10.0.0.2, 10.0.0.3
POD_A, POD_B = 66, 133  # 10.1.0.2, 10.2.0.5
NET_A, NET_B, UNDERLAY = 64, 128, 0  # 10.1.0.0, 10.2.0.0, 10.0.0.0
LEN24, LEN32 = 8, 16


def udp(sport=40000, dport=5000, payload=b"podfwd"):
    n = 8 + len(payload)
    return sport.to_bytes(2, "big") + dport.to_bytes(2, "big") + n.to_bytes(2, "big") + b"\0\0" + payload


def ipv4(dst_mac, src_mac, src, dst, ttl=0, payload=None, vxlan=False, options=0, big=None):
    """build_ipv4's bytes. dst_mac: ("vtep",), ("port", i) or ("mac", b)."""
    b = bytearray()
    if dst_mac[0] == "vtep":
        b += bytes([0])
    elif dst_mac[0] == "port":
        b += bytes([1, dst_mac[1]])
    else:
        b += bytes([2, dst_mac[1]])
    b += bytes([src_mac, 0])  # source MAC, EtherType IPv4
    opts = next(x for x in range(0xF0, 0x100) if x % 11 == options) if options else 0
    b += bytes([opts, 0, 0, 0, 0, 3, ttl])  # opts, ver, tos, ident, DF, ttl
    if vxlan:
        b += bytes([src])
        b += bytes([0]) if dst == "node" else bytes([3, dst])
        b += (51000).to_bytes(2, "big") + bytes([0, 0, 0, 0, 0, 0])  # sport, dport, len, csum, flags, vni
    else:
        b += bytes([0, src, dst])  # UDP
        payload = payload if payload is not None else udp()
        b += bytes([len(payload)]) + payload
        b += bytes([0xFF]) + big.to_bytes(2, "big") if big else bytes([0])
    b += bytes([0])  # total length as built
    b += bytes(range(1, 4 * options + 1))  # option bytes
    b += bytes([0, 0])  # checksum as computed, no padding
    return bytes(b)


def frame(ctl, body, tail=b"\0\0"):
    return bytes([ctl]) + body + tail


UPLINK_IN, POD_IN = 0x00, 0x10  # ingress bits: the uplink, the port after it


def node_a(routes, frames, count=None):
    b = bytearray()
    b += bytes([1, 0xA1, 0, 0xA3, 0])  # two ports, MTU 1500
    b += bytes([NODE_A, 0, 0, 0, 0x0A])  # node ip, uplink 0, VNI 1, port 8472, VTEP MAC
    b += bytes([1, UNDERLAY, LEN24, 0])  # uplink subnet 10.0.0.0/24, no gateway
    b += bytes([len(routes)]) + b"".join(routes)
    b += bytes([count or len(frames)]) + b"".join(frames)
    return bytes(b)


connected = bytes([0, NET_A, LEN24, 1, 1])
vxlan_b = bytes([0, NET_B, LEN24, 0, 2, NODE_B, 0x0B])
hostgw_b = bytes([0, NET_B, LEN24, 0, 0, NODE_B])
local = bytes([0, NODE_A, LEN32, 0, 3])  # 10.0.0.2/32 -> local
blackhole = bytes([0, 200, LEN32, 0, 4])
neigh_b = bytes([4, 0, NODE_B, 0, 0xB1])
neigh_pod = bytes([4, 1, POD_A, 0, 0xA2])
forget_pod = bytes([4, 1, POD_A, 3])
remove_b = bytes([7, NET_B, LEN24])

to_b = frame(POD_IN, ipv4(("port", 1), 0xA2, POD_A, POD_B))
from_b = frame(
    UPLINK_IN | 0x20,
    ipv4(("vtep",), 0x0B, POD_B, POD_A) + ipv4(("port", 0), 0xB1, NODE_B, "node", vxlan=True),
)
to_node = frame(POD_IN, ipv4(("port", 1), 0xA2, POD_A, NODE_A))
ttl_1 = frame(POD_IN, ipv4(("port", 1), 0xA2, POD_A, POD_B, ttl=193))
options = frame(POD_IN, ipv4(("port", 1), 0xA2, POD_A, POD_B, options=2))
too_big = frame(POD_IN, ipv4(("port", 1), 0xA2, POD_A, POD_B, big=1600))
no_headroom = frame(POD_IN | 4, ipv4(("port", 1), 0xA2, POD_A, POD_B))
raw = frame(0x40, bytes([14]) + bytes([0]) + bytes(range(14)))

seeds = {
    "vxlan-encap-decap": node_a([connected, vxlan_b, neigh_b, neigh_pod], [to_b, from_b]),
    "vxlan-edge-cases": node_a(
        [connected, vxlan_b, neigh_b, neigh_pod, local],
        [to_node, ttl_1, options, too_big, no_headroom, raw],
    ),
    "vxlan-unresolved": node_a([connected, vxlan_b], [to_b, from_b]),
    "hostgw": node_a([connected, hostgw_b, neigh_b, neigh_pod], [to_b, ttl_1, options, too_big]),
    "hostgw-changes": node_a(
        [connected, hostgw_b, neigh_b, neigh_pod, forget_pod, blackhole, remove_b], [to_b, to_node]
    ),
    # 0xf5: 60 + 5 * 16 = 140 frames, over two LPM windows of 64.
    "many-frames": node_a([connected, vxlan_b, neigh_b, neigh_pod], [to_b, from_b] * 70, 0xF5),
}
out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)
print(f"{len(seeds)} seeds written to {out}")
