#!/usr/bin/env python3
"""Captures raw rtnetlink replies as seed files for the netlink fuzz target.

Run inside a throwaway network namespace (tools/fuzz/netlink-seeds.sh sets one up):
dumps RTM_GETLINK, RTM_GETADDR and RTM_GETNEIGH, asks for single entries (found and not
found: NLMSG_ERROR with an extended ack), and records neighbour notifications while the
namespace's ARP table changes. Each received datagram becomes one file in OUT_DIR.
"""

import os
import socket
import struct
import subprocess
import sys

NETLINK_ROUTE = 0
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
RTM_GETLINK, RTM_GETADDR, RTM_GETNEIGH = 18, 22, 30
NLMSG_ERROR, NLMSG_DONE = 2, 3
NETLINK_EXT_ACK, NETLINK_CAP_ACK = 11, 10
SOL_NETLINK = 270
RTNLGRP_NEIGH = 3
AF_INET = 2


def nla(kind, value):
    n = 4 + len(value)
    return struct.pack("=HH", n, kind) + value + b"\0" * ((4 - n % 4) % 4)


def request(sock, ty, flags, payload, seq):
    hdr = struct.pack("=IHHII", 16 + len(payload), ty, NLM_F_REQUEST | flags, seq, 0)
    sock.send(hdr + payload)


def collect(sock, seq):
    """Datagrams answering `seq`, up to NLMSG_DONE or NLMSG_ERROR."""
    out = []
    while True:
        d = sock.recv(65536)
        out.append(d)
        off = 0
        end = False
        while off + 16 <= len(d):
            ln, ty, _fl, s, _pid = struct.unpack_from("=IHHII", d, off)
            if s == seq and ty in (NLMSG_DONE, NLMSG_ERROR):
                end = True
            if ln < 16:
                break
            off += (ln + 3) & ~3
        if end:
            return out


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    sock.bind((0, 0))
    sock.settimeout(5)
    sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
    saved = []

    def save(name, datagrams):
        for i, d in enumerate(datagrams):
            saved.append((f"{name}-{i}", d))

    ifinfomsg = struct.pack("=BxHiII", 0, 0, 0, 0, 0)
    ifaddrmsg = struct.pack("=BBBBI", AF_INET, 0, 0, 0, 0)
    ndmsg = struct.pack("=BxxxiHBB", AF_INET, 0, 0, 0, 0)
    seq = 1
    for name, ty, payload in [
        ("link-dump", RTM_GETLINK, ifinfomsg),
        ("addr-dump", RTM_GETADDR, ifaddrmsg),
        ("neigh-dump", RTM_GETNEIGH, ndmsg),
    ]:
        request(sock, ty, NLM_F_DUMP, payload, seq)
        save(name, collect(sock, seq))
        seq += 1

    # One link by name (found), one by a name that does not exist (ENODEV + extack),
    # one by index 0 with a bogus attribute (EINVAL).
    ifindex = socket.if_nametoindex("pfx-a")
    req = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + nla(3, b"pfx-a\0")
    request(sock, RTM_GETLINK, NLM_F_ACK, req, seq)
    save("link-one", collect(sock, seq))
    seq += 1
    req = struct.pack("=BxHiII", 0, 0, 0, 0, 0) + nla(3, b"nonexistent0\0")
    request(sock, RTM_GETLINK, NLM_F_ACK, req, seq)
    save("link-missing", collect(sock, seq))
    seq += 1
    # The same, capped (NLM_F_CAPPED errors carry only the request's header).
    sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
    request(sock, RTM_GETLINK, NLM_F_ACK, req, seq)
    save("link-missing-capped", collect(sock, seq))
    seq += 1
    # One neighbour (found) and one that does not exist (ENOENT).
    for name, ip in [("neigh-one", "10.168.0.3"), ("neigh-missing", "10.168.0.99")]:
        req = struct.pack("=BxxxiHBB", AF_INET, ifindex, 0, 0, 0) + nla(1, socket.inet_aton(ip))
        request(sock, RTM_GETNEIGH, NLM_F_ACK, req, seq)
        save(name, collect(sock, seq))
        seq += 1

    # Notifications: a monitor socket on RTNLGRP_NEIGH while entries come and go.
    mon = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_ROUTE)
    mon.bind((0, 1 << (RTNLGRP_NEIGH - 1)))
    mon.settimeout(0.5)
    for cmd in [
        "ip neigh add 10.168.0.20 lladdr 02:00:00:00:00:20 dev pfx-a nud reachable",
        "ip neigh change 10.168.0.20 lladdr 02:00:00:00:00:21 dev pfx-a nud stale",
        "ip neigh del 10.168.0.20 dev pfx-a",
        "ip neigh add 10.168.0.21 dev pfx-a nud failed",
        "ip neigh replace 10.168.0.22 lladdr 02:00:00:00:00:22 dev pfx-a nud permanent",
        "ip neigh flush dev pfx-a nud permanent",
    ]:
        subprocess.run(cmd.split(), check=True)
    n = 0
    try:
        while True:
            saved.append((f"neigh-event-{n}", mon.recv(65536)))
            n += 1
    except socket.timeout:
        pass

    for name, d in saved:
        with open(os.path.join(out_dir, name), "wb") as f:
            f.write(d)
    print(f"{len(saved)} datagrams written to {out_dir}")


if __name__ == "__main__":
    main()
