//! Route sources: where the node's desired peer set comes from. The control loop asks its
//! source for the desired [`Plan`] and diffs its routes against the FIB; a source knows
//! nothing of the FIB, the kernel or the backends.
//!
//! Today there is one source, [`StaticFile`]: the `[[peers]]` of the config file,
//! re-read on SIGHUP. A registry source (flannel's etcd leases) yields the same thing
//! when its watch reports a change.

use crate::plan::Plan;

/// Where the desired routes come from.
pub trait RouteSource {
    /// The name `podfwd routes` shows in its `source` column (`static`, `etcd`).
    fn name(&self) -> &'static str;
    /// Called once per turn of the control loop. `reload` is set when the operator asked
    /// for a reload (SIGHUP). Returns the new desired plan when there is one, or why the
    /// source's new state was refused (the message is logged; the running routes stay).
    fn poll(&mut self, reload: bool) -> Option<Result<Plan, String>>;
    /// How the source is doing, for `/metrics` (a file is always "connected").
    fn state(&self) -> crate::metrics::RouteSourceState {
        crate::metrics::RouteSourceState::default()
    }
}

/// The config file's `[[peers]]`: the file is read again on SIGHUP.
pub struct StaticFile {
    load: Box<dyn FnMut() -> Result<Plan, String>>,
}

impl StaticFile {
    /// `load` reads, validates and resolves the file, with the messages of
    /// `podfwd check`.
    pub fn new(load: impl FnMut() -> Result<Plan, String> + 'static) -> StaticFile {
        StaticFile {
            load: Box::new(load),
        }
    }
}

impl RouteSource for StaticFile {
    fn name(&self) -> &'static str {
        "static"
    }

    fn poll(&mut self, reload: bool) -> Option<Result<Plan, String>> {
        reload.then(|| (self.load)())
    }
}

/// A source whose routes never change (a plan built in code: tests, `podfwd run` without
/// a file to re-read).
pub struct Fixed;

impl RouteSource for Fixed {
    fn name(&self) -> &'static str {
        "static"
    }

    fn poll(&mut self, _reload: bool) -> Option<Result<Plan, String>> {
        None
    }
}
