//! Following `<prefix>/subnets/`: a list, then a watch from the list's revision + 1.
//!
//! - Every put or delete becomes an event; a put whose value equals what the watcher
//!   already has (a renewal re-put) is not repeated.
//! - The resume revision is the last event's `mod_revision` + 1 (or a progress
//!   notification's header revision + 1), so a reconnect replays nothing and skips
//!   nothing. On a broken stream the watcher reports `Connection(false)`, retries with
//!   backoff (100 ms doubling to 5 s, flanneld's), and `Connection(true)` once the
//!   watch is created again.
//! - A resume revision etcd has compacted away cannot be watched; the watcher then
//!   re-lists and sends a fresh `Snapshot` (flanneld's `resyncWatch`).
//! - A value that is not a lease is logged and skipped, never fatal.
//! - This node's own subnet is not a peer: it is left out of every event, and its
//!   deletion is reported as `OwnLeaseRemoved` (flanneld shuts down then).

use super::lease::{parse_subnet_key, Lease};
use super::{Etcd, RegistryEvent, Shared};
use etcd_client::{EventType, WatchOptions};
use ipnet::Ipv4Net;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

/// Wakes the receiver's event loop.
pub type Notify = Box<dyn Fn() + Send + Sync>;

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Why a watch stream ended.
enum Ended {
    /// The receiver is gone: stop.
    Closed,
    /// The resume revision was compacted: re-list.
    Compacted,
    /// Connection trouble: retry from the same revision.
    Broken,
}

pub(crate) struct Watcher {
    pub(crate) etcd: Etcd,
    pub(crate) shared: Arc<Shared>,
    pub(crate) tx: Sender<RegistryEvent>,
    pub(crate) own: Option<Ipv4Net>,
    /// Called after each event is queued (e.g. a `mio::Waker`'s `wake`).
    pub(crate) notify: Option<Notify>,
    /// What the receiver knows: subnet -> lease.
    known: HashMap<Ipv4Net, Lease>,
    up: bool,
    /// Failures that repeat with every retry while etcd is away.
    warnings: crate::log::RateLimit<&'static str>,
}

impl Watcher {
    pub(crate) fn new(
        etcd: Etcd,
        shared: Arc<Shared>,
        tx: Sender<RegistryEvent>,
        own: Option<Ipv4Net>,
        notify: Option<Notify>,
    ) -> Watcher {
        Watcher {
            etcd,
            shared,
            tx,
            own,
            notify,
            known: HashMap::new(),
            up: false,
            warnings: crate::log::RateLimit::new(crate::log::WARN_EVERY),
        }
    }

    fn send(&self, event: RegistryEvent) -> bool {
        let ok = self.tx.send(event).is_ok();
        if let (true, Some(notify)) = (ok, &self.notify) {
            notify();
        }
        ok
    }

    fn set_up(&mut self, up: bool) -> bool {
        self.shared.connected.store(up, Ordering::Relaxed);
        if self.up == up {
            return true;
        }
        self.up = up;
        if !up {
            self.shared.disconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.send(RegistryEvent::Connection { up })
    }

    fn seen(&self, revision: i64) {
        self.shared.revision.fetch_max(revision, Ordering::Relaxed);
    }

    pub(crate) async fn run(mut self) {
        let mut backoff = BACKOFF_START;
        let mut next: Option<i64> = None; // None: list first
        loop {
            let from = match next {
                Some(rev) => rev,
                None => match self.etcd.list_subnets().await {
                    Ok(listing) => {
                        for (key, why) in &listing.skipped {
                            tracing::warn!(%key, reason = %why, "cluster: skipping a subnet entry");
                        }
                        let leases: Vec<Lease> = listing
                            .leases
                            .into_iter()
                            .filter(|l| Some(l.subnet) != self.own)
                            .collect();
                        self.known = leases.iter().map(|l| (l.subnet, l.clone())).collect();
                        self.seen(listing.revision);
                        self.shared.snapshots.fetch_add(1, Ordering::Relaxed);
                        if !self.set_up(true) || !self.send(RegistryEvent::Snapshot(leases)) {
                            return;
                        }
                        backoff = BACKOFF_START;
                        next = Some(listing.revision + 1);
                        listing.revision + 1
                    }
                    Err(e) => {
                        crate::warn_limited!(self.warnings, "list", error = %e, retry_in = ?backoff, "cluster: listing subnets failed");
                        if !self.set_up(false) {
                            return;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(BACKOFF_MAX);
                        continue;
                    }
                },
            };
            match self.follow(from, &mut next, &mut backoff).await {
                Ended::Closed => return,
                Ended::Compacted => {
                    tracing::info!(
                        revision = from,
                        "cluster: revision compacted; re-listing subnets"
                    );
                    next = None;
                }
                Ended::Broken => {
                    if !self.set_up(false) {
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// One watch stream from `from`; advances `next` as events arrive.
    async fn follow(&mut self, from: i64, next: &mut Option<i64>, backoff: &mut Duration) -> Ended {
        let prefix = self.etcd.subnets_prefix();
        let opts = WatchOptions::new()
            .with_prefix()
            .with_start_revision(from)
            .with_progress_notify();
        let mut client = self.etcd.client.clone();
        let mut stream = match tokio::time::timeout(
            self.etcd.op_timeout,
            client.watch(prefix.clone(), Some(opts)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                crate::warn_limited!(self.warnings, "watch", %prefix, revision = from, error = %e, "cluster: watch failed");
                return Ended::Broken;
            }
            Err(_) => {
                crate::warn_limited!(
                    self.warnings,
                    "watch",
                    %prefix,
                    timeout = ?self.etcd.op_timeout,
                    "cluster: watch: no answer in time"
                );
                return Ended::Broken;
            }
        };
        loop {
            let resp = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => {
                    crate::warn_limited!(
                        self.warnings,
                        "stream",
                        "cluster: watch stream closed by etcd"
                    );
                    return Ended::Broken;
                }
                Err(e) => {
                    crate::warn_limited!(self.warnings, "stream", error = %e, "cluster: watch stream broke");
                    return Ended::Broken;
                }
            };
            if resp.compact_revision() != 0 {
                return Ended::Compacted;
            }
            if resp.canceled() {
                crate::warn_limited!(
                    self.warnings,
                    "stream",
                    reason = resp.cancel_reason(),
                    "cluster: watch canceled by etcd"
                );
                if resp.cancel_reason().contains("compacted") {
                    return Ended::Compacted;
                }
                return Ended::Broken;
            }
            if resp.created() {
                *backoff = BACKOFF_START;
                if !self.set_up(true) {
                    return Ended::Closed;
                }
            }
            let events = resp.events();
            if events.is_empty() {
                // A progress notification: everything up to the header's revision is seen.
                if let Some(h) = resp.header() {
                    if !resp.created() && h.revision() > 0 {
                        *next = Some((*next).unwrap_or(0).max(h.revision() + 1));
                        self.seen(h.revision());
                    }
                }
                continue;
            }
            for ev in events {
                let Some(kv) = ev.kv() else { continue };
                *next = Some(kv.mod_revision() + 1);
                self.seen(kv.mod_revision());
                let key = String::from_utf8_lossy(kv.key());
                let event = match ev.event_type() {
                    EventType::Delete => {
                        let Ok(subnet) = parse_subnet_key(&key) else {
                            continue;
                        };
                        if Some(subnet) == self.own {
                            RegistryEvent::OwnLeaseRemoved(subnet)
                        } else if self.known.remove(&subnet).is_some() {
                            RegistryEvent::Removed(subnet)
                        } else {
                            continue;
                        }
                    }
                    EventType::Put => {
                        match Lease::from_kv(&key, kv.value(), kv.lease(), kv.mod_revision()) {
                            Err(e) => {
                                tracing::warn!(
                                    %key,
                                    value = ?String::from_utf8_lossy(kv.value()),
                                    reason = %e,
                                    "cluster: skipping a subnet entry"
                                );
                                continue;
                            }
                            Ok(l) if Some(l.subnet) == self.own => continue,
                            Ok(l) => match self.known.insert(l.subnet, l.clone()) {
                                None => RegistryEvent::Added(l),
                                Some(old) if old.attrs == l.attrs => continue,
                                Some(_) => RegistryEvent::Changed(l),
                            },
                        }
                    }
                };
                if !self.send(event) {
                    return Ended::Closed;
                }
            }
        }
    }
}
