//! What this binary was built from: crate version, git revision and cargo features, as
//! `build.rs` recorded them. Read by `podfwd --version` and the `podfwd_build_info`
//! metric.

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `git rev-parse --short HEAD` of the source tree, `-dirty` when tracked files had
/// changes, `unknown` outside a git checkout (see `build.rs`).
pub const REVISION: &str = env!("PODFWD_GIT_REVISION");

/// The enabled cargo features, comma-separated, or `none`.
pub const FEATURES: &str = env!("PODFWD_FEATURES");

/// `podfwd -V`: `0.1.0 (abc1234)`.
pub const SHORT_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("PODFWD_GIT_REVISION"),
    ")"
);

/// `podfwd --version`: version, revision, features, target and profile, one per line.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nrevision: ",
    env!("PODFWD_GIT_REVISION"),
    "\nfeatures: ",
    env!("PODFWD_FEATURES"),
    "\ntarget: ",
    env!("PODFWD_TARGET"),
    "\nprofile: ",
    env!("PODFWD_PROFILE"),
);
