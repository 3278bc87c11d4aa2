#!/usr/bin/env bash
# Installs what podfwd needs to build and test on a fresh Debian machine. Idempotent:
# packages already present are not reinstalled, bpffs is mounted only if missing.
set -euo pipefail

PKGS=(clang llvm libbpf-dev libelf-dev zlib1g-dev libpcap-dev pkg-config m4 make
      iproute2 ethtool tcpdump iperf3 iputils-ping procps python3
      iptables  # iptables: kube-proxy style DNAT in netns-tests/slowpath.rs (iptables-nft)
      fonts-dejavu-core  # fonts-dejavu-core: text of the bench charts (tools/bench/charts.rs)
      # tests/deploy.rs, tests/cli.rs, src/metrics.rs: systemd-analyze verify of the unit,
      # groff renders the man page, PyYAML parses the Kubernetes manifest, the official
      # Prometheus client parses /metrics (both for Debian's /usr/bin/python3).
      systemd groff-base python3-yaml python3-prometheus-client
      # protoc: etcd-client's build script compiles etcd's gRPC protos; they import
      # google/protobuf/*.proto, which libprotobuf-dev carries (only a Recommends of
      # protobuf-compiler, and --no-install-recommends skips it).
      protobuf-compiler libprotobuf-dev
      etcd-server etcd-client  # a real etcd + etcdctl for netns-tests/cluster.rs
      # tests/trace.rs: Wireshark's tshark reads the pcapng `podfwd trace --write` makes.
      tshark)

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    echo "setup: must run as root (installs packages, creates network namespaces)" >&2
    exit 77
  fi
}

install_packages() {
  local missing=()
  for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

check_rust() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
  fi
  command -v cargo >/dev/null 2>&1 || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true
}

mount_bpffs() {
  if ! mountpoint -q /sys/fs/bpf 2>/dev/null; then
    mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "setup: warning: could not mount bpffs at /sys/fs/bpf" >&2
  fi
}

need_root
install_packages
check_rust
mount_bpffs
