//! podfwd: a userspace node data plane for Kubernetes pod networks.
//!
//! It forwards pod traffic between nodes the way flannel's host-gw and VXLAN backends do,
//! but in userspace. The crate is laid out along the data path:
//!
//! - [`wire`]: zero-copy views over Ethernet, IPv4, UDP and VXLAN headers.
//! - [`lpm`]: the lock-free longest-prefix-match table (pod subnets -> next-hop ids).
//! - [`nexthop`]: what a next-hop id means (host-gw, connected, VXLAN, local, drop) and
//!   the precomputed rewrite data the workers apply.
//! - [`pipeline`]: the I/O-free per-batch processing: parse, look up, rewrite, encap, decap.
//! - [`config`] and [`plan`]: the node's TOML configuration and the resolved plan.
//! - [`kernel`]: the kernel slow path podfwd installs as flanneld would (VXLAN device,
//!   neighbours, FDB entries, routes), kept when podfwd stops.
//! - [`cluster`]: flannel's etcd v3 subnet registry as the source of peers.
//! - [`control`]: the node's one control plane (`podfwd run`): route source, FIB writer,
//!   neighbours, kernel programming, control socket, reloads.
//! - [`backend`]: the I/O backends behind it, AF_XDP (with the XDP classifier) and TUN.
//! - [`netlink`]: the kernel's interfaces, neighbours and routes (the one interface
//!   lookup).
//! - [`cli`]: the `podfwd` command line.
//! - [`log`]: the daemon's leveled, structured logs and their rate limit.
//! - [`metrics`]: Prometheus metrics over HTTP; [`notify`]: systemd readiness;
//!   [`build_info`]: what the binary was built from.

pub mod backend;
pub mod build_info;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod control;
pub mod counters;
pub mod handoff;
pub mod kernel;
pub mod lab;
pub mod log;
pub mod lpm;
pub mod metrics;
pub mod netlink;
pub mod netns;
pub mod nexthop;
pub mod notify;
pub mod partial_csum;
pub mod pipeline;
pub mod plan;
pub mod trace;
pub mod wire;
