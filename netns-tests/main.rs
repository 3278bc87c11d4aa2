//! Integration tests that need root and network namespaces (`cargo test --test netns`).
//!
//! Each test begins with `skip_unless_root!()`: without root or `ip netns` it prints
//! `SKIP: <reason>` and passes. Every namespace is created through `harness::Netns` and is
//! deleted when the test ends, also when it fails or panics.

// The harness is a library for all netns tests; not every test uses every helper.
#[allow(dead_code)]
mod harness;

mod harness_selftest;
