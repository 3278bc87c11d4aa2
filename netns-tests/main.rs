//! Integration tests that need root and network namespaces (`cargo test --test netns`).
//!
//! Each test begins with `skip_unless_root!()`: without root or `ip netns` it prints
//! `SKIP: <reason>` and passes. Every namespace is created through `harness::Netns` and is
//! deleted when the test ends, also when it fails or panics.

/// The namespace harness lives in the library (`podfwd::netns`), shared with `podfwd lab`.
mod harness {
    pub use podfwd::netns::*;
    pub use podfwd::skip_unless_root;
}

mod auto;
mod bench;
mod churn;
mod classifier_cache;
mod cluster;
mod deploy;
mod etcd_cluster;
mod forwarding;
mod harness_selftest;
mod kernel;
mod lifecycle;
mod neigh;
mod pinning;
mod reload;
mod route_churn;
mod slowpath;
mod traffic;
mod tun;
mod xdp;
