#!/usr/bin/env python3
"""Writes seeds for the config fuzz target: podfwd.example.toml, the configs the tests use
(src/config.rs BASE and every single edit its tests apply to it, src/plan.rs, src/lab.rs,
netns-tests/auto.rs with their placeholders filled in) and a few hand-made variants.
Run from the repository root: tools/fuzz/config-seeds.py OUT_DIR
"""

import os
import re
import sys


def unescape(s):
    return s.encode().decode("unicode_escape")


def raw_literal(path, marker):
    text = open(path).read()
    start = text.index(marker) + len(marker)
    return text[start : text.index('"#', start)]


base = raw_literal("src/config.rs", 'const BASE: &str = r#"')
seeds = {
    "example": open("podfwd.example.toml").read(),
    "base": base,
    "plan-template": raw_literal("src/plan.rs", 'Config::from_toml_str(&format!(\n            r#"')
    .replace("{ip}", "10.168.0.2/24")
    .replace("{extra_node}", 'gateway = "10.168.0.1"')
    .replace("{mode}", "auto"),
    "auto-netns": raw_literal("netns-tests/auto.rs", 'format!(\n            r#"').replace(
        "{}", "/run/podfwd/a.sock"
    ),
    "minimal": '[node]\nip = "10.168.0.2"\npod_cidr = "10.244.0.0/24"\nuplink = "podfwd-nx0"\n'
    'pod_interfaces = ["podfwd-nx1"]\n[vxlan]\nvtep_mac = "0e:00:00:00:00:0a"\n',
    "tun-host-gw": '[node]\nip = "10.168.0.2/16"\ngateway = "10.168.0.1"\npod_cidr = "10.244.0.0/24"\n'
    'uplink = "eth0"\n[dataplane]\nbackend = "tun"\nmode = "host-gw"\ncores = [0, 1]\nqueues = 2\n'
    '[tun]\nname = "pf0"\noffload = false\n[[peers]]\npod_cidr = "10.244.1.0/24"\nnode_ip = "10.20.0.3"\n',
    "inline-tables": 'node = { ip = "10.0.0.1/8", pod_cidr = "10.1.0.0/16", uplink = "u", '
    'pod_interfaces = ["p"] }\ndataplane = { mode = "auto", busy_poll = true }\n'
    'vxlan = { vni = 16777215, port = 4789, vtep_mac = "0E-00-00-00-00-0A" }\n'
    'peers = [{ pod_cidr = "10.2.0.0/16", node_ip = "10.0.0.2", vtep_mac = "0e:00:00:00:00:0b" }]\n',
}
lab = raw_literal("src/lab.rs", 'format!(\n            r#"')
for k, v in {
    "{name}": "A", "{ip}": "10.168.0.2", "{pod_cidr}": "10.244.0.0/24", "{ul}": "nodeA-ul",
    "{pod_if}": "nodeA-pod", "{backend}": "afxdp", "{mode}": "vxlan", "{cores}": "0",
    "{queues}": "1", "{vtep}": "0e:00:00:00:00:0a", "{socket}": "/run/podfwd/A.sock",
    "{nsname}": "pfx-A", "{offload}": "true", "{peer_cidr}": "10.244.1.0/24",
    "{peer_ip}": "10.168.0.3", "{peer_vtep}": "0e:00:00:00:00:0b",
}.items():
    lab = lab.replace(k, v)
seeds["lab"] = lab

# Every ("old", "new") edit the config tests make to BASE, applied alone.
tests = open("src/config.rs").read()
pair = r'\(\s*"((?:[^"\\]|\\.)*)"\s*,\s*"((?:[^"\\]|\\.)*)"\s*\)'
n = 0
for old, new in re.findall(pair, tests):
    old, new = unescape(old), unescape(new)
    if old in base:
        seeds[f"base-edit-{n:02}"] = base.replace(old, new, 1)
        n += 1

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
for name, text in seeds.items():
    with open(os.path.join(out, name + ".toml"), "w") as f:
        f.write(text)
print(f"{len(seeds)} seeds written to {out}")
