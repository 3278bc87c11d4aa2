//! Reconciling the kernel with a [`KernelSpec`], and removing what podfwd installed.
//!
//! [`apply`] first reads the kernel and checks every conflict with objects podfwd does
//! not own (a foreign device with the configured name, a foreign route for a peer
//! prefix); only when there is none does it change anything.

use super::spec::{KernelSpec, RouteDev, VxlanDevice, VXLAN_OVERHEAD};
use super::{ctx, KernelError, DEVICE_ALIAS, RTPROT_PODFWD};
use crate::netlink::{
    describe_route, KernelObjects, LinkDetails, NewRoute, NewVxlan, RouteRecord, RT_TABLE_MAIN,
};
use crate::wire::MacAddr;
use std::fmt;
use std::net::Ipv4Addr;

/// What [`apply`] did, one entry per object (`neighbour 10.244.1.0 lladdr ... dev
/// podfwd.1`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Missing, now installed.
    pub created: Vec<String>,
    /// Already as specified (left by an earlier podfwd, or by this one).
    pub adopted: Vec<String>,
    /// Present but different; now as specified (what was there is in the text).
    pub corrected: Vec<String>,
    /// podfwd's, no longer in the spec; deleted.
    pub removed: Vec<String>,
}

impl ApplyReport {
    /// True when the kernel was changed.
    pub fn changed(&self) -> bool {
        !(self.created.is_empty() && self.corrected.is_empty() && self.removed.is_empty())
    }

    /// One line: `kernel: 2 created, 5 adopted, 1 corrected, 0 removed`.
    pub fn summary(&self) -> String {
        format!(
            "kernel: {} created, {} adopted, {} corrected, {} removed",
            self.created.len(),
            self.adopted.len(),
            self.corrected.len(),
            self.removed.len()
        )
    }
}

impl fmt::Display for ApplyReport {
    /// One line per object: `created route 10.244.1.0/24 via ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (verb, list) in [
            ("created", &self.created),
            ("adopted", &self.adopted),
            ("corrected", &self.corrected),
            ("removed", &self.removed),
        ] {
            for item in list {
                writeln!(f, "{verb} {item}")?;
            }
        }
        Ok(())
    }
}

/// What [`cleanup`] removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanupReport {
    pub removed: Vec<String>,
    /// A device with the configured name that podfwd did not create, left alone.
    pub left_alone: Option<String>,
}

impl fmt::Display for CleanupReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.removed.is_empty() {
            writeln!(
                f,
                "nothing to remove (no device with alias {DEVICE_ALIAS:?}, no route with \
                 proto {RTPROT_PODFWD})"
            )?;
        }
        for item in &self.removed {
            writeln!(f, "removed {item}")?;
        }
        if let Some(name) = &self.left_alone {
            writeln!(
                f,
                "left alone: interface {name} (podfwd did not create it: no alias \
                 {DEVICE_ALIAS:?})"
            )?;
        }
        Ok(())
    }
}

fn owned(l: &LinkDetails) -> bool {
    l.alias.as_deref() == Some(DEVICE_ALIAS)
}

fn link_name(links: &[LinkDetails], index: u32) -> String {
    links
        .iter()
        .find(|l| l.index == index)
        .map_or_else(|| format!("ifindex {index}"), |l| l.name.clone())
}

/// `10.244.1.0/24 via 10.168.0.3 dev nodeA-ul` with device names.
fn route_text(r: &RouteRecord, links: &[LinkDetails]) -> String {
    let mut text = describe_route(r);
    if let Some(oif) = r.oif {
        text = text.replace(
            &format!("dev ifindex {oif}"),
            &format!("dev {}", link_name(links, oif)),
        );
    }
    text
}

fn vxlan_text(name: &str, v: &VxlanDevice, uplink: &str) -> String {
    format!(
        "device {name} (vxlan id {} local {} dev {uplink} dstport {})",
        v.vni, v.local, v.port
    )
}

/// Why an existing podfwd device must be recreated (`None`: its VXLAN parameters match).
fn recreate_reason(l: &LinkDetails, v: &VxlanDevice, uplink_index: u32) -> Option<String> {
    let Some(info) = l.vxlan else {
        return Some(format!(
            "kind {} instead of vxlan",
            l.kind.as_deref().unwrap_or("unknown")
        ));
    };
    let mut diffs = Vec::new();
    if info.vni != v.vni {
        diffs.push(format!("id {} -> {}", info.vni, v.vni));
    }
    if info.port != v.port {
        diffs.push(format!("dstport {} -> {}", info.port, v.port));
    }
    if info.local != Some(v.local) {
        let was = info.local.map_or("none".to_string(), |a| a.to_string());
        diffs.push(format!("local {was} -> {}", v.local));
    }
    if info.link != Some(uplink_index) {
        let was = info
            .link
            .map_or("none".to_string(), |i| format!("ifindex {i}"));
        diffs.push(format!("dev {was} -> ifindex {uplink_index}"));
    }
    if info.learning {
        diffs.push("learning -> nolearning".to_string());
    }
    (!diffs.is_empty()).then(|| diffs.join(", "))
}

/// Reconciles the kernel of the calling thread's network namespace with `spec`.
///
/// Creates what is missing, adopts what matches, corrects what differs (a podfwd VXLAN
/// device with other VXLAN parameters is recreated; its MAC, MTU and up state are set in
/// place), and removes podfwd's objects the spec does not have: other devices with
/// podfwd's alias, addresses, neighbours and FDB entries on its device not in the spec,
/// and main-table routes with protocol [`RTPROT_PODFWD`] not in the spec.
///
/// Never touches what podfwd did not create: a device with the configured name but
/// without [`DEVICE_ALIAS`] is [`KernelError::ForeignDevice`], any main-table route for
/// a peer prefix with another protocol is [`KernelError::ForeignRoute`]; both are
/// detected before anything is changed.
pub fn apply(spec: &KernelSpec) -> Result<ApplyReport, KernelError> {
    let mut k = KernelObjects::open().map_err(ctx(|| "open rtnetlink socket".into()))?;
    let mut report = ApplyReport::default();

    // --- read and check ---
    let links = k.links().map_err(ctx(|| "list links".into()))?;
    let needs_uplink = spec.vxlan.is_some() || !spec.routes.is_empty();
    let uplink = links.iter().find(|l| l.name == spec.uplink).cloned();
    if needs_uplink && uplink.is_none() {
        return Err(KernelError::UplinkNotFound(spec.uplink.clone()));
    }
    let named = links.iter().find(|l| l.name == spec.device_name);
    if let (Some(_), Some(l)) = (&spec.vxlan, named) {
        if !owned(l) {
            return Err(KernelError::ForeignDevice {
                name: l.name.clone(),
                kind: l.kind.clone(),
                alias: l.alias.clone(),
            });
        }
    }
    let routes = k.routes().map_err(ctx(|| "list routes".into()))?;
    check_foreign_routes(spec, &routes, &links)?;

    // --- a creation a crash interrupted: unmarked, under the reserved staging name ---
    let staging = staging_name(&spec.device_name);
    for l in links
        .iter()
        .filter(|l| l.name == staging && !owned(l) && l.kind.as_deref() == Some("vxlan"))
    {
        k.delete_link(l.index, &l.name)
            .map_err(ctx(|| format!("delete interrupted creation {}", l.name)))?;
        report
            .removed
            .push(format!("device {} (an interrupted creation)", l.name));
    }

    // --- stale podfwd devices (another name, or no device wanted) ---
    for l in links.iter().filter(|l| owned(l)) {
        if spec.vxlan.is_some() && l.name == spec.device_name {
            continue;
        }
        k.delete_link(l.index, &l.name)
            .map_err(ctx(|| format!("delete stale podfwd device {}", l.name)))?;
        report.removed.push(format!("device {}", l.name));
    }

    // --- the device ---
    let mut dev_index = None;
    if let (Some(v), Some(uplink)) = (&spec.vxlan, &uplink) {
        let mtu = match v.mtu {
            Some(m) => m,
            None if uplink.mtu > VXLAN_OVERHEAD + 68 => uplink.mtu - VXLAN_OVERHEAD,
            None => {
                return Err(KernelError::UplinkMtuTooSmall {
                    uplink: uplink.name.clone(),
                    mtu: uplink.mtu,
                })
            }
        };
        let name = &spec.device_name;
        let text = vxlan_text(name, v, &uplink.name);
        let existing = named.filter(|l| owned(l));
        let index = match existing {
            Some(l) => match recreate_reason(l, v, uplink.index) {
                Some(why) => {
                    k.delete_link(l.index, name)
                        .map_err(ctx(|| format!("delete {name} to recreate it ({why})")))?;
                    let i = create_device(&mut k, name, v, uplink.index, mtu)?;
                    report.corrected.push(format!("{text}: recreated ({why})"));
                    i
                }
                None => {
                    let mut diffs = Vec::new();
                    if l.mac != v.mac {
                        diffs.push(format!("address {} -> {}", l.mac, v.mac));
                    }
                    if l.mtu != mtu {
                        diffs.push(format!("mtu {} -> {mtu}", l.mtu));
                    }
                    if !l.up {
                        diffs.push("down -> up".to_string());
                    }
                    if diffs.is_empty() {
                        report.adopted.push(text);
                    } else {
                        k.set_link(
                            l.index,
                            (l.mac != v.mac).then_some(v.mac),
                            (l.mtu != mtu).then_some(mtu),
                            None,
                            true,
                        )
                        .map_err(ctx(|| format!("set {name} {}", diffs.join(", "))))?;
                        report
                            .corrected
                            .push(format!("{text}: {}", diffs.join(", ")));
                    }
                    l.index
                }
            },
            None => {
                let i = create_device(&mut k, name, v, uplink.index, mtu)?;
                report.created.push(format!(
                    "{text} address {} mtu {mtu} alias {DEVICE_ALIAS}",
                    v.mac
                ));
                i
            }
        };
        dev_index = Some(index);
        reconcile_addresses(&mut k, &mut report, index, name, v)?;
        reconcile_neighbours(&mut k, &mut report, spec, index)?;
        reconcile_fdb(&mut k, &mut report, spec, index)?;
    }

    // --- routes (read again: deleted or recreated devices took theirs along) ---
    let links = k.links().map_err(ctx(|| "list links".into()))?;
    let routes = k.routes().map_err(ctx(|| "list routes".into()))?;
    check_foreign_routes(spec, &routes, &links)?;
    let mut ours: Vec<RouteRecord> = routes
        .into_iter()
        .filter(|r| r.table == RT_TABLE_MAIN && r.protocol == RTPROT_PODFWD)
        .collect();
    for want in &spec.routes {
        let oif = match want.dev {
            RouteDev::Uplink => uplink.as_ref().map(|u| u.index),
            RouteDev::Vxlan => dev_index,
        };
        let Some(oif) = oif else { continue };
        let new = NewRoute {
            prefix: want.prefix,
            gateway: want.via,
            oif,
            onlink: want.onlink,
            protocol: RTPROT_PODFWD,
        };
        let text = format!(
            "route {} via {} dev {}{}",
            want.prefix,
            want.via,
            spec.dev_name(want.dev),
            if want.onlink { " onlink" } else { "" }
        );
        let pos = ours
            .iter()
            .position(|r| r.prefix == want.prefix && r.metric == 0);
        match pos.map(|i| ours.remove(i)) {
            Some(r)
                if r.gateway == Some(want.via) && r.oif == Some(oif) && r.onlink == want.onlink =>
            {
                report.adopted.push(text)
            }
            Some(r) => {
                k.replace_route(&new)
                    .map_err(ctx(|| format!("replace {text}")))?;
                report
                    .corrected
                    .push(format!("{text} (was {})", route_text(&r, &links)));
            }
            None => {
                k.replace_route(&new)
                    .map_err(ctx(|| format!("add {text}")))?;
                report.created.push(text);
            }
        }
    }
    for r in ours {
        let text = format!("route {}", route_text(&r, &links));
        if k.delete_route(&r)
            .map_err(ctx(|| format!("delete stale {text}")))?
        {
            report.removed.push(text);
        }
    }
    Ok(report)
}

/// Errors for the first main-table route of a spec prefix that podfwd does not own.
fn check_foreign_routes(
    spec: &KernelSpec,
    routes: &[RouteRecord],
    links: &[LinkDetails],
) -> Result<(), KernelError> {
    for want in &spec.routes {
        if let Some(r) = routes.iter().find(|r| {
            r.table == RT_TABLE_MAIN && r.prefix == want.prefix && r.protocol != RTPROT_PODFWD
        }) {
            return Err(KernelError::ForeignRoute {
                prefix: want.prefix,
                route: route_text(r, links),
                protocol: r.protocol,
            });
        }
    }
    Ok(())
}

/// The name a device `name` is created under before it is marked and renamed (the
/// kernel ignores an alias in the creating request, so marking takes a second one):
/// `<name>.new`, within the 15 bytes of an interface name. Reserved for podfwd.
pub fn staging_name(name: &str) -> String {
    let mut base = name.to_string();
    while base.len() > 15 - ".new".len() {
        base.pop();
    }
    format!("{base}.new")
}

/// Creates the device under its [`staging_name`], marks it as podfwd's, renames it and
/// brings it up. A crash at any point leaves either nothing under the configured name or
/// a marked device: never an unmarked one that the next start would have to refuse as
/// foreign. An unmarked device under the staging name is such a crash's leftover
/// (`apply` removes it first). On an error the new device is deleted again.
fn create_device(
    k: &mut KernelObjects,
    name: &str,
    v: &VxlanDevice,
    lower: u32,
    mtu: u32,
) -> Result<u32, KernelError> {
    let staging = staging_name(name);
    let index = k
        .create_vxlan(&NewVxlan {
            name: &staging,
            vni: v.vni,
            port: v.port,
            local: v.local,
            lower,
            mac: v.mac,
            mtu,
        })
        .map_err(ctx(|| format!("create device {name} (as {staging})")))?;
    let marked = k
        .set_link(index, None, None, Some(DEVICE_ALIAS), false)
        .map_err(ctx(|| format!("set alias {DEVICE_ALIAS} on {staging}")))
        .and_then(|()| {
            k.rename_link(index, name)
                .map_err(ctx(|| format!("rename {staging} to {name}")))
        })
        .and_then(|()| {
            k.set_link(index, None, None, None, true)
                .map_err(ctx(|| format!("set {name} up")))
        });
    if let Err(e) = marked {
        let _ = k.delete_link(index, name);
        return Err(e);
    }
    Ok(index)
}

fn reconcile_addresses(
    k: &mut KernelObjects,
    report: &mut ApplyReport,
    index: u32,
    name: &str,
    v: &VxlanDevice,
) -> Result<(), KernelError> {
    let have = k
        .ipv4_addresses(index)
        .map_err(ctx(|| format!("list addresses of {name}")))?;
    let text = format!("address {} dev {name}", v.address);
    if have.contains(&v.address) {
        report.adopted.push(text);
    } else {
        k.add_address(index, v.address)
            .map_err(ctx(|| format!("add {text}")))?;
        report.created.push(text);
    }
    for a in have.into_iter().filter(|a| *a != v.address) {
        let text = format!("address {a} dev {name}");
        if k.delete_address(index, a)
            .map_err(ctx(|| format!("delete stale {text}")))?
        {
            report.removed.push(text);
        }
    }
    Ok(())
}

fn reconcile_neighbours(
    k: &mut KernelObjects,
    report: &mut ApplyReport,
    spec: &KernelSpec,
    index: u32,
) -> Result<(), KernelError> {
    let dev = &spec.device_name;
    let mut have = k
        .neighbours(index)
        .map_err(ctx(|| format!("list neighbours of {dev}")))?;
    for n in &spec.neighbours {
        let text = format!("neighbour {} lladdr {} dev {dev}", n.ip, n.mac);
        let found = have
            .iter()
            .position(|h| h.ip == n.ip)
            .map(|i| have.remove(i));
        match found {
            Some(h) if h.mac == Some(n.mac) && h.is_permanent() => report.adopted.push(text),
            Some(h) => {
                k.replace_neighbour(index, n.ip, n.mac)
                    .map_err(ctx(|| format!("replace {text}")))?;
                let was = h.mac.map_or("none".to_string(), |m| m.to_string());
                report.corrected.push(format!(
                    "{text} nud permanent (was lladdr {was} nud {})",
                    crate::netlink::nud::name(h.state)
                ));
            }
            None => {
                k.replace_neighbour(index, n.ip, n.mac)
                    .map_err(ctx(|| format!("add {text}")))?;
                report.created.push(text);
            }
        }
    }
    for h in have {
        let mac = h.mac.map_or("none".to_string(), |m| m.to_string());
        let text = format!("neighbour {} lladdr {mac} dev {dev}", h.ip);
        if k.delete_neighbour(index, h.ip)
            .map_err(ctx(|| format!("delete stale {text}")))?
        {
            report.removed.push(text);
        }
    }
    Ok(())
}

fn reconcile_fdb(
    k: &mut KernelObjects,
    report: &mut ApplyReport,
    spec: &KernelSpec,
    index: u32,
) -> Result<(), KernelError> {
    let dev = &spec.device_name;
    let have = k
        .fdb(index)
        .map_err(ctx(|| format!("list fdb entries of {dev}")))?;
    let fmt_dst = |d: Option<Ipv4Addr>| d.map_or("none".to_string(), |d| d.to_string());
    for e in &spec.fdb {
        let text = format!("fdb {} dst {} dev {dev}", e.mac, e.dst);
        let same_mac: Vec<_> = have.iter().filter(|h| h.mac == e.mac).collect();
        let exact = same_mac
            .iter()
            .any(|h| h.dst == Some(e.dst) && h.is_self_permanent());
        let others: Vec<Option<Ipv4Addr>> = same_mac
            .iter()
            .filter(|h| h.dst != Some(e.dst))
            .map(|h| h.dst)
            .collect();
        if same_mac.is_empty() {
            k.replace_fdb(index, e.mac, e.dst)
                .map_err(ctx(|| format!("add {text}")))?;
            report.created.push(text);
            continue;
        }
        if exact && others.is_empty() {
            report.adopted.push(text);
            continue;
        }
        if !exact {
            // Replaces the (first) remote's destination and sets the state.
            k.replace_fdb(index, e.mac, e.dst)
                .map_err(ctx(|| format!("replace {text}")))?;
        }
        // Other remotes of this MAC, or the one just replaced. (The kernel keeps one
        // remote per unicast MAC; only all-zeros and multicast entries take appends.)
        for d in others.iter().flatten() {
            k.delete_fdb(index, e.mac, Some(*d))
                .map_err(ctx(|| format!("delete fdb {} dst {d} dev {dev}", e.mac)))?;
        }
        let was: Vec<String> = same_mac.iter().map(|h| fmt_dst(h.dst)).collect();
        report
            .corrected
            .push(format!("{text} (was dst {})", was.join(", ")));
    }
    let wanted: Vec<MacAddr> = spec.fdb.iter().map(|e| e.mac).collect();
    let mut stale: Vec<MacAddr> = have
        .iter()
        .map(|h| h.mac)
        .filter(|m| !wanted.contains(m))
        .collect();
    stale.dedup();
    for mac in stale {
        let dsts: Vec<String> = have
            .iter()
            .filter(|h| h.mac == mac)
            .map(|h| fmt_dst(h.dst))
            .collect();
        let text = format!("fdb {mac} dst {} dev {dev}", dsts.join(", "));
        if k.delete_fdb(index, mac, None)
            .map_err(ctx(|| format!("delete stale {text}")))?
        {
            report.removed.push(text);
        }
    }
    Ok(())
}

/// Removes everything podfwd installed in the calling thread's network namespace:
/// every device with [`DEVICE_ALIAS`] (its addresses, neighbours, FDB entries and the
/// routes through it go with it) and every route with protocol [`RTPROT_PODFWD`], in
/// any table. Nothing else. `device_name` (`vxlan.device`) is only reported on when a
/// device of that name exists that podfwd did not create.
pub fn cleanup(device_name: &str) -> Result<CleanupReport, KernelError> {
    let mut k = KernelObjects::open().map_err(ctx(|| "open rtnetlink socket".into()))?;
    let mut report = CleanupReport::default();
    let links = k.links().map_err(ctx(|| "list links".into()))?;
    let routes = k.routes().map_err(ctx(|| "list routes".into()))?;
    for l in links.iter().filter(|l| owned(l)) {
        let neighbours = k
            .neighbours(l.index)
            .map_err(ctx(|| format!("list neighbours of {}", l.name)))?
            .len();
        let fdb = k
            .fdb(l.index)
            .map_err(ctx(|| format!("list fdb entries of {}", l.name)))?
            .len();
        let via: Vec<String> = routes
            .iter()
            .filter(|r| r.oif == Some(l.index) && r.protocol == RTPROT_PODFWD)
            .map(|r| route_text(r, &links))
            .collect();
        if k.delete_link(l.index, &l.name)
            .map_err(ctx(|| format!("delete device {}", l.name)))?
        {
            report.removed.push(format!(
                "device {} with {neighbours} neighbours, {fdb} fdb entries",
                l.name
            ));
            report.removed.extend(
                via.into_iter()
                    .map(|r| format!("route {r} (with the device)")),
            );
        }
    }
    // Routes through other devices (host-gw), read again after the device deletions.
    let routes = k.routes().map_err(ctx(|| "list routes".into()))?;
    for r in routes.iter().filter(|r| r.protocol == RTPROT_PODFWD) {
        let text = format!("route {}", route_text(r, &links));
        if k.delete_route(r)
            .map_err(ctx(|| format!("delete {text}")))?
        {
            report.removed.push(text);
        }
    }
    report.left_alone = links
        .iter()
        .find(|l| l.name == device_name && !owned(l))
        .map(|l| l.name.clone());
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_prints_one_line_per_object_and_a_summary() {
        let report = ApplyReport {
            created: vec!["route 10.244.2.0/24 via 10.244.2.0 dev podfwd.1 onlink".into()],
            adopted: vec![
                "device podfwd.1".into(),
                "address 10.244.0.0/32 dev podfwd.1".into(),
            ],
            corrected: vec![],
            removed: vec!["neighbour 10.244.9.0 lladdr 0e:00:00:00:00:99 dev podfwd.1".into()],
        };
        assert_eq!(
            report.to_string(),
            "created route 10.244.2.0/24 via 10.244.2.0 dev podfwd.1 onlink\n\
             adopted device podfwd.1\n\
             adopted address 10.244.0.0/32 dev podfwd.1\n\
             removed neighbour 10.244.9.0 lladdr 0e:00:00:00:00:99 dev podfwd.1\n"
        );
        assert_eq!(
            report.summary(),
            "kernel: 1 created, 2 adopted, 0 corrected, 1 removed"
        );
        assert!(report.changed());
        let adopted_only = ApplyReport {
            adopted: report.adopted.clone(),
            ..ApplyReport::default()
        };
        assert!(!adopted_only.changed());
    }

    #[test]
    fn empty_cleanup_report_says_what_it_looked_for() {
        let text = CleanupReport::default().to_string();
        assert_eq!(
            text,
            "nothing to remove (no device with alias \"podfwd-managed\", no route with proto 112)\n"
        );
    }

    #[test]
    fn foreign_objects_are_named_with_their_owner() {
        let e = KernelError::ForeignRoute {
            prefix: "10.244.1.0/24".parse().unwrap(),
            route: "10.244.1.0/24 via 10.168.0.9 dev ul".into(),
            protocol: 4,
        };
        assert!(e
            .to_string()
            .starts_with("route 10.244.1.0/24 via 10.168.0.9 dev ul exists with proto static (4)"));
        let e = KernelError::ForeignDevice {
            name: "podfwd.1".into(),
            kind: Some("vxlan".into()),
            alias: Some("flannel".into()),
        };
        assert!(
            e.to_string().contains("(kind vxlan, alias \"flannel\")"),
            "{e}"
        );
    }
}
