//! Programming the node's kernel slow path from the control loop (at start, when the
//! uplink comes back, and on reload): [`crate::kernel`] computes and applies the state.

use crate::kernel::KernelSpec;
use crate::netlink;
use crate::plan::Plan;

/// Programs the node's kernel as flanneld would (the slow path under podfwd: VXLAN
/// device, neighbours, FDB entries, routes; adopted from an earlier instance, entries of
/// peers that are gone removed, kept when podfwd stops); returns the ifindex of the
/// kernel's VXLAN device, 0 when there is none.
pub fn program(plan: &Plan) -> Result<u32, super::RunError> {
    let spec = KernelSpec::from_plan(plan);
    let report = crate::kernel::apply(&spec)?;
    tracing::info!(
        created = report.created.len(),
        adopted = report.adopted.len(),
        corrected = report.corrected.len(),
        removed = report.removed.len(),
        "kernel programmed"
    );
    for (action, list) in [
        ("created", &report.created),
        ("corrected", &report.corrected),
        ("removed", &report.removed),
    ] {
        for object in list {
            tracing::info!(%action, %object, "kernel");
        }
    }
    for object in &report.adopted {
        tracing::debug!(action = "adopted", %object, "kernel");
    }
    match &spec.vxlan {
        Some(_) => Ok(netlink::interface(&spec.device_name)?.index),
        None => Ok(0),
    }
}

/// Warns when IPv4 forwarding is off in this namespace: the kernel then forwards
/// nothing podfwd passes to it (ICMP errors, first packets, NAT), and the classifier
/// passes everything (its FIB lookups answer "forwarding disabled").
pub fn warn_if_forwarding_off() {
    match std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward") {
        Ok(v) if v.trim() == "1" => {}
        Ok(_) => tracing::warn!(
            sysctl = "net.ipv4.ip_forward",
            value = 0,
            "IPv4 forwarding is off: the kernel slow path cannot forward, \
             and the classifier hands every frame to it, so nothing is forwarded; set \
             `sysctl -w net.ipv4.ip_forward=1` (every Kubernetes node has it)"
        ),
        Err(e) => tracing::warn!(sysctl = "net.ipv4.ip_forward", error = %e, "cannot read"),
    }
}
