//! The control plane's side of the FIB: the routes it wrote, each with its source and
//! the time of its last change (what `podfwd routes` shows), and the diff of a desired
//! route set against them.

use super::socket::{RouteRow, RoutesReply};
use crate::nexthop::NextHop;
use crate::pipeline::{FibError, FibWriter};
use crate::plan::Route;
use ipnet::Ipv4Net;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// One route the control plane installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    next_hop: NextHop,
    source: &'static str,
    since: SystemTime,
}

/// What a desired route set changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteDiff {
    pub added: Vec<Ipv4Net>,
    pub changed: Vec<Ipv4Net>,
    pub removed: Vec<Ipv4Net>,
}

impl RouteDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

/// The routes the control plane wrote into the FIB.
#[derive(Debug, Default)]
pub struct RouteTable {
    entries: BTreeMap<Ipv4Net, Entry>,
}

impl RouteTable {
    /// Routes in the FIB that the control plane wrote.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the routes of `desired` that are new or changed into the FIB (each
    /// publish is atomic for the workers); routes absent from `desired` stay until
    /// [`RouteTable::remove_absent`], so a caller can update what else follows the
    /// routes (the classifier) in between.
    pub fn upsert(
        &mut self,
        fib: &mut FibWriter,
        desired: &[Route],
        source: &'static str,
        diff: &mut RouteDiff,
    ) -> Result<(), FibError> {
        for r in desired {
            let prefix = r.prefix.trunc();
            match self.entries.get(&prefix) {
                Some(e) if e.next_hop == r.next_hop => continue,
                Some(_) => diff.changed.push(prefix),
                None => diff.added.push(prefix),
            }
            fib.set_route(prefix, r.next_hop)?;
            self.entries.insert(
                prefix,
                Entry {
                    next_hop: r.next_hop,
                    source,
                    since: SystemTime::now(),
                },
            );
        }
        Ok(())
    }

    /// Removes from the FIB the routes that `desired` no longer has.
    pub fn remove_absent(&mut self, fib: &mut FibWriter, desired: &[Route], diff: &mut RouteDiff) {
        let gone: Vec<Ipv4Net> = self
            .entries
            .keys()
            .filter(|p| !desired.iter().any(|r| r.prefix.trunc() == **p))
            .copied()
            .collect();
        for prefix in gone {
            fib.remove_route(prefix);
            self.entries.remove(&prefix);
            diff.removed.push(prefix);
        }
    }

    /// The table as `podfwd routes` shows it; `port_names` names the FIB's ports.
    pub fn reply(&self, port_names: &[String]) -> RoutesReply {
        let port = |p: u16| {
            port_names
                .get(usize::from(p))
                .cloned()
                .unwrap_or_else(|| format!("port {p}"))
        };
        let routes = self
            .entries
            .iter()
            .map(|(prefix, e)| {
                let (mode, next_hop, dev, vtep_mac) = match e.next_hop {
                    NextHop::HostGw { gateway, port: p } => {
                        ("host-gw", Some(gateway.to_string()), Some(port(p)), None)
                    }
                    NextHop::Connected { port: p } => ("connected", None, Some(port(p)), None),
                    NextHop::Vxlan { node_ip, vtep_mac } => (
                        "vxlan",
                        Some(node_ip.to_string()),
                        None,
                        Some(vtep_mac.to_string()),
                    ),
                    NextHop::Local => ("local", None, None, None),
                    NextHop::Drop => ("drop", None, None, None),
                };
                let since_unix = e
                    .since
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                RouteRow {
                    prefix: *prefix,
                    next_hop,
                    dev,
                    vtep_mac,
                    mode: mode.to_string(),
                    source: e.source.to_string(),
                    since_unix,
                    since: rfc3339(since_unix),
                }
            })
            .collect();
        RoutesReply { routes }
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` of a Unix time (UTC; days to civil date after Howard Hinnant's
/// `civil_from_days`).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lpm::LpmConfig;
    use crate::pipeline::{FibParams, NodeParams, PortInfo};
    use crate::wire::MacAddr;
    use std::net::Ipv4Addr;

    fn fib() -> FibWriter {
        let port = PortInfo {
            mac: MacAddr([2, 0, 0, 0, 0, 1]),
            mtu: 1500,
        };
        FibWriter::new(FibParams {
            node: NodeParams {
                node_ip: Ipv4Addr::new(10, 168, 0, 2),
                uplink: 0,
                vni: 1,
                vxlan_port: 8472,
                vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, 0x0a]),
            },
            ports: vec![port, port],
            uplink_subnet: None,
            gateway: None,
            lpm: LpmConfig::default(),
        })
        .0
    }

    fn route(prefix: &str, next_hop: NextHop) -> Route {
        Route {
            prefix: prefix.parse().unwrap(),
            next_hop,
            peer: Some(0),
            underlay_via: None,
        }
    }

    fn vxlan(last: u8) -> NextHop {
        NextHop::Vxlan {
            node_ip: Ipv4Addr::new(10, 168, 0, last),
            vtep_mac: MacAddr([0x0e, 0, 0, 0, 0, last]),
        }
    }

    #[test]
    fn a_desired_set_adds_changes_and_removes_only_what_differs() {
        let mut fib = fib();
        let mut table = RouteTable::default();
        let own = route("10.244.0.0/24", NextHop::Connected { port: 1 });
        let b = route("10.244.1.0/24", vxlan(3));
        let c = route("10.244.2.0/24", vxlan(4));
        let mut d = RouteDiff::default();
        table
            .upsert(&mut fib, &[own, b, c], "static", &mut d)
            .unwrap();
        assert_eq!(d.added.len(), 3);
        let before = table.reply(&[]).routes;

        // B moves to another node, C goes away, the own subnet stays.
        let b2 = route("10.244.1.0/24", vxlan(5));
        let mut d = RouteDiff::default();
        let desired = [own, b2];
        table.upsert(&mut fib, &desired, "static", &mut d).unwrap();
        table.remove_absent(&mut fib, &desired, &mut d);
        assert_eq!(d.added, Vec::<Ipv4Net>::new());
        assert_eq!(d.changed, vec!["10.244.1.0/24".parse::<Ipv4Net>().unwrap()]);
        assert_eq!(d.removed, vec!["10.244.2.0/24".parse::<Ipv4Net>().unwrap()]);
        let fib_routes: Vec<_> = fib.routes().map(|(p, nh)| (*p, *nh)).collect();
        assert_eq!(
            fib_routes,
            vec![(own.prefix, own.next_hop), (b2.prefix, b2.next_hop)]
        );
        // The untouched route keeps its time of last change.
        let after = table.reply(&[]).routes;
        assert_eq!(after[0].since_unix, before[0].since_unix);
        assert_eq!(after.len(), 2);

        let mut d = RouteDiff::default();
        table.upsert(&mut fib, &desired, "static", &mut d).unwrap();
        table.remove_absent(&mut fib, &desired, &mut d);
        assert!(d.is_empty(), "{d:?}");
    }

    #[test]
    fn rows_name_mode_next_hop_and_device() {
        let mut fib = fib();
        let mut table = RouteTable::default();
        let routes = [
            route("10.244.0.0/24", NextHop::Connected { port: 1 }),
            route(
                "10.244.1.0/24",
                NextHop::HostGw {
                    gateway: Ipv4Addr::new(10, 168, 0, 3),
                    port: 0,
                },
            ),
            route("10.244.2.0/24", vxlan(4)),
        ];
        table
            .upsert(&mut fib, &routes, "static", &mut RouteDiff::default())
            .unwrap();
        let r = table.reply(&["eth0".into(), "veth-pod".into()]).routes;
        assert_eq!(
            (
                r[0].mode.as_str(),
                r[0].dev.as_deref(),
                r[0].next_hop.as_deref()
            ),
            ("connected", Some("veth-pod"), None)
        );
        assert_eq!(
            (
                r[1].mode.as_str(),
                r[1].dev.as_deref(),
                r[1].next_hop.as_deref()
            ),
            ("host-gw", Some("eth0"), Some("10.168.0.3"))
        );
        assert_eq!(r[2].mode, "vxlan");
        assert_eq!(r[2].vtep_mac.as_deref(), Some("0e:00:00:00:00:04"));
        assert!(r.iter().all(|r| r.source == "static"));
    }

    #[test]
    fn unix_times_print_as_utc_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_796_351_701), "2026-12-04T02:35:01Z");
    }
}
